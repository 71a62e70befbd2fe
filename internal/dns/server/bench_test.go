package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"edgenet.io/edgenet/internal/dns/zone"
)

func packQ(name string, t uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	m.SetEdns0(1232, false)
	p, _ := m.Pack()
	return p
}

// BenchmarkServeA is the per-packet work for a cluster A query on the UDP fast path (parse, lookup, reply, metrics).
func BenchmarkServeA(b *testing.B) { benchFast(b, "web.ns.svc.cluster.local.", dns.TypeA) }

// BenchmarkServeNXDOMAIN is a search-path miss (ndots:5 makes these the most common cluster queries).
func BenchmarkServeNXDOMAIN(b *testing.B) {
	benchFast(b, "www.example.com.ns.svc.cluster.local.", dns.TypeA)
}

// BenchmarkServeSRV is a headless SRV with the endpoint address in the additional section.
func BenchmarkServeSRV(b *testing.B) { benchFast(b, "_http._tcp.h.ns.svc.cluster.local.", dns.TypeSRV) }

func benchFast(b *testing.B, name string, t uint16) {
	s := fuzzServer(b)
	pkt := packQ(name, t)
	out := make([]byte, 0, 4096)
	var q zone.WireQuery
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if out, ok = s.fast(out[:0], pkt, &q); !ok {
			b.Fatal("not on the fast path")
		}
	}
}

// BenchmarkServeMsgPath is the dns.Msg path for a cluster name (pod records, TCP, truncation take it).
func BenchmarkServeMsgPath(b *testing.B) {
	s := fuzzServer(b)
	pkt := packQ("10-0-0-1.ns.pod.cluster.local.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if s.handlePacket(context.Background(), pkt, true) == nil {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkServeCached is a forwarded name answered from the cache.
func BenchmarkServeCached(b *testing.B) {
	s := fuzzServer(b)
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeA)
	rr, _ := dns.NewRR("example.com. 3600 IN A 192.0.2.1")
	m.Answer = []dns.RR{rr}
	s.fwd.cache.put(cacheKey{name: "example.com.", qtype: dns.TypeA}, m, time.Now())
	pkt := packQ("example.com.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if s.handlePacket(context.Background(), pkt, true) == nil {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkUDPRoundTrip measures a client-server exchange over loopback (kernel and scheduling included).
func BenchmarkUDPRoundTrip(b *testing.B) {
	s := fuzzServer(b)
	if err := s.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx) }()
	c, err := net.Dial("udp", s.Addrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pkt := packQ("web.ns.svc.cluster.local.", dns.TypeA)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(pkt); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
