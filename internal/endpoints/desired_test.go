package endpoints

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Readable builders for the tests.

func svc(name string, ports ...ServicePort) Service {
	return Service{Namespace: "ns", Name: name, UID: types.UID("uid-" + name),
		AddressTypes: []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4}, Ports: ports}
}

func tcpPort(name string, target int32) ServicePort {
	return ServicePort{Name: name, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(target)}
}

func namedPort(name, target string, proto corev1.Protocol) ServicePort {
	return ServicePort{Name: name, Protocol: proto, TargetPort: intstr.FromString(target)}
}

type podOpt func(*Pod)

func pod(name string, opts ...podOpt) Pod {
	p := Pod{Name: name, UID: types.UID("uid-" + name), NodeName: "n1", Ready: true}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func ips(s ...string) podOpt {
	return func(p *Pod) {
		for _, a := range s {
			p.IPs = append(p.IPs, netip.MustParseAddr(a))
		}
	}
}

func notReady(p *Pod)    { p.Ready = false }
func terminating(p *Pod) { p.Terminating = true }
func onNode(n string) podOpt {
	return func(p *Pod) { p.NodeName = n }
}
func host(h, sub string) podOpt {
	return func(p *Pod) { p.Hostname, p.Subdomain = h, sub }
}
func cport(name string, port int32, proto corev1.Protocol) podOpt {
	return func(p *Pod) { p.Ports = append(p.Ports, ContainerPort{Name: name, Port: port, Protocol: proto}) }
}

// describeGroups renders groups one line per group header and endpoint.
func describeGroups(groups []Group) []string {
	var out []string
	for _, g := range groups {
		out = append(out, fmt.Sprintf("%s %s", g.AddressType, describePorts(g.Ports)))
		for _, e := range g.Endpoints {
			out = append(out, "  "+describeEndpoint(e))
		}
	}
	return out
}

func describePorts(ports []discoveryv1.EndpointPort) string {
	if len(ports) == 0 {
		return "(no ports)"
	}
	var parts []string
	for _, p := range ports {
		parts = append(parts, fmt.Sprintf("%s=%d/%s", deref(p.Name), deref(p.Port), deref(p.Protocol)))
	}
	return strings.Join(parts, ",")
}

func describeEndpoint(e discoveryv1.Endpoint) string {
	var conds []string
	for _, c := range []struct {
		name string
		v    *bool
	}{{"ready", e.Conditions.Ready}, {"serving", e.Conditions.Serving}, {"terminating", e.Conditions.Terminating}} {
		if deref(c.v) {
			conds = append(conds, c.name)
		}
	}
	s := fmt.Sprintf("%s %s [%s]", e.TargetRef.Name, strings.Join(e.Addresses, ","), strings.Join(conds, ","))
	if e.NodeName != nil {
		s += " node=" + *e.NodeName
	}
	if e.Zone != nil {
		s += " zone=" + *e.Zone
	}
	if e.Hostname != nil {
		s += " host=" + *e.Hostname
	}
	if e.Hints != nil {
		for _, z := range e.Hints.ForZones {
			s += " hint-zone=" + z.Name
		}
		for _, n := range e.Hints.ForNodes {
			s += " hint-node=" + n.Name
		}
	}
	return s
}

func TestDesired(t *testing.T) {
	dual := func(s Service) Service {
		s.AddressTypes = []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}
		return s
	}
	with := func(s Service, f func(*Service)) Service { f(&s); return s }
	zones := map[string]string{"n1": "zone-a", "n2": ""}

	tests := []struct {
		name    string
		svc     Service
		pods    []Pod
		want    []string
		missing []string
	}{{
		name: "conditions as upstream",
		svc:  svc("web", tcpPort("http", 8080)),
		pods: []Pod{
			pod("a-ready", ips("10.0.0.1")),
			pod("b-notready", ips("10.0.0.2"), notReady),
			pod("c-terminating-ready", ips("10.0.0.3"), terminating),
			pod("d-terminating-notready", ips("10.0.0.4"), terminating, notReady),
		},
		want: []string{
			"IPv4 http=8080/TCP",
			"  a-ready 10.0.0.1 [ready,serving] node=n1 zone=zone-a",
			"  b-notready 10.0.0.2 [] node=n1 zone=zone-a",
			"  c-terminating-ready 10.0.0.3 [serving,terminating] node=n1 zone=zone-a",
			"  d-terminating-notready 10.0.0.4 [terminating] node=n1 zone=zone-a",
		},
	}, {
		name: "publishNotReadyAddresses makes every endpoint ready",
		svc:  with(svc("web", tcpPort("http", 80)), func(s *Service) { s.PublishNotReadyAddresses = true }),
		pods: []Pod{
			pod("a", ips("10.0.0.1"), notReady),
			pod("b", ips("10.0.0.2"), terminating, notReady),
		},
		want: []string{
			"IPv4 http=80/TCP",
			"  a 10.0.0.1 [ready] node=n1 zone=zone-a",
			"  b 10.0.0.2 [ready,terminating] node=n1 zone=zone-a",
		},
	}, {
		name: "hostname only when the subdomain is the service; no zone label gives no zone",
		svc:  svc("db", tcpPort("pg", 5432)),
		pods: []Pod{
			pod("db-0", ips("10.0.0.1"), host("db-0", "db"), onNode("n2")),
			pod("db-1", ips("10.0.0.2"), host("db-1", "other")),
		},
		want: []string{
			"IPv4 pg=5432/TCP",
			"  db-0 10.0.0.1 [ready,serving] node=n2 host=db-0",
			"  db-1 10.0.0.2 [ready,serving] node=n1 zone=zone-a",
		},
	}, {
		name: "named target port resolved per pod: one group per distinct port set",
		svc:  svc("web", namedPort("http", "web", corev1.ProtocolTCP), tcpPort("metrics", 9100)),
		pods: []Pod{
			pod("a", ips("10.0.0.1"), cport("web", 8080, corev1.ProtocolTCP)),
			pod("b", ips("10.0.0.2"), cport("web", 9090, corev1.ProtocolTCP)),
			pod("c", ips("10.0.0.3"), cport("web", 8080, corev1.ProtocolTCP)),
			pod("d-udp-only", ips("10.0.0.4"), cport("web", 8080, corev1.ProtocolUDP)),
		},
		want: []string{
			"IPv4 http=8080/TCP,metrics=9100/TCP",
			"  a 10.0.0.1 [ready,serving] node=n1 zone=zone-a",
			"  c 10.0.0.3 [ready,serving] node=n1 zone=zone-a",
			"IPv4 http=9090/TCP,metrics=9100/TCP",
			"  b 10.0.0.2 [ready,serving] node=n1 zone=zone-a",
			"IPv4 metrics=9100/TCP",
			"  d-udp-only 10.0.0.4 [ready,serving] node=n1 zone=zone-a",
		},
	}, {
		name: "dual stack: one group per family; pods without an address of a family are left out of it",
		svc:  dual(svc("web", tcpPort("http", 80))),
		pods: []Pod{
			pod("a", ips("10.0.0.1", "fd00::1")),
			pod("b", ips("10.0.0.2")),
			pod("c", ips("fd00::3")),
		},
		want: []string{
			"IPv4 http=80/TCP",
			"  a 10.0.0.1 [ready,serving] node=n1 zone=zone-a",
			"  b 10.0.0.2 [ready,serving] node=n1 zone=zone-a",
			"IPv6 http=80/TCP",
			"  a fd00::1 [ready,serving] node=n1 zone=zone-a",
			"  c fd00::3 [ready,serving] node=n1 zone=zone-a",
		},
	}, {
		name:    "pod on an unknown node is skipped and reported",
		svc:     svc("web", tcpPort("http", 80)),
		pods:    []Pod{pod("a", ips("10.0.0.1")), pod("b", ips("10.0.0.2"), onNode("gone"))},
		want:    []string{"IPv4 http=80/TCP", "  a 10.0.0.1 [ready,serving] node=n1 zone=zone-a"},
		missing: []string{"gone"},
	}, {
		name: "pod on an unknown node is kept with publishNotReadyAddresses",
		svc:  with(svc("web", tcpPort("http", 80)), func(s *Service) { s.PublishNotReadyAddresses = true }),
		pods: []Pod{pod("b", ips("10.0.0.2"), onNode("gone"))},
		want: []string{"IPv4 http=80/TCP", "  b 10.0.0.2 [ready,serving] node=gone"},
	}, {
		name: "headless without ports",
		svc:  with(svc("hl"), func(s *Service) { s.Headless = true }),
		pods: []Pod{pod("a", ips("10.0.0.1"))},
		want: []string{"IPv4 (no ports)", "  a 10.0.0.1 [ready,serving] node=n1 zone=zone-a"},
	}, {
		name: "PreferClose hints ready endpoints with their zone",
		svc: with(svc("web", tcpPort("http", 80)), func(s *Service) {
			s.TrafficDistribution = corev1.ServiceTrafficDistributionPreferClose
		}),
		pods: []Pod{pod("a", ips("10.0.0.1")), pod("b", ips("10.0.0.2"), notReady), pod("c", ips("10.0.0.3"), onNode("n2"))},
		want: []string{
			"IPv4 http=80/TCP",
			"  a 10.0.0.1 [ready,serving] node=n1 zone=zone-a hint-zone=zone-a",
			"  b 10.0.0.2 [] node=n1 zone=zone-a",
			"  c 10.0.0.3 [ready,serving] node=n2",
		},
	}, {
		name: "PreferSameNode hints zone and node",
		svc: with(svc("web", tcpPort("http", 80)), func(s *Service) {
			s.TrafficDistribution = corev1.ServiceTrafficDistributionPreferSameNode
		}),
		pods: []Pod{pod("a", ips("10.0.0.1"))},
		want: []string{"IPv4 http=80/TCP", "  a 10.0.0.1 [ready,serving] node=n1 zone=zone-a hint-zone=zone-a hint-node=n1"},
	}, {
		name: "no pods, no groups",
		svc:  svc("web", tcpPort("http", 80)),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups, missing := Desired(&tt.svc, tt.pods, zones)
			if got := describeGroups(groups); !slices.Equal(got, tt.want) {
				t.Errorf("groups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if !slices.Equal(missing, tt.missing) {
				t.Errorf("missing nodes %v, want %v", missing, tt.missing)
			}
		})
	}
}

func TestServiceFromAPI(t *testing.T) {
	base := func(f func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{}
		s.Namespace, s.Name = "ns", "web"
		s.Spec.Selector = map[string]string{"app": "web"}
		s.Spec.ClusterIP = "172.28.0.5"
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}}
		f(s)
		return s
	}
	tests := []struct {
		name     string
		svc      *corev1.Service
		ok       bool
		types    []discoveryv1.AddressType
		headless bool
	}{
		{"no selector is left alone", base(func(s *corev1.Service) { s.Spec.Selector = nil }), false, nil, false},
		{"ExternalName is left alone", base(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }), false, nil, false},
		{"families in order", base(func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		}), true, []discoveryv1.AddressType{"IPv6", "IPv4"}, false},
		{"no families: the cluster IP's", base(func(*corev1.Service) {}), true, []discoveryv1.AddressType{"IPv4"}, false},
		{"no families, headless: both", base(func(s *corev1.Service) { s.Spec.ClusterIP = "None" }),
			true, []discoveryv1.AddressType{"IPv4", "IPv6"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ServiceFromAPI(tt.svc)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if !slices.Equal(got.AddressTypes, tt.types) || got.Headless != tt.headless {
				t.Errorf("address types %v headless %v, want %v %v", got.AddressTypes, got.Headless, tt.types, tt.headless)
			}
			if got.Ports[0].Protocol != corev1.ProtocolTCP {
				t.Errorf("port protocol %q, want TCP by default", got.Ports[0].Protocol)
			}
		})
	}
}

func TestPodFromAPI(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	p := &corev1.Pod{}
	p.Name, p.UID = "a", "uid-a"
	p.Spec.NodeName = "n1"
	p.Spec.Containers = []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}, {ContainerPort: 1}}}}
	p.Spec.InitContainers = []corev1.Container{
		{RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "side", ContainerPort: 9000, Protocol: corev1.ProtocolUDP}}},
		{Ports: []corev1.ContainerPort{{Name: "init-only", ContainerPort: 1234}}},
	}
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}

	got, ok := PodFromAPI(p)
	if !ok {
		t.Fatal("running pod with IPs rejected")
	}
	wantPorts := []ContainerPort{{"web", corev1.ProtocolTCP, 8080}, {"side", corev1.ProtocolUDP, 9000}}
	if !slices.Equal(got.Ports, wantPorts) || !got.Ready || len(got.IPs) != 2 {
		t.Errorf("got %+v", got)
	}
	stripped, _ := stripPod(p)
	if again, _ := PodFromAPI(stripped.(*corev1.Pod)); !slices.Equal(again.Ports, wantPorts) || !again.Ready {
		t.Errorf("stripping lost something: %+v", again)
	}

	for name, f := range map[string]func(*corev1.Pod){
		"succeeded": func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"failed":    func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed },
		"no IP":     func(p *corev1.Pod) { p.Status.PodIPs = nil },
	} {
		q := p.DeepCopy()
		f(q)
		if _, ok := PodFromAPI(q); ok {
			t.Errorf("%s pod accepted", name)
		}
	}
}
