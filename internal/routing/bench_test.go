package routing

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkApply measures Apply on a node with many VXLAN peers: the first Apply (everything added) is logged,
// the loop measures the steady state (nothing to change), which the agent pays on every resync.
func BenchmarkApply(b *testing.B) {
	requireRoot(b)
	for _, peers := range []int{10, 250} {
		b.Run(fmt.Sprintf("vxlan-peers=%d", peers), func(b *testing.B) {
			name := newNS(b, "bench")
			run(b, "ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
			run(b, "ip", "-n", name, "addr", "add", "192.168.0.10/16", "dev", "eth0")
			run(b, "ip", "-n", name, "link", "set", "eth0", "up")
			local := Node{Name: "local", IP: addr("192.168.0.10"), Blocks: []netip.Prefix{pfx("172.27.0.0/26")}}
			nodes := []Node{local}
			for i := 1; i <= peers; i++ {
				nodes = append(nodes, Node{Name: fmt.Sprintf("n%d", i), IP: netip.AddrFrom4([4]byte{192, 168, 1 + byte(i>>8), byte(i)}),
					Blocks: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 27, byte(i >> 2), byte(i&3) << 6}), 26)}})
			}
			m, err := NewManager(Config{Mode: VXLAN, PodCIDR: podCIDR, NetNS: "/run/netns/" + name})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			ch, err := m.Apply(context.Background(), local, nodes)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("first Apply with %d peers: %v (%d routes added)", peers, time.Since(start), ch.RoutesAdded)
			b.ResetTimer()
			for b.Loop() {
				if ch, err := m.Apply(context.Background(), local, nodes); err != nil || !ch.Zero() {
					b.Fatalf("steady Apply: %+v, %v", ch, err)
				}
			}
		})
	}
}
