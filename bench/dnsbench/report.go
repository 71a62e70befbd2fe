package main

import (
	"fmt"
	"strings"
	"time"
)

type report struct {
	cfg                   benchConfig
	started               time.Time
	loadBefore, loadAfter string
	load                  []loadResult // edgenet first, then CoreDNS with cache, then CoreDNS without
	mem                   []memResult  // edgenet, CoreDNS with cache
}

func (r report) render() string {
	c := r.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Cluster DNS: edgenet dns vs CoreDNS %s, one run (%s)\n\n", c.coreDNSVersion, r.started.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "%d Services in %d namespaces (every tenth headless, with an EndpointSlice of %d ready endpoints), "+
		"real kube-apiserver v1.34 on 127.0.0.1, both servers watching it through the same kubeconfig. "+
		"Each server alone, pinned to CPU %d (`taskset`); dnsperf pinned to CPU %d, `-c %d -q %d`, %s saturating after 3 s of "+
		"warm-up, then %d queries/s offered for %s with `-v` for the latency percentiles. Query mix: ",
		c.services, c.namespaces, endpointsPerHeadless, c.serverCPU, c.clientCPU, c.clients, c.inflight, c.duration, c.rate, c.latencyDuration)
	for i, m := range mix {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d%% %s", m.weight, m.kind)
	}
	fmt.Fprintf(&b, "; every distinct question was asked once and its answer checked before the load. "+
		"CoreDNS: `kubernetes %s { pods insecure }` plus `cache %d` (and once without cache); edgenet answers the zone "+
		"from its prebuilt snapshot and has no cache for it; cluster records have a 5 s TTL in both. "+
		"Load average of this shared machine before/after: %s / %s.\n\n", c.domain, c.coreDNSCache, r.loadBefore, r.loadAfter)

	fmt.Fprintf(&b, "| server | QPS (saturated) | server CPU | queries per CPU-second | avg latency (saturated) | lost (saturated / at rate) | p50 at %[1]d q/s | p99 at %[1]d q/s | p99.9 at %[1]d q/s | all answers right after | RSS after load | peak RSS |\n", c.rate)
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, l := range r.load {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f%% | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", l.name, l.sat.QPS,
			100*l.cpu.Seconds()/c.duration.Seconds(), perCPU(l), us(l.sat.AvgLatency), lost(l.sat)+" / "+lost(l.fixed), us(l.p50), us(l.p99), us(l.p3),
			l.ready.Round(time.Millisecond), mib(l.rss), mib(l.hwm))
	}
	if len(r.load) >= 2 {
		e, d := r.load[0], r.load[1]
		fmt.Fprintf(&b, "\nedgenet / %s: QPS %s, queries per CPU-second %s, p99 at %d q/s %s, RSS %s.\n", d.name,
			ratio(e.sat.QPS, d.sat.QPS), ratio(perCPU(e), perCPU(d)), c.rate, ratio(float64(e.p99), float64(d.p99)),
			ratio(float64(e.rss), float64(d.rss)))
	}

	if len(r.mem) > 0 {
		fmt.Fprintf(&b, "\n#### Memory at %d Services, %d endpoints and %d Pods (Pending: no nodes; neither server watches Pods with `pods insecure`, so they cost only if a server lists them)\n\n",
			c.memServices, c.memServices/10*endpointsPerHeadless, c.memServices)
		fmt.Fprintln(&b, "| server | all sampled answers right after | CPU time until then | RSS 5 s later | RSS 30 s later | peak RSS |")
		fmt.Fprintln(&b, "|---|---|---|---|---|---|")
		for _, m := range r.mem {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", m.name, m.ready.Round(time.Millisecond), m.cpu, mib(m.rss[0]), mib(m.rss[1]), mib(m.hwm))
		}
		if len(r.mem) >= 2 {
			e, d := r.mem[0], r.mem[1]
			fmt.Fprintf(&b, "\nedgenet / %s: RSS 30 s after %s, peak RSS %s, time until all answers right %s.\n", d.name,
				ratio(float64(e.rss[1]), float64(d.rss[1])), ratio(float64(e.hwm), float64(d.hwm)), ratio(float64(e.ready), float64(d.ready)))
		}
	}
	return b.String()
}

func perCPU(l loadResult) float64 {
	if l.cpu <= 0 {
		return 0
	}
	return float64(l.sat.Completed) / l.cpu.Seconds()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func us(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func lost(p perfRun) string {
	if p.Sent == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(p.Lost)/float64(p.Sent))
}
