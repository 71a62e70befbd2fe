package zone

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func rcodeOf(s *Snapshot, name string, t uint16) (int, int) {
	r := s.Lookup(name, t)
	return r.Rcode, len(r.Answer)
}

func TestStoreUpdates(t *testing.T) {
	s := fixture(t)
	before := s.Snapshot()
	gen := before.gen

	// Changing one service publishes a new snapshot and leaves the old one untouched.
	s.Update(func(tx *Tx) {
		if err := tx.SetService(Service{Namespace: "testns", Name: "svc1", Type: ClusterIP, ClusterIPs: []netip.Addr{ip("10.0.0.111")}}); err != nil {
			t.Fatal(err)
		}
	})
	after := s.Snapshot()
	if after.gen != gen+1 || after.Serial() <= before.Serial() {
		t.Errorf("gen %d→%d serial %d→%d", gen, after.gen, before.Serial(), after.Serial())
	}
	if a := after.Lookup("svc1.testns.svc.cluster.local.", dns.TypeA).Answer; len(a) != 1 || a[0].(*dns.A).A.String() != "10.0.0.111" {
		t.Errorf("after update: %v", a)
	}
	if a := before.Lookup("svc1.testns.svc.cluster.local.", dns.TypeA).Answer; len(a) != 1 || a[0].(*dns.A).A.String() != "10.0.0.1" {
		t.Errorf("old snapshot changed: %v", a)
	}
	if rc, _ := rcodeOf(after, "1.0.0.10.in-addr.arpa.", dns.TypePTR); rc != dns.RcodeNameError {
		t.Errorf("old PTR survives: %s", dns.RcodeToString[rc])
	}
	if rc, _ := rcodeOf(after, "_http._tcp.svc1.testns.svc.cluster.local.", dns.TypeSRV); rc != dns.RcodeNameError {
		t.Errorf("removed port's SRV survives: %s", dns.RcodeToString[rc])
	}

	// Endpoints becoming ready make a headless service appear.
	s.Update(func(tx *Tx) {
		_ = tx.SetEndpoints("testns", "hdls-unready", []EndpointGroup{{Endpoints: []Endpoint{{Addresses: []netip.Addr{ip("172.0.0.20")}, Ready: true}}}})
	})
	if rc, n := rcodeOf(s.Snapshot(), "hdls-unready.testns.svc.cluster.local.", dns.TypeA); rc != dns.RcodeSuccess || n != 1 {
		t.Errorf("ready endpoint: %s %d answers", dns.RcodeToString[rc], n)
	}

	// Deleting every service in a namespace makes the namespace disappear (it was never announced by SetNamespace).
	s.Update(func(tx *Tx) {
		for _, n := range []string{"svc1", "svc6", "dual", "hdls1", "hdls-unready", "external", "ext-internal", "ext-missing"} {
			tx.DeleteService("testns", n)
		}
	})
	snap := s.Snapshot()
	for _, n := range []string{"testns.svc.cluster.local.", "testns.pod.cluster.local.", "hdls1.testns.svc.cluster.local.", "3.0.0.172.in-addr.arpa."} {
		if rc, _ := rcodeOf(snap, n, dns.TypeA); rc != dns.RcodeNameError {
			t.Errorf("%s after deleting all services: %s", n, dns.RcodeToString[rc])
		}
	}
	// emptyns was announced and stays until DeleteNamespace.
	if rc, _ := rcodeOf(snap, "emptyns.svc.cluster.local.", dns.TypeA); rc != dns.RcodeSuccess {
		t.Errorf("emptyns: %s", dns.RcodeToString[rc])
	}
	s.Update(func(tx *Tx) { tx.DeleteNamespace("emptyns") })
	if rc, _ := rcodeOf(s.Snapshot(), "emptyns.svc.cluster.local.", dns.TypeA); rc != dns.RcodeNameError {
		t.Errorf("emptyns after delete: %s", dns.RcodeToString[rc])
	}
	// Only the zone's own names remain.
	if n := s.Snapshot().Len(); n != len(s.cfg.staticRecords()) {
		t.Errorf("%d names left, want the static ones", n)
	}
}

func TestStoreRejectsBadInput(t *testing.T) {
	s := fixture(t)
	before := s.Snapshot()
	bad := []Service{
		{Namespace: "testns", Name: "", Type: ClusterIP, ClusterIPs: []netip.Addr{ip("10.0.0.1")}},
		{Namespace: "test.ns", Name: "x", Type: Headless},
		{Namespace: "testns", Name: "svc1", Type: ClusterIP},
		{Namespace: "testns", Name: "svc1", Type: ExternalName, ExternalName: "bad name!"},
		{Namespace: "testns", Name: "svc1", Type: Headless, Ports: []Port{{Name: "http", Protocol: "QUIC"}}},
		{Namespace: "testns", Name: "svc1", Type: 9},
	}
	s.Update(func(tx *Tx) {
		for _, svc := range bad {
			if err := tx.SetService(svc); err == nil {
				t.Errorf("accepted %+v", svc)
			}
		}
		if err := tx.SetEndpoints("testns", "hdls1", []EndpointGroup{{Endpoints: []Endpoint{{Hostname: "a.b", Ready: true}}}}); err == nil {
			t.Error("accepted hostname with a dot")
		}
		if err := tx.SetNamespace("a b"); err == nil {
			t.Error("accepted bad namespace")
		}
	})
	if s.Snapshot() != before {
		t.Error("rejected input published a new snapshot")
	}
	if _, err := NewStore(Config{Domain: "bad domain"}); err == nil {
		t.Error("NewStore accepted a bad domain")
	}
}

// Two headless services selecting the same pod both get their PTR at the shared reverse name.
func TestSharedPTR(t *testing.T) {
	s := fixture(t)
	s.Update(func(tx *Tx) {
		for _, n := range []string{"a", "b"} {
			_ = tx.SetService(Service{Namespace: "testns", Name: n, Type: Headless})
			_ = tx.SetEndpoints("testns", n, []EndpointGroup{{Endpoints: []Endpoint{{Addresses: []netip.Addr{ip("172.0.0.50")}, Hostname: "pod", Ready: true}}}})
		}
	})
	r := s.Snapshot().Lookup("50.0.0.172.in-addr.arpa.", dns.TypePTR)
	check(t, Case{Answer: []string{
		"50.0.0.172.in-addr.arpa. 5 IN PTR pod.a.testns.svc.cluster.local.",
		"50.0.0.172.in-addr.arpa. 5 IN PTR pod.b.testns.svc.cluster.local."}}, r.Rcode, r.Answer, r.Ns, r.Extra)
	s.Update(func(tx *Tx) { tx.DeleteService("testns", "a") })
	r = s.Snapshot().Lookup("50.0.0.172.in-addr.arpa.", dns.TypePTR)
	check(t, Case{Answer: []string{"50.0.0.172.in-addr.arpa. 5 IN PTR pod.b.testns.svc.cluster.local."}}, r.Rcode, r.Answer, r.Ns, r.Extra)
}

func TestReverseHelpers(t *testing.T) {
	for _, a := range []string{"10.0.0.1", "0.0.0.0", "255.255.255.255", "fd00::1", "2001:db8:1:2:3:4:5:6"} {
		got, ok := parseReverse(reverseName(ip(a)))
		if !ok || got != ip(a) {
			t.Errorf("round trip %s: %v %v", a, got, ok)
		}
		got, ok = parseDashed(dashed(ip(a)))
		if !ok || got != ip(a) {
			t.Errorf("dashed round trip %s: %v %v", a, got, ok)
		}
	}
	for p, want := range map[string]string{
		"10.96.0.0/12":  "10.in-addr.arpa.",
		"172.28.0.0/16": "28.172.in-addr.arpa.",
		"fd00::/64":     "0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
		"fd00::/62":     "0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", // rounded down to 15 nibbles
	} {
		if got := reverseZone(netip.MustParsePrefix(p)); got != want {
			t.Errorf("reverseZone(%s) = %s, want %s", p, got, want)
		}
	}
	for _, bad := range []string{"1.2.3.in-addr.arpa.", "01.2.3.4.in-addr.arpa.", "256.2.3.4.in-addr.arpa.", "x.ip6.arpa."} {
		if _, ok := parseReverse(bad); ok {
			t.Errorf("parseReverse(%q) accepted", bad)
		}
	}
}
