package proxy

import (
	"cmp"
	"context"
	"flag"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"sigs.k8s.io/knftables"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var testNode = NodeConfig{
	Family:   knftables.IPv4Family,
	NodeName: "node-a",
	NodeIPs:  []netip.Addr{netip.MustParseAddr("192.168.50.11")},
	PodCIDR:  netip.MustParsePrefix("172.27.0.0/16"),
	Shards:   2, // golden files stay readable
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func web(ns, name, clusterIP string) *Service {
	return &Service{
		Key:        ServiceKey{ns, name},
		Type:       ClusterIP,
		ClusterIPs: addrs(clusterIP),
		Ports:      []ServicePort{{Name: "http", Protocol: TCP, Port: 80}},
	}
}

// ep is an endpoint: state is "ready", "terminating" (serving, terminating) or
// "gone" (terminating, not serving).
func ep(ip, node, state string) Endpoint {
	e := Endpoint{Addresses: addrs(ip), NodeName: node}
	switch state {
	case "ready":
		e.Ready, e.Serving = true, true
	case "terminating":
		e.Serving, e.Terminating = true, true
	case "gone":
		e.Terminating = true
	}
	return e
}

func slice(svc *Service, name string, ports []EndpointPort, eps ...Endpoint) *EndpointSlice {
	return &EndpointSlice{Service: svc.Key, Name: name, Ports: ports, Endpoints: eps}
}

var http8080 = []EndpointPort{{Name: "http", Protocol: TCP, Port: 8080}}

func goldenCompare(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from computed rules (rerun with -update if intended):\n--- got ---\n%s", path, got)
	}
}

// load runs a full write of services/slices into a fresh fake and returns it.
func load(t *testing.T, cfg NodeConfig, svcs []*Service, eps []*EndpointSlice) *fakeTables {
	t.Helper()
	fake := newFakeTables(cfg.Family)
	tx := fake.NewTx()
	if err := WriteRuleset(tx, cfg, svcs, eps); err != nil {
		t.Fatal(err)
	}
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatalf("fake rejected the transaction: %v\n%s", err, tx)
	}
	return fake
}

func mapValue(t *testing.T, fake *fakeTables, m string, key ...string) string {
	t.Helper()
	found := false
	for _, table := range testNode.tables() {
		ft := fake.fake(table).Table
		if ft == nil || ft.Maps[m] == nil {
			continue
		}
		found = true
		if el := ft.Maps[m].FindElement(key...); el != nil {
			return strings.Join(el.Value, " ")
		}
	}
	if !found {
		t.Fatalf("map %s missing", m)
	}
	return ""
}

func TestComputeGolden(t *testing.T) {
	cip := web("shop", "web", "172.28.0.20")
	threeEps := slice(cip, "web-1", http8080,
		ep("172.27.1.10", "node-a", "ready"),
		ep("172.27.2.10", "node-b", "ready"),
		ep("172.27.3.10", "node-c", "ready"),
		ep("172.27.3.11", "node-c", "gone"))

	none := web("shop", "empty", "172.28.0.21")

	term := web("shop", "draining", "172.28.0.22")
	termEps := slice(term, "draining-1", http8080,
		ep("172.27.1.20", "node-a", "terminating"),
		ep("172.27.2.20", "node-b", "gone"))

	sticky := web("shop", "sticky", "172.28.0.23")
	sticky.AffinityTimeout = 3 * time.Hour
	stickyEps := slice(sticky, "sticky-1", http8080,
		ep("172.27.1.30", "node-a", "ready"), ep("172.27.2.30", "node-b", "ready"))

	np := web("shop", "np", "172.28.0.24")
	np.Type = NodePort
	np.Ports[0].NodePort = 30080
	npEps := slice(np, "np-1", http8080, ep("172.27.2.40", "node-b", "ready"))

	lb := web("shop", "lb", "172.28.0.25")
	lb.Type = LoadBalancer
	lb.Ports[0].NodePort = 30081
	lb.LoadBalancerIPs = addrs("192.168.50.200")
	lb.ExternalIPs = addrs("192.168.50.201")
	lb.ExternalLocal = true
	lb.HealthCheckNodePort = 32000
	lbEps := slice(lb, "lb-1", http8080,
		ep("172.27.1.50", "node-a", "ready"), ep("172.27.2.50", "node-b", "ready"))

	lbRemote := web("shop", "lb-remote", "172.28.0.26")
	lbRemote.Type = LoadBalancer
	lbRemote.Ports[0].NodePort = 30082
	lbRemote.LoadBalancerIPs = addrs("192.168.50.202")
	lbRemote.ExternalLocal = true
	lbRemoteEps := slice(lbRemote, "lb-remote-1", http8080, ep("172.27.2.60", "node-b", "ready"))

	itp := web("shop", "itp", "172.28.0.27")
	itp.InternalLocal = true
	itpEps := slice(itp, "itp-1", http8080,
		ep("172.27.1.70", "node-a", "ready"), ep("172.27.2.70", "node-b", "ready"))
	itpRemote := web("shop", "itp-remote", "172.28.0.28")
	itpRemote.InternalLocal = true
	itpRemoteEps := slice(itpRemote, "itp-remote-1", http8080, ep("172.27.2.80", "node-b", "ready"))

	named := &Service{
		Key: ServiceKey{"kube-system", "dns"}, Type: ClusterIP, ClusterIPs: addrs("172.28.0.10"),
		Ports: []ServicePort{{Name: "dns", Protocol: UDP, Port: 53}, {Name: "dns-tcp", Protocol: TCP, Port: 53}, {Name: "metrics", Protocol: TCP, Port: 9153}},
	}
	namedEps := slice(named, "dns-1",
		[]EndpointPort{{Name: "dns", Protocol: UDP, Port: 5353}, {Name: "dns-tcp", Protocol: TCP, Port: 5353}, {Name: "metrics", Protocol: TCP, Port: 9153}},
		ep("172.27.1.90", "node-a", "ready"))
	// A second slice where only the metrics port exists: its endpoint must only
	// serve metrics.
	namedEps2 := slice(named, "dns-2", []EndpointPort{{Name: "metrics", Protocol: TCP, Port: 9999}}, ep("172.27.2.90", "node-b", "ready"))

	tests := []struct {
		name   string
		svcs   []*Service
		eps    []*EndpointSlice
		checks func(t *testing.T, f *fakeTables)
	}{
		{"clusterip-3-endpoints", []*Service{cip}, []*EndpointSlice{threeEps}, func(t *testing.T, f *fakeTables) {
			if v := mapValue(t, f, mapServiceIPs, "172.28.0.20", "tcp", "80"); v != "goto svc-shop/web/tcp/http" {
				t.Errorf("service-ips element = %q", v)
			}
			rules := f.chain("svc-shop/web/tcp/http").Rules
			if last := rules[len(rules)-1].Rule; !strings.HasPrefix(last, "numgen random mod 3 vmap") {
				t.Errorf("balancing rule = %q, want mod 3 over the ready endpoints", last)
			}
		}},
		{"no-endpoints-reject", []*Service{none}, nil, func(t *testing.T, f *fakeTables) {
			if v := mapValue(t, f, mapNoEndpointSvcs, "172.28.0.21", "tcp", "80"); v != "goto reject-chain" {
				t.Errorf("no-endpoint-services element = %q, want goto reject-chain", v)
			}
			if v := mapValue(t, f, mapServiceIPs, "172.28.0.21", "tcp", "80"); v != "" {
				t.Errorf("service without endpoints is in service-ips: %q", v)
			}
		}},
		{"only-terminating", []*Service{term}, []*EndpointSlice{termEps}, func(t *testing.T, f *fakeTables) {
			rules := f.chain("svc-shop/draining/tcp/http").Rules
			if last := rules[len(rules)-1].Rule; !strings.Contains(last, "mod 1 vmap { 0 : goto ep-shop/draining/tcp/http__172.27.1.20/8080 }") {
				t.Errorf("want fallback to the serving terminating endpoint only, got %q", last)
			}
		}},
		{"session-affinity", []*Service{sticky}, []*EndpointSlice{stickyEps}, func(t *testing.T, f *fakeTables) {
			s := f.set("aff-shop/sticky/tcp/http__172.27.1.30/8080")
			if s == nil || s.Timeout == nil || *s.Timeout != 3*time.Hour {
				t.Errorf("affinity set with 3h timeout missing: %+v", s)
			}
		}},
		{"nodeport", []*Service{np}, []*EndpointSlice{npEps}, func(t *testing.T, f *fakeTables) {
			if v := mapValue(t, f, mapServiceNodePorts, "tcp", "30080"); v != "goto ext-shop/np/tcp/http" {
				t.Errorf("service-nodeports element = %q", v)
			}
			if f.set(setNodePortIPs).FindElement("192.168.50.11") == nil {
				t.Error("node IP not in nodeport-ips")
			}
		}},
		{"lb-etp-local", []*Service{lb, lbRemote}, []*EndpointSlice{lbEps, lbRemoteEps}, func(t *testing.T, f *fakeTables) {
			if v := mapValue(t, f, mapServiceIPs, "192.168.50.200", "tcp", "80"); v != "goto ext-shop/lb/tcp/http" {
				t.Errorf("LB IP element = %q", v)
			}
			lr := f.chain("local-shop/lb/tcp/http").Rules
			if last := lr[len(lr)-1].Rule; !strings.Contains(last, "mod 1 vmap { 0 : goto ep-shop/lb/tcp/http__172.27.1.50/8080 }") {
				t.Errorf("local chain must only use the local endpoint, got %q", last)
			}
			if v := mapValue(t, f, mapNoEndpointSvcs, "192.168.50.202", "tcp", "80"); v != "drop" {
				t.Errorf("LB without local endpoints: no-endpoint element = %q, want drop", v)
			}
			if v := mapValue(t, f, mapNoEndpointNodePts, "tcp", "30082"); v != "drop" {
				t.Errorf("nodeport without local endpoints = %q, want drop", v)
			}
		}},
		{"itp-local", []*Service{itp, itpRemote}, []*EndpointSlice{itpEps, itpRemoteEps}, func(t *testing.T, f *fakeTables) {
			if v := mapValue(t, f, mapServiceIPs, "172.28.0.27", "tcp", "80"); v != "goto local-shop/itp/tcp/http" {
				t.Errorf("ITP local clusterIP element = %q", v)
			}
			if v := mapValue(t, f, mapNoEndpointSvcs, "172.28.0.28", "tcp", "80"); v != "drop" {
				t.Errorf("ITP local without local endpoints = %q, want drop", v)
			}
		}},
		{"named-ports", []*Service{named}, []*EndpointSlice{namedEps, namedEps2}, func(t *testing.T, f *fakeTables) {
			for chain, want := range map[string]string{
				"ep-kube-system/dns/udp/dns__172.27.1.90/5353":     "meta l4proto udp dnat to 172.27.1.90:5353",
				"ep-kube-system/dns/tcp/metrics__172.27.2.90/9999": "meta l4proto tcp dnat to 172.27.2.90:9999",
			} {
				c := f.chain(chain)
				if c == nil || c.Rules[len(c.Rules)-1].Rule != want {
					t.Errorf("chain %s: want %q, got %+v", chain, want, c)
				}
			}
			if f.chain("ep-kube-system/dns/udp/dns__172.27.2.90/9999") != nil {
				t.Error("endpoint of the metrics-only slice used for the dns port")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := load(t, testNode, tc.svcs, tc.eps)
			goldenCompare(t, tc.name+".nft", f.Dump())
			tc.checks(t, f)
		})
	}
}

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func netipAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// checkCompact compacts a computed ServiceRules and reports what differs from the
// original, or if its strings are not in at most two allocations.
func checkCompact(t *testing.T, r *ServiceRules) {
	t.Helper()
	want := *r
	want.Chains = maps.Clone(r.Chains)
	want.Elements = slices.Clone(r.Elements)
	want.Affinity = maps.Clone(r.Affinity)
	want.UDP = slices.Clone(r.UDP)
	if len(want.Chains) == 0 {
		want.Chains = nil
	}
	if len(want.Affinity) == 0 {
		want.Affinity = nil
	}
	r.compact()
	if !reflect.DeepEqual(*r, want) {
		t.Fatalf("compact changed the rules:\n got %#v\nwant %#v", *r, want)
	}
	// Every string lies in one of at most two blocks of memory.
	var strs []string
	for name, rules := range r.Chains {
		strs = append(strs, name)
		strs = append(strs, rules...)
	}
	for _, e := range r.Elements {
		strs = append(strs, e.Key, e.Value, e.Comment)
	}
	for name := range r.Affinity {
		strs = append(strs, name)
	}
	for _, u := range r.UDP {
		strs = append(strs, u.ID)
	}
	type block struct{ from, to uintptr }
	var blocks []block
	for _, s := range strs {
		if s != "" {
			p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
			blocks = append(blocks, block{p, p + uintptr(len(s))})
		}
	}
	slices.SortFunc(blocks, func(a, b block) int { return cmp.Compare(a.from, b.from) })
	n := 0
	for i, b := range blocks {
		// Strings of one block overlap or lie back to back.
		if i > 0 && b.from <= blocks[n-1].to {
			blocks[n-1].to = max(blocks[n-1].to, b.to)
			continue
		}
		blocks[n] = b
		n++
	}
	if n > 2 {
		t.Errorf("strings in %d blocks of memory, want ≤ 2", n)
	}
}

func TestCompactKeepsRules(t *testing.T) {
	sticky := web("shop", "sticky", "172.28.0.30")
	sticky.AffinityTimeout = time.Hour
	sticky.Ports = append(sticky.Ports, ServicePort{Name: "dns", Protocol: UDP, Port: 53, NodePort: 30053})
	sticky.Type = NodePort
	sticky.ExternalIPs = addrs("192.168.50.7")
	local := web("shop", "local", "172.28.0.31")
	local.Type, local.ExternalLocal, local.HealthCheckNodePort = LoadBalancer, true, 32000
	local.Ports[0].NodePort = 30080
	long := web("a-very-long-namespace-"+strings.Repeat("n", 60), "and-a-long-name-"+strings.Repeat("x", 60), "172.28.0.32")
	long.Ports[0].Name = strings.Repeat("p", 63)
	ports := []EndpointPort{{Name: "http", Protocol: TCP, Port: 8080}, {Name: "dns", Protocol: UDP, Port: 5353}, {Name: long.Ports[0].Name, Protocol: TCP, Port: 1}}
	for _, tc := range []struct {
		name string
		svc  *Service
		eps  []Endpoint
	}{
		{"no endpoints", web("shop", "empty", "172.28.0.33"), nil},
		{"other family", web("shop", "v6", "fd00::1"), []Endpoint{ep("172.27.1.1", "node-a", "ready")}},
		{"affinity, udp, nodeport, external", sticky, []Endpoint{ep("172.27.1.1", "node-a", "ready"), ep("172.27.1.2", "node-b", "ready")}},
		{"local policy", local, []Endpoint{ep("172.27.1.3", "node-a", "ready"), ep("172.27.1.4", "node-b", "ready")}},
		{"hashed long names", long, []Endpoint{ep("172.27.1.5", "node-b", "ready")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, bal := range []Balancing{BalanceVmap, BalanceCascade} {
				cfg := testNode
				cfg.Balancing = bal
				checkCompact(t, computeService(cfg, tc.svc, []*EndpointSlice{slice(tc.svc, "s", ports, tc.eps...)}))
			}
		})
	}
}
