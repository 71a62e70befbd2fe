package controller

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"edgenet.io/edgenet/internal/lb/allocator"
)

func svc(opts ...func(*corev1.Service)) *corev1.Service {
	single := corev1.IPFamilyPolicySingleStack
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Generation: 3},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy: &single, Selector: map[string]string{"app": "web", "tier": "fe"},
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80}, {Protocol: corev1.ProtocolUDP, Port: 53}}},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func ann(k, v string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func TestToAllocator(t *testing.T) {
	dual := corev1.IPFamilyPolicyRequireDualStack
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	for _, tc := range []struct {
		what          string
		svc           *corev1.Service
		wantRequested []netip.Addr
		wantPolicy    allocator.FamilyPolicy
		wantFamilies  []allocator.Family
		wantBackend   string
		wantErr       string // fragment of an InvalidService message
	}{
		{what: "plain", svc: svc(), wantFamilies: []allocator.Family{allocator.IPv4}},
		{what: "spec.loadBalancerIP", svc: svc(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.0.0.5" }),
			wantRequested: addrs("10.0.0.5"), wantFamilies: []allocator.Family{allocator.IPv4}},
		{what: "annotation, two families", svc: svc(ann(allocator.AnnotationLoadBalancerIPs, " 10.0.0.5 , fd00::5"), func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			s.Spec.IPFamilyPolicy = &dual
		}), wantRequested: addrs("10.0.0.5", "fd00::5"), wantPolicy: allocator.RequireDualStack,
			wantFamilies: []allocator.Family{allocator.IPv6, allocator.IPv4}},
		{what: "annotation and the same spec.loadBalancerIP", svc: svc(ann(allocator.AnnotationLoadBalancerIPs, "10.0.0.5"),
			func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.0.0.5" }),
			wantRequested: addrs("10.0.0.5"), wantFamilies: []allocator.Family{allocator.IPv4}},
		{what: "annotation and another spec.loadBalancerIP", svc: svc(ann(allocator.AnnotationLoadBalancerIPs, "10.0.0.5"),
			func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.0.0.6" }), wantErr: "spec.loadBalancerIP 10.0.0.6 is not among"},
		{what: "annotation not an address", svc: svc(ann(allocator.AnnotationLoadBalancerIPs, "10.0.0.5,web")),
			wantErr: `"web" is not an IP address`},
		{what: "spec.loadBalancerIP not an address", svc: svc(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.0.0" }),
			wantErr: `spec.loadBalancerIP "10.0.0"`},
		{what: "Local: backend is namespace and sorted selector", svc: svc(func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), wantFamilies: []allocator.Family{allocator.IPv4}, wantBackend: "Local:ns:app=web,tier=fe"},
		{what: "Local without selector shares with no one", svc: svc(func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.Selector = nil
		}), wantFamilies: []allocator.Family{allocator.IPv4}, wantBackend: "Local:ns/web"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			got, err := toAllocator(tc.svc, map[string]string{"team": "blue"})
			if tc.wantErr != "" {
				if !allocator.IsInvalidService(err) || !strings.Contains(message(err), tc.wantErr) {
					t.Fatalf("error %v, want InvalidService mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Key != "ns/web" || got.NamespaceLabels["team"] != "blue" || len(got.Ports) != 2 {
				t.Errorf("key %q, namespace labels %v, ports %v", got.Key, got.NamespaceLabels, got.Ports)
			}
			if !slices.Equal(got.Requested, tc.wantRequested) || got.Policy != tc.wantPolicy ||
				!slices.Equal(got.Families, tc.wantFamilies) || got.Backend != tc.wantBackend {
				t.Errorf("got requested %v policy %v families %v backend %q", got.Requested, got.Policy, got.Families, got.Backend)
			}
		})
	}
}

func TestStripService(t *testing.T) {
	class := LoadBalancerClass
	full := svc(ann(allocator.AnnotationAllowSharedIP, "k"), ann("kubectl.kubernetes.io/last-applied-configuration", strings.Repeat("x", 1000)),
		func(s *corev1.Service) {
			s.Spec.LoadBalancerClass = &class
			s.Spec.ClusterIP = "172.28.0.5"
			s.Spec.Ports[0].NodePort = 31000
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.0.1"}}
		})
	o, _ := stripService(full)
	s := o.(*corev1.Service)
	if len(s.Annotations) != 1 || s.Annotations[allocator.AnnotationAllowSharedIP] != "k" {
		t.Errorf("annotations %v, want only the edgenet.io ones", s.Annotations)
	}
	if s.Spec.ClusterIP != "" || s.Spec.Ports[0].NodePort != 0 || s.Spec.LoadBalancerClass != &class || len(s.Status.LoadBalancer.Ingress) != 1 {
		t.Errorf("stripped spec %+v status %+v", s.Spec, s.Status)
	}
	a, errA := toAllocator(full, nil)
	b, errB := toAllocator(s, nil)
	if errA != nil || errB != nil || a.SharingKey != b.SharingKey || !slices.Equal(a.Ports, b.Ports) || a.Backend != b.Backend {
		t.Errorf("stripping changed what the allocator sees: %+v vs %+v", a, b)
	}
}

func TestApplyOutcome(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.1")
	assigned := allocator.Assignment{Service: "ns/web", IPs: []allocator.AssignedIP{{Addr: ip, Pool: "default"}}}
	orphan := allocator.Assignment{Service: "ns/web", IPs: []allocator.AssignedIP{{Addr: ip}}}
	exhausted := &allocator.Error{Reason: allocator.ReasonPoolExhausted, Service: "ns/web", Message: "no free IPv4 address"}

	s := svc()
	steps := []struct {
		what        string
		as          allocator.Assignment
		err         error
		held        allocator.Assignment
		wantChanged bool
		wantEvents  []string
		wantReason  string
		wantIPs     int
	}{
		{what: "pending", err: exhausted, wantChanged: true, wantEvents: []string{"Warning AllocationFailed"}, wantReason: "PoolExhausted"},
		{what: "still pending: no new Event", err: exhausted, wantReason: "PoolExhausted"},
		{what: "assigned", as: assigned, wantChanged: true, wantEvents: []string{"Normal IPAllocated"}, wantReason: ReasonAllocated, wantIPs: 1},
		{what: "same again", as: assigned, wantReason: ReasonAllocated, wantIPs: 1},
		{what: "pool shrank", as: orphan, wantChanged: true, wantEvents: []string{"Warning IPOutsidePool"}, wantReason: ReasonIPOutsidePool, wantIPs: 1},
		{what: "still outside", as: orphan, wantReason: ReasonIPOutsidePool, wantIPs: 1},
		{what: "failed move keeps what it holds", err: exhausted, held: orphan, wantChanged: true,
			wantEvents: []string{"Warning AllocationFailed"}, wantReason: "PoolExhausted", wantIPs: 1},
	}
	for _, st := range steps {
		status, changed, events := applyOutcome(s, outcomeOf(s, st.as, st.err, st.held))
		var evs []string
		for _, e := range events {
			evs = append(evs, e.kind+" "+e.reason)
		}
		c := findCond(status)
		if changed != st.wantChanged || !slices.Equal(evs, st.wantEvents) || c == nil || c.Reason != st.wantReason ||
			len(status.LoadBalancer.Ingress) != st.wantIPs || c.ObservedGeneration != 3 {
			t.Errorf("%s: changed %v events %v condition %+v ingress %v", st.what, changed, evs, c, status.LoadBalancer.Ingress)
		}
		s.Status = status
	}
	cleared, changed := clearedStatus(s)
	if !changed || len(cleared.LoadBalancer.Ingress) != 0 || findCond(cleared) != nil {
		t.Errorf("clearedStatus: changed %v, %+v", changed, cleared)
	}
	if _, changed := clearedStatus(&corev1.Service{Status: cleared}); changed {
		t.Error("clearing a clear status is a change")
	}
	if message(errors.New("plain")) != "plain" || message(exhausted) != "no free IPv4 address" {
		t.Error("message")
	}
}

func findCond(st corev1.ServiceStatus) *metav1.Condition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == ConditionIPAllocated {
			return &st.Conditions[i]
		}
	}
	return nil
}

// FuzzToAllocator feeds arbitrary annotation and spec.loadBalancerIP text: the translation never panics, and
// either fails with InvalidService or yields only valid addresses the Service asked for.
func FuzzToAllocator(f *testing.F) {
	for _, s := range [][2]string{
		{"10.0.0.1", ""}, {"10.0.0.1,fd00::1", "10.0.0.1"}, {"", "fd00::1"}, {" , ", ""}, {"fe80::1%eth0", ""},
		{"::ffff:10.0.0.1", "10.0.0.1"}, {"10.0.0.1,10.0.0.2", ""},
	} {
		f.Add(s[0], s[1], true)
	}
	f.Add("", "", false)
	f.Fuzz(func(t *testing.T, annotation, lbIP string, hasAnnotation bool) {
		s := svc(func(s *corev1.Service) { s.Spec.LoadBalancerIP = lbIP })
		if hasAnnotation {
			s = svc(ann(allocator.AnnotationLoadBalancerIPs, annotation), func(s *corev1.Service) { s.Spec.LoadBalancerIP = lbIP })
		}
		got, err := toAllocator(s, nil)
		if err != nil {
			if !allocator.IsInvalidService(err) {
				t.Fatalf("error %v is not InvalidService", err)
			}
			return
		}
		for _, a := range got.Requested {
			if !a.IsValid() {
				t.Fatalf("invalid requested address from %q / %q", annotation, lbIP)
			}
		}
		if hasAnnotation && len(got.Requested) != len(strings.Split(annotation, ",")) {
			t.Fatalf("annotation %q gave %v", annotation, got.Requested)
		}
		if !hasAnnotation && strings.TrimSpace(lbIP) == "" && len(got.Requested) != 0 {
			t.Fatalf("requested %v from nothing", got.Requested)
		}
		// The allocator must be able to take whatever passes: its own checks answer with a typed error.
		a := allocator.New()
		if _, err := a.Assign(got); err != nil {
			if _, ok := allocator.ReasonOf(err); !ok {
				t.Fatalf("Assign: untyped error %v", err)
			}
		}
	})
}
