package endpoints

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fakeCluster applies plans the way the apiserver would, checking that updates carry
// the ResourceVersion of what was read and that deletes name existing slices.
type fakeCluster struct {
	t      testing.TB
	slices map[string]*discoveryv1.EndpointSlice
	next   int
	rv     int
}

func newFakeCluster(t testing.TB) *fakeCluster {
	return &fakeCluster{t: t, slices: map[string]*discoveryv1.EndpointSlice{}}
}

func (c *fakeCluster) list() []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, n := range slices.Sorted(maps.Keys(c.slices)) {
		out = append(out, c.slices[n])
	}
	return out
}

func (c *fakeCluster) apply(p Plan) {
	c.t.Helper()
	for _, s := range p.Create {
		if s.Name != "" || s.GenerateName == "" {
			c.t.Fatalf("create with name %q generateName %q", s.Name, s.GenerateName)
		}
		c.next++
		c.rv++
		s = s.DeepCopy()
		s.Name = s.GenerateName + strconv.Itoa(c.next)
		s.UID = types.UID("uid-" + s.Name)
		s.ResourceVersion = strconv.Itoa(c.rv)
		s.Generation = 1
		c.slices[s.Name] = s
	}
	for _, s := range p.Update {
		old, ok := c.slices[s.Name]
		if !ok || old.ResourceVersion != s.ResourceVersion || old.UID != s.UID {
			c.t.Fatalf("update of %s with rv %q uid %q: stored %v", s.Name, s.ResourceVersion, s.UID, old)
		}
		c.rv++
		s = s.DeepCopy()
		s.ResourceVersion = strconv.Itoa(c.rv)
		s.Generation = old.Generation + 1
		c.slices[s.Name] = s
	}
	for _, s := range p.Delete {
		if _, ok := c.slices[s.Name]; !ok {
			c.t.Fatalf("delete of missing slice %s", s.Name)
		}
		delete(c.slices, s.Name)
	}
}

// sync plans against the cluster, applies, and returns the writes as
// "create N update N delete N".
func (c *fakeCluster) sync(s *Service, pods []Pod, max int) string {
	c.t.Helper()
	p, _ := Compute(s, pods, map[string]string{"n1": "zone-a"}, c.list(), Options{MaxEndpointsPerSlice: max})
	c.apply(p)
	checkInvariants(c.t, s, pods, c.list(), max)
	return writes(p)
}

func writes(p Plan) string {
	return fmt.Sprintf("create %d update %d delete %d", len(p.Create), len(p.Update), len(p.Delete))
}

// layout: "name:count" per slice, in name order.
func (c *fakeCluster) layout() string {
	var parts []string
	for _, s := range c.list() {
		parts = append(parts, fmt.Sprintf("%s:%d", s.Name, len(s.Endpoints)))
	}
	return strings.Join(parts, " ")
}

// where maps pod name → slice name.
func (c *fakeCluster) where() map[string]string {
	out := map[string]string{}
	for _, s := range c.list() {
		for _, e := range s.Endpoints {
			out[e.TargetRef.Name] = s.Name
		}
	}
	return out
}

// checkInvariants: every desired endpoint exactly once, equal to the desired one;
// no slice over max; one address type and port set per slice; our labels and owner.
func checkInvariants(t testing.TB, s *Service, pods []Pod, got []*discoveryv1.EndpointSlice, max int) {
	t.Helper()
	groups, _ := Desired(s, pods, map[string]string{"n1": "zone-a"})
	want := map[string]discoveryv1.Endpoint{} // type/portkey/pod
	for _, g := range groups {
		for _, e := range g.Endpoints {
			want[string(g.AddressType)+"/"+g.key+"/"+e.TargetRef.Name] = e
		}
	}
	seen := map[string]bool{}
	for _, sl := range got {
		if len(sl.Endpoints) > max {
			t.Errorf("slice %s has %d endpoints, max %d", sl.Name, len(sl.Endpoints), max)
		}
		if sl.Labels[discoveryv1.LabelServiceName] != s.Name || sl.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
			t.Errorf("slice %s labels %v", sl.Name, sl.Labels)
		}
		if !ownedBy(sl, s) || sl.OwnerReferences[0].Controller == nil || !*sl.OwnerReferences[0].Controller {
			t.Errorf("slice %s owner %v", sl.Name, sl.OwnerReferences)
		}
		for _, e := range sl.Endpoints {
			k := string(sl.AddressType) + "/" + portKey(sl.Ports) + "/" + e.TargetRef.Name
			w, ok := want[k]
			switch {
			case !ok:
				t.Errorf("slice %s has unwanted endpoint %s", sl.Name, k)
			case seen[k]:
				t.Errorf("endpoint %s twice", k)
			case !endpointEqual(&e, &w):
				t.Errorf("endpoint %s is %s, want %s", k, describeEndpoint(e), describeEndpoint(w))
			}
			seen[k] = true
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("endpoint %s missing", k)
		}
	}
}

func podsN(from, to int, opts ...podOpt) []Pod {
	var out []Pod
	for i := from; i < to; i++ {
		p := pod(fmt.Sprintf("p%04d", i), opts...)
		p.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}
		out = append(out, p)
	}
	return out
}

func TestPlanScaleUpAndDown(t *testing.T) {
	s := svc("web", tcpPort("http", 8080))
	c := newFakeCluster(t)

	if got, want := c.sync(&s, podsN(0, 250), 100), "create 3 update 0 delete 0"; got != want {
		t.Errorf("250 pods: %s, want %s", got, want)
	}
	if got, want := c.layout(), "web-1:100 web-2:100 web-3:50"; got != want {
		t.Errorf("layout %s, want %s", got, want)
	}
	if got := c.sync(&s, podsN(0, 250), 100); got != "create 0 update 0 delete 0" {
		t.Errorf("no change: %s", got)
	}
	// Keep every fifth pod: 50 spread over three slices get compacted into one.
	var kept []Pod
	for i, p := range podsN(0, 250) {
		if i%5 == 0 {
			kept = append(kept, p)
		}
	}
	if got, want := c.sync(&s, kept, 100), "create 0 update 1 delete 2"; got != want {
		t.Errorf("scale down: %s, want %s", got, want)
	}
	if got, want := c.layout(), "web-1:50"; got != want {
		t.Errorf("layout %s, want %s", got, want)
	}
}

func TestPlanStableMembership(t *testing.T) {
	s := svc("web", tcpPort("http", 8080))
	c := newFakeCluster(t)
	pods := podsN(0, 250)
	c.sync(&s, pods, 100)
	before := c.where()

	// A readiness flip rewrites only the slice holding the pod.
	pods[150].Ready = false
	if got, want := c.sync(&s, pods, 100), "create 0 update 1 delete 0"; got != want {
		t.Errorf("readiness flip: %s, want %s", got, want)
	}
	// A pod replaced by another: the newcomer takes the freed seat in the same write.
	pods = slices.Delete(pods, 10, 11)
	pods = append(pods, podsN(900, 901)...)
	if got, want := c.sync(&s, pods, 100), "create 0 update 1 delete 0"; got != want {
		t.Errorf("replace: %s, want %s", got, want)
	}
	after := c.where()
	if after["p0900"] != before["p0010"] {
		t.Errorf("newcomer in %s, want the freed slice %s", after["p0900"], before["p0010"])
	}
	// One more pod fits the half-empty slice, not a new one.
	pods = append(pods, podsN(901, 902)...)
	if got, want := c.sync(&s, pods, 100), "create 0 update 1 delete 0"; got != want {
		t.Errorf("add: %s, want %s", got, want)
	}
	after = c.where()
	for name, sl := range before {
		if name != "p0010" && after[name] != sl {
			t.Errorf("pod %s moved from %s to %s", name, sl, after[name])
		}
	}
	if after["p0901"] != "web-3" {
		t.Errorf("added pod in %s, want web-3 (the one with room)", after["p0901"])
	}
}

func TestPlanNoChurnAtBoundary(t *testing.T) {
	s := svc("web", tcpPort("http", 8080))
	c := newFakeCluster(t)
	c.sync(&s, podsN(0, 100), 100)
	if got, want := c.sync(&s, podsN(0, 101), 100), "create 1 update 0 delete 0"; got != want {
		t.Errorf("101st pod: %s, want %s", got, want)
	}
	// 99+1 over two slices is not fragmented enough to be worth compacting.
	if got, want := c.sync(&s, podsN(1, 101), 100), "create 0 update 1 delete 0"; got != want {
		t.Errorf("first pod gone: %s, want %s", got, want)
	}
	if got, want := c.layout(), "web-1:99 web-2:1"; got != want {
		t.Errorf("layout %s, want %s", got, want)
	}
}

func TestPlanPortChangeReusesSlices(t *testing.T) {
	s := svc("web", namedPort("http", "http", corev1.ProtocolTCP))
	c := newFakeCluster(t)
	pods := podsN(0, 150, cport("http", 8080, corev1.ProtocolTCP), cport("web", 8081, corev1.ProtocolTCP))
	c.sync(&s, pods, 100)
	names := c.layout()

	s.Ports[0].TargetPort.StrVal = "web"
	if got, want := c.sync(&s, pods, 100), "create 0 update 2 delete 0"; got != want {
		t.Errorf("target port rename: %s, want %s", got, want)
	}
	if got := c.layout(); got != names {
		t.Errorf("layout %s, want the same slices %s", got, names)
	}
	for _, sl := range c.list() {
		if got := describePorts(sl.Ports); got != "http=8081/TCP" {
			t.Errorf("slice %s ports %s", sl.Name, got)
		}
	}

	// Half the pods move the named port: they go to their own slice.
	for i := range 75 {
		pods[i].Ports[1].Port = 9000
	}
	c.sync(&s, pods, 100)
	ports := map[string]int{}
	for _, sl := range c.list() {
		ports[describePorts(sl.Ports)] += len(sl.Endpoints)
	}
	if want := map[string]int{"http=8081/TCP": 75, "http=9000/TCP": 75}; !maps.Equal(ports, want) {
		t.Errorf("endpoints by port set %v, want %v", ports, want)
	}
}

func TestPlanPlaceholder(t *testing.T) {
	s := svc("web", tcpPort("http", 8080))
	c := newFakeCluster(t)
	if got, want := c.sync(&s, nil, 100), "create 1 update 0 delete 0"; got != want {
		t.Errorf("no pods: %s, want %s", got, want)
	}
	if sl := c.list()[0]; len(sl.Endpoints) != 0 || len(sl.Ports) != 0 {
		t.Errorf("placeholder has endpoints %d ports %d", len(sl.Endpoints), len(sl.Ports))
	}
	if got := c.sync(&s, nil, 100); got != "create 0 update 0 delete 0" {
		t.Errorf("placeholder again: %s", got)
	}
	if got, want := c.sync(&s, podsN(0, 3), 100), "create 0 update 1 delete 0"; got != want {
		t.Errorf("first pods: %s, want %s (the placeholder reused)", got, want)
	}
	if got, want := c.sync(&s, nil, 100), "create 0 update 1 delete 0"; got != want {
		t.Errorf("pods gone: %s, want %s (back to a placeholder)", got, want)
	}
	if got, want := c.layout(), "web-1:0"; got != want {
		t.Errorf("layout %s, want %s", got, want)
	}
}

func TestPlanForeignAndStaleSlices(t *testing.T) {
	s := svc("web", tcpPort("http", 8080))
	c := newFakeCluster(t)
	c.sync(&s, podsN(0, 10), 100)

	// A slice of an earlier Service of the same name, and one of a dropped family.
	old := c.list()[0].DeepCopy()
	old.Name, old.UID = "web-old", "uid-web-old"
	old.OwnerReferences[0].UID = "uid-earlier-service"
	c.slices[old.Name] = old
	v6 := c.list()[0].DeepCopy()
	v6.Name, v6.UID, v6.AddressType = "web-v6", "uid-web-v6", discoveryv1.AddressTypeIPv6
	c.slices[v6.Name] = v6
	// A slice being deleted is ignored.
	gone := c.list()[0].DeepCopy()
	gone.Name, gone.UID, gone.DeletionTimestamp = "web-going", "uid-web-going", &metav1.Time{Time: time.Now()}
	c.slices[gone.Name] = gone

	p, _ := Compute(&s, podsN(0, 10), map[string]string{"n1": "zone-a"}, c.list(), Options{})
	var deleted []string
	for _, d := range p.Delete {
		deleted = append(deleted, d.Name)
	}
	slices.Sort(deleted)
	if want := []string{"web-old", "web-v6"}; !slices.Equal(deleted, want) || len(p.Create)+len(p.Update) != 0 {
		t.Errorf("plan %s deleting %v, want only deletes of %v", writes(p), deleted, want)
	}
}

func TestPlanLabelsAndAnnotations(t *testing.T) {
	s := svc("web", tcpPort("http", 8080))
	s.Labels = map[string]string{"team": "a", discoveryv1.LabelManagedBy: "someone-else"}
	s.Headless = true
	c := newFakeCluster(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	p, _ := Compute(&s, podsN(0, 3), map[string]string{"n1": ""}, nil, Options{TriggerTime: at})
	c.apply(p)
	sl := c.list()[0]
	wantLabels := map[string]string{
		"team": "a", corev1.IsHeadlessService: "",
		discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: ManagedBy,
	}
	if !maps.Equal(sl.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", sl.Labels, wantLabels)
	}
	if got := sl.Annotations[corev1.EndpointsLastChangeTriggerTime]; got != "2026-01-02T03:04:05.000000006Z" {
		t.Errorf("trigger time annotation %q", got)
	}
	if sl.GenerateName != "web-" {
		t.Errorf("generateName %q", sl.GenerateName)
	}

	// A label change on the Service rewrites the slice; the trigger time alone does not.
	if p, _ := Compute(&s, podsN(0, 3), map[string]string{"n1": ""}, c.list(), Options{TriggerTime: at.Add(time.Hour)}); p.Writes() != 0 {
		t.Errorf("trigger time alone: %s", writes(p))
	}
	s.Labels = map[string]string{"team": "b"}
	p, _ = Compute(&s, podsN(0, 3), map[string]string{"n1": ""}, c.list(), Options{})
	if len(p.Update) != 1 || p.Update[0].Labels["team"] != "b" {
		t.Fatalf("label change: %s", writes(p))
	}
	if _, ok := p.Update[0].Annotations[corev1.EndpointsLastChangeTriggerTime]; ok {
		t.Errorf("zero trigger time kept the annotation")
	}
}

func TestPlanRepairs(t *testing.T) {
	s := svc("web", tcpPort("http", 8080))
	c := newFakeCluster(t)
	pods := podsN(0, 120)
	c.sync(&s, pods, 100)

	// Someone duplicated an endpoint into the other slice: it is removed there.
	dup := c.slices["web-2"]
	dup.Endpoints = append(dup.Endpoints, c.slices["web-1"].Endpoints[0])
	if got, want := c.sync(&s, pods, 100), "create 0 update 1 delete 0"; got != want {
		t.Errorf("duplicate: %s, want %s", got, want)
	}
	// A smaller maximum splits slices.
	c.sync(&s, pods, 50)
	for _, sl := range c.list() {
		if len(sl.Endpoints) > 50 {
			t.Errorf("slice %s has %d endpoints", sl.Name, len(sl.Endpoints))
		}
	}
}

func TestPlanDualStack(t *testing.T) {
	s := svc("web", tcpPort("http", 8080))
	s.AddressTypes = []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}
	c := newFakeCluster(t)
	pods := podsN(0, 5)
	// No IPv6 endpoints: a placeholder for that family, as upstream.
	if got, want := c.sync(&s, pods, 100), "create 2 update 0 delete 0"; got != want {
		t.Errorf("v4 only: %s, want %s", got, want)
	}
	for i := range pods {
		pods[i].IPs = append(pods[i].IPs, netip.MustParseAddr(fmt.Sprintf("fd00::%d", i+1)))
	}
	if got, want := c.sync(&s, pods, 100), "create 0 update 1 delete 0"; got != want {
		t.Errorf("v6 added: %s, want %s", got, want)
	}
	types := map[discoveryv1.AddressType]int{}
	for _, sl := range c.list() {
		types[sl.AddressType] += len(sl.Endpoints)
	}
	if types["IPv4"] != 5 || types["IPv6"] != 5 {
		t.Errorf("endpoints by type %v", types)
	}
}
