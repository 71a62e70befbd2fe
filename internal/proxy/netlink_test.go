package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"sigs.k8s.io/knftables"
)

// netlinkIn opens netlink connections to nftables in ns, counting them.
func netlinkIn(ns *testNS, opened *atomic.Int32) func() (*nftables.Conn, error) {
	return func() (*nftables.Conn, error) {
		opened.Add(1)
		return nftables.New(nftables.WithNetNSFd(int(ns.h)), nftables.WithSockOptions(bigBuffers))
	}
}

// equivalenceSteps is a sequence of changes covering every rule form ComputeService
// writes: affinity sets (added, retimed, removed), Local policies with fib and pod
// short-circuits, NodePorts, external and LB IPs, UDP, services without endpoints,
// endpoint churn and deletions.
func equivalenceSteps(v6 bool) []func(p *Proxier) {
	ip := func(v4 string, n int) string {
		if v6 {
			parts := strings.Split(v4, ".")
			return fmt.Sprintf("fd00:%s::%x", parts[1], n)
		}
		return fmt.Sprintf("%s%d", v4, n)
	}
	svc := func(name string, n int) *Service {
		s := web("ns1", name, ip("10.96.0.", n))
		s.Ports = append(s.Ports, ServicePort{Name: "dns", Protocol: UDP, Port: 53})
		return s
	}
	eps := func(s *Service, base int, nodes ...string) *EndpointSlice {
		var es []Endpoint
		for i, n := range nodes {
			es = append(es, ep(ip("172.27.1.", base+i), n, "ready"))
		}
		return slice(s, s.Key.Name+"-1", []EndpointPort{{Name: "http", Protocol: TCP, Port: 8080}, {Name: "dns", Protocol: UDP, Port: 5353}}, es...)
	}
	a, b, c := svc("a", 1), svc("b", 2), svc("c", 3)
	return []func(p *Proxier){
		func(p *Proxier) { // initial state, written by a full sync
			p.OnServiceUpdate(a)
			p.OnEndpointSliceUpdate(eps(a, 10, "node-a", "node-b"))
		},
		func(p *Proxier) { // new service with affinity, NodePort, Local policy, external IPs
			b2 := *b
			b2.Type = LoadBalancer
			b2.Ports = []ServicePort{{Name: "http", Protocol: TCP, Port: 80, NodePort: 30080}, {Name: "dns", Protocol: UDP, Port: 53, NodePort: 30053}}
			b2.ExternalIPs = addrs(ip("192.0.2.", 7))
			b2.LoadBalancerIPs = addrs(ip("198.51.100.", 9))
			b2.ExternalLocal = true
			b2.HealthCheckNodePort = 0
			b2.AffinityTimeout = 3 * time.Hour
			p.OnServiceUpdate(&b2)
			p.OnEndpointSliceUpdate(eps(&b2, 20, "node-a", "node-b", "node-c"))
		},
		func(p *Proxier) { // endpoint churn on a, new service without endpoints
			p.OnEndpointSliceUpdate(eps(a, 11, "node-b", "node-c", "node-a"))
			p.OnServiceUpdate(c)
		},
		func(p *Proxier) { // affinity timeout changes, internal Local policy, c gets endpoints elsewhere
			b3 := *b
			b3.AffinityTimeout = time.Hour
			b3.InternalLocal = true
			p.OnServiceUpdate(&b3)
			p.OnEndpointSliceUpdate(eps(c, 30, "node-b"))
		},
		func(p *Proxier) { // deletions
			p.OnServiceDelete(a.Key)
			p.OnEndpointSliceDelete(c.Key, "c-1")
		},
	}
}

// TestNetlinkSyncMatchesNft runs the same changes through two proxiers, one sending
// incremental syncs over netlink and one through nft, each in a namespace of its own,
// and requires `nft list table` to be identical after every step.
func TestNetlinkSyncMatchesNft(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, fam := range []knftables.Family{knftables.IPv4Family, knftables.IPv6Family} {
		t.Run(string(fam), func(t *testing.T) {
			ctx := context.Background()
			node := testNode
			node.Balancing = BalanceCascade
			if fam == knftables.IPv6Family {
				node.Family = fam
				node.NodeIPs = addrs("fd00:50::11")
				node.PodCIDR = netip.MustParsePrefix("fd00:27::/52") // not byte-aligned: a masked compare
			}
			newP := func(suffix string, viaNetlink bool, opened *atomic.Int32) (*Proxier, *testNS) {
				ns := newTestNS(t, string(fam)+suffix)
				opts := Options{Node: node, NFT: newNSNFTFamily(t, ns, fam).open}
				if viaNetlink { // and full syncs streamed into nft
					opts.Netlink = netlinkIn(ns, opened)
					opts.NFTCommand = nftIn(ns)
				}
				p, err := NewProxier(opts)
				if err != nil {
					t.Fatal(err)
				}
				p.OnSynced()
				return p, ns
			}
			var opened atomic.Int32
			pn, nsN := newP("-nl", true, &opened)
			pt, nsT := newP("-nft", false, nil)
			list := func(ns *testNS) string {
				return sh(t, ns.name, "nft", "list", "ruleset", string(fam))
			}
			// Listing over netlink finds what nft finds (nothing before the first sync).
			compareListings := func(step int) {
				t.Helper()
				c, err := netlinkIn(nsN, &atomic.Int32{})()
				if err != nil {
					t.Fatal(err)
				}
				exN, err := listNetlink(c, node)
				if err != nil {
					t.Fatalf("step %d: netlink listing: %v", step, err)
				}
				exT, err := pt.listExisting(ctx)
				if err != nil {
					t.Fatalf("step %d: nft listing: %v", step, err)
				}
				names := func(qs []qname) []string {
					var out []string
					for _, q := range qs {
						out = append(out, q.Table+" "+q.Name)
					}
					return out
				}
				for _, l := range [][2][]string{{names(exN.Chains), names(exT.Chains)}, {names(exN.Sets), names(exT.Sets)}} {
					slices.Sort(l[0])
					slices.Sort(l[1])
					if !slices.Equal(l[0], l[1]) {
						t.Errorf("step %d: netlink lists %q, nft %q", step, l[0], l[1])
					}
				}
				if step >= 0 && len(exN.Chains) < 10 {
					t.Errorf("step %d: netlink lists only %q", step, exN.Chains)
				}
			}
			compareListings(-1)
			for i, step := range equivalenceSteps(fam == knftables.IPv6Family) {
				before := opened.Load()
				for _, p := range []*Proxier{pn, pt} {
					step(p)
					if err := p.Sync(ctx); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				}
				if i > 0 && opened.Load() != before+1 {
					t.Errorf("step %d: incremental sync did not go over netlink", i)
				}
				gotN, gotT := list(nsN), list(nsT)
				if gotN != gotT {
					t.Fatalf("step %d: netlink and nft tables differ\n--- netlink\n%s\n--- nft\n%s", i, gotN, gotT)
				}
				compareListings(i)
				if !strings.Contains(gotN, "svc-") && i < 4 {
					t.Fatalf("step %d: no service chains in\n%s", i, gotN)
				}
			}
			// Stale chains are deleted (over netlink) once their delay has passed.
			time.Sleep(staleChainDelay + 50*time.Millisecond)
			before := opened.Load()
			for _, p := range []*Proxier{pn, pt} {
				if err := p.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if opened.Load() != before+1 {
				t.Errorf("stale chain deletion did not go over netlink")
			}
			if gotN, gotT := list(nsN), list(nsT); gotN != gotT {
				t.Fatalf("after stale deletion: tables differ\n--- netlink\n%s\n--- nft\n%s", gotN, gotT)
			}
		})
	}
}

// FuzzNetlinkCompile requires every rule and element ComputeService writes with the
// cascade to compile to netlink expressions (so that no service silently takes the
// slow nft path), and the vmap form to be refused only for its vmap rules.
func FuzzNetlinkCompile(f *testing.F) {
	f.Add([]byte{0x1f, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0x7e, 0, 0, 0, 9, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Fuzz(func(t *testing.T, data []byte) {
		svc, eps := fuzzInput(data)
		if svc.Validate() != nil {
			return
		}
		for _, bal := range []Balancing{BalanceCascade, BalanceVmap} {
			node := testNode
			node.Balancing = bal
			rs, err := NewRuleset(node)
			if err != nil {
				t.Fatal(err)
			}
			var w ops
			rs.writeUpdate(&w, map[ServiceKey]*ServiceRules{svc.Key: ComputeService(node, svc, eps)}, time.Unix(1, 0))
			_, err = compileNetlink(node, w)
			if bal == BalanceCascade && err != nil {
				t.Fatalf("cascade: %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), " vmap {") {
				t.Fatalf("vmap: refused for another reason: %v", err)
			}
		}
	})
}

// FuzzRuleExprs feeds arbitrary rule text to the compiler: it must not panic, and
// what it accepts must compile to at least one expression.
func FuzzRuleExprs(f *testing.F) {
	for _, s := range []string{
		"ip daddr 172.28.0.1 tcp dport 80 ip saddr != 172.27.0.0/16 jump mark-for-masquerade",
		"ip saddr @aff-x goto ep-x",
		"numgen random mod 3 == 0 goto ep-x",
		"fib saddr type local goto svc-x",
		"update @aff-x { ip saddr }",
		"meta l4proto udp dnat to 172.27.0.5:5353",
		"numgen random mod 2 vmap { 0 : goto a , 1 : goto b }",
		"ip saddr 172.16.0.0/12 goto c",
		"ip saddr != ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rule string) {
		for _, node := range []NodeConfig{testNode, {Family: knftables.IPv6Family, NodeName: "n", PodCIDR: netip.MustParsePrefix("fd00::/48")}} {
			exprs, err := ruleExprs(node, rule)
			if err == nil && len(exprs) == 0 {
				t.Fatalf("%q: accepted without expressions", rule)
			}
		}
	})
}

// TestRuleExprsRefuses lists forms the compiler must not accept.
func TestRuleExprsRefuses(t *testing.T) {
	for _, rule := range []string{
		"",
		"numgen random mod 2 vmap { 0 : goto a , 1 : goto b }",
		"ip6 saddr fd00::1 goto c", // other family
		"ip saddr @set",            // a match without a verdict is fine, but not "!= @set"
		"ip saddr != @set goto c",
		"meta l4proto tcp dnat to [fd00::1]:80",
		"numgen random mod 0 == 0 goto c",
		"tcp dport 70000 goto c",
		"jump a b",
		"counter",
	} {
		_, err := ruleExprs(testNode, rule)
		if rule == "ip saddr @set" {
			if err != nil {
				t.Errorf("%q: %v", rule, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q: accepted", rule)
		}
	}
}

// nftIn runs `nft -f -` in ns.
func nftIn(ns *testNS) func(ctx context.Context) *exec.Cmd {
	return func(ctx context.Context) *exec.Cmd {
		return exec.CommandContext(ctx, "ip", "netns", "exec", ns.name, "nft", "-f", "-")
	}
}

// TestNetlinkLargeBatch: a batch just under maxNetlinkOps fits the socket (the
// default buffers took only ~100 services' changes: "message too long"), and a
// larger one goes through nft.
func TestNetlinkLargeBatch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ns := newTestNS(t, "large")
	var opened atomic.Int32
	node := testNode
	node.Balancing = BalanceCascade
	p, err := NewProxier(Options{Node: node, NFT: newNSNFT(t, ns).open, Netlink: netlinkIn(ns, &opened), NFTCommand: nftIn(ns)})
	if err != nil {
		t.Fatal(err)
	}
	p.OnSynced()
	if err := p.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, bc := range []struct {
		services    int
		wantNetlink bool
	}{{220, true}, {300, false}} { // 7 operations per new service
		for i := range bc.services {
			s := web("big", fmt.Sprintf("s%d-%d", bc.services, i), ipFrom("172.29.0.0", bc.services*1000+i+1).String())
			p.OnServiceUpdate(s)
			p.OnEndpointSliceUpdate(slice(s, s.Key.Name+"-1", http8080, ep(ipFrom("172.26.0.0", bc.services*1000+i+1).String(), "node-a", "ready")))
		}
		total += bc.services
		before := opened.Load()
		if err := p.Sync(context.Background()); err != nil {
			t.Fatalf("%d services: %v", bc.services, err)
		}
		if got := opened.Load() > before; got != bc.wantNetlink {
			t.Errorf("%d services: over netlink %v, want %v", bc.services, got, bc.wantNetlink)
		}
		out := sh(t, ns.name, "nft", "list", "ruleset", "ip")
		if n := strings.Count(out, "goto svc-big/"); n != total {
			t.Fatalf("after %d services: %d in %s, want %d", bc.services, n, mapServiceIPs, total)
		}
	}
}
