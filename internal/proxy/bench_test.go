package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// benchServices makes n ClusterIP services with two endpoints each (one local).
func benchServices(n int) ([]*Service, []*EndpointSlice) {
	var svcs []*Service
	var eps []*EndpointSlice
	for i := range n {
		s := web(fmt.Sprintf("ns%d", i%50), fmt.Sprintf("svc-%d", i), ipFrom("172.28.0.0", i+1).String())
		svcs = append(svcs, s)
		eps = append(eps, slice(s, s.Key.Name+"-1", http8080,
			ep(ipFrom("172.27.0.0", 2*i+1).String(), "node-a", "ready"),
			ep(ipFrom("172.27.0.0", 2*i+2).String(), "node-b", "ready")))
	}
	return svcs, eps
}

func ipFrom(base string, off int) netip.Addr {
	b := netip.MustParseAddr(base).As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// BenchmarkCompute measures the pure part of a full sync: computing every service's
// rules and writing them into a transaction.
func BenchmarkCompute(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		svcs, eps := benchServices(n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tx := newFakeTables(testNode.Family).NewTx()
				if err := WriteRuleset(tx, testNode, svcs, eps); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKernelSync measures Proxier syncs into the real kernel (nft in a network
// namespace of the benchmark): the first full sync, and an incremental sync after
// one service's endpoints change in a table of n services.
func BenchmarkKernelSync(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for network namespaces")
	}
	ns := newTestNS(b, "bench")
	ctx := context.Background()
	for _, bc := range []struct {
		n   int
		bal Balancing
	}{{1000, BalanceVmap}, {1000, BalanceCascade}, {10000, BalanceVmap}, {10000, BalanceCascade}} {
		n := bc.n
		svcs, eps := benchServices(n)
		node := testNode
		node.Balancing = bc.bal
		newP := func() *Proxier {
			// As in production: incremental syncs over netlink, full syncs streamed into nft.
			p, err := NewProxier(Options{Node: node, NFT: newNSNFT(b, ns).open, Netlink: netlinkIn(ns, &atomic.Int32{}), NFTCommand: nftIn(ns)})
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range svcs {
				p.OnServiceUpdate(s)
			}
			for _, s := range eps {
				p.OnEndpointSliceUpdate(s)
			}
			p.OnSynced()
			return p
		}
		b.Run(fmt.Sprintf("services=%d/%s/full", n, bc.bal), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				_ = exec.Command("ip", "netns", "exec", ns.name, "nft", "flush", "ruleset").Run()
				p := newP()
				b.StartTimer()
				if err := p.Sync(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("services=%d/%s/one-change", n, bc.bal), func(b *testing.B) {
			p := newP()
			if err := p.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				s := svcs[i%n]
				p.OnEndpointSliceUpdate(slice(s, s.Key.Name+"-1", http8080,
					ep(ipFrom("172.27.0.0", 2*(i%n)+1).String(), "node-a", "ready"),
					ep(ipFrom("172.26.0.0", i).String(), "node-c", "ready")))
				if err := p.Sync(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNewConnection measures what the shard tables cost the datapath: TCP
// connections (connect, read the endpoint's greeting, close) from a client namespace
// through a node with 10k services to a ClusterIP, with every service in one shard or
// spread over the default 16. Only a connection's first packet walks the nat chains.
func BenchmarkNewConnection(b *testing.B) {
	for _, shards := range []int{1, DefaultShards} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			e := setupKernelEnv(b)
			e.cfg.Shards = shards
			e.cfg.Balancing = BalanceCascade
			p, _ := e.proxier(b)
			svcs, eps := benchServices(10000)
			probe := web("bench", "probe", "172.28.200.1")
			svcs = append(svcs, probe)
			eps = append(eps, slice(probe, "probe-1", http8080, ep("172.27.1.10", "node-a", "ready")))
			for _, s := range svcs {
				p.OnServiceUpdate(s)
			}
			for _, s := range eps {
				p.OnEndpointSliceUpdate(s)
			}
			p.OnSynced()
			if err := p.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
			// An op is a batch, so that make bench's -benchtime 2x still times hundreds.
			const perOp = 300
			start := time.Now()
			for b.Loop() {
				for range perOp {
					if id, err := hello(e.client, "172.28.200.1:80"); err != nil || id != "ep1" {
						b.Fatalf("hello: %q, %v", id, err)
					}
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N*perOp), "µs/conn")
		})
	}
}
