package zone

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestWireMatchesLookup checks that every case the wire path serves yields the same message as the dns.Msg path,
// with and without EDNS0, and keeps the question's case.
func TestWireMatchesLookup(t *testing.T) {
	snap := fixture(t).Snapshot()
	served := 0
	for _, tc := range cases {
		for _, edns := range []bool{false, true} {
			req := new(dns.Msg)
			req.SetQuestion(dns.Fqdn(tc.Qname), tc.Qtype)
			req.Id = 4242
			if edns {
				req.SetEdns0(4096, true)
			}
			pkt, err := req.Pack()
			if err != nil {
				t.Fatal(err)
			}
			var q WireQuery
			if !ParseQuery(pkt, &q) {
				t.Fatalf("%s: ParseQuery refused a plain query", tc.Qname)
			}
			out, ok := snap.AppendReply(nil, pkt, &q)
			if !ok {
				continue
			}
			served++
			got := new(dns.Msg)
			if err := got.Unpack(out); err != nil {
				t.Fatalf("%s: wire reply does not unpack: %v", tc.Qname, err)
			}
			want, _ := snap.Reply(req)
			// Names inside the reply compress against the question, so they may take its case (RFC 4343: names
			// compare case-insensitively); the question and answer owners must keep it exactly.
			if !strings.EqualFold(got.String(), want.String()) {
				t.Errorf("%s %s edns=%v:\nwire:\n%v\nmsg:\n%v", tc.Qname, dns.TypeToString[tc.Qtype], edns, got, want)
			}
			if got.Question[0].Name != req.Question[0].Name {
				t.Errorf("%s: question name %q", tc.Qname, got.Question[0].Name)
			}
			for i, rr := range got.Answer {
				if rr.Header().Name != want.Answer[i].Header().Name {
					t.Errorf("%s: answer owner %q, want %q", tc.Qname, rr.Header().Name, want.Answer[i].Header().Name)
				}
			}
			// Twice: the second reply comes from the cached template.
			again, _ := snap.AppendReply(nil, pkt, &q)
			if !bytes.Equal(again, out) {
				t.Errorf("%s: cached template differs", tc.Qname)
			}
		}
	}
	if served < 2*len(cases)*3/4 {
		t.Errorf("wire path served only %d of %d", served, 2*len(cases))
	}
}

func TestWireFallsBack(t *testing.T) {
	snap := fixture(t).Snapshot()
	for name, build := range map[string]func() *dns.Msg{
		"pod name": func() *dns.Msg {
			m := new(dns.Msg)
			m.SetQuestion("10-0-0-1.testns.pod.cluster.local.", dns.TypeA)
			return m
		},
		"outside zone": func() *dns.Msg { m := new(dns.Msg); m.SetQuestion("example.com.", dns.TypeA); return m },
		"external target": func() *dns.Msg {
			m := new(dns.Msg)
			m.SetQuestion("external.testns.svc.cluster.local.", dns.TypeA)
			return m
		},
		"ANY": func() *dns.Msg {
			m := new(dns.Msg)
			m.SetQuestion("svc1.testns.svc.cluster.local.", dns.TypeANY)
			return m
		},
	} {
		pkt, _ := build().Pack()
		var q WireQuery
		if !ParseQuery(pkt, &q) {
			continue
		}
		if _, ok := snap.AppendReply(nil, pkt, &q); ok {
			t.Errorf("%s: wire path answered, want fallback", name)
		}
	}
	// Too big for 512 bytes without EDNS: falls back so the full path can truncate.
	s := fixture(t)
	s.Update(func(tx *Tx) {
		var eps []Endpoint
		for i := range 100 {
			eps = append(eps, Endpoint{Addresses: []netip.Addr{netip.AddrFrom4([4]byte{172, 0, 1, byte(i)})}, Ready: true})
		}
		_ = tx.SetService(Service{Namespace: "testns", Name: "big", Type: Headless})
		_ = tx.SetEndpoints("testns", "big", []EndpointGroup{{Endpoints: eps}})
	})
	m := new(dns.Msg)
	m.SetQuestion("big.testns.svc.cluster.local.", dns.TypeA)
	pkt, _ := m.Pack()
	var q WireQuery
	if !ParseQuery(pkt, &q) {
		t.Fatal("ParseQuery refused")
	}
	if _, ok := s.Snapshot().AppendReply(nil, pkt, &q); ok {
		t.Error("oversized UDP reply was served by the wire path")
	}
}

func TestParseQueryRejects(t *testing.T) {
	base := func() *dns.Msg { m := new(dns.Msg); m.SetQuestion("a.b.", dns.TypeA); return m }
	for name, mutate := range map[string]func(m *dns.Msg){
		"response": func(m *dns.Msg) { m.Response = true },
		"notify":   func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify },
		"class CH": func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS },
		"two q":    func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) },
		"answer": func(m *dns.Msg) {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "a.", Rrtype: dns.TypeA, Class: 1}}}
		},
		"odd label":  func(m *dns.Msg) { m.Question[0].Name = "a\\.b.c." },
		"edns v1":    func(m *dns.Msg) { m.SetEdns0(1232, false); m.Extra[0].(*dns.OPT).SetVersion(1) },
		"star label": func(m *dns.Msg) { m.Question[0].Name = "*.b." },
	} {
		m := base()
		mutate(m)
		pkt, err := m.Pack()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var q WireQuery
		if ParseQuery(pkt, &q) {
			t.Errorf("%s: accepted", name)
		}
	}
	pkt, _ := base().Pack()
	var q WireQuery
	for i := range len(pkt) {
		if ParseQuery(pkt[:i], &q) {
			t.Errorf("accepted a query truncated to %d bytes", i)
		}
	}
	if ParseQuery(append(pkt, 0), &q) {
		t.Error("accepted trailing garbage")
	}
}

func BenchmarkAppendReplyA(b *testing.B) {
	benchWire(b, "svc1.testns.svc.cluster.local.", dns.TypeA)
}

func BenchmarkAppendReplyNXDOMAIN(b *testing.B) {
	benchWire(b, "www.example.com.testns.svc.cluster.local.", dns.TypeA)
}

func BenchmarkAppendReplySRVHeadless(b *testing.B) {
	benchWire(b, "_http._tcp.hdls1.testns.svc.cluster.local.", dns.TypeSRV)
}

func benchWire(b *testing.B, name string, qtype uint16) {
	snap := fixture(b).Snapshot()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	pkt, _ := m.Pack()
	out := make([]byte, 0, 1500)
	b.ReportAllocs()
	for b.Loop() {
		var q WireQuery
		if !ParseQuery(pkt, &q) {
			b.Fatal("parse")
		}
		var ok bool
		if out, ok = snap.AppendReply(out[:0], pkt, &q); !ok {
			b.Fatal("not served")
		}
	}
}

func BenchmarkLookupMsg(b *testing.B) {
	snap := fixture(b).Snapshot()
	req := new(dns.Msg)
	req.SetQuestion("svc1.testns.svc.cluster.local.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		m, _ := snap.Reply(req)
		if _, err := m.Pack(); err != nil {
			b.Fatal(err)
		}
	}
}
