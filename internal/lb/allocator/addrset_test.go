package allocator

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestLowestFreeAgainstScan compares the arithmetic search with a plain scan
// over random small sets, at both ends of each family's address space.
func TestLowestFreeAgainstScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bases := []netip.Addr{
		netip.MustParseAddr("10.0.0.250"),
		netip.MustParseAddr("255.255.255.200"),
		netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("fd00::ff:fff0"),
		netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffc0"),
		netip.MustParseAddr("::"),
	}
	for _, base := range bases {
		is4 := base.Is4()
		b := toU128(base)
		for iter := range 300 {
			span := uint64(rng.IntN(70))
			from := b
			to, overflow := b.add(span)
			if overflow || (is4 && to.hi != 0) || (is4 && to.lo>>32 != 0xffff) {
				continue
			}
			var set addrSet
			used := map[u128]bool{}
			for range rng.IntN(80) {
				u, _ := b.add(uint64(rng.IntN(int(span) + 3)))
				if is4 && u.lo>>32 != 0xffff {
					continue
				}
				set.insert(u)
				used[u] = true
			}
			for _, avoid := range []bool{false, true} {
				avoid := avoid && is4
				var want u128
				found := false
				for cur := from; cur.cmp(to) <= 0; {
					if !used[cur] && !(avoid && buggy(cur)) {
						want, found = cur, true
						break
					}
					next, o := cur.add(1)
					if o {
						break
					}
					cur = next
				}
				got, ok := set.lowestFree(from, to, avoid)
				if ok != found || (ok && got != want) {
					t.Fatalf("base %v iter %d avoid %v: lowestFree = %v, %v; scan says %v, %v",
						base, iter, avoid, got.addr(is4), ok, want.addr(is4), found)
				}
			}
			if n := set.countIn(from, to); n != uint64(countScan(used, from, to)) {
				t.Fatalf("countIn = %d, scan %d", n, countScan(used, from, to))
			}
		}
	}
}

func countScan(used map[u128]bool, from, to u128) int {
	n := 0
	for u := range used {
		if u.cmp(from) >= 0 && u.cmp(to) <= 0 {
			n++
		}
	}
	return n
}

func TestBuggyCount(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		want     uint64
	}{
		{"10.0.0.0", "10.0.0.255", 2},
		{"10.0.0.1", "10.0.0.254", 0},
		{"10.0.0.255", "10.0.1.0", 2},
		{"0.0.0.0", "255.255.255.255", 2 << 24},
		{"10.0.0.5", "10.0.0.5", 0},
		{"0.0.0.0", "0.0.0.0", 1},
	} {
		if got := buggyCount(netip.MustParseAddr(tc.from), netip.MustParseAddr(tc.to)); got != tc.want {
			t.Errorf("buggyCount(%s, %s) = %d, want %d", tc.from, tc.to, got, tc.want)
		}
	}
}
