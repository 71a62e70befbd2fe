package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/api/v1alpha1/crdtest"
	"edgenet.io/edgenet/internal/lb/allocator"
	"edgenet.io/edgenet/internal/testenv"
)

// harness is one apiserver with the CRDs, a ComputeNetwork "default" and a running controller, shared by the
// subtests of TestAgainstAPIServer (starting the apiserver dominates the run time). Subtests use namespaces
// of their own; they run in order, and the restart subtest replaces the controller.
type harness struct {
	t      *testing.T
	kube   *kubernetes.Clientset
	client *v1.Client
	stop   func()
}

// The default pool: 192.168.50.100-192.168.50.199.
const defaultRange = "192.168.50.100-192.168.50.199"

func TestAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	crdtest.Install(t, env.Config)
	client, err := v1.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, kube: env.Client, client: client}
	cn := &v1.ComputeNetwork{
		ObjectMeta: metav1.ObjectMeta{Name: v1.ComputeNetworkName},
		Spec: v1.ComputeNetworkSpec{Nodes: 3, SiteSubnet: "192.168.50.0/24", Gateway: "192.168.50.1",
			NodeIPRange: "192.168.50.10-192.168.50.13", ExternalServiceIPRanges: []v1.IPRange{defaultRange}},
	}
	if _, err := client.ComputeNetworks().Create(context.Background(), cn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(func() { h.stop() })

	t.Run("DefaultPool", h.testDefaultPool)
	t.Run("RequestedIP", h.testRequestedIP)
	t.Run("SharingKey", h.testSharingKey)
	t.Run("ExhaustionAndRelease", h.testExhaustionAndRelease)
	t.Run("TypeChangeReleases", h.testTypeChange)
	t.Run("OtherClassIgnored", h.testOtherClass)
	t.Run("PoolStatus", h.testPoolStatus)
	t.Run("ReservedPoolName", h.testReservedPoolName)
	t.Run("ShrinkComputeNetworkRange", h.testShrinkRange)
	t.Run("RestartReassignsNothing", h.testRestart)
	t.Run("Latency", h.testLatency)
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(h.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- Run(ctx, Config{Kube: h.kube, Client: h.client, Logger: log}) }()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}
}

func (h *harness) namespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := h.kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

type svcOpt func(*corev1.Service)

func annotate(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func port(p int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: p, TargetPort: intstr.FromInt32(p)}}
	}
}

func lbService(ns, name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (h *harness) create(t *testing.T, svc *corev1.Service) *corev1.Service {
	t.Helper()
	out, err := h.kube.CoreV1().Services(svc.Namespace).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
	return out
}

// waitFor polls the Service until cond holds, and returns it.
func (h *harness) waitFor(t *testing.T, ns, name, what string, cond func(*corev1.Service) bool) *corev1.Service {
	t.Helper()
	var got *corev1.Service
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true,
		func(ctx context.Context) (bool, error) {
			s, err := h.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			got = s
			return cond(s), nil
		})
	if err != nil {
		t.Fatalf("service %s/%s: %s: %v; status %+v", ns, name, what, err, got.Status)
	}
	return got
}

func ips(s *corev1.Service) []string {
	var out []string
	for _, i := range s.Status.LoadBalancer.Ingress {
		out = append(out, i.IP)
	}
	return out
}

func hasIP(s *corev1.Service) bool { return len(s.Status.LoadBalancer.Ingress) > 0 }

func cond(s *corev1.Service) *metav1.Condition {
	return meta.FindStatusCondition(s.Status.Conditions, ConditionIPAllocated)
}

func condReason(status metav1.ConditionStatus, reason string) func(*corev1.Service) bool {
	return func(s *corev1.Service) bool {
		c := cond(s)
		return c != nil && c.Status == status && c.Reason == reason
	}
}

func (h *harness) waitIP(t *testing.T, ns, name string) string {
	t.Helper()
	s := h.waitFor(t, ns, name, "gets an address", func(s *corev1.Service) bool {
		return hasIP(s) && condReason(metav1.ConditionTrue, ReasonAllocated)(s)
	})
	if len(s.Status.LoadBalancer.Ingress) != 1 {
		t.Fatalf("%s/%s: ingress %v, want one address", ns, name, ips(s))
	}
	return s.Status.LoadBalancer.Ingress[0].IP
}

// waitEvent waits for an Event of reason on the Service whose message contains every fragment.
func (h *harness) waitEvent(t *testing.T, ns, name, kind, reason string, fragments ...string) {
	t.Helper()
	var seen []string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true,
		func(ctx context.Context) (bool, error) {
			evs, err := h.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
				FieldSelector: "involvedObject.kind=Service,involvedObject.name=" + name + ",reason=" + reason})
			if err != nil {
				return false, err
			}
			seen = seen[:0]
		next:
			for _, e := range evs.Items {
				seen = append(seen, e.Type+" "+e.Message)
				if e.Type != kind || e.Source.Component != "edgenet-lb" {
					continue
				}
				for _, f := range fragments {
					if !strings.Contains(e.Message, f) {
						continue next
					}
				}
				return true, nil
			}
			return false, nil
		})
	if err != nil {
		t.Fatalf("no %s Event %s on %s/%s mentioning %q; seen %q", kind, reason, ns, name, fragments, seen)
	}
}

func inRange(t *testing.T, ip, r string) bool {
	t.Helper()
	from, to, _ := strings.Cut(r, "-")
	a := netip.MustParseAddr(ip)
	return a.Compare(netip.MustParseAddr(from)) >= 0 && a.Compare(netip.MustParseAddr(to)) <= 0
}

func (h *harness) testDefaultPool(t *testing.T) {
	ns := h.namespace(t, "default-pool", nil)
	h.create(t, lbService(ns, "web", annotate("example.com/keep", "me")))
	s := h.waitFor(t, ns, "web", "gets an address", hasIP)
	ip := s.Status.LoadBalancer.Ingress[0].IP
	if !inRange(t, ip, defaultRange) {
		t.Errorf("address %s not in the default pool %s", ip, defaultRange)
	}
	if m := s.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode %v, want VIP", m)
	}
	c := cond(s)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonAllocated || !strings.Contains(c.Message, `pool "default"`) {
		t.Errorf("condition %+v, want True/Allocated naming pool \"default\"", c)
	}
	if s.Annotations["example.com/keep"] != "me" || s.Spec.Ports[0].TargetPort.IntVal != 8080 || s.Spec.ClusterIP == "" {
		t.Errorf("the status write of a stripped object changed other fields: annotations %v, spec %+v", s.Annotations, s.Spec)
	}
	h.waitEvent(t, ns, "web", corev1.EventTypeNormal, EventIPAllocated, ip)
}

func (h *harness) testRequestedIP(t *testing.T) {
	ns := h.namespace(t, "requested", nil)
	h.create(t, lbService(ns, "by-spec", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.168.50.150" }))
	if ip := h.waitIP(t, ns, "by-spec"); ip != "192.168.50.150" {
		t.Errorf("spec.loadBalancerIP: got %s, want 192.168.50.150", ip)
	}
	h.create(t, lbService(ns, "by-annotation", annotate(allocator.AnnotationLoadBalancerIPs, "192.168.50.151")))
	if ip := h.waitIP(t, ns, "by-annotation"); ip != "192.168.50.151" {
		t.Errorf("annotation: got %s, want 192.168.50.151", ip)
	}

	h.create(t, lbService(ns, "taken", annotate(allocator.AnnotationLoadBalancerIPs, "192.168.50.150")))
	s := h.waitFor(t, ns, "taken", "pending RequestedIPTaken", condReason(metav1.ConditionFalse, string(allocator.ReasonRequestedIPTaken)))
	if hasIP(s) || !strings.Contains(cond(s).Message, "in use by requested/by-spec") {
		t.Errorf("taken: ingress %v, condition %+v", ips(s), cond(s))
	}
	h.waitEvent(t, ns, "taken", corev1.EventTypeWarning, EventAllocationFailed, "192.168.50.150", "requested/by-spec")

	h.create(t, lbService(ns, "outside", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.99.0.1" }))
	s = h.waitFor(t, ns, "outside", "pending RequestedIPOutsidePools", condReason(metav1.ConditionFalse, string(allocator.ReasonRequestedIPOutsidePool)))
	if hasIP(s) {
		t.Errorf("outside: got %v", ips(s))
	}
	h.waitEvent(t, ns, "outside", corev1.EventTypeWarning, EventAllocationFailed, "10.99.0.1 is not in any address pool")

	h.create(t, lbService(ns, "garbage", annotate(allocator.AnnotationLoadBalancerIPs, "not-an-ip")))
	h.waitFor(t, ns, "garbage", "pending InvalidService", condReason(metav1.ConditionFalse, string(allocator.ReasonInvalidService)))
	h.waitEvent(t, ns, "garbage", corev1.EventTypeWarning, EventAllocationFailed, "not-an-ip")

	// The holder leaves: the waiting Service gets its address without anything else happening.
	if err := h.kube.CoreV1().Services(ns).Delete(context.Background(), "by-spec", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ip := h.waitIP(t, ns, "taken"); ip != "192.168.50.150" {
		t.Errorf("after the holder left: got %s, want 192.168.50.150", ip)
	}
}

func (h *harness) testSharingKey(t *testing.T) {
	ns := h.namespace(t, "sharing", nil)
	share := annotate(allocator.AnnotationAllowSharedIP, "k")
	h.create(t, lbService(ns, "a", share, port(80)))
	ipA := h.waitIP(t, ns, "a")
	h.create(t, lbService(ns, "b", share, port(443)))
	if ipB := h.waitIP(t, ns, "b"); ipB != ipA {
		t.Errorf("same key, other port: b got %s, want a's %s", ipB, ipA)
	}
	h.create(t, lbService(ns, "c", share, port(80)))
	if ipC := h.waitIP(t, ns, "c"); ipC == ipA {
		t.Errorf("same key, clashing port 80: c got a's address %s", ipC)
	}
	h.create(t, lbService(ns, "d", port(8443), annotate(allocator.AnnotationLoadBalancerIPs, ipA)))
	s := h.waitFor(t, ns, "d", "pending RequestedIPTaken", condReason(metav1.ConditionFalse, string(allocator.ReasonRequestedIPTaken)))
	if !strings.Contains(cond(s).Message, allocator.AnnotationAllowSharedIP) {
		t.Errorf("d: message %q does not tell how to share", cond(s).Message)
	}
	h.create(t, lbService(ns, "e", port(8443), share, annotate(allocator.AnnotationLoadBalancerIPs, ipA)))
	if ipE := h.waitIP(t, ns, "e"); ipE != ipA {
		t.Errorf("same key, requested shared address: e got %s, want %s", ipE, ipA)
	}
}

func (h *harness) createPool(t *testing.T, name string, spec v1.AddressPoolSpec) {
	t.Helper()
	ap := &v1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if _, err := h.client.AddressPools().Create(context.Background(), ap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) waitPool(t *testing.T, name, what string, ok func(*v1.AddressPool) bool) *v1.AddressPool {
	t.Helper()
	var got *v1.AddressPool
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true,
		func(ctx context.Context) (bool, error) {
			p, err := h.client.AddressPools().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			got = p
			return ok(p), nil
		})
	if err != nil {
		t.Fatalf("pool %s: %s: %v; status %+v", name, what, err, got.Status)
	}
	return got
}

func poolCounts(used int64, free string) func(*v1.AddressPool) bool {
	return func(p *v1.AddressPool) bool {
		c := meta.FindStatusCondition(p.Status.Conditions, v1.AddressPoolReady)
		return p.Status.Used == used && p.Status.Free == free && c != nil && c.Status == metav1.ConditionTrue
	}
}

func (h *harness) testExhaustionAndRelease(t *testing.T) {
	off := false
	h.createPool(t, "small", v1.AddressPoolSpec{Addresses: []v1.IPRange{"10.200.0.1-10.200.0.2"}, AutoAssign: &off})
	h.waitPool(t, "small", "Ready, 2 free", poolCounts(0, "2"))
	ns := h.namespace(t, "exhaust", nil)
	small := annotate(allocator.AnnotationAddressPool, "small")
	h.create(t, lbService(ns, "one", small))
	h.create(t, lbService(ns, "two", small))
	ip1, ip2 := h.waitIP(t, ns, "one"), h.waitIP(t, ns, "two")
	if got := []string{ip1, ip2}; !slices.Equal(got, []string{"10.200.0.1", "10.200.0.2"}) {
		t.Errorf("addresses %v, want 10.200.0.1 and 10.200.0.2 in creation order", got)
	}
	h.create(t, lbService(ns, "three", small))
	s := h.waitFor(t, ns, "three", "pending PoolExhausted", condReason(metav1.ConditionFalse, string(allocator.ReasonPoolExhausted)))
	if hasIP(s) {
		t.Errorf("three got %v from an exhausted pool", ips(s))
	}
	h.waitEvent(t, ns, "three", corev1.EventTypeWarning, EventAllocationFailed, `no free IPv4 address in pool "small" (2 in use, 0 free)`)
	h.waitPool(t, "small", "2 used, 0 free", poolCounts(2, "0"))

	if err := h.kube.CoreV1().Services(ns).Delete(context.Background(), "one", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ip := h.waitIP(t, ns, "three"); ip != ip1 {
		t.Errorf("pending three got %s, want the freed %s", ip, ip1)
	}
	if err := h.kube.CoreV1().Services(ns).Delete(context.Background(), "two", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitPool(t, "small", "1 used, 1 free after a delete", poolCounts(1, "1"))
	h.create(t, lbService(ns, "four", small))
	if ip := h.waitIP(t, ns, "four"); ip != ip2 {
		t.Errorf("four got %s, want the released %s", ip, ip2)
	}
}

func (h *harness) testTypeChange(t *testing.T) {
	ns := h.namespace(t, "typechange", nil)
	h.create(t, lbService(ns, "svc"))
	ip := h.waitIP(t, ns, "svc")
	s, err := h.kube.CoreV1().Services(ns).Get(context.Background(), "svc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Type = corev1.ServiceTypeClusterIP
	for i := range s.Spec.Ports {
		s.Spec.Ports[i].NodePort = 0
	}
	s.Spec.ExternalTrafficPolicy = ""
	if _, err := h.kube.CoreV1().Services(ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, ns, "svc", "status cleared", func(s *corev1.Service) bool { return !hasIP(s) && cond(s) == nil })
	h.waitEvent(t, ns, "svc", corev1.EventTypeNormal, EventIPReleased)
	// Released: another Service may take it by name.
	h.create(t, lbService(ns, "next", annotate(allocator.AnnotationLoadBalancerIPs, ip)))
	if got := h.waitIP(t, ns, "next"); got != ip {
		t.Errorf("next got %s, want the released %s", got, ip)
	}
}

func (h *harness) testOtherClass(t *testing.T) {
	ns := h.namespace(t, "otherclass", nil)
	other := "example.com/other-lb"
	h.create(t, lbService(ns, "theirs", func(s *corev1.Service) { s.Spec.LoadBalancerClass = &other }))
	mine := LoadBalancerClass
	h.create(t, lbService(ns, "ours", func(s *corev1.Service) { s.Spec.LoadBalancerClass = &mine }))
	h.waitIP(t, ns, "ours")
	time.Sleep(300 * time.Millisecond) // the Services are synced in parallel: give "theirs" time to be (not) handled
	s, err := h.kube.CoreV1().Services(ns).Get(context.Background(), "theirs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hasIP(s) || len(s.Status.Conditions) != 0 {
		t.Errorf("Service of class %s was touched: status %+v", other, s.Status)
	}
}

func (h *harness) testPoolStatus(t *testing.T) {
	off := false
	// IPv6 /64: more free addresses than an int64 counts.
	h.createPool(t, "v6", v1.AddressPoolSpec{Addresses: []v1.IPRange{"fd00:50::/64"}, AutoAssign: &off})
	h.waitPool(t, "v6", "2^64 free", poolCounts(0, "18446744073709551616"))

	h.createPool(t, "overlapping", v1.AddressPoolSpec{Addresses: []v1.IPRange{"192.168.50.190-192.168.50.210"}})
	p := h.waitPool(t, "overlapping", "not Ready", func(p *v1.AddressPool) bool {
		c := meta.FindStatusCondition(p.Status.Conditions, v1.AddressPoolReady)
		return c != nil && c.Status == metav1.ConditionFalse
	})
	c := meta.FindStatusCondition(p.Status.Conditions, v1.AddressPoolReady)
	if c.Reason != ReasonOverlapsOtherPool || !strings.Contains(c.Message, `pool "default"`) {
		t.Errorf("overlapping pool condition %+v", c)
	}

	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}
	h.createPool(t, "blue", v1.AddressPoolSpec{Addresses: []v1.IPRange{"10.201.0.0/30"}, NamespaceSelector: sel, Priority: 5})
	h.waitPool(t, "blue", "Ready, 4 free", poolCounts(0, "4"))
	blue := h.namespace(t, "blue", map[string]string{"team": "blue"})
	h.create(t, lbService(blue, "svc"))
	if ip := h.waitIP(t, blue, "svc"); ip != "10.201.0.0" {
		t.Errorf("blue namespace got %s, want 10.201.0.0 of its own pool", ip)
	}
	h.waitPool(t, "blue", "1 used", poolCounts(1, "3"))

	// The default pool's usage is on the ComputeNetwork: count what Services hold in it.
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true,
		func(ctx context.Context) (bool, error) {
			list, err := h.kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			used := map[string]bool{}
			for _, s := range list.Items {
				for _, ip := range ips(&s) {
					if inRange(t, ip, defaultRange) {
						used[ip] = true
					}
				}
			}
			cn, err := h.client.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return cn.Status.ExternalIPsUsed == int64(len(used)) && cn.Status.ExternalIPsFree == 100-int64(len(used)) && len(used) > 0, nil
		})
	if err != nil {
		cn, _ := h.client.ComputeNetworks().Get(context.Background(), v1.ComputeNetworkName, metav1.GetOptions{})
		t.Errorf("ComputeNetwork status %+v does not count the default pool's addresses: %v", cn.Status, err)
	}
}

func (h *harness) testReservedPoolName(t *testing.T) {
	ap := &v1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: v1.AddressPoolSpec{Addresses: []v1.IPRange{"10.202.0.0/24"}}}
	_, err := h.client.AddressPools().Create(context.Background(), ap, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "ComputeNetwork") {
		t.Errorf("creating AddressPool \"default\": got %v, want Invalid naming the ComputeNetwork", err)
	}
}

func (h *harness) setDefaultRange(t *testing.T, r string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Second, true,
		func(ctx context.Context) (bool, error) {
			cn, err := h.client.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			cn.Spec.ExternalServiceIPRanges = []v1.IPRange{v1.IPRange(r)}
			_, err = h.client.ComputeNetworks().Update(ctx, cn, metav1.UpdateOptions{})
			return err == nil, nil
		})
	if err != nil {
		t.Fatalf("set externalServiceIPRanges to %s: %v", r, err)
	}
}

func (h *harness) testShrinkRange(t *testing.T) {
	ns := h.namespace(t, "shrink", nil)
	h.create(t, lbService(ns, "svc"))
	ip := h.waitIP(t, ns, "svc")
	next := netip.MustParseAddr(ip).Next()
	shrunk := next.String() + "-192.168.50.199"
	h.setDefaultRange(t, shrunk)
	s := h.waitFor(t, ns, "svc", "flagged IPOutsidePool", condReason(metav1.ConditionTrue, ReasonIPOutsidePool))
	if got := ips(s); !slices.Equal(got, []string{ip}) {
		t.Errorf("after the range shrank the Service has %v, want to keep %s", got, ip)
	}
	h.waitEvent(t, ns, "svc", corev1.EventTypeWarning, EventIPOutsidePool, ip)
	// New Services get addresses of the new range only.
	h.create(t, lbService(ns, "after"))
	if got := h.waitIP(t, ns, "after"); !inRange(t, got, shrunk) {
		t.Errorf("new Service got %s, outside the shrunk range %s", got, shrunk)
	}
	// The admin widens the range again: the address is back in a pool, the flag goes.
	h.setDefaultRange(t, defaultRange)
	s = h.waitFor(t, ns, "svc", "Allocated again", condReason(metav1.ConditionTrue, ReasonAllocated))
	if got := ips(s); !slices.Equal(got, []string{ip}) {
		t.Errorf("after the range grew back the Service has %v, want %s", got, ip)
	}
}

// snapshot maps every Service to its resourceVersion and addresses.
func (h *harness) snapshot(t *testing.T) map[string]string {
	t.Helper()
	list, err := h.kube.CoreV1().Services("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range list.Items {
		out[s.Namespace+"/"+s.Name] = s.ResourceVersion + " " + strings.Join(ips(&s), ",")
	}
	return out
}

func (h *harness) testRestart(t *testing.T) {
	ns := h.namespace(t, "restart", nil)
	for i := range 5 {
		h.create(t, lbService(ns, fmt.Sprintf("s%d", i)))
	}
	for i := range 5 {
		h.waitIP(t, ns, fmt.Sprintf("s%d", i))
	}
	time.Sleep(300 * time.Millisecond) // let the last status writes settle
	h.stop()
	// While no controller runs, the Service holding the lowest of these addresses goes. A controller that did
	// not replay the statuses before assigning would give that address to the first Service it syncs (the
	// allocator picks the lowest free address), moving it; one that does gives it to the next new Service.
	s0, err := h.kube.CoreV1().Services(ns).Get(context.Background(), "s0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	freed := ips(s0)[0]
	if err := h.kube.CoreV1().Services(ns).Delete(context.Background(), "s0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	before := h.snapshot(t)
	h.start()
	h.create(t, lbService(ns, "marker"))
	ip := h.waitIP(t, ns, "marker")
	if ip != freed {
		t.Errorf("marker got %s, want %s, the lowest free address", ip, freed)
	}
	time.Sleep(500 * time.Millisecond) // the new controller's sync of every old Service
	after := h.snapshot(t)
	delete(after, ns+"/marker")
	for k, v := range before {
		if after[k] != v {
			t.Errorf("restart changed %s: %q -> %q", k, v, after[k])
		}
		if strings.HasSuffix(v, " "+ip) || strings.Contains(v, ","+ip) {
			t.Errorf("new Service got %s, held by %s", ip, k)
		}
	}
}

func (h *harness) testLatency(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"bench": "lb"}}
	h.createPool(t, "bench", v1.AddressPoolSpec{Addresses: []v1.IPRange{"10.250.0.0/24"}, NamespaceSelector: sel, Priority: 10})
	h.waitPool(t, "bench", "Ready", poolCounts(0, "256"))
	ns := h.namespace(t, "bench", map[string]string{"bench": "lb"})
	const n = 100
	var mu sync.Mutex
	created := map[string]time.Time{}
	got := map[string]time.Time{}
	addrs := map[string]string{}
	done := make(chan struct{})
	// An informer sees the status as soon as any client could (a bare watch without a resourceVersion can be
	// refused while the apiserver's watch cache catches up).
	inf := cache.NewSharedIndexInformer(cache.NewListWatchFromClient(h.kube.CoreV1().RESTClient(), "services", ns, fields.Everything()),
		&corev1.Service{}, 0, cache.Indexers{})
	seen := func(obj any) {
		s := obj.(*corev1.Service)
		if !hasIP(s) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := got[s.Name]; !ok {
			got[s.Name] = time.Now()
			addrs[s.Name] = s.Status.LoadBalancer.Ingress[0].IP
			if len(got) == n {
				close(done)
			}
		}
	}
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, o any) { seen(o) }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	for i := range n {
		name := fmt.Sprintf("b%03d", i)
		mu.Lock()
		created[name] = time.Now()
		mu.Unlock()
		h.create(t, lbService(ns, name))
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d of %d Services got an address", len(got), n)
	}
	var lat []time.Duration
	seenIP := map[string]string{}
	for name, at := range got {
		lat = append(lat, at.Sub(created[name]))
		ip := addrs[name]
		if !inRange(t, ip, "10.250.0.0-10.250.0.255") {
			t.Errorf("%s got %s, outside the bench pool its namespace selects", name, ip)
		}
		if other, dup := seenIP[ip]; dup {
			t.Errorf("%s and %s both got %s", name, other, ip)
		}
		seenIP[ip] = name
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("create -> status.loadBalancer.ingress over %d Services: p50 %v, p99 %v, max %v", n, p50, p99, lat[len(lat)-1])
	// The goal is 100 ms; fail only well beyond it, on a loaded 2-core machine.
	if p99 > time.Second {
		t.Errorf("p99 %v, goal < 100ms", p99)
	}
}
