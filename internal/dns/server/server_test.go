package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"edgenet.io/edgenet/internal/dns/zone"
)

// upstream is a resolver on loopback answering from a fixed table and counting the questions it gets.
type upstream struct {
	addr  string
	mu    sync.Mutex
	count map[string]int
	udp   *dns.Server
	tcp   *dns.Server
}

func (u *upstream) asked(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.count[name]
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{count: map[string]int{}}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		u.mu.Lock()
		u.count[strings.ToLower(q.Name)]++
		u.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		rr := func(s string) dns.RR { x, _ := dns.NewRR(s); return x }
		switch strings.ToLower(q.Name) {
		case "example.com.":
			if q.Qtype == dns.TypeA {
				m.Answer = []dns.RR{rr("example.com. 60 IN A 192.0.2.1")}
			}
		case "popular.example.com.":
			m.Answer = []dns.RR{rr("popular.example.com. 100 IN A 192.0.2.2")}
		case "ext.interwebs.test.":
			m.Answer = []dns.RR{rr("ext.interwebs.test. 300 IN A 192.0.2.53")}
		case "big.example.com.":
			for i := range 60 {
				m.Answer = append(m.Answer, rr("big.example.com. 60 IN TXT \""+strings.Repeat("x", 40)+string(rune('a'+i%26))+"\""))
			}
		case "1.1.168.192.in-addr.arpa.":
			m.Answer = []dns.RR{rr("1.1.168.192.in-addr.arpa. 60 IN PTR router.example.com.")}
		default:
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{rr("example.com. 300 IN SOA ns.example.com. h.example.com. 1 2 3 4 60")}
		}
		if w.LocalAddr().Network() == "udp" {
			m.Truncate(udpSize(r))
		}
		_ = w.WriteMsg(m)
	})
	// The UDP port the kernel picks may be taken for TCP (other tests, other builds on
	// this machine): keep the refused UDP sockets open while picking again, so the kernel
	// cannot hand back the same port.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		p, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", p.LocalAddr().String()); err != nil {
			if try == 20 {
				t.Fatal(err)
			}
			defer p.Close()
			continue
		}
		pc = p
	}
	u.addr = pc.LocalAddr().String()
	u.udp = &dns.Server{PacketConn: pc, Handler: h}
	u.tcp = &dns.Server{Listener: ln, Handler: h}
	go func() { _ = u.udp.ActivateAndServe() }()
	go func() { _ = u.tcp.ActivateAndServe() }()
	t.Cleanup(u.stop)
	return u
}

func (u *upstream) stop() {
	_ = u.udp.Shutdown()
	_ = u.tcp.Shutdown()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	srv   *Server
	store *zone.Store
	up    *upstream
	clock *clock
	addr  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	store, err := zone.NewStore(zone.Config{Domain: "cluster.local", ReverseCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	store.Update(func(tx *zone.Tx) {
		_ = tx.SetService(zone.Service{Namespace: "ns", Name: "web", Type: zone.ClusterIP, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}})
		_ = tx.SetService(zone.Service{Namespace: "ns", Name: "ext", Type: zone.ExternalName, ExternalName: "ext.interwebs.test"})
		_ = tx.SetService(zone.Service{Namespace: "ns", Name: "big", Type: zone.Headless})
		var eps []zone.Endpoint
		for i := range 100 {
			eps = append(eps, zone.Endpoint{Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 1, byte(i)})}, Ready: true})
		}
		_ = tx.SetEndpoints("ns", "big", []zone.EndpointGroup{{Endpoints: eps}})
	})
	up := startUpstream(t)
	srv, err := New(Config{Listen: []string{"127.0.0.1:0"}, Upstreams: []string{up.addr}, HTTP: "127.0.0.1:0",
		UpstreamTimeout: 300 * time.Millisecond, Ready: store.Synced, Logger: quiet}, store)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1_000_000, 0)}
	srv.fwd.now = c.Now
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &env{srv: srv, store: store, up: up, clock: c, addr: srv.Addrs()[0].String()}
}

func (e *env) ask(t *testing.T, net, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: net, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, e.addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", net, name, dns.TypeToString[qtype], err)
	}
	return r
}

func TestClusterOverUDPAndTCP(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"udp", "tcp"} {
		r := e.ask(t, n, "Web.NS.svc.cluster.local.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.0.0.1" || !r.Authoritative {
			t.Errorf("%s: %v", n, r)
		}
		if r.Answer[0].Header().Name != "Web.NS.svc.cluster.local." {
			t.Errorf("%s: owner %q lost the question's case", n, r.Answer[0].Header().Name)
		}
		r = e.ask(t, n, "nope.ns.svc.cluster.local.", dns.TypeA, 1232)
		if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.IsEdns0() == nil {
			t.Errorf("%s NXDOMAIN: %v", n, r)
		}
	}
}

func TestTruncationAndTCPFallback(t *testing.T) {
	e := newEnv(t)
	r := e.ask(t, "udp", "big.ns.svc.cluster.local.", dns.TypeA, 0)
	if !r.Truncated || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("UDP without EDNS: want TC, got %v", r.MsgHdr)
	}
	r.Compress = true // measure the size as sent
	if n := r.Len(); n > 512 {
		t.Errorf("UDP reply is %d bytes, over 512", n)
	}
	r = e.ask(t, "udp", "big.ns.svc.cluster.local.", dns.TypeA, 1232)
	r.Compress = true
	if !r.Truncated || r.Len() > 1232 {
		t.Errorf("UDP with EDNS 1232: TC=%v len=%d", r.Truncated, r.Len())
	}
	r = e.ask(t, "udp", "big.ns.svc.cluster.local.", dns.TypeA, 4096)
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("UDP with EDNS 4096: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
	r = e.ask(t, "tcp", "big.ns.svc.cluster.local.", dns.TypeA, 0)
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("TCP: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
	// Forwarded: the upstream truncates to us over UDP, we retry over TCP, then truncate to the client.
	r = e.ask(t, "udp", "big.example.com.", dns.TypeTXT, 0)
	if !r.Truncated {
		t.Errorf("forwarded big answer over UDP not truncated: %d answers", len(r.Answer))
	}
	r = e.ask(t, "tcp", "big.example.com.", dns.TypeTXT, 0)
	if r.Truncated || len(r.Answer) != 60 {
		t.Errorf("forwarded big answer over TCP: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
}

func TestForwardAndCache(t *testing.T) {
	e := newEnv(t)
	r := e.ask(t, "udp", "example.com.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 60 || r.Authoritative || !r.RecursionAvailable {
		t.Fatalf("first: %v", r)
	}
	e.clock.Add(20 * time.Second)
	r = e.ask(t, "udp", "EXAMPLE.com.", dns.TypeA, 0)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 40 || r.Question[0].Name != "EXAMPLE.com." {
		t.Errorf("cached: %v", r)
	}
	if n := e.up.asked("example.com."); n != 1 {
		t.Errorf("upstream asked %d times, want 1 (second from cache)", n)
	}
	e.clock.Add(41 * time.Second)
	e.ask(t, "udp", "example.com.", dns.TypeA, 0)
	if n := e.up.asked("example.com."); n != 2 {
		t.Errorf("upstream asked %d times after expiry, want 2", n)
	}
	// Reverse names outside the configured CIDRs are forwarded.
	r = e.ask(t, "udp", "1.1.168.192.in-addr.arpa.", dns.TypePTR, 0)
	if len(r.Answer) != 1 {
		t.Errorf("reverse outside CIDRs: %v", r)
	}
	r = e.ask(t, "udp", "99.0.0.10.in-addr.arpa.", dns.TypePTR, 0)
	if r.Rcode != dns.RcodeNameError || e.up.asked("99.0.0.10.in-addr.arpa.") != 0 {
		t.Errorf("reverse inside CIDR should be NXDOMAIN locally: %v", r)
	}
}

func TestNegativeCache(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		r := e.ask(t, "udp", "missing.example.com.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
			t.Fatalf("%v", r)
		}
	}
	if n := e.up.asked("missing.example.com."); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	// RFC 2308: the negative TTL is min(SOA TTL 300, SOA MINIMUM 60).
	e.clock.Add(50 * time.Second) // not yet in the prefetch window (last 10%)
	e.ask(t, "udp", "missing.example.com.", dns.TypeA, 0)
	if n := e.up.asked("missing.example.com."); n != 1 {
		t.Errorf("refetched before the negative TTL: %d", n)
	}
	e.clock.Add(11 * time.Second)
	e.ask(t, "udp", "missing.example.com.", dns.TypeA, 0)
	if n := e.up.asked("missing.example.com."); n != 2 {
		t.Errorf("not refetched after the negative TTL: %d", n)
	}
}

func TestServeStale(t *testing.T) {
	e := newEnv(t)
	e.ask(t, "udp", "example.com.", dns.TypeA, 0)
	e.up.stop()
	e.clock.Add(10 * time.Minute)
	r := e.ask(t, "udp", "example.com.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 30 {
		t.Errorf("stale answer: %v", r)
	}
	r = e.ask(t, "udp", "never-seen.example.com.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("no upstream and nothing cached: %v", r)
	}
	e.clock.Add(2 * time.Hour) // past the stale window
	r = e.ask(t, "udp", "example.com.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("beyond stale window: %v", r)
	}
}

func TestPrefetch(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.ask(t, "udp", "popular.example.com.", dns.TypeA, 0)
	}
	e.clock.Add(95 * time.Second) // last 10% of the 100 s TTL
	e.ask(t, "udp", "popular.example.com.", dns.TypeA, 0)
	deadline := time.Now().Add(2 * time.Second)
	for (e.up.asked("popular.example.com.") < 2 || len(e.srv.fwd.bg) > 0) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := e.up.asked("popular.example.com."); n != 2 {
		t.Fatalf("upstream asked %d times, want a prefetch", n)
	}
	// The refreshed entry outlives the original expiry: no miss at t=150s.
	e.clock.Add(55 * time.Second)
	r := e.ask(t, "udp", "popular.example.com.", dns.TypeA, 0)
	if n := e.up.asked("popular.example.com."); n != 2 || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 45 {
		t.Errorf("after prefetch: asked %d, %v", n, r.Answer)
	}
}

func TestExternalNameChase(t *testing.T) {
	e := newEnv(t)
	r := e.ask(t, "udp", "ext.ns.svc.cluster.local.", dns.TypeA, 0)
	if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || r.Answer[1].(*dns.A).A.String() != "192.0.2.53" {
		t.Errorf("%v", r)
	}
	r = e.ask(t, "udp", "ext.ns.svc.cluster.local.", dns.TypeCNAME, 0)
	if len(r.Answer) != 1 {
		t.Errorf("CNAME query: %v", r)
	}
}

func TestMalformedPackets(t *testing.T) {
	e := newEnv(t)
	conn, err := net.Dial("udp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(pkt []byte) []byte {
		t.Helper()
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	if r := send([]byte{1, 2, 3}); r != nil {
		t.Errorf("answered a 3-byte packet: %x", r)
	}
	// A header claiming one question but carrying none: FORMERR with our ID.
	if r := send([]byte{0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}); len(r) != 12 || r[0] != 0xab || r[1] != 0xcd || r[3]&0xf != dns.RcodeFormatError || r[2]&0x80 == 0 {
		t.Errorf("truncated question: %x", r)
	}
	// A response must never be answered.
	resp := new(dns.Msg)
	resp.SetQuestion("web.ns.svc.cluster.local.", dns.TypeA)
	resp.Response = true
	pkt, _ := resp.Pack()
	if r := send(pkt); r != nil {
		t.Errorf("answered a response: %x", r)
	}
	// Two questions: FORMERR.
	two := new(dns.Msg)
	two.Question = []dns.Question{{Name: "a.", Qtype: 1, Qclass: 1}, {Name: "b.", Qtype: 1, Qclass: 1}}
	pkt, _ = two.Pack()
	if r := send(pkt); len(r) < 12 || r[3]&0xf != dns.RcodeFormatError {
		t.Errorf("two questions: %x", r)
	}
	// Still serving.
	if r := e.ask(t, "udp", "web.ns.svc.cluster.local.", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Errorf("after garbage: %v", r)
	}
}

func TestHTTP(t *testing.T) {
	e := newEnv(t)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + e.srv.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/ready before sync: %d", code)
	}
	e.store.MarkSynced()
	if code, _ := get("/ready"); code != http.StatusOK {
		t.Errorf("/ready after sync: %d", code)
	}
	if code, _ := get("/health"); code != http.StatusOK {
		t.Errorf("/health: %d", code)
	}
	e.ask(t, "udp", "web.ns.svc.cluster.local.", dns.TypeA, 0)
	e.ask(t, "udp", "example.com.", dns.TypeA, 0)
	e.ask(t, "udp", "example.com.", dns.TypeA, 0)
	_, body := get("/metrics")
	for _, want := range []string{
		`edgenet_dns_requests_total{rcode="NOERROR",type="A"} 3`,
		`edgenet_dns_cache_hits_total 1`,
		`edgenet_dns_cache_misses_total 1`,
		`edgenet_dns_request_duration_seconds_count{source="cluster"} 1`,
		`edgenet_dns_cache_entries 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Many concurrent clients over UDP: every reply matches its query (the fast path reuses per-socket buffers).
func TestConcurrentUDP(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			for i := range 200 {
				m := new(dns.Msg)
				name := "web.ns.svc.cluster.local."
				if (w+i)%2 == 0 {
					name = "nope.ns.svc.cluster.local."
				}
				m.SetQuestion(name, dns.TypeA)
				r, _, err := c.Exchange(m, e.addr)
				if err != nil || r.Id != m.Id || r.Question[0].Name != name {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Errorf("%d bad replies", n)
	}
}
