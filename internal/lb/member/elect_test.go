package member

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// The winners are pinned: agents of different versions must agree during a
// rolling upgrade, so a change to the hash is a breaking change. (The values
// were computed independently: SHA-256 over the 16-byte address, 0, name.)
func TestElectPinned(t *testing.T) {
	nodes := []string{"node-1", "node-2", "node-3"}
	tests := []struct {
		ip       string
		eligible []string
		want     string
	}{
		{"192.168.50.100", nodes, "node-3"},
		{"192.168.50.101", nodes, "node-3"},
		{"192.168.50.102", nodes, "node-2"},
		{"192.168.50.103", nodes, "node-2"},
		{"fd00:50::100", nodes, "node-1"},
		{"::ffff:192.168.50.100", nodes, "node-3"}, // mapped form is the same address
		{"192.168.50.100", []string{"node-1"}, "node-1"},
		{"192.168.50.100", nil, ""},
	}
	for _, tt := range tests {
		if got := Elect(netip.MustParseAddr(tt.ip), tt.eligible); got != tt.want {
			t.Errorf("Elect(%s, %v) = %q, want %q", tt.ip, tt.eligible, got, tt.want)
		}
	}
}

func TestElectOrderIndependent(t *testing.T) {
	ip := netip.MustParseAddr("192.168.50.110")
	a := Elect(ip, []string{"a", "b", "c", "d"})
	if b := Elect(ip, []string{"d", "c", "b", "a"}); a != b {
		t.Fatalf("order changes the winner: %q vs %q", a, b)
	}
}

// Removing a node moves only the addresses it had won, and spreads them;
// adding it back returns exactly those.
func TestElectMovesOnlyTheDeadNodesIPs(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	base := netip.MustParseAddr("10.0.0.0")
	owner := map[netip.Addr]string{}
	perNode := map[string]int{}
	ip := base
	for range 1000 {
		ip = ip.Next()
		owner[ip] = Elect(ip, nodes)
		perNode[owner[ip]]++
	}
	for _, n := range nodes {
		if c := perNode[n]; c < 150 || c > 250 {
			t.Errorf("%s wins %d of 1000 addresses; want about 200", n, c)
		}
	}
	survivors := slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == "n3" })
	movedTo := map[string]int{}
	for ip, was := range owner {
		now := Elect(ip, survivors)
		switch {
		case was != "n3" && now != was:
			t.Fatalf("%s moved from live %s to %s", ip, was, now)
		case was == "n3":
			movedTo[now]++
		}
	}
	for _, n := range survivors {
		if movedTo[n] == 0 {
			t.Errorf("none of n3's addresses moved to %s: %v", n, movedTo)
		}
	}
}

func TestClaims(t *testing.T) {
	ips := map[netip.Addr][]string{}
	for i := range 20 {
		ips[netip.MustParseAddr(fmt.Sprintf("192.168.50.%d", 100+i))] = []string{"a", "b", "c"}
	}
	only := netip.MustParseAddr("192.168.50.200")
	ips[only] = []string{"b"} // e.g. externalTrafficPolicy: Local with one endpoint node
	alive := []string{"a", "b", "c"}
	seen := map[netip.Addr]string{}
	for _, self := range alive {
		for ip := range Claims(self, alive, ips) {
			if other, dup := seen[ip]; dup {
				t.Errorf("%s claimed by %s and %s", ip, other, self)
			}
			seen[ip] = self
		}
	}
	if len(seen) != len(ips) {
		t.Errorf("%d of %d addresses claimed", len(seen), len(ips))
	}
	if seen[only] != "b" {
		t.Errorf("%s claimed by %q, want its only eligible node b", only, seen[only])
	}
	// b dies: nobody may claim the address only b was eligible for.
	for _, self := range []string{"a", "c"} {
		if Claims(self, []string{"a", "c"}, ips)[only] {
			t.Errorf("%s claims %s without being eligible", self, only)
		}
	}
	if got := Claims("a", nil, ips); len(got) != 0 {
		t.Errorf("a not alive, claims %v", got)
	}
}
