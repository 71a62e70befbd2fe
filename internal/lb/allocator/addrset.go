package allocator

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
)

// u128 is an address as a number. IPv4 addresses use their IPv4-mapped form;
// each addrSet holds one family, so the forms never mix.
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(is4 bool) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	a := netip.AddrFrom16(b)
	if is4 {
		a = a.Unmap()
	}
	return a
}

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

func (u u128) add(n uint64) (u128, bool) {
	lo, c := bits.Add64(u.lo, n, 0)
	hi, c := bits.Add64(u.hi, 0, c)
	return u128{hi, lo}, c != 0
}

// sub returns u-v for u >= v.
func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

// buggy reports whether an IPv4 address (in mapped form) ends in .0 or .255.
func buggy(u u128) bool { b := byte(u.lo); return b == 0 || b == 255 }

// addrSet is a sorted set of used addresses of one family. Inserts and removes
// are O(n) memmoves, which for the thousands of Services an appliance runs is
// far cheaper than a tree; lookups are binary searches.
type addrSet struct{ s []u128 }

func (a *addrSet) search(u u128) (int, bool) {
	return slices.BinarySearchFunc(a.s, u, u128.cmp)
}

func (a *addrSet) insert(u u128) {
	if i, found := a.search(u); !found {
		a.s = slices.Insert(a.s, i, u)
	}
}

func (a *addrSet) remove(u u128) {
	if i, found := a.search(u); found {
		a.s = slices.Delete(a.s, i, i+1)
	}
}

// lowestFree returns the lowest address in [from, to] not in the set, skipping
// .0 and .255 when avoidBuggy. It never enumerates the range: within the run of
// used addresses starting at cur, element i+k equals cur+k exactly until the
// first gap, and s[i+k]-k never decreases, so the gap is found by binary search.
func (a *addrSet) lowestFree(from, to u128, avoidBuggy bool) (u128, bool) {
	cur := from
	for {
		if avoidBuggy {
			for buggy(cur) {
				next, overflow := cur.add(1)
				if overflow || next.cmp(to) > 0 {
					return u128{}, false
				}
				cur = next
			}
		}
		i, _ := a.search(cur)
		rest := a.s[i:]
		// k = number of consecutive used addresses from cur.
		k := firstGap(rest, cur)
		span := to.sub(cur)
		if span.hi == 0 && uint64(k) > span.lo {
			return u128{}, false
		}
		cand, _ := cur.add(uint64(k))
		if avoidBuggy && buggy(cand) {
			cur = cand
			continue
		}
		return cand, true
	}
}

// firstGap returns the smallest k with rest[k] != cur+k (or len(rest)), for rest
// sorted, distinct and all >= cur.
func firstGap(rest []u128, cur u128) int {
	lo, hi := 0, len(rest)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		d := rest[m].sub(cur)
		if d.hi == 0 && d.lo == uint64(m) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// countIn returns how many set members lie in [from, to].
func (a *addrSet) countIn(from, to u128) uint64 {
	i, _ := a.search(from)
	j, found := a.search(to)
	if found {
		j++
	}
	return uint64(j - i)
}

// buggyCount returns how many IPv4 addresses of [from, to] end in .0 or .255.
func buggyCount(from, to netip.Addr) uint64 {
	f := uint64(binary.BigEndian.Uint32(from.AsSlice()))
	t := uint64(binary.BigEndian.Uint32(to.AsSlice()))
	upTo := func(n, r uint64) uint64 { // members of [0, n] congruent to r mod 256
		if n < r {
			return 0
		}
		return (n-r)/256 + 1
	}
	count := func(r uint64) uint64 {
		c := upTo(t, r)
		if f > 0 {
			c -= upTo(f-1, r)
		}
		return c
	}
	return count(0) + count(255)
}
