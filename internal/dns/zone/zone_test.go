package zone

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Case is one question and the exact response sections expected (CoreDNS handler-test style).
type Case struct {
	Qname  string
	Qtype  uint16
	Rcode  int
	Answer []string
	Ns     []string
	Extra  []string
	// External is the expected ExternalTarget.
	External string
}

const soa = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func boolp(b bool) bool { return b }

// fixture is a cluster in the style of CoreDNS's kubernetes plugin tests.
func fixture(t testing.TB) *Store {
	t.Helper()
	s, err := NewStore(Config{
		Domain:          "cluster.local",
		NameserverAddrs: []netip.Addr{ip("10.0.0.10")},
		ReverseCIDRs:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("172.0.0.0/24"), netip.MustParsePrefix("fd00::/64")},
	})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	http := []Port{{Name: "http", Protocol: "TCP", Port: 80}, {Port: 9999}}
	s.Update(func(tx *Tx) {
		must(tx.SetNamespace("emptyns"))
		must(tx.SetService(Service{Namespace: "testns", Name: "svc1", Type: ClusterIP, ClusterIPs: []netip.Addr{ip("10.0.0.1")}, Ports: http}))
		must(tx.SetService(Service{Namespace: "testns", Name: "svc6", Type: ClusterIP, ClusterIPs: []netip.Addr{ip("fd00::6")}, Ports: []Port{{Name: "dns", Protocol: "UDP", Port: 53}}}))
		must(tx.SetService(Service{Namespace: "testns", Name: "dual", Type: ClusterIP, ClusterIPs: []netip.Addr{ip("10.0.0.3"), ip("fd00::3")}}))
		must(tx.SetService(Service{Namespace: "testns", Name: "hdls1", Type: Headless, Ports: http}))
		must(tx.SetEndpoints("testns", "hdls1", []EndpointGroup{
			{Ports: []Port{{Name: "http", Protocol: "TCP", Port: 8080}}, Endpoints: []Endpoint{
				{Addresses: []netip.Addr{ip("172.0.0.2")}, Ready: true},
				{Addresses: []netip.Addr{ip("172.0.0.3")}, Hostname: "my-pet", Ready: true},
				{Addresses: []netip.Addr{ip("172.0.0.9")}, Hostname: "sick", Ready: false},
			}},
			{Ports: []Port{{Name: "http", Protocol: "TCP", Port: 8080}}, Endpoints: []Endpoint{
				{Addresses: []netip.Addr{ip("fd00::2")}, Hostname: "my-pet", Ready: boolp(true)},
			}},
		}))
		must(tx.SetService(Service{Namespace: "testns", Name: "hdls-unready", Type: Headless, Ports: http}))
		must(tx.SetEndpoints("testns", "hdls-unready", []EndpointGroup{{Endpoints: []Endpoint{{Addresses: []netip.Addr{ip("172.0.0.20")}, Ready: false}}}}))
		must(tx.SetService(Service{Namespace: "testns", Name: "external", Type: ExternalName, ExternalName: "ext.interwebs.test"}))
		must(tx.SetService(Service{Namespace: "testns", Name: "ext-internal", Type: ExternalName, ExternalName: "svc1.testns.svc.cluster.local"}))
		must(tx.SetService(Service{Namespace: "testns", Name: "ext-missing", Type: ExternalName, ExternalName: "nosvc.testns.svc.cluster.local."}))
	})
	return s
}

var cases = []Case{
	// 2.3.1 A/AAAA for ClusterIP services.
	{Qname: "svc1.testns.svc.cluster.local.", Qtype: dns.TypeA, Answer: []string{"svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"}},
	{Qname: "SvC1.TestNS.svc.Cluster.Local.", Qtype: dns.TypeA, Answer: []string{"SvC1.TestNS.svc.Cluster.Local. 5 IN A 10.0.0.1"}},
	{Qname: "svc1.testns.svc.cluster.local", Qtype: dns.TypeA, Answer: []string{"svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"}},
	{Qname: "svc1.testns.svc.cluster.local.", Qtype: dns.TypeAAAA, Ns: []string{soa}},
	{Qname: "svc1.testns.svc.cluster.local.", Qtype: dns.TypeMX, Ns: []string{soa}},
	{Qname: "svc6.testns.svc.cluster.local.", Qtype: dns.TypeAAAA, Answer: []string{"svc6.testns.svc.cluster.local. 5 IN AAAA fd00::6"}},
	{Qname: "svc6.testns.svc.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	{Qname: "dual.testns.svc.cluster.local.", Qtype: dns.TypeA, Answer: []string{"dual.testns.svc.cluster.local. 5 IN A 10.0.0.3"}},
	{Qname: "dual.testns.svc.cluster.local.", Qtype: dns.TypeAAAA, Answer: []string{"dual.testns.svc.cluster.local. 5 IN AAAA fd00::3"}},
	// Names that do not exist, and the ones that exist without records.
	{Qname: "svc1.nons.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "nosvc.testns.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "x.svc1.testns.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "nons.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "testns.svc.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	{Qname: "emptyns.svc.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	{Qname: "svc.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	{Qname: "www.example.com.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	// 2.3.2 SRV for named ports only; the unnamed port 9999 has none.
	{Qname: "_http._tcp.svc1.testns.svc.cluster.local.", Qtype: dns.TypeSRV,
		Answer: []string{"_http._tcp.svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."},
		Extra:  []string{"svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"}},
	{Qname: "_HTTP._TCP.svc1.testns.svc.cluster.local.", Qtype: dns.TypeSRV,
		Answer: []string{"_HTTP._TCP.svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."},
		Extra:  []string{"svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"}},
	{Qname: "_dns._udp.svc6.testns.svc.cluster.local.", Qtype: dns.TypeSRV,
		Answer: []string{"_dns._udp.svc6.testns.svc.cluster.local. 5 IN SRV 0 100 53 svc6.testns.svc.cluster.local."},
		Extra:  []string{"svc6.testns.svc.cluster.local. 5 IN AAAA fd00::6"}},
	{Qname: "_http._tcp.svc1.testns.svc.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	{Qname: "_tcp.svc1.testns.svc.cluster.local.", Qtype: dns.TypeSRV, Ns: []string{soa}},
	{Qname: "_http._udp.svc1.testns.svc.cluster.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "_https._tcp.svc1.testns.svc.cluster.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	// 2.4.1 headless: one record per ready endpoint, hostname records; unready endpoints are left out.
	{Qname: "hdls1.testns.svc.cluster.local.", Qtype: dns.TypeA, Answer: []string{
		"hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
		"hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"}},
	{Qname: "hdls1.testns.svc.cluster.local.", Qtype: dns.TypeAAAA, Answer: []string{"hdls1.testns.svc.cluster.local. 5 IN AAAA fd00::2"}},
	{Qname: "my-pet.hdls1.testns.svc.cluster.local.", Qtype: dns.TypeA, Answer: []string{"my-pet.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"}},
	{Qname: "my-pet.hdls1.testns.svc.cluster.local.", Qtype: dns.TypeAAAA, Answer: []string{"my-pet.hdls1.testns.svc.cluster.local. 5 IN AAAA fd00::2"}},
	{Qname: "172-0-0-2.hdls1.testns.svc.cluster.local.", Qtype: dns.TypeA, Answer: []string{"172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2"}},
	{Qname: "172-0-0-2.hdls1.testns.svc.cluster.local.", Qtype: dns.TypeAAAA, Ns: []string{soa}},
	{Qname: "sick.hdls1.testns.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "hdls-unready.testns.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "_http._tcp.hdls-unready.testns.svc.cluster.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	// 2.4.2 headless SRV: one per ready endpoint and named port, target the endpoint's name, its addresses in extra.
	{Qname: "_http._tcp.hdls1.testns.svc.cluster.local.", Qtype: dns.TypeSRV, Answer: []string{
		"_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 8080 172-0-0-2.hdls1.testns.svc.cluster.local.",
		"_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 8080 my-pet.hdls1.testns.svc.cluster.local."},
		Extra: []string{
			"172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
			"my-pet.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
			"my-pet.hdls1.testns.svc.cluster.local. 5 IN AAAA fd00::2"}},
	// 2.3.3 and 2.4.3 PTR, IPv4 and IPv6.
	{Qname: "1.0.0.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []string{"1.0.0.10.in-addr.arpa. 5 IN PTR svc1.testns.svc.cluster.local."}},
	{Qname: "3.0.0.172.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []string{"3.0.0.172.in-addr.arpa. 5 IN PTR my-pet.hdls1.testns.svc.cluster.local."}},
	{Qname: "2.0.0.172.IN-ADDR.ARPA.", Qtype: dns.TypePTR, Answer: []string{"2.0.0.172.IN-ADDR.ARPA. 5 IN PTR 172-0-0-2.hdls1.testns.svc.cluster.local."}},
	{Qname: "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", Qtype: dns.TypePTR,
		Answer: []string{"6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR svc6.testns.svc.cluster.local."}},
	{Qname: "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", Qtype: dns.TypePTR,
		Answer: []string{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR my-pet.hdls1.testns.svc.cluster.local."}},
	{Qname: "1.0.0.10.in-addr.arpa.", Qtype: dns.TypeA, Ns: []string{"0.0.10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"}},
	{Qname: "99.0.0.10.in-addr.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeNameError,
		Ns: []string{"0.0.10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"}},
	{Qname: "9.0.0.172.in-addr.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeNameError, // unready endpoint
		Ns: []string{"0.0.172.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"}},
	{Qname: "9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeNameError,
		Ns: []string{"0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"}},
	// 2.5 ExternalName: CNAME, and the target's records when it is in the cluster zone.
	{Qname: "external.testns.svc.cluster.local.", Qtype: dns.TypeA,
		Answer: []string{"external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."}, External: "ext.interwebs.test."},
	{Qname: "external.testns.svc.cluster.local.", Qtype: dns.TypeCNAME,
		Answer: []string{"external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."}},
	{Qname: "ext-internal.testns.svc.cluster.local.", Qtype: dns.TypeA, Answer: []string{
		"ext-internal.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local.",
		"svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"}},
	{Qname: "ext-internal.testns.svc.cluster.local.", Qtype: dns.TypeAAAA,
		Answer: []string{"ext-internal.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local."}, Ns: []string{soa}},
	{Qname: "ext-missing.testns.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
		Answer: []string{"ext-missing.testns.svc.cluster.local. 5 IN CNAME nosvc.testns.svc.cluster.local."}, Ns: []string{soa}},
	// 2.6 pod records ("pods insecure"): any well-formed dashed address in an existing namespace.
	{Qname: "10-0-0-5.testns.pod.cluster.local.", Qtype: dns.TypeA, Answer: []string{"10-0-0-5.testns.pod.cluster.local. 5 IN A 10.0.0.5"}},
	{Qname: "10-0-0-5.EmptyNS.pod.cluster.local.", Qtype: dns.TypeA, Answer: []string{"10-0-0-5.EmptyNS.pod.cluster.local. 5 IN A 10.0.0.5"}},
	{Qname: "10-0-0-5.testns.pod.cluster.local.", Qtype: dns.TypeAAAA, Ns: []string{soa}},
	{Qname: "fd00--5.testns.pod.cluster.local.", Qtype: dns.TypeAAAA, Answer: []string{"fd00--5.testns.pod.cluster.local. 5 IN AAAA fd00::5"}},
	{Qname: "10-0-0.testns.pod.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "10-0-0-256.testns.pod.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "10-0-0-5.nons.pod.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "x.10-0-0-5.testns.pod.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soa}},
	{Qname: "emptyns.pod.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	{Qname: "pod.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	// 2.2 schema version; apex SOA and NS.
	{Qname: "dns-version.cluster.local.", Qtype: dns.TypeTXT, Answer: []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`}},
	{Qname: "dns-version.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
	{Qname: "cluster.local.", Qtype: dns.TypeSOA, Answer: []string{soa}},
	{Qname: "Cluster.Local", Qtype: dns.TypeNS, Answer: []string{"Cluster.Local. 5 IN NS ns.dns.cluster.local."},
		Extra: []string{"ns.dns.cluster.local. 5 IN A 10.0.0.10"}},
	{Qname: "ns.dns.cluster.local.", Qtype: dns.TypeA, Answer: []string{"ns.dns.cluster.local. 5 IN A 10.0.0.10"}},
	{Qname: "dns.cluster.local.", Qtype: dns.TypeA, Ns: []string{soa}},
}

func TestLookup(t *testing.T) {
	snap := fixture(t).Snapshot()
	for _, tc := range cases {
		t.Run(tc.Qname+"/"+dns.TypeToString[tc.Qtype], func(t *testing.T) {
			if !snap.Handles(tc.Qname) {
				t.Fatalf("Handles(%q) = false", tc.Qname)
			}
			r := snap.Lookup(tc.Qname, tc.Qtype)
			check(t, tc, r.Rcode, r.Answer, r.Ns, r.Extra)
			if r.ExternalTarget != tc.External {
				t.Errorf("ExternalTarget = %q, want %q", r.ExternalTarget, tc.External)
			}
		})
	}
}

func TestHandles(t *testing.T) {
	snap := fixture(t).Snapshot()
	for name, want := range map[string]bool{
		"example.com.":              false,
		"cluster.local.":            true,
		"foo.cluster.local":         true,
		"local.":                    false,
		"xcluster.local.":           false,
		"1.1.168.192.in-addr.arpa.": false, // outside the configured CIDRs: forwarded
		"1.0.0.10.in-addr.arpa.":    true,
		"200.0.0.10.in-addr.arpa.":  true,
		"0.10.in-addr.arpa.":        false,
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.d.f.ip6.arpa.": false,
	} {
		if got := snap.Handles(name); got != want {
			t.Errorf("Handles(%q) = %v, want %v", name, got, want)
		}
	}
}

// check compares sections as sorted presentation strings; the SOA serial is normalized to 1.
func check(t *testing.T, tc Case, rcode int, ans, ns, extra []dns.RR) {
	t.Helper()
	if rcode != tc.Rcode {
		t.Errorf("rcode = %s, want %s", dns.RcodeToString[rcode], dns.RcodeToString[tc.Rcode])
	}
	section := func(what string, got []dns.RR, want []string) {
		t.Helper()
		var g []string
		for _, rr := range got {
			if s, ok := rr.(*dns.SOA); ok {
				c := *s
				c.Serial = 1
				rr = &c
			}
			g = append(g, strings.ReplaceAll(rr.String(), "\t", " "))
		}
		var w []string
		for _, s := range want {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatalf("bad want %q: %v", s, err)
			}
			w = append(w, strings.ReplaceAll(rr.String(), "\t", " "))
		}
		slices.Sort(g)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			t.Errorf("%s:\n got %q\nwant %q", what, g, w)
		}
	}
	section("answer", ans, tc.Answer)
	section("authority", ns, tc.Ns)
	section("additional", extra, tc.Extra)
}
