package l2

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"edgenet.io/edgenet/internal/lb/member"
)

// agent is the announcing half of one node's edgenet agent: member + Follow
// + Announcer, as the agent wires them.
type agent struct {
	stop func()
}

func (l *lab) startAgent(h *host, lb netip.Addr) *agent {
	l.t.Helper()
	var m *member.Member
	var err error
	in(l.t, h.ns, func() {
		m, err = member.New(member.Config{Name: h.name, Key: []byte("lab-key-0123456789"), Listen: netip.AddrPortFrom(h.ip, member.DefaultPort)})
	})
	if err != nil {
		l.t.Fatal(err)
	}
	peers := map[string]netip.AddrPort{}
	names := []string{}
	for _, n := range l.nodes {
		peers[n.name] = netip.AddrPortFrom(n.ip, member.DefaultPort)
		names = append(names, n.name)
	}
	if err := m.SetPeers(peers); err != nil {
		l.t.Fatal(err)
	}
	var a *Announcer
	in(l.t, h.ns, func() { a, err = New(Config{Interface: "eth0"}) })
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	elig := make(chan map[netip.Addr][]string, 1)
	elig <- map[netip.Addr][]string{lb: names}
	var wg sync.WaitGroup
	for _, f := range []func() error{
		func() error { return m.Run(ctx) },
		func() error { return a.Run(ctx) },
		func() error { return Follow(ctx, h.name, m, a, elig) },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				l.t.Errorf("%s: %v", h.name, err)
			}
		}()
	}
	ag := &agent{stop: sync.OnceFunc(func() { cancel(); wg.Wait() })}
	l.t.Cleanup(ag.stop)
	return ag
}

// arrivals records when UDP probes reach each node's service socket.
type arrivals struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (r *arrivals) last(node string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts := r.at[node]; len(ts) > 0 {
		return ts[len(ts)-1]
	}
	return time.Time{}
}

func (r *arrivals) firstAfter(node string, t time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.at[node] {
		if a.After(t) {
			return a
		}
	}
	return time.Time{}
}

// serve gives every node the LB IP on lo (arp_ignore keeps the kernel from
// answering ARP for it, as the nftables DNAT does on a real node) and a UDP
// socket on it that records arrivals.
func (l *lab) serve(lb netip.Addr) *arrivals {
	r := &arrivals{at: map[string][]time.Time{}}
	for _, n := range l.nodes {
		run(l.t, "ip", "netns", "exec", n.ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
		run(l.t, "ip", "-n", n.ns, "addr", "add", netip.PrefixFrom(lb, lb.BitLen()).String(), "dev", "lo")
		var c *net.UDPConn
		var err error
		in(l.t, n.ns, func() { c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lb, 9999))) })
		if err != nil {
			l.t.Fatal(err)
		}
		l.t.Cleanup(func() { c.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
				r.mu.Lock()
				r.at[n.name] = append(r.at[n.name], time.Now())
				r.mu.Unlock()
			}
		}()
	}
	return r
}

// probe sends a datagram to lb every 50 ms from the client until the test ends.
func (l *lab) probe(lb netip.Addr) {
	var c *net.UDPConn
	var err error
	in(l.t, l.client.ns, func() { c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(lb, 9999))) })
	if err != nil {
		l.t.Fatal(err)
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	l.t.Cleanup(func() { close(done); <-stopped; c.Close() })
	go func() {
		defer close(stopped)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				c.Write([]byte("probe")) // errors (no neighbour yet) are the gap we measure
			}
		}
	}()
}

func (r *arrivals) waitFlowing(t *testing.T, node string, within time.Duration) {
	t.Helper()
	start := time.Now()
	for time.Since(r.last(node)) > 100*time.Millisecond {
		if time.Since(start) > within {
			t.Fatalf("probes not reaching %s after %v", node, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFailover measures the traffic gap when the announcing node fails, over
// ten runs each of a crash (its site link cut: heartbeats and everything
// else stop, the 1 s timeout detects it) and a clean agent stop (the member
// says goodbye). Goal: under 2 s.
func TestFailover(t *testing.T) {
	lb := netip.MustParseAddr("192.168.50.100")
	l := newLab(t, "fo", 2)
	byName := map[string]*host{}
	for _, n := range l.nodes {
		byName[n.name] = n
	}
	owner := member.Elect(lb, []string{"a", "b"})
	other := "a"
	if owner == "a" {
		other = "b"
	}
	got := l.serve(lb)
	agents := map[string]*agent{}
	for _, n := range l.nodes {
		agents[n.name] = l.startAgent(n, lb)
	}
	l.probe(lb)
	got.waitFlowing(t, owner, 5*time.Second)

	const runs = 10
	measure := func(kind string, fail, restore func()) {
		var gaps []time.Duration
		for i := range runs {
			got.waitFlowing(t, owner, 5*time.Second)
			time.Sleep(300 * time.Millisecond)
			failed := time.Now()
			fail()
			deadline := time.Now().Add(5 * time.Second)
			var first time.Time
			for first = got.firstAfter(other, failed); first.IsZero(); first = got.firstAfter(other, failed) {
				if time.Now().After(deadline) {
					t.Fatalf("%s run %d: no probe reached %s within 5s", kind, i, other)
				}
				time.Sleep(5 * time.Millisecond)
			}
			gap := first.Sub(got.last(owner))
			if lo := got.last(owner); lo.After(failed) {
				gap = first.Sub(failed) // owner still got some after the failure began
			}
			gaps = append(gaps, gap)
			restore()
			// The owner takes the address back once it is heard again.
			got.waitFlowing(t, owner, 10*time.Second)
		}
		slices.Sort(gaps)
		t.Logf("%s failover gap over %d runs (50 ms probes): min %v, median %v, max %v, all %v", kind, runs,
			gaps[0].Round(time.Millisecond), ((gaps[runs/2-1] + gaps[runs/2]) / 2).Round(time.Millisecond), gaps[runs-1].Round(time.Millisecond), gaps)
		if gaps[runs-1] >= 2*time.Second {
			t.Errorf("%s: worst gap %v, goal < 2s", kind, gaps[runs-1])
		}
	}

	port := byName[owner].port
	measure("crash (link cut)",
		func() { run(t, "ip", "-n", l.br, "link", "set", port, "down") },
		func() { run(t, "ip", "-n", l.br, "link", "set", port, "up") })
	measure("clean agent stop",
		func() { agents[owner].stop() },
		func() { agents[owner] = l.startAgent(byName[owner], lb) })
}
