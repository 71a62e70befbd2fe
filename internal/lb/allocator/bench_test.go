package allocator

import (
	"fmt"
	"testing"
)

// BenchmarkAssign10k assigns 10,000 Services into one pool, a fresh allocator
// per iteration; ns/assign is the cost of one Assign with n-1 addresses in use.
func BenchmarkAssign10k(b *testing.B) {
	const n = 10_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("ns/svc-%d", i)
	}
	for _, bc := range []struct {
		name   string
		pool   Pool
		family Family
	}{
		{"v4-/16", Pool{Name: "p", AutoAssign: true, AvoidBuggyIPs: true, Ranges: mustRanges("10.20.0.0/16")}, IPv4},
		{"v6-/64", Pool{Name: "p", AutoAssign: true, Ranges: mustRanges("fd00:1:2:3::/64")}, IPv6},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a := newAlloc(b, bc.pool)
				for _, k := range keys {
					if _, err := a.Assign(Service{Key: k, Families: []Family{bc.family}, Ports: []Port{{TCP, 80}}}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/assign")
		})
	}
	// Churn: with 10k in use, release one and assign another (the hole is
	// found by binary search, not by scanning).
	b.Run("churn-v4-/16", func(b *testing.B) {
		a := newAlloc(b, Pool{Name: "p", AutoAssign: true, Ranges: mustRanges("10.20.0.0/16")})
		for _, k := range keys {
			if _, err := a.Assign(svc4(k)); err != nil {
				b.Fatal(err)
			}
		}
		i := 0
		for b.Loop() {
			k := keys[(i*7919)%n]
			a.Release(k)
			if _, err := a.Assign(svc4(k)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
