package l2

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestAnnounce(t *testing.T) {
	for _, tt := range []struct {
		family       string
		lb, unowned  netip.Addr
		request, ans string
	}{
		{"ipv4", netip.MustParseAddr("192.168.50.100"), netip.MustParseAddr("192.168.50.119"), "arp-request", "arp-reply"},
		{"ipv6", netip.MustParseAddr("fd00:50::100"), netip.MustParseAddr("fd00:50::119"), "ns", "na"},
	} {
		t.Run(tt.family, func(t *testing.T) {
			l := newLab(t, tt.family[2:], 2)
			nA, nB := l.nodes[0], l.nodes[1]
			a, b := l.announcer(nA), l.announcer(nB)
			capt := l.capture()

			if err := a.SetIPs(map[netip.Addr]bool{tt.lb: true, tt.unowned: false}); err != nil {
				t.Fatal(err)
			}
			if got := a.IPs(); !slices.Equal(got, []netip.Addr{tt.lb}) {
				t.Fatalf("IPs() = %v, want only %s (false entries are not announced)", got, tt.lb)
			}
			// The client resolves the address to node a, though no host has it configured.
			l.poke(tt.lb)
			d := l.waitNeigh(tt.lb, nA.mac, time.Second)
			t.Logf("client resolved %s to a in %v", tt.lb, d.Round(time.Millisecond))

			// Move it to b: the client's entry follows b's gratuitous
			// announcement without the client asking again. Let the first resolution's
			// exchange (and IPv6's neighbour confirmation) settle first, and count from
			// the moment a has given the address up.
			time.Sleep(300 * time.Millisecond)
			if err := a.SetIPs(nil); err != nil {
				t.Fatal(err)
			}
			moved := time.Now()
			if err := b.SetIPs(map[netip.Addr]bool{tt.lb: true}); err != nil {
				t.Fatal(err)
			}
			d = l.waitNeigh(tt.lb, nB.mac, time.Second)
			t.Logf("client's entry moved to b %v after the hand-over", d.Round(time.Millisecond))
			for _, f := range capt.since(moved, tt.lb) {
				if f.outgoing {
					t.Errorf("the client asked again (%s at +%v); the update must come from the announcement", f.kind, f.at.Sub(moved))
				}
			}
			// Three announcements over about a second.
			time.Sleep(1200 * time.Millisecond)
			var announced []time.Duration
			for _, f := range capt.since(moved, tt.lb) {
				if !f.outgoing && slices.Equal(f.srcMAC, nB.mac) {
					announced = append(announced, f.at.Sub(moved).Round(10*time.Millisecond))
				}
			}
			if len(announced) != 3 || announced[2] < 900*time.Millisecond || announced[2] > 1100*time.Millisecond {
				t.Errorf("b's announcements at %v, want 3 over ~1s", announced)
			}

			// a stopped answering at once: a fresh resolution gets b only.
			asked := time.Now()
			l.flushNeigh(tt.lb)
			l.poke(tt.lb)
			l.waitNeigh(tt.lb, nB.mac, time.Second)
			time.Sleep(100 * time.Millisecond)
			answers := 0
			for _, f := range capt.since(moved, tt.lb) {
				if !f.outgoing && f.kind == tt.ans && !slices.Equal(f.srcMAC, nB.mac) {
					t.Errorf("%s from %s after a gave the address up", f.kind, f.srcMAC)
				}
				if !f.outgoing && f.kind == tt.ans && f.at.After(asked) {
					answers++
				}
			}
			if answers != 1 {
				t.Errorf("%d answers to one resolution, want exactly 1 (from b)", answers)
			}

			// An address nobody announces gets no answer.
			l.poke(tt.unowned)
			time.Sleep(500 * time.Millisecond)
			for _, f := range capt.since(moved, tt.unowned) {
				if !f.outgoing {
					t.Errorf("%s for unannounced %s from %s", f.kind, tt.unowned, f.srcMAC)
				}
			}
			if mac, _ := l.neigh(tt.unowned); mac != nil {
				t.Errorf("client resolved unannounced %s to %s", tt.unowned, mac)
			}

			// Bad input is refused and changes nothing.
			for _, bad := range []string{"224.0.0.1", "127.0.0.5", "0.0.0.0", "255.255.255.255", "169.254.1.1", "fe80::1", "ff02::1", "::1"} {
				if err := b.SetIPs(map[netip.Addr]bool{tt.lb: true, netip.MustParseAddr(bad): true}); err == nil {
					t.Errorf("SetIPs accepted %s", bad)
				}
			}
			if err := b.SetIPs(map[netip.Addr]bool{{}: true}); err == nil {
				t.Error("SetIPs accepted the zero Addr")
			}
			if got := b.IPs(); !slices.Equal(got, []netip.Addr{tt.lb}) {
				t.Errorf("after refused SetIPs, IPs() = %v", got)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{Interface: "edgenet-nonexistent"}); err == nil {
		t.Error("New accepted a missing interface")
	}
	if _, err := New(Config{Interface: "lo"}); err == nil {
		t.Error("New accepted lo, which has no Ethernet address")
	}
}
