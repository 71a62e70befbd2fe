package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/knftables"
)

// countingNFT counts the runs of transaction parts (one per table touched) against
// fakes, and can make them fail.
type countingNFT struct {
	*fakeTables
	mu   sync.Mutex
	runs int
	fail bool
	last string
}

func newCountingNFT() *countingNFT {
	return &countingNFT{fakeTables: newFakeTables(knftables.IPv4Family)}
}

// open is an Options.NFT.
func (c *countingNFT) open(table string) knftables.Interface {
	return &countingTable{Interface: c.fake(table), c: c}
}

type countingTable struct {
	knftables.Interface
	c *countingNFT
}

func (t *countingTable) Run(ctx context.Context, tx *knftables.Transaction) error {
	c := t.c
	c.mu.Lock()
	c.runs++
	c.last = tx.String()
	fail := c.fail
	c.mu.Unlock()
	if fail {
		return fmt.Errorf("injected failure")
	}
	return t.Interface.Run(ctx, tx)
}

func (c *countingNFT) Runs() int { c.mu.Lock(); defer c.mu.Unlock(); return c.runs }

type recordedConntrack struct {
	mu    sync.Mutex
	flows []StaleFlow
}

func (r *recordedConntrack) DeleteUDP(f []StaleFlow) error {
	r.mu.Lock()
	r.flows = append(r.flows, f...)
	r.mu.Unlock()
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestProxierBatchesAndRecordsLatency(t *testing.T) {
	nft := newCountingNFT()
	p, err := NewProxier(Options{Node: testNode, NFT: nft.open, MinSyncInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	// Nothing is written before the initial lists are in.
	p.OnServiceUpdate(web("shop", "pre", "172.28.0.9"))
	time.Sleep(30 * time.Millisecond)
	if nft.Runs() != 0 {
		t.Fatalf("synced before OnSynced")
	}
	p.OnSynced()
	waitFor(t, "first sync", func() bool { return p.SyncDurations().Count == 1 })

	// 200 events inside the min interval become at most two transactions.
	for i := range 200 {
		s := web("shop", fmt.Sprintf("s%d", i), fmt.Sprintf("172.28.1.%d", i))
		p.OnServiceUpdate(s)
		p.OnEndpointSliceUpdate(slice(s, "x", http8080, ep(fmt.Sprintf("172.27.9.%d", i), "node-b", "ready")))
	}
	waitFor(t, "all services", func() bool {
		return len(nft.elements(mapServiceIPs)) == 200
	})
	waitFor(t, "latency of every changed service", func() bool { return p.Latency().Count == 201 })
	if r := p.SyncDurations().Count - 1; r > 3 {
		t.Errorf("%d transactions for one burst of events, want ≤ 3", r)
	}
	lat := p.Latency()
	t.Logf("event→kernel latency with fake: %v", lat)

	// Invalid input changes nothing.
	time.Sleep(60 * time.Millisecond) // let the burst's last sync finish
	before := nft.Dump()
	p.OnServiceUpdate(&Service{Key: ServiceKey{"shop", "s1"}, ClusterIPs: addrs("172.28.1.1"), Ports: []ServicePort{{Name: "x", Protocol: "icmp", Port: 1}}})
	time.Sleep(80 * time.Millisecond)
	if nft.Dump() != before {
		t.Error("invalid service changed the table")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestProxierRecoversWithFullSync(t *testing.T) {
	nft := newCountingNFT()
	p, _ := NewProxier(Options{Node: testNode, NFT: nft.open})
	ctx := context.Background()
	a := web("shop", "a", "172.28.0.30")
	p.OnServiceUpdate(a)
	p.OnSynced()
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	nft.fail = true
	p.OnEndpointSliceUpdate(slice(a, "a-1", http8080, ep("172.27.1.1", "node-b", "ready")))
	if err := p.Sync(ctx); err == nil {
		t.Fatal("want the injected error")
	}
	nft.fail = false
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if v := mapValue(t, nft.fakeTables, mapServiceIPs, "172.28.0.30", "tcp", "80"); v != "goto svc-shop/a/tcp/http" {
		t.Errorf("change lost after a failed sync: service-ips = %q", v)
	}
}

func TestProxierUDPConntrack(t *testing.T) {
	nft := newFakeTables(knftables.IPv4Family)
	ct := &recordedConntrack{}
	p, _ := NewProxier(Options{Node: testNode, NFT: nft.open, Conntrack: ct})
	dns := &Service{Key: ServiceKey{"kube-system", "dns"}, Type: ClusterIP, ClusterIPs: addrs("172.28.0.10"),
		Ports: []ServicePort{{Name: "dns", Protocol: UDP, Port: 53}}}
	ports := []EndpointPort{{Name: "dns", Protocol: UDP, Port: 53}}
	p.OnServiceUpdate(dns)
	p.OnSynced()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.Sync(ctx))
	p.OnEndpointSliceUpdate(slice(dns, "d", ports, ep("172.27.1.5", "node-a", "ready"), ep("172.27.2.5", "node-b", "ready")))
	must(p.Sync(ctx))
	// From no endpoints to some: entries to the service IP may have been cached.
	want0 := StaleFlow{Dest: netipAddrPort("172.28.0.10:53")}
	if len(ct.flows) != 1 || ct.flows[0] != want0 {
		t.Fatalf("flows = %+v, want %+v", ct.flows, want0)
	}
	ct.flows = nil
	p.OnEndpointSliceUpdate(slice(dns, "d", ports, ep("172.27.1.5", "node-a", "ready")))
	must(p.Sync(ctx))
	want := StaleFlow{Dest: netipAddrPort("172.28.0.10:53"), Endpoint: addrs("172.27.2.5")[0]}
	if len(ct.flows) != 1 || ct.flows[0] != want {
		t.Fatalf("flows = %+v, want %+v", ct.flows, want)
	}
}

func TestHealthCheckServer(t *testing.T) {
	nft := newFakeTables(knftables.IPv4Family)
	var mu sync.Mutex
	addrsByPort := map[uint16]string{}
	listen := func(port uint16) (net.Listener, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0") // loopback only, any free port
		if err == nil {
			mu.Lock()
			addrsByPort[port] = ln.Addr().String()
			mu.Unlock()
		}
		return ln, err
	}
	p, _ := NewProxier(Options{Node: testNode, NFT: nft.open, HealthListen: listen})
	defer p.health.close()
	lb := web("shop", "lb", "172.28.0.25")
	lb.Type = LoadBalancer
	lb.Ports[0].NodePort = 30081
	lb.ExternalLocal = true
	lb.HealthCheckNodePort = 32000
	p.OnServiceUpdate(lb)
	p.OnEndpointSliceUpdate(slice(lb, "lb-1", http8080, ep("172.27.2.50", "node-b", "ready")))
	p.OnSynced()
	ctx := context.Background()
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	get := func() (int, map[string]any) {
		t.Helper()
		mu.Lock()
		a := addrsByPort[32000]
		mu.Unlock()
		resp, err := http.Get("http://" + a + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
		return resp.StatusCode, body
	}
	if code, body := get(); code != 503 || body["localEndpoints"] != 0.0 {
		t.Errorf("no local endpoints: got %d %v, want 503 with 0", code, body)
	}
	p.OnEndpointSliceUpdate(slice(lb, "lb-1", http8080, ep("172.27.2.50", "node-b", "ready"), ep("172.27.1.50", "node-a", "ready"), ep("172.27.1.51", "node-a", "ready")))
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != 200 || body["localEndpoints"] != 2.0 || !strings.Contains(fmt.Sprint(body["service"]), "lb") {
		t.Errorf("two local endpoints: got %d %v, want 200 with 2", code, body)
	}
}

func TestRunWithKubernetesSource(t *testing.T) {
	ready, term := true, true
	port := int32(8080)
	name := "http"
	proto := corev1.ProtocolTCP
	cs := k8sfake.NewClientset(
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: map[string]string{"big": strings.Repeat("x", 1000)}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "172.28.0.20", ClusterIPs: []string{"172.28.0.20"},
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt(8080)}}},
		},
		&corev1.Service{ // not ours
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "other", Labels: map[string]string{labelServiceProxyName: "someone-else"}},
			Spec:       corev1.ServiceSpec{ClusterIP: "172.28.0.21", Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"172.27.1.10"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
				{Addresses: []string{"172.27.1.11"}, Conditions: discoveryv1.EndpointConditions{Serving: &ready, Terminating: &term}},
			},
		},
	)
	fake := newFakeTables(knftables.IPv4Family)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var proxiers []*Proxier
	var pmu sync.Mutex
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Clientset: cs, NodeName: "node-a", NodeIPs: addrs("192.168.50.11"),
			PodCIDRs:     []netip.Prefix{netipPrefix("172.27.0.0/16")},
			NewNFT:       func(_ knftables.Family, table string) knftables.Interface { return fake.open(table) },
			Conntrack:    &recordedConntrack{},
			HealthListen: func(uint16) (net.Listener, error) { return nil, fmt.Errorf("unused") },
			OnProxiers:   func(ps []*Proxier) { pmu.Lock(); proxiers = ps; pmu.Unlock() },
		})
	}()
	hasElement := func(m string, key ...string) bool {
		for _, e := range fake.elements(m) {
			if strings.Join(e.Key, " ") == strings.Join(key, " ") {
				return true
			}
		}
		return false
	}
	waitFor(t, "web in service-ips", func() bool { return hasElement(mapServiceIPs, "172.28.0.20", "tcp", "80") })
	if hasElement(mapServiceIPs, "172.28.0.21", "tcp", "80") || hasElement(mapNoEndpointSvcs, "172.28.0.21", "tcp", "80") {
		t.Error("service labelled for another proxy was programmed")
	}
	if dump := fake.Dump(); !strings.Contains(dump, "mod 1 vmap { 0 : goto ep-shop/web/tcp/http__172.27.1.10/8080 }") {
		t.Errorf("want only the ready endpoint in:\n%s", dump)
	}
	// Deleting its only EndpointSlice leaves the service without endpoints.
	if err := cs.DiscoveryV1().EndpointSlices("shop").Delete(ctx, "web-abc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web without endpoints", func() bool {
		return hasElement(mapNoEndpointSvcs, "172.28.0.20", "tcp", "80") && !hasElement(mapServiceIPs, "172.28.0.20", "tcp", "80")
	})
	// Deleting the service over the API removes it from the table.
	if err := cs.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web gone", func() bool { return !hasElement(mapNoEndpointSvcs, "172.28.0.20", "tcp", "80") })
	pmu.Lock()
	if len(proxiers) != 1 || proxiers[0].Latency().Count == 0 {
		t.Errorf("no latency recorded")
	}
	pmu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPeriodicResyncWritesOnlyDifferences(t *testing.T) {
	nft := newCountingNFT()
	p, _ := NewProxier(Options{Node: testNode, NFT: nft.open})
	ctx := context.Background()
	for i := range 20 {
		s := web("shop", fmt.Sprintf("s%d", i), fmt.Sprintf("172.28.1.%d", i))
		p.OnServiceUpdate(s)
		p.OnEndpointSliceUpdate(slice(s, "x", http8080, ep(fmt.Sprintf("172.27.9.%d", i), "node-b", "ready")))
	}
	p.OnSynced()
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Someone leaves a chain of ours behind by hand.
	shard := testNode.shardOf(ServiceKey{"old", "gone"})
	tx := nft.fake(shard).NewTransaction()
	tx.Add(&knftables.Chain{Name: "svc-old/gone/tcp/http"})
	tx.Add(&knftables.Rule{Chain: "svc-old/gone/tcp/http", Rule: "drop"})
	if err := nft.fake(shard).Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	runs := nft.Runs()
	p.syncMu.Lock()
	p.resync = true
	p.syncMu.Unlock()
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if nft.Runs() != runs+1 {
		t.Errorf("resync ran %d transaction parts, want 1", nft.Runs()-runs)
	}
	if want := "flush chain ip " + shard + " svc-old/gone/tcp/http\n"; nft.last != want {
		t.Errorf("resync transaction = %q, want only %q", nft.last, want)
	}
}

// TestInformerCacheHoldsModels: the informers' transforms keep names and models,
// not the API objects (annotations, managed fields, unused spec).
func TestInformerCacheHoldsModels(t *testing.T) {
	full := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", ResourceVersion: "7", UID: "u",
			Annotations: map[string]string{"big": strings.Repeat("x", 1000)}, Labels: map[string]string{"a": "b"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.ServiceSpec{ClusterIP: "172.28.0.20", ClusterIPs: []string{"172.28.0.20"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
	}
	o, err := stripService(full)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := o.(*cachedService)
	if !ok {
		t.Fatalf("cache entry is %T", o)
	}
	if want := (objectRef{Namespace: "shop", Name: "web", ResourceVersion: "7"}); c.objectRef != want {
		t.Errorf("meta %+v, want %+v", c.objectRef, want)
	}
	// The informers read metadata through meta.Accessor.
	if m, err := meta.Accessor(c); err != nil || m.GetNamespace() != "shop" || m.GetName() != "web" || m.GetResourceVersion() != "7" {
		t.Errorf("meta.Accessor: %v, %v", m, err)
	}
	if !reflect.DeepEqual(c.model, ServiceFromAPI(full)) {
		t.Errorf("model %+v", c.model)
	}
	headless := full.DeepCopy()
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	if o, _ := stripService(headless); o.(*cachedService).model != nil {
		t.Error("headless service has a model")
	}
	key, err := cache.MetaNamespaceKeyFunc(c)
	if err != nil || key != "shop/web" {
		t.Errorf("store key %q, %v", key, err)
	}

	port := int32(8080)
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web", "x": "y"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: &port}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"172.27.1.10"}}},
	}
	o, _ = stripEndpointSlice(sl)
	cs, ok := o.(*cachedSlice)
	if !ok || !reflect.DeepEqual(cs.model, EndpointSliceFromAPI(sl)) || cs.objectRef != (objectRef{Namespace: "shop", Name: "web-1"}) {
		t.Errorf("slice cache entry %#v", o)
	}
	if cp := cs.DeepCopyObject().(*cachedSlice); cp == cs || cp.model != cs.model {
		t.Error("DeepCopyObject: want a new entry sharing the immutable model")
	}
}

// TestProxierSlicesOfAService: a service's endpoints are the union of its slices,
// each replaced by name on update and dropped on delete.
func TestProxierSlicesOfAService(t *testing.T) {
	nft := newFakeTables(knftables.IPv4Family)
	p, err := NewProxier(Options{Node: testNode, NFT: nft.open})
	if err != nil {
		t.Fatal(err)
	}
	s := web("shop", "web", "172.28.0.10")
	endpoints := func() []string {
		var got []string
		for name, c := range nft.fake(testNode.shardOf(s.Key)).Table.Chains {
			// Chains of gone endpoints are flushed first, deleted later.
			if a, ok := strings.CutPrefix(name, "ep-shop/web/tcp/http__"); ok && len(c.Rules) > 0 {
				got = append(got, a)
			}
		}
		slices.Sort(got)
		return got
	}
	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{"three slices", func() {
			p.OnServiceUpdate(s)
			p.OnEndpointSliceUpdate(slice(s, "a", http8080, ep("172.27.1.1", "node-b", "ready")))
			p.OnEndpointSliceUpdate(slice(s, "b", http8080, ep("172.27.1.2", "node-b", "ready")))
			p.OnEndpointSliceUpdate(slice(s, "c", http8080, ep("172.27.1.3", "node-b", "ready")))
			p.OnSynced()
		}, []string{"172.27.1.1/8080", "172.27.1.2/8080", "172.27.1.3/8080"}},
		{"update replaces by name", func() {
			p.OnEndpointSliceUpdate(slice(s, "b", http8080, ep("172.27.1.4", "node-b", "ready")))
		}, []string{"172.27.1.1/8080", "172.27.1.3/8080", "172.27.1.4/8080"}},
		{"delete one", func() { p.OnEndpointSliceDelete(s.Key, "a") }, []string{"172.27.1.3/8080", "172.27.1.4/8080"}},
		{"delete unknown", func() { p.OnEndpointSliceDelete(s.Key, "zz") }, []string{"172.27.1.3/8080", "172.27.1.4/8080"}},
		{"delete the rest", func() {
			p.OnEndpointSliceDelete(s.Key, "c")
			p.OnEndpointSliceDelete(s.Key, "b")
		}, nil},
		{"a new one", func() {
			p.OnEndpointSliceUpdate(slice(s, "d", http8080, ep("172.27.1.5", "node-b", "ready")))
		}, []string{"172.27.1.5/8080"}},
	}
	for _, st := range steps {
		st.change()
		if err := p.Sync(context.Background()); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := endpoints(); !slices.Equal(got, st.want) {
			t.Errorf("%s: endpoint chains %v, want %v", st.name, got, st.want)
		}
	}
}

// TestEndpointSliceModelIsCompact: the model keeps one copy of a node name per
// slice and no spare capacity (the cache holds it for the agent's life).
func TestEndpointSliceModelIsCompact(t *testing.T) {
	port := int32(8080)
	node := func(n string) *string { c := strings.Clone(n); return &c } // as decoded: one copy each
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: &port}},
	}
	for i, n := range []string{"node-a", "node-a", "node-b", "node-a", "node-b"} {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("172.27.1.%d", i)}, NodeName: node(n)})
	}
	m := EndpointSliceFromAPI(sl)
	if len(m.Endpoints) != 5 || cap(m.Endpoints) != 5 || cap(m.Ports) != 1 {
		t.Fatalf("len/cap endpoints %d/%d, ports cap %d", len(m.Endpoints), cap(m.Endpoints), cap(m.Ports))
	}
	data := map[string]map[*byte]bool{}
	for _, e := range m.Endpoints {
		if data[e.NodeName] == nil {
			data[e.NodeName] = map[*byte]bool{}
		}
		data[e.NodeName][unsafe.StringData(e.NodeName)] = true
	}
	for n, copies := range data {
		if len(copies) != 1 {
			t.Errorf("node %s: %d copies of its name", n, len(copies))
		}
	}
}
