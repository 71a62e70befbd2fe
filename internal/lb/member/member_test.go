package member

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

type running struct {
	m    *Member
	stop context.CancelFunc
	done chan struct{} // closed when Run has returned
}

// startMembers runs n members on loopback ports, each knowing all others.
func startMembers(t *testing.T, names ...string) map[string]*running {
	t.Helper()
	out := map[string]*running{}
	peers := map[string]netip.AddrPort{}
	for _, n := range names {
		m, err := New(Config{Name: n, Key: testKey, Listen: netip.MustParseAddrPort("127.0.0.1:0")})
		if err != nil {
			t.Fatal(err)
		}
		out[n] = &running{m: m, done: make(chan struct{})}
		peers[n] = m.LocalAddr()
	}
	for _, r := range out {
		if err := r.m.SetPeers(peers); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.stop = cancel
		go func() {
			defer close(r.done)
			if err := r.m.Run(ctx); err != nil {
				t.Errorf("%s: Run: %v", r.m.cfg.Name, err)
			}
		}()
		t.Cleanup(func() {
			cancel()
			<-r.done
		})
	}
	return out
}

// waitAlive waits until m's Alive equals want, and returns when that was seen.
func waitAlive(t *testing.T, m *Member, want []string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.After(within)
	for {
		if got := m.Alive(); slices.Equal(got, want) {
			return time.Now()
		}
		select {
		case <-m.Changed():
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: alive %v after %v, want %v (view %+v)", m.cfg.Name, m.Alive(), within, want, m.View())
		}
	}
}

func TestMembersDetectCrashAndMoveOnlyItsIPs(t *testing.T) {
	ms := startMembers(t, "a", "b", "c")
	all := []string{"a", "b", "c"}
	for _, r := range ms {
		waitAlive(t, r.m, all, 3*time.Second)
	}
	eligible := map[netip.Addr][]string{}
	for i := range 30 {
		eligible[netip.MustParseAddr(fmt.Sprintf("192.168.50.%d", 100+i))] = all
	}
	before := map[netip.Addr]string{}
	for n, r := range ms {
		for ip := range Claims(n, r.m.Alive(), eligible) {
			before[ip] = n
		}
	}
	if len(before) != len(eligible) {
		t.Fatalf("%d of %d addresses claimed", len(before), len(eligible))
	}

	ms["c"].m.noLeave = true // a crash: no goodbye
	ms["c"].stop()
	<-ms["c"].done
	crashed := time.Now()
	for _, n := range []string{"a", "b"} {
		seen := waitAlive(t, ms[n].m, []string{"a", "b"}, 2*time.Second)
		// The last heartbeat from c arrived up to one interval before the
		// crash; allow scheduling slack on a busy machine.
		if d := seen.Sub(crashed); d > time.Second+100*time.Millisecond {
			t.Errorf("%s saw c dead %v after the crash; timeout is 1s", n, d)
		} else {
			t.Logf("%s saw c dead %v after the crash", n, d.Round(time.Millisecond))
		}
	}
	after := map[netip.Addr]string{}
	for _, n := range []string{"a", "b"} {
		for ip := range Claims(n, ms[n].m.Alive(), eligible) {
			if o, dup := after[ip]; dup {
				t.Errorf("%s claimed by %s and %s", ip, o, n)
			}
			after[ip] = n
		}
	}
	for ip, was := range before {
		if was != "c" && after[ip] != was {
			t.Errorf("%s moved from live %s to %s", ip, was, after[ip])
		}
		if was == "c" && after[ip] == "" {
			t.Errorf("%s of dead c not taken over", ip)
		}
	}
}

// A clean stop tells the others at once instead of waiting for the timeout.
func TestMemberLeaveIsImmediate(t *testing.T) {
	ms := startMembers(t, "a", "b")
	waitAlive(t, ms["a"].m, []string{"a", "b"}, 3*time.Second)
	start := time.Now()
	ms["b"].stop()
	<-ms["b"].done
	if got := ms["b"].m.Alive(); len(got) != 0 {
		t.Errorf("stopped member reports alive %v", got)
	}
	waitAlive(t, ms["a"].m, []string{"a"}, time.Second)
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("leave took %v to be seen; want well under the 1s timeout", d)
	}
}

// Packets from a stranger on the network, without or with the wrong HMAC
// key, never make a member alive; the same sender with the key does.
func TestMemberIgnoresUnauthenticated(t *testing.T) {
	m, err := New(Config{Name: "a", Key: testKey, Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	fake, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	fakeAddr := fake.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := m.SetPeers(map[string]netip.AddrPort{"a": m.LocalAddr(), "x": fakeAddr}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	send := func(key []byte, seq uint64, strip bool) {
		p, err := heartbeat{Name: "x", Incarnation: 1, Seq: seq, Ready: true, Heard: []nodeID{idOf("a")}}.marshal(nil, key)
		if err != nil {
			t.Fatal(err)
		}
		if strip {
			p = p[:len(p)-macLen]
		}
		if _, err := fake.WriteToUDPAddrPort(p, m.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(1); seq <= 8; seq++ { // over 1.6 s, beyond the start-up wait
		send([]byte("wrong-key-but-long-enough"), seq, false)
		send(testKey, seq, true)
		time.Sleep(200 * time.Millisecond)
	}
	if v := m.View(); len(v.Heard) != 0 || slices.Contains(v.Alive, "x") {
		t.Fatalf("unauthenticated packets made x heard: %+v", v)
	}
	send(testKey, 100, false)
	waitAlive(t, m, []string{"a", "x"}, time.Second)
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []Config{
		{Key: testKey},
		{Name: "a", Key: []byte("short")},
		{Name: "a", Key: testKey, Interval: time.Second, Timeout: time.Second},
		{Name: "a", Key: testKey, Quorum: -1},
	} {
		if m, err := New(cfg); err == nil {
			m.conn.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	m, err := New(Config{Name: "a", Key: testKey, Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.conn.Close()
	good := map[string]netip.AddrPort{"b": netip.MustParseAddrPort("127.0.0.1:7000")}
	if err := m.SetPeers(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]netip.AddrPort{
		{"b": netip.MustParseAddrPort("127.0.0.1:0")},
		{"c": {}},
		{"": netip.MustParseAddrPort("127.0.0.1:7001")},
		{"d": netip.MustParseAddrPort("0.0.0.0:7946")},
	} {
		if err := m.SetPeers(bad); err == nil {
			t.Errorf("SetPeers(%v) accepted", bad)
		}
	}
	if v := m.View(); v.Members != 2 {
		t.Errorf("rejected SetPeers changed the peer list: %d members", v.Members)
	}
}
