// Command dnsbench measures `edgenet dns` against CoreDNS side by side, on this machine, in one run: a real etcd +
// kube-apiserver on loopback holding N Services (every tenth headless, with an EndpointSlice of 10 endpoints), each
// DNS server in turn pinned to one CPU (taskset) and watching that API through the same kubeconfig, dnsperf pinned
// to another CPU. Per server it reports saturated throughput, the server's CPU use and queries per CPU-second,
// latency percentiles at a fixed offered rate, and memory; then memory again at M services (M/10*10 endpoints).
// Before any load, every question of the query file is asked once and the answer checked (rcode and records), so
// neither server is measured answering wrong. CoreDNS is built once from the Go module proxy into -cache.
//
//	go run ./bench/dnsbench -edgenet bin/edgenet -out bench/results/RESULTS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

type benchConfig struct {
	edgenet, kubeBin, cacheDir, coreDNSVersion, out string
	services, memServices, namespaces               int
	duration, latencyDuration                       time.Duration
	clients, inflight, rate, coreDNSCache           int
	serverCPU, clientCPU                            int
	keep                                            bool

	domain               string
	podCIDR, serviceCIDR netip.Prefix
}

func run() error {
	c := benchConfig{domain: computenet.DefaultClusterDomain, podCIDR: computenet.DefaultPodCIDR, serviceCIDR: computenet.DefaultServiceCIDR}
	flag.StringVar(&c.edgenet, "edgenet", "bin/edgenet", "the edgenet binary (make build)")
	flag.StringVar(&c.kubeBin, "kube-bin", envOr("EDGENET_KUBE_BIN", "bin/kube"), "directory of kube-apiserver (make kube)")
	flag.StringVar(&c.cacheDir, "cache", ".cache", "where the CoreDNS build is kept between runs")
	flag.StringVar(&c.coreDNSVersion, "coredns-version", "v1.13.2", "CoreDNS release to build (its client-go is v0.34, like ours)")
	flag.IntVar(&c.coreDNSCache, "coredns-cache", 30, "seconds of CoreDNS's cache plugin (it also runs once without cache)")
	flag.StringVar(&c.out, "out", "", "append the markdown results to this file")
	flag.IntVar(&c.services, "services", 1000, "services during the throughput and latency runs")
	flag.IntVar(&c.memServices, "mem-services", 10000, "services for the memory comparison")
	flag.IntVar(&c.namespaces, "namespaces", 5, "namespaces the services are spread over")
	flag.DurationVar(&c.duration, "duration", 20*time.Second, "length of each saturating dnsperf run")
	flag.DurationVar(&c.latencyDuration, "latency-duration", 10*time.Second, "length of each fixed-rate latency run")
	flag.IntVar(&c.rate, "rate", 10000, "queries per second offered in the latency runs (below every server's saturation)")
	flag.IntVar(&c.clients, "clients", 8, "dnsperf clients (sockets)")
	flag.IntVar(&c.inflight, "inflight", 100, "dnsperf queries outstanding (a burst of all of them must fit the server's default UDP receive buffer, or losses stall dnsperf for its timeout)")
	flag.IntVar(&c.serverCPU, "server-cpu", 1, "the CPU the DNS servers are pinned to")
	flag.IntVar(&c.clientCPU, "client-cpu", 0, "the CPU dnsperf is pinned to")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (logs, kubeconfig, Corefiles, query file)")
	flag.Parse()

	l := layout{namespaces: c.namespaces, podCIDR: c.podCIDR}
	switch {
	case c.services < 10 || c.memServices < c.services || c.memServices > l.maxServices():
		return fmt.Errorf("want 10 <= -services <= -mem-services <= %d", l.maxServices())
	case c.namespaces < 1:
		return errors.New("-namespaces must be at least 1")
	case c.serverCPU == c.clientCPU || max(c.serverCPU, c.clientCPU) >= runtime.NumCPU() || min(c.serverCPU, c.clientCPU) < 0:
		return fmt.Errorf("-server-cpu and -client-cpu must be two different CPUs below %d", runtime.NumCPU())
	case c.duration < time.Second || c.latencyDuration < time.Second || c.rate < 1 || c.clients < 1 || c.inflight < 1:
		return errors.New("durations must be at least 1s; -rate, -clients and -inflight at least 1")
	}
	for _, tool := range []string{"dnsperf", "taskset", "etcd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (hack/install-deps.sh bench; apt-get install -y dnsperf etcd-server util-linux): %w", tool, err)
		}
	}
	var err error
	if c.edgenet, err = filepath.Abs(c.edgenet); err != nil {
		return err
	}
	if c.kubeBin, err = filepath.Abs(c.kubeBin); err != nil {
		return err
	}
	for _, f := range []string{c.edgenet, filepath.Join(c.kubeBin, "kube-apiserver")} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (make build kube)", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	coredns, err := ensureCoreDNS(ctx, c.cacheDir, c.coreDNSVersion)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dnsbench-")
	if err != nil {
		return err
	}
	failed := true
	defer func() {
		if c.keep || failed {
			fmt.Fprintf(os.Stderr, "dnsbench: work directory (logs) kept in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	rep := report{cfg: c, loadBefore: loadavg(), started: time.Now()}
	step := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "dnsbench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	step("starting etcd + kube-apiserver in %s", dir)
	cp, err := testenv.Launch(dir, c.kubeBin, testenv.Options{ServiceCIDR: c.serviceCIDR.String(),
		// Object creation is the slow part of a run: the apiserver, not the client, should be the limit.
		QPS: 2000, EtcdQuota: 8 << 30})
	if err != nil {
		return err
	}
	defer cp.Stop()

	t0 := time.Now()
	svcs, err := populate(ctx, cp.Client, l, 0, c.services)
	if err != nil {
		return err
	}
	step("created %d services in %s", c.services, time.Since(t0).Round(time.Millisecond))

	qs := queryFile(svcs, c.domain, 20000)
	qfile := filepath.Join(dir, "queries.txt")
	var lines strings.Builder
	for _, q := range qs {
		lines.WriteString(q.String() + "\n")
	}
	if err := os.WriteFile(qfile, []byte(lines.String()), 0o644); err != nil {
		return err
	}
	all := distinct(qs)

	specs := []serverSpec{
		edgenetSpec(c.edgenet, cp.Kubeconfig, c),
		coreDNSSpec(coredns, cp.Kubeconfig, c, c.coreDNSCache),
	}
	if c.coreDNSCache > 0 {
		specs = append(specs, coreDNSSpec(coredns, cp.Kubeconfig, c, 0))
	}
	for _, s := range specs {
		step("%s: load runs", s.name)
		r, err := loadRuns(ctx, c, dir, s, qfile, all)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		rep.load = append(rep.load, r)
	}

	t0 = time.Now()
	more, err := populate(ctx, cp.Client, l, c.services, c.memServices)
	if err != nil {
		return err
	}
	svcs = append(svcs, more...)
	if err := populatePods(ctx, cp.Client, l, c.memServices); err != nil {
		return err
	}
	step("grew to %d services and %d pods in %s", c.memServices, c.memServices, time.Since(t0).Round(time.Millisecond))
	sample := distinct(queryFile(svcs, c.domain, 4000))
	for _, s := range specs[:2] {
		step("%s: memory at %d services", s.name, c.memServices)
		r, err := memoryRun(ctx, c, dir, s, sample)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		rep.mem = append(rep.mem, r)
	}
	rep.loadAfter = loadavg()

	text := rep.render()
	fmt.Print(text)
	if c.out != "" {
		f, err := os.OpenFile(c.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(text); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	failed = false
	return nil
}

// loadResult is one server's figures at -services.
type loadResult struct {
	name         string
	ready        time.Duration
	sat          perfRun
	cpu          time.Duration // server CPU time during the saturating run
	fixed        perfRun
	rss, hwm     int64
	p50, p99, p3 time.Duration // at the fixed rate; p3 is p99.9
}

func loadRuns(ctx context.Context, c benchConfig, dir string, s serverSpec, qfile string, all []query) (loadResult, error) {
	r := loadResult{name: s.name}
	srv, err := startServer(dir, s, c.serverCPU)
	if err != nil {
		return r, err
	}
	defer srv.Stop(5 * time.Second)
	if r.ready, err = waitCorrect(ctx, srv.addr, all, c.domain, srv.alive); err != nil {
		return r, err
	}
	args := perfArgs{server: srv.addr, file: qfile, clients: c.clients, inflight: c.inflight, cpu: c.clientCPU, timeoutTo: 2 * time.Second}
	// Warm-up: caches, the Go runtime's heap size, socket buffers.
	warm := args
	warm.duration = 3 * time.Second
	if _, err := runDNSPerf(ctx, warm); err != nil {
		return r, err
	}
	cpu0, err := srv.cpuTime()
	if err != nil {
		return r, err
	}
	sat := args
	sat.duration = c.duration
	if r.sat, err = runDNSPerf(ctx, sat); err != nil {
		return r, err
	}
	cpu1, err := srv.cpuTime()
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	if r.rss, r.hwm, err = srv.memory(); err != nil {
		return r, err
	}
	fixed := args
	fixed.duration, fixed.rate, fixed.verbose = c.latencyDuration, c.rate, true
	if r.fixed, err = runDNSPerf(ctx, fixed); err != nil {
		return r, err
	}
	r.p50, r.p99, r.p3 = quantile(r.fixed.Latencies, .5), quantile(r.fixed.Latencies, .99), quantile(r.fixed.Latencies, .999)
	if err := srv.alive(); err != nil {
		return r, err
	}
	return r, nil
}

// memResult is one server's memory at -mem-services.
type memResult struct {
	name  string
	ready time.Duration
	cpu   time.Duration // CPU time used from start until all answers were right (loading, and answering the checks)
	rss   [2]int64      // 5 s and 30 s after all answers were right
	hwm   int64
}

func memoryRun(ctx context.Context, c benchConfig, dir string, s serverSpec, sample []query) (memResult, error) {
	r := memResult{name: s.name}
	srv, err := startServer(dir, s, c.serverCPU)
	if err != nil {
		return r, err
	}
	defer srv.Stop(5 * time.Second)
	if r.ready, err = waitCorrect(ctx, srv.addr, sample, c.domain, srv.alive); err != nil {
		return r, err
	}
	if r.cpu, err = srv.cpuTime(); err != nil {
		return r, err
	}
	// RSS shortly after loading and once the runtime has had time to return the initial list's garbage, as it would
	// in a steady cluster.
	for i, at := range []time.Duration{5 * time.Second, 30 * time.Second} {
		wait := at
		if i > 0 {
			wait -= 5 * time.Second
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(wait):
		}
		if r.rss[i], r.hwm, err = srv.memory(); err != nil {
			return r, err
		}
	}
	return r, srv.alive()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
