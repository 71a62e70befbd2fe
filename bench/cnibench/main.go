// Command cnibench measures CNI ADD and DEL latency of edgenet-cni against the
// reference bridge + host-local plugins (Debian's containernetworking-plugins), side by
// side in one run, the way a container runtime calls them (libcni), in a node network
// namespace of its own (edgenet-t-bench-*), with a real edgenet IPAM server.
//
//	cnibench -edgenet bin/edgenet -n 200 -out bench/results/cni.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/plugins/pkg/ns"

	"edgenet.io/edgenet/bench/internal/report"
	cnipkg "edgenet.io/edgenet/internal/cni"
	"edgenet.io/edgenet/internal/ipam"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cnibench:", err)
		os.Exit(1)
	}
}

// nsExec runs plugins from a thread inside the node's namespace, as containerd does
// from the node's own namespace.
type nsExec struct {
	node ns.NetNS
	*invoke.DefaultExec
}

func (e *nsExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	var out []byte
	err := e.node.Do(func(ns.NetNS) error {
		var err error
		out, err = e.DefaultExec.ExecPlugin(ctx, path, stdin, environ)
		return err
	})
	return out, err
}

type result struct {
	name         string
	add, del     []time.Duration
	total        time.Duration
	failures     int
	firstFailure error
	// addCPU and delCPU are the CPU time (user+sys) of the plugin processes per call, load-independent
	// where latency is not on a shared machine.
	addCPU, delCPU []time.Duration
	burst          *burstResult
	// steps are edgenet-cni's own timings per call (cni.TimingEnv), ADD then DEL lines.
	steps []string
}

func run() error {
	edgenet := flag.String("edgenet", "bin/edgenet", "the edgenet binary")
	refDir := flag.String("ref-plugins", "/usr/lib/cni", "directory of the reference plugins")
	n := flag.Int("n", 200, "pods per plugin")
	out := flag.String("out", "", "append the results table to this file")
	before := flag.String("before", "", "another edgenet binary (e.g. an earlier build) to measure in the same run")
	par := flag.Int("parallel", 10, "also run the n ADDs this many at a time, as a runtime starting many pods does (0: skip)")
	flag.Parse()
	load := loadavg()

	self, err := filepath.Abs(*edgenet)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "cnibench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.Symlink(self, filepath.Join(bin, "edgenet-cni")); err != nil {
		return err
	}

	node, cleanup, err := netnsNamed("edgenet-t-bench-node")
	if err != nil {
		return err
	}
	defer cleanup()
	node.Do(func(ns.NetNS) error { return exec.Command("ip", "link", "set", "lo", "up").Run() })

	// The edgenet agent's IPAM, listening on its abstract socket inside the node's namespace.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	podCIDR := netip.MustParsePrefix("10.98.0.0/16")
	b, _ := ipam.NewBlocking(podCIDR, 26)
	alloc, err := ipam.New(ipam.Config{Dir: filepath.Join(tmp, "ipam"), PodCIDR: podCIDR, Source: ipam.NewStaticBlocks(b, 0),
		Logger: slog.New(slog.NewTextHandler(os_discard{}, nil))})
	if err != nil {
		return err
	}
	var l net.Listener
	if err := node.Do(func(ns.NetNS) error {
		var err error
		l, err = net.Listen("unix", "@edgenet-ipam-bench")
		return err
	}); err != nil {
		return err
	}
	go ipam.Serve(ctx, l, alloc, nil)

	exe := &nsExec{node: node, DefaultExec: &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}}
	cni := libcni.NewCNIConfigWithCacheDir([]string{bin, *refDir}, filepath.Join(tmp, "cache"), exe)

	edgenetConf := `{"cniVersion":"1.0.0","name":"edgenet","plugins":[{"type":"edgenet-cni","ipamSocket":"@edgenet-ipam-bench"}]}`
	confs := []struct {
		name, json string
		cni        *libcni.CNIConfig
	}{
		{"edgenet-cni", edgenetConf, cni},
		{"bridge+host-local", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"ref","plugins":[{"type":"bridge","bridge":"cnibench0","isGateway":true,
			"ipam":{"type":"host-local","ranges":[[{"subnet":"10.97.0.0/16"}]],"dataDir":%q}}]}`, filepath.Join(tmp, "host-local")), cni},
	}
	if *before != "" {
		old, err := filepath.Abs(*before)
		if err != nil {
			return err
		}
		oldBin := filepath.Join(tmp, "bin-before")
		os.MkdirAll(oldBin, 0o755)
		if err := os.Symlink(old, filepath.Join(oldBin, "edgenet-cni")); err != nil {
			return err
		}
		confs = append(confs, struct {
			name, json string
			cni        *libcni.CNIConfig
		}{"edgenet-cni (-before)", edgenetConf, libcni.NewCNIConfigWithCacheDir([]string{oldBin}, filepath.Join(tmp, "cache-before"), exe)})
	}
	var plugins []plugin
	for i, c := range confs {
		list, err := libcni.ConfListFromBytes([]byte(c.json))
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		p := plugin{name: c.name, cni: c.cni, list: list}
		if i == 0 {
			p.timings = filepath.Join(tmp, "timings")
		}
		plugins = append(plugins, p)
	}
	results, err := measure(ctx, plugins, *n)
	if err != nil {
		return err
	}
	if data, err := os.ReadFile(plugins[0].timings); err == nil {
		results[0].steps = strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	if *par > 0 {
		for i, p := range plugins {
			b, err := burst(ctx, p.cni, p.list, p.name, *n, *par)
			if err != nil {
				return err
			}
			results[i].burst = &b
		}
	}
	table := render(results, *n, load)
	return report.Append(*out, table)
}

type os_discard struct{}

func (os_discard) Write(p []byte) (int, error) { return len(p), nil }

func netnsNamed(name string) (ns.NetNS, func(), error) {
	exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	h, err := ns.GetNS("/run/netns/" + name)
	if err != nil {
		return nil, nil, err
	}
	return h, func() { h.Close(); exec.Command("ip", "netns", "del", name).Run() }, nil
}

// plugin is one network under test; timings, if set, is where it writes cni.TimingEnv lines.
type plugin struct {
	name    string
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList
	timings string
}

// measure runs n ADDs and then n DELs per plugin in sequence, interleaving the plugins call by call so that each
// sees the same machine load (which on a shared machine moves faster than a run takes).
func measure(ctx context.Context, plugins []plugin, n int) ([]result, error) {
	rs := make([]result, len(plugins))
	pods := make([][]*libcni.RuntimeConf, len(plugins))
	for j, p := range plugins {
		rs[j].name = p.name
		for i := 0; i < n; i++ {
			nsName := fmt.Sprintf("edgenet-t-bench-p%d-%d", j, i)
			_, cleanup, err := netnsNamed(nsName)
			if err != nil {
				return nil, err
			}
			defer cleanup()
			pods[j] = append(pods[j], &libcni.RuntimeConf{ContainerID: fmt.Sprintf("bench%d-%06d", j, i), NetNS: "/run/netns/" + nsName, IfName: "eth0",
				Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "bench"}, {"K8S_POD_NAME", fmt.Sprint("p", i)}}})
		}
	}
	// call runs one plugin call with the plugin's timing file in the environment (libcni hands it on).
	call := func(p plugin, f func() error) (time.Duration, time.Duration, error) {
		os.Unsetenv(cnipkg.TimingEnv)
		if p.timings != "" {
			os.Setenv(cnipkg.TimingEnv, p.timings)
		}
		t0, c0 := time.Now(), childCPU()
		err := f()
		return time.Since(t0), childCPU() - c0, err
	}
	defer os.Unsetenv(cnipkg.TimingEnv)
	runtime.GC()
	for i := 0; i < n; i++ {
		for j, p := range plugins {
			r := &rs[j]
			d, c, err := call(p, func() error { _, err := p.cni.AddNetworkList(ctx, p.list, pods[j][i]); return err })
			if err != nil {
				r.failures++
				r.firstFailure = errors.Join(r.firstFailure, err)
				continue
			}
			r.add, r.addCPU = append(r.add, d), append(r.addCPU, c)
			r.total += d
		}
	}
	for i := 0; i < n; i++ {
		for j, p := range plugins {
			r := &rs[j]
			d, c, err := call(p, func() error { return p.cni.DelNetworkList(ctx, p.list, pods[j][i]) })
			if err != nil {
				r.failures++
				r.firstFailure = errors.Join(r.firstFailure, err)
				continue
			}
			r.del, r.delCPU = append(r.del, d), append(r.delCPU, c)
		}
	}
	for _, r := range rs {
		if r.failures > 0 {
			return rs, fmt.Errorf("%s: %d failures: %v", r.name, r.failures, r.firstFailure)
		}
	}
	return rs, nil
}

type burstResult struct {
	parallel  int
	wall, cpu time.Duration
	add       []time.Duration
}

// burst runs n ADDs par at a time (then the DELs, untimed): the wall time and CPU say how fast the plugin lets a
// node network many new pods at once.
func burst(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, name string, n, par int) (burstResult, error) {
	b := burstResult{parallel: par}
	var pods []*libcni.RuntimeConf
	for i := 0; i < n; i++ {
		nsName := fmt.Sprintf("edgenet-t-bench-q%d", i)
		_, cleanup, err := netnsNamed(nsName)
		if err != nil {
			return b, err
		}
		defer cleanup()
		pods = append(pods, &libcni.RuntimeConf{ContainerID: fmt.Sprintf("burst%06d", i), NetNS: "/run/netns/" + nsName, IfName: "eth0",
			Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "bench"}, {"K8S_POD_NAME", fmt.Sprint("q", i)}}})
	}
	each := func(f func(*libcni.RuntimeConf) error) error {
		work := make(chan *libcni.RuntimeConf)
		errs := make(chan error, len(pods))
		for range par {
			go func() {
				for p := range work {
					errs <- f(p)
				}
			}()
		}
		for _, p := range pods {
			work <- p
		}
		close(work)
		var all []error
		for range pods {
			all = append(all, <-errs)
		}
		return errors.Join(all...)
	}
	var mu sync.Mutex
	runtime.GC()
	t0, c0 := time.Now(), childCPU()
	err := each(func(p *libcni.RuntimeConf) error {
		t := time.Now()
		_, err := cni.AddNetworkList(ctx, list, p)
		mu.Lock()
		b.add = append(b.add, time.Since(t))
		mu.Unlock()
		return err
	})
	b.wall, b.cpu = time.Since(t0), childCPU()-c0
	if err != nil {
		return b, fmt.Errorf("%s: parallel ADD: %w", name, err)
	}
	if err := each(func(p *libcni.RuntimeConf) error { return cni.DelNetworkList(ctx, list, p) }); err != nil {
		return b, fmt.Errorf("%s: parallel DEL: %w", name, err)
	}
	return b, nil
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func render(rs []result, n int, load string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### CNI ADD/DEL, %d pods in sequence per plugin, plugins interleaved call by call, one run (%s)\n\n", n, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Load average (1, 5, 15 min) before: %s, after: %s. CPU is user+system time of the plugin processes, the figure a shared machine does not distort.\n\n", load, loadavg())
	fmt.Fprintln(&b, "| plugin | ADD p50 | ADD p99 | DEL p50 | DEL p99 | ADDs/s | CPU per ADD (p50) | CPU per DEL (p50) |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.0f | %s | %s |\n", r.name, ms(pct(r.add, .5)), ms(pct(r.add, .99)),
			ms(pct(r.del, .5)), ms(pct(r.del, .99)), float64(len(r.add))/r.total.Seconds(), ms(pct(r.addCPU, .5)), ms(pct(r.delCPU, .5)))
	}
	if len(rs) > 0 && rs[0].burst != nil {
		fmt.Fprintf(&b, "\n%d ADDs, %d at a time:\n\n| plugin | all done after | ADDs/s | ADD p50 | ADD p99 | CPU per ADD |\n|---|---|---|---|---|---|\n", n, rs[0].burst.parallel)
		for _, r := range rs {
			if br := r.burst; br != nil {
				fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s |\n", r.name, ms(br.wall), float64(len(br.add))/br.wall.Seconds(),
					ms(pct(br.add, .5)), ms(pct(br.add, .99)), ms(br.cpu/time.Duration(max(len(br.add), 1))))
			}
		}
	}
	for _, r := range rs {
		if len(r.steps) > 0 {
			b.WriteString(renderSteps(r))
		}
	}
	if len(rs) == 2 && pct(rs[1].add, .5) > 0 {
		fmt.Fprintf(&b, "\nADD p50 ratio edgenet/reference: %.2f; p99 ratio: %.2f\n",
			float64(pct(rs[0].add, .5))/float64(pct(rs[1].add, .5)), float64(pct(rs[0].add, .99))/float64(pct(rs[1].add, .99)))
	}
	return b.String()
}

// renderSteps breaks a plugin's latency down by its own per-step timings; "exec" is what the caller saw less the
// plugin's own total: fork/exec, Go runtime start and package init, and reading the result.
func renderSteps(r result) string {
	type opSteps struct {
		order []string
		vals  map[string][]time.Duration
	}
	ops := map[string]*opSteps{}
	seen := map[string]int{}
	for _, line := range r.steps {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		op := f[0]
		o := ops[op]
		if o == nil {
			o = &opSteps{vals: map[string][]time.Duration{}}
			ops[op] = o
		}
		var caller []time.Duration
		switch op {
		case "ADD":
			caller = r.add
		case "DEL":
			caller = r.del
		}
		idx := seen[op]
		seen[op]++
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			d, err := time.ParseDuration(v)
			if !ok || err != nil {
				continue
			}
			if _, ok := o.vals[k]; !ok {
				o.order = append(o.order, k)
			}
			o.vals[k] = append(o.vals[k], d)
			if k == "total" && idx < len(caller) {
				if _, ok := o.vals["exec"]; !ok {
					o.order = append([]string{"exec"}, o.order...)
				}
				o.vals["exec"] = append(o.vals["exec"], caller[idx]-d)
			}
		}
	}
	var b strings.Builder
	for _, op := range []string{"ADD", "DEL"} {
		o := ops[op]
		if o == nil {
			continue
		}
		fmt.Fprintf(&b, "\n%s %s steps (p50 / p99): ", r.name, op)
		var parts []string
		for _, k := range o.order {
			parts = append(parts, fmt.Sprintf("%s %s / %s", k, ms(pct(o.vals[k], .5)), ms(pct(o.vals[k], .99))))
		}
		b.WriteString(strings.Join(parts, ", ") + "\n")
	}
	return b.String()
}

// childCPU is the user+system time of this process's terminated children (and theirs, once waited for).
func childCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
