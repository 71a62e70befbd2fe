// Command proxybench measures edgenet's nftables service proxy against kube-proxy
// v1.34.4 in nftables mode, side by side in one run, one proxy at a time, each as its
// own process in its own network namespace (edgenet-t-proxybench-<proxy>) joined by a
// veth to a namespace holding etcd and kube-apiserver (edgenet-t-proxybench-api).
// Services with 5-endpoint EndpointSlices are created through the API (no
// controller-manager runs). Per proxy and per scale it measures:
//
//   - cold sync: from the proxy's exec to every existing ClusterIP being in the
//     proxy's service-ips map (polled by netlink dumps every 50 ms);
//
//   - change latency: n new Services, each created after its EndpointSlice; from the
//     Service create call's return to its ClusterIP's element arriving on the
//     nftables netlink multicast group of the proxy's namespace;
//
//   - VmRSS and VmHWM of the proxy process right after the cold sync (the 50 ms poll
//     can see the map filled before the proxy has released the sync's garbage), again
//     after settleTime (settled), and at the end.
//
//     proxybench -kube-bin bin/kube -scales 1000,10000 -changes 50 -out bench/results/RESULTS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

const (
	serviceCIDR = "172.28.0.0/16"
	podCIDR     = "10.240.0.0/12"
	// Services timed as changes are numbered from here; their slices exist before
	// any proxy starts.
	changeBase   = 50000
	benchNS      = "bench"
	endpointsPer = 5
	// settleTime after a cold sync is seen, the proxy has returned the sync's
	// garbage to the OS (it does once nft has committed, which the poll can beat).
	settleTime = 2 * time.Second
)

// kubeBin is the directory of the Kubernetes binaries (-kube-bin).
var kubeBin string

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := runEdgenetProxy(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "proxybench edgenet-proxy:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

type config struct {
	scales    []int
	changes   int
	gap       time.Duration
	kpArgs    []string
	edgeArgs  []string
	out       string
	keep      bool
	coldLimit time.Duration
	profiles  string
	// resync, if set, is the edgenet proxy's full-sync period; the proxy's RSS is
	// read again once one has passed after the changes.
	resync time.Duration
}

func run() error {
	var cfg config
	scales := flag.String("scales", "1000,10000", "service counts to measure at (each with 5 endpoints)")
	flag.StringVar(&kubeBin, "kube-bin", "bin/kube", "directory of kube-apiserver and kube-proxy v1.34.4")
	flag.IntVar(&cfg.changes, "changes", 50, "service creations timed per proxy and scale")
	flag.DurationVar(&cfg.gap, "gap", 1200*time.Millisecond,
		"pause before each timed change (longer than kube-proxy's 1 s min sync period, so neither proxy is rate-limited by the previous change)")
	kpArgs := flag.String("kube-proxy-args", "", "extra kube-proxy flags, space-separated")
	edgeArgs := flag.String("edgenet-args", "", "extra flags of the edgenet proxy child (e.g. -balancing vmap)")
	withKubeProxy := flag.Bool("kube-proxy", true, "also measure kube-proxy (false: edgenet alone, e.g. to iterate on it)")
	flag.StringVar(&cfg.out, "out", "", "append the results table to this file")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the logs directory")
	flag.DurationVar(&cfg.coldLimit, "cold-timeout", 10*time.Minute, "give up on a cold sync after this long")
	flag.DurationVar(&cfg.resync, "edgenet-resync", 0, "run the edgenet proxy with this periodic resync period and read its RSS again after one (0: the proxy's default, 5 min, not waited for)")
	flag.StringVar(&cfg.profiles, "heap-profiles", "", "write heap profiles of the edgenet proxy (settled after the cold sync, and at the end) into this directory")
	flag.Parse()
	// Two runs at once would share etcd's and the apiserver's ports and the
	// namespaces' names, and each would break the other: the second one waits.
	unlock, err := machineLock("/run/edgenet-proxybench.lock")
	if err != nil {
		return err
	}
	defer unlock()
	for _, s := range strings.Split(*scales, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-scales: bad count %q", s)
		}
		cfg.scales = append(cfg.scales, n)
	}
	if !slices.IsSorted(cfg.scales) {
		return errors.New("-scales: counts must increase (services are only added)")
	}
	cfg.kpArgs = strings.Fields(*kpArgs)
	cfg.edgeArgs = strings.Fields(*edgeArgs)
	if kubeBin, err = filepath.Abs(kubeBin); err != nil {
		return err
	}
	for _, b := range []string{"kube-apiserver", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(kubeBin, b)); err != nil {
			return fmt.Errorf("%w (run `make kube`)", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return err
	}
	kinds := []proxyKind{edgenetProxy, kubeProxy}
	if !*withKubeProxy {
		kinds = kinds[:1]
	}
	var names []string
	for _, k := range kinds {
		names = append(names, k.name)
	}
	l, err := setup(dir, names)
	if err != nil {
		return err
	}
	defer l.close()
	c, err := l.client(ctx)
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, lab: l, c: c, changeNext: changeBase}
	if err := b.prepare(ctx, len(kinds)*len(cfg.scales)*cfg.changes); err != nil {
		return err
	}
	results := map[string]map[int]*result{}
	for _, scale := range cfg.scales {
		fmt.Fprintf(os.Stderr, "creating services up to %d\n", scale)
		t0 := time.Now()
		if err := b.populate(ctx, scale); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%d services in %v\n", len(b.ips), time.Since(t0).Round(time.Millisecond))
		for i, k := range kinds {
			r, err := b.measure(ctx, k, l.nodes[i])
			if err != nil {
				fmt.Fprintf(os.Stderr, "logs kept in %s\n", dir)
				return fmt.Errorf("%s at %d services: %w", k.name, scale, err)
			}
			if results[k.name] == nil {
				results[k.name] = map[int]*result{}
			}
			results[k.name][scale] = r
			fmt.Fprintf(os.Stderr, "%s at %d: %s\n", k.name, scale, r)
		}
	}
	table := render(cfg, results, kinds)
	fmt.Print(table)
	if !cfg.keep {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "logs in %s\n", dir)
	}
	if cfg.out != "" {
		f, err := os.OpenFile(cfg.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString(table)
		return err
	}
	return nil
}

type bench struct {
	cfg  config
	lab  *lab
	c    *kubernetes.Clientset
	ips  []netip.Addr // ClusterIPs of every service created so far
	next int          // next service number
	// changeNext is the next service timed as a change (numbered from changeBase).
	changeNext int
}

type result struct {
	services int // present when the proxy started
	cold     time.Duration
	lat      []time.Duration
	viaDump  int   // latencies whose netlink event was lost (detected by a dump)
	lost     error // the watcher's first receive error
	rssCold  int64
	hwmCold  int64
	// rssSettled is VmRSS settleTime after the cold sync was seen.
	rssSettled int64
	// fileSettled is the file-backed part of rssSettled (the executable).
	fileSettled int64
	rssEnd      int64
	hwmEnd      int64
	// rssResync and hwmResync are read a resync period after the end (-edgenet-resync).
	rssResync, hwmResync int64
	// load is the 1-minute load average at the start and the end: the machine is
	// shared, and the figures are only as quiet as it was.
	load [2]string
}

func (r *result) String() string {
	return fmt.Sprintf("cold %v, change p50 %v p99 %v (%d by dump), RSS %s (HWM %s) after cold sync, %s settled (%s file-backed), %s / %s at the end",
		r.cold.Round(time.Millisecond), pct(r.lat, 0.5), pct(r.lat, 0.99), r.viaDump, mb(r.rssCold), mb(r.hwmCold), mb(r.rssSettled), mb(r.fileSettled), mb(r.rssEnd), mb(r.hwmEnd)) +
		fmt.Sprintf(", %s / %s after a resync (if -edgenet-resync)", mb(r.rssResync), mb(r.hwmResync))
}

// prepare creates the namespace, one Node per proxy (kube-proxy reads its node's
// addresses from it) and the EndpointSlices of the services timed as changes, so
// that each change is one API event (the Service) for both proxies.
func (b *bench) prepare(ctx context.Context, changes int) error {
	if _, err := b.c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	for _, n := range b.lab.nodes {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{"kubernetes.io/hostname": n.name}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.ip.String()}, {Type: corev1.NodeHostName, Address: n.name},
			}},
		}
		created, err := b.c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("node %s: %w", n.name, err)
		}
		created.Status = node.Status
		if _, err := b.c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node %s status: %w", n.name, err)
		}
	}
	for i := range changes {
		if err := b.createSlice(ctx, changeBase+i); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) slice(i int) *discoveryv1.EndpointSlice {
	name := fmt.Sprintf("svc-%05d", i)
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-a", Namespace: benchNS, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "proxybench",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for j := range endpointsPer {
		// Distinct across services, inside the pod CIDR for i < 200k.
		ip := addrAdd(netip.MustParsePrefix(podCIDR).Addr(), uint32(i*endpointsPer+j+1))
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			NodeName:   ptr("node-elsewhere"),
		})
	}
	return s
}

func service(i int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%05d", i), Namespace: benchNS},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func addrAdd(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// createSlice makes service i's EndpointSlice.
func (b *bench) createSlice(ctx context.Context, i int) error {
	if _, err := b.c.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, b.slice(i), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("endpointslice %d: %w", i, err)
	}
	return nil
}

// createService makes service i and returns its ClusterIP and the time its create
// call returned.
func (b *bench) createService(ctx context.Context, i int) (netip.Addr, time.Time, error) {
	svc, err := b.c.CoreV1().Services(benchNS).Create(ctx, service(i), metav1.CreateOptions{})
	done := time.Now()
	if err != nil {
		return netip.Addr{}, time.Time{}, fmt.Errorf("service %d: %w", i, err)
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return netip.Addr{}, time.Time{}, fmt.Errorf("service %d: clusterIP %q: %w", i, svc.Spec.ClusterIP, err)
	}
	return ip, done, nil
}

// populate creates services (16 at a time) until there are n.
func (b *bench) populate(ctx context.Context, n int) error {
	if b.next >= n {
		return nil
	}
	work := make(chan int)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				err := b.createSlice(ctx, i)
				var ip netip.Addr
				if err == nil {
					ip, _, err = b.createService(ctx, i)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					b.ips = append(b.ips, ip)
				}
				mu.Unlock()
			}
		})
	}
	for i := b.next; i < n; i++ {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	b.next = n
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// measure runs one proxy cold against the services present, then times changes.
func (b *bench) measure(ctx context.Context, k proxyKind, n *node) (*result, error) {
	if err := flush(n); err != nil {
		return nil, err
	}
	kc, err := b.lab.kubeconfig(n)
	if err != nil {
		return nil, err
	}
	extra := b.cfg.edgeArgs
	profile := ""
	if k.name == kubeProxy.name {
		extra = b.cfg.kpArgs
	} else {
		extra = slices.Clone(extra)
		if b.cfg.profiles != "" {
			profile = filepath.Join(b.cfg.profiles, fmt.Sprintf("heap-%d", len(b.ips)))
			extra = append(extra, "-heap-profile", profile)
		}
		if b.cfg.resync > 0 {
			extra = append(extra, "-full-sync-period", b.cfg.resync.String())
		}
	}
	r := &result{services: len(b.ips)}
	r.load[0] = loadavg()
	want := slices.Clone(b.ips)
	t0 := time.Now()
	p, err := b.lab.start(n.netns, fmt.Sprintf("%s-%d", k.name, len(want)), k.argv(b.lab, n, kc, extra)...)
	if err != nil {
		return nil, err
	}
	defer b.lab.stop(p)
	errc := make(chan error, 1)
	go func() {
		at, err := waitAll(int(n.handle.Fd()), k.table, want, 50*time.Millisecond, b.cfg.coldLimit)
		r.cold = at.Sub(t0)
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil {
			return nil, fmt.Errorf("cold sync: %w", err)
		}
	case <-p.Done():
		return nil, fmt.Errorf("exited during cold sync: see %s/%s.log", b.lab.dir, p.Name)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.rssCold, r.hwmCold, _, err = memory(p.Cmd.Process.Pid); err != nil {
		return nil, err
	}
	select {
	case <-time.After(settleTime):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.rssSettled, _, r.fileSettled, err = memory(p.Cmd.Process.Pid); err != nil {
		return nil, err
	}
	if profile != "" {
		p.Cmd.Process.Signal(syscall.SIGUSR1)
	}
	// Subscribed only now: the cold sync's flood of events would sit in the
	// socket's buffer ahead of the changes' events.
	w, err := newWatcher(int(n.handle.Fd()), k.table)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	for range b.cfg.changes {
		// Let the previous sync's min-interval pass (kube-proxy's is 1 s).
		select {
		case <-time.After(b.cfg.gap):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		ip, created, err := b.createService(ctx, b.changeNext)
		if err != nil {
			return nil, err
		}
		b.changeNext++
		b.ips = append(b.ips, ip)
		at, viaDump, err := w.waitFor(ip, time.Minute)
		if err != nil {
			return nil, err
		}
		if p.Exited() {
			return nil, fmt.Errorf("exited: see %s/%s.log", b.lab.dir, p.Name)
		}
		r.lat = append(r.lat, at.Sub(created))
		if viaDump {
			r.viaDump++
		}
	}
	if r.rssEnd, r.hwmEnd, _, err = memory(p.Cmd.Process.Pid); err != nil {
		return nil, err
	}
	if k.name == edgenetProxy.name && b.cfg.resync > 0 {
		// The resync timer started with the proxy: wait until one has run since.
		select {
		case <-time.After(b.cfg.resync + 5*time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if r.rssResync, r.hwmResync, _, err = memory(p.Cmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	if profile != "" {
		p.Cmd.Process.Signal(syscall.SIGUSR1)
		time.Sleep(time.Second) // the profile is written before the proxy is stopped
	}
	r.lost = w.lost()
	r.load[1] = loadavg()
	return r, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	// Nearest rank: with 50 samples p99 is the largest.
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func ratio(edgenet, other float64) string {
	if edgenet <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f×", other/edgenet)
}

func render(cfg config, res map[string]map[int]*result, kinds []proxyKind) string {
	if len(kinds) == 1 {
		return renderAlone(cfg, res[kinds[0].name])
	}
	var sb strings.Builder
	e, k := kinds[0].name, kinds[1].name
	fmt.Fprintf(&sb, "\n### Service proxy: edgenet vs kube-proxy v1.34.4 (nftables mode)\n\n")
	fmt.Fprintf(&sb, "%d CPUs, shared with other work (load averages below). ", runtime.NumCPU())
	fmt.Fprintf(&sb, "Command: `%s`. Each proxy runs alone, as its own process in its own network namespace, "+
		"against a real kube-apiserver reached over a veth; every service has one EndpointSlice with %d ready endpoints. "+
		"Change latency: a new Service (its EndpointSlice already in the API; %v pause before each) from the create call's return to its "+
		"ClusterIP's element in the proxy's `service-ips` map (nftables netlink event). Cold sync: from exec to every "+
		"ClusterIP in that map (50 ms polls). edgenet: cascade balancing%s; kube-proxy: default settings (1 s min sync period)%s.\n\n",
		strings.Join(os.Args, " "), endpointsPer, cfg.gap, argsNote(cfg.edgeArgs), argsNote(cfg.kpArgs))
	fmt.Fprintf(&sb, "| measure | services | %s | %s | %s / %s | goal |\n|---|---|---|---|---|---|\n", e, k, k, e)
	last := cfg.scales[len(cfg.scales)-1]
	for _, scale := range cfg.scales {
		re, rk := res[e][scale], res[k][scale]
		if re == nil || rk == nil {
			continue
		}
		for _, q := range []struct {
			name string
			p    float64
			goal string
		}{{"change → rule p50", 0.5, ""}, {"change → rule p99", 0.99, "< 50 ms and ≥ 5× faster"}} {
			a, b := pct(re.lat, q.p), pct(rk.lat, q.p)
			fmt.Fprintf(&sb, "| %s (%d changes) | %d | %s | %s | %s | %s |\n", q.name, len(re.lat), re.services, ms(a), ms(b), ratio(a.Seconds(), b.Seconds()), q.goal)
		}
		goal := ""
		if scale == last {
			goal = "< 5 s"
		}
		fmt.Fprintf(&sb, "| cold sync | %d (%d endpoints) | %s | %s | %s | %s |\n", re.services, re.services*endpointsPer,
			ms(re.cold), ms(rk.cold), ratio(re.cold.Seconds(), rk.cold.Seconds()), goal)
		goal = ""
		if scale == last {
			goal = "< 100 MB"
		}
		fmt.Fprintf(&sb, "| VmRSS after cold sync | %d | %s | %s | %s | %s |\n", re.services, mb(re.rssCold), mb(rk.rssCold), ratio(float64(re.rssCold), float64(rk.rssCold)), goal)
		fmt.Fprintf(&sb, "| VmHWM after cold sync | %d | %s | %s | %s | |\n", re.services, mb(re.hwmCold), mb(rk.hwmCold), ratio(float64(re.hwmCold), float64(rk.hwmCold)))
		fmt.Fprintf(&sb, "| VmRSS %v after cold sync (file-backed part) | %d | %s (%s) | %s (%s) | %s | |\n", settleTime, re.services,
			mb(re.rssSettled), mb(re.fileSettled), mb(rk.rssSettled), mb(rk.fileSettled), ratio(float64(re.rssSettled), float64(rk.rssSettled)))
		fmt.Fprintf(&sb, "| VmRSS / VmHWM after the changes | %d | %s / %s | %s / %s | | |\n", re.services+len(re.lat), mb(re.rssEnd), mb(re.hwmEnd), mb(rk.rssEnd), mb(rk.hwmEnd))
		fmt.Fprintf(&sb, "| machine load (1 min) start → end | %d | %s → %s | %s → %s | | |\n", re.services, re.load[0], re.load[1], rk.load[0], rk.load[1])
	}
	var notes []string
	for _, kind := range kinds {
		for _, scale := range cfg.scales {
			r := res[kind.name][scale]
			if r == nil {
				continue
			}
			if r.viaDump > 0 {
				notes = append(notes, fmt.Sprintf("%s at %d: %d changes seen only by a 500 ms dump (event lost: %v); their latency is an upper bound", kind.name, scale, r.viaDump, r.lost))
			}
		}
	}
	for _, n := range notes {
		fmt.Fprintf(&sb, "\nNote: %s.\n", n)
	}
	return sb.String()
}

func argsNote(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return " (extra flags: " + strings.Join(a, " ") + ")"
}

// renderAlone tabulates a run of edgenet's proxy without kube-proxy.
func renderAlone(cfg config, res map[int]*result) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n### Service proxy: edgenet alone\n\n%d CPUs, shared with other work. Command: `%s`; measures as in the comparison with kube-proxy.\n\n",
		runtime.NumCPU(), strings.Join(os.Args, " "))
	fmt.Fprintf(&sb, "| services | change p50 | change p99 | cold sync | VmRSS / VmHWM after cold sync | VmRSS %v later (file-backed part) | VmRSS / VmHWM after the changes | VmRSS / VmHWM after a resync | load start → end |\n|---|---|---|---|---|---|---|---|---|\n", settleTime)
	for _, scale := range cfg.scales {
		r := res[scale]
		if r == nil {
			continue
		}
		resync := "not run"
		if r.rssResync > 0 {
			resync = mb(r.rssResync) + " / " + mb(r.hwmResync)
		}
		fmt.Fprintf(&sb, "| %d (%d endpoints) | %s | %s | %s | %s / %s | %s | %s / %s | %s | %s → %s |\n", r.services, r.services*endpointsPer,
			ms(pct(r.lat, 0.5)), ms(pct(r.lat, 0.99)), ms(r.cold), mb(r.rssCold), mb(r.hwmCold), mb(r.rssSettled)+" ("+mb(r.fileSettled)+")", mb(r.rssEnd), mb(r.hwmEnd), resync, r.load[0], r.load[1])
		if r.viaDump > 0 {
			fmt.Fprintf(&sb, "\nNote: at %d, %d changes seen only by a 500 ms dump; their latency is an upper bound.\n", scale, r.viaDump)
		}
	}
	return sb.String()
}

// machineLock takes an exclusive flock on path, waiting while another process holds
// it; the kernel releases it when this process ends, however it ends.
func machineLock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(os.Stderr, "proxybench: another run holds %s, waiting\n", path)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
	}
	return func() { f.Close() }, nil
}
