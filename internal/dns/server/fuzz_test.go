package server

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"edgenet.io/edgenet/internal/dns/zone"
)

func fuzzServer(t testing.TB) *Server {
	store, err := zone.NewStore(zone.Config{Domain: "cluster.local", ReverseCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	store.Update(func(tx *zone.Tx) {
		_ = tx.SetService(zone.Service{Namespace: "ns", Name: "web", Type: zone.ClusterIP, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")},
			Ports: []zone.Port{{Name: "http", Port: 80}}})
		_ = tx.SetService(zone.Service{Namespace: "ns", Name: "in", Type: zone.ExternalName, ExternalName: "web.ns.svc.cluster.local"})
		_ = tx.SetService(zone.Service{Namespace: "ns", Name: "h", Type: zone.Headless, Ports: []zone.Port{{Name: "http", Port: 80}}})
		_ = tx.SetEndpoints("ns", "h", []zone.EndpointGroup{{Ports: []zone.Port{{Name: "http", Port: 80}},
			Endpoints: []zone.Endpoint{{Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.1")}, Hostname: "p", Ready: true}}}})
	})
	// No upstreams: forwarded names fail at once instead of touching the network.
	s, err := New(Config{Listen: []string{"127.0.0.1:0"}, Logger: quiet}, store)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzQuery feeds arbitrary packets to both paths: they must never panic, must answer with the query's ID, and the
// wire path's reply must be a valid message.
func FuzzQuery(f *testing.F) {
	for _, q := range []struct {
		name string
		t    uint16
	}{{"web.ns.svc.cluster.local.", dns.TypeA}, {"_http._tcp.h.ns.svc.cluster.local.", dns.TypeSRV}, {"1.0.0.10.in-addr.arpa.", dns.TypePTR},
		{"in.ns.svc.cluster.local.", dns.TypeA}, {"10-0-0-1.ns.pod.cluster.local.", dns.TypeA}, {"example.com.", dns.TypeMX}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.t)
		p, _ := m.Pack()
		f.Add(p)
		m.SetEdns0(4096, true)
		p, _ = m.Pack()
		f.Add(p)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var q zone.WireQuery
		if out, ok := s.fast(nil, pkt, &q); ok {
			m := new(dns.Msg)
			if err := m.Unpack(out); err != nil {
				t.Fatalf("wire reply does not unpack: %v\n%x", err, out)
			}
			if m.Id != q.ID || !m.Response {
				t.Fatalf("wire reply header %v", m.MsgHdr)
			}
		}
		out := s.handlePacket(context.Background(), pkt, true)
		if out == nil {
			return
		}
		if len(out) < 12 || out[0] != pkt[0] || out[1] != pkt[1] || out[2]&0x80 == 0 {
			t.Fatalf("reply %x to %x", out, pkt)
		}
		if len(out) > 512 {
			if m := new(dns.Msg); m.Unpack(pkt) == nil && m.IsEdns0() == nil {
				t.Fatalf("%d-byte UDP reply to a query without EDNS", len(out))
			}
		}
	})
}
