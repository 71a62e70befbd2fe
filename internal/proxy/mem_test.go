package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memServices makes proxybench's workload: n ClusterIP services, each with one
// EndpointSlice of 5 ready endpoints on another node.
func memServices(n int) ([]*Service, []*EndpointSlice) {
	var svcs []*Service
	var eps []*EndpointSlice
	for i := range n {
		s := web("bench", fmt.Sprintf("svc-%05d", i), ipFrom("172.28.0.0", i+1).String())
		svcs = append(svcs, s)
		var es []Endpoint
		for j := range 5 {
			es = append(es, ep(ipFrom("10.240.0.0", 5*i+j+1).String(), "node-elsewhere", "ready"))
		}
		eps = append(eps, slice(s, s.Key.Name+"-a", http8080, es...))
	}
	return svcs, eps
}

// procStatus reads VmRSS and VmHWM of this process, in bytes.
func procStatus(t testing.TB) (rss, hwm uint64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	return rss, hwm
}

// heapSampler records the largest HeapInuse seen while it runs.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	max  uint64
}

func sampleHeap(every time.Duration) *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	s.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			s.max = max(s.max, ms.HeapInuse)
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

func (s *heapSampler) done() uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.max
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkFullSyncMemory measures the memory of a first sync of proxybench's
// workload (10k services × 5 endpoints, cascade) into a kernel namespace, the way
// Run syncs: streamed into `nft -f -`, listings over netlink. The Service and
// EndpointSlice models (what the informers hold) exist before and are not counted
// in the heap figures:
//
//   - heap-peak-MB: the largest HeapInuse sampled every 5 ms during the sync, less
//     the models;
//   - heap-kept-MB: HeapInuse after the sync and a GC, less the models: the
//     Ruleset and proxier state of the steady state;
//   - rss-peak-MB / rss-after-MB: VmHWM (reset before the sync) and VmRSS after it,
//     whole process, models and test binary included;
//   - rss-resync-MB, rss-resync-peak-MB, heap-resync-peak-MB: VmRSS after a
//     periodic resync that followed (it recomputes every service but writes
//     nothing), VmHWM during it, and its largest HeapInuse less the models.
//
// With MEMPROFILE=<file>, heap profiles of the state after the sync (<file>) and
// after the resync (<file>.resync) are written.
//
// Figures on this machine (MB; GOGC as Run sets it, 25, and Go's default, 100):
//
//	                        before (0c519f9)   after
//	GOGC=25  heap-kept            25.5          21.2
//	         heap-peak            47.0          41.6
//	         heap-resync-peak     88.1          79.7
//	         rss-resync          132.4          77.6
//	GOGC=100 heap-kept            28.1          25.1
//	         heap-peak            72.6          66.9
//	         heap-resync-peak    107.1         102.3
//	         rss-resync          157.8          83.6
//
// heap-kept is HeapInuse: it counts the holes the rules leave among a sync's
// garbage, not only the rules. The resync peak is Sync's: it recomputes every
// service (a second set of rules, ~80 MB allocated) and lists every chain over
// netlink (~50 MB allocated, held whole by google/nftables while it parses).
func BenchmarkFullSyncMemory(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for network namespaces")
	}
	ns := newTestNS(b, "mem")
	svcs, eps := memServices(10000)
	node := testNode
	node.PodCIDR = netip.MustParsePrefix("10.240.0.0/12")
	node.Balancing = BalanceCascade
	node.Shards = 0 // as in production
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		_ = exec.Command("ip", "netns", "exec", ns.name, "nft", "flush", "ruleset").Run()
		p, err := NewProxier(Options{
			Node:       node,
			NFT:        newNSNFT(b, ns).open,
			NFTCommand: nftIn(ns),
			Netlink:    netlinkIn(ns, &atomic.Int32{}),
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range svcs {
			p.OnServiceUpdate(s)
		}
		for _, s := range eps {
			p.OnEndpointSliceUpdate(s)
		}
		base := heapInuse()
		// Writing 5 resets VmHWM to the current RSS (proc(5)).
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			b.Fatal(err)
		}
		p.OnSynced()
		hs := sampleHeap(5 * time.Millisecond)
		b.StartTimer()
		if err := p.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		peak := hs.done()
		rss, hwm := procStatus(b)
		kept := heapInuse()
		if f := os.Getenv("MEMPROFILE"); f != "" {
			out, err := os.Create(f)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
				b.Fatal(err)
			}
			out.Close()
		}
		// A periodic resync recomputes every service: its garbage is what the
		// steady state's RSS settles on between resyncs.
		p.syncMu.Lock()
		p.resync = true
		p.syncMu.Unlock()
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			b.Fatal(err)
		}
		hs = sampleHeap(5 * time.Millisecond)
		if err := p.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		peakResync := hs.done()
		rssResync, hwmResync := procStatus(b)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.Logf("after resync: HeapAlloc %d MB, HeapInuse %d MB, HeapIdle-Released %d MB, NextGC %d MB, Sys %d MB",
			ms.HeapAlloc>>20, ms.HeapInuse>>20, (ms.HeapIdle-ms.HeapReleased)>>20, ms.NextGC>>20, ms.Sys>>20)
		if f := os.Getenv("MEMPROFILE"); f != "" {
			out, err := os.Create(f + ".resync")
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
				b.Fatal(err)
			}
			out.Close()
		}
		runtime.KeepAlive(p)
		const mb = 1 << 20
		b.ReportMetric(float64(rssResync)/mb, "rss-resync-MB")
		b.ReportMetric(float64(hwmResync)/mb, "rss-resync-peak-MB")
		b.ReportMetric(float64(peakResync-min(peakResync, base))/mb, "heap-resync-peak-MB")
		b.ReportMetric(float64(peak-min(peak, base))/mb, "heap-peak-MB")
		b.ReportMetric(float64(kept-min(kept, base))/mb, "heap-kept-MB")
		b.ReportMetric(float64(hwm)/mb, "rss-peak-MB")
		b.ReportMetric(float64(rss)/mb, "rss-after-MB")
		b.StartTimer()
	}
}
