package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"edgenet.io/edgenet/internal/proxy"
)

// A proxyKind says how to start one proxy inside its node's namespace and which
// nftables table it programs.
type proxyKind struct {
	name  string // column header and namespace suffix
	table string
	argv  func(l *lab, n *node, kubeconfig string, extra []string) []string
}

var (
	edgenetProxy = proxyKind{
		name:  "edgenet",
		table: proxy.TableName,
		argv: func(l *lab, n *node, kubeconfig string, extra []string) []string {
			self, _ := os.Executable()
			return append([]string{self, childArg, "-kubeconfig", kubeconfig, "-node", n.name,
				"-node-ip", n.ip.String(), "-pod-cidr", podCIDR}, extra...)
		},
	}
	kubeProxy = proxyKind{
		name:  "kube-proxy",
		table: "kube-proxy",
		argv: func(l *lab, n *node, kubeconfig string, extra []string) []string {
			return append([]string{filepath.Join(kubeBin, "kube-proxy"),
				"--kubeconfig=" + kubeconfig, "--proxy-mode=nftables",
				"--hostname-override=" + n.name, "--bind-address=" + n.ip.String(),
				"--cluster-cidr=" + podCIDR,
				"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
				// Leave the conntrack sysctls and our own OOM score alone: not what is measured.
				"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
				"--conntrack-tcp-timeout-close-wait=0", "--oom-score-adj=0",
				"--v=0"}, extra...)
		},
	}
)

// childArg makes the bench binary run edgenet's proxy (re-executed inside the node's
// namespace so its RSS is its own).
const childArg = "edgenet-proxy"

// runEdgenetProxy is the child: proxy.Run against the apiserver, as `edgenet agent`
// calls it, with the cascade balancing the agent uses for large installations.
func runEdgenetProxy(args []string) error {
	fs := flag.NewFlagSet(childArg, flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	nodeName := fs.String("node", "", "node name")
	nodeIP := fs.String("node-ip", "", "node IP")
	cidr := fs.String("pod-cidr", podCIDR, "pod CIDR")
	balancing := fs.String("balancing", string(proxy.BalanceCascade), "vmap or cascade")
	protobuf := fs.Bool("protobuf", false, "talk protobuf to the API server (as kube-proxy does)")
	memLimit := fs.Int64("memory-limit", 0, "soft memory limit in bytes for the Go runtime (as GOMEMLIMIT, for this process only; 0: none)")
	fullSync := fs.Duration("full-sync-period", 0, "periodic resync period (0: the proxy's default)")
	heapProfile := fs.String("heap-profile", "", "on SIGUSR1, write a heap profile (after a GC) to this path with a counter appended")
	fs.Parse(args)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *memLimit > 0 {
		debug.SetMemoryLimit(*memLimit)
	}
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(proxy.DefaultGCPercent) // as `edgenet agent` runs
	}
	if *heapProfile != "" {
		go writeHeapProfiles(*heapProfile)
		go traceHWM(log)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	if *protobuf {
		rc.ContentType = "application/vnd.kubernetes.protobuf"
		rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(*nodeIP)
	if err != nil {
		return err
	}
	pc, err := netip.ParsePrefix(*cidr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var proxiers []*proxy.Proxier
	err = proxy.Run(ctx, proxy.Config{
		Clientset: c, NodeName: *nodeName, NodeIPs: []netip.Addr{ip}, PodCIDRs: []netip.Prefix{pc},
		Balancing:      proxy.Balancing(*balancing),
		FullSyncPeriod: *fullSync,
		Logger:         log,
		OnProxiers:     func(ps []*proxy.Proxier) { proxiers = ps },
	})
	// The proxy's own view (informer event → kernel), to tell it from API delivery.
	for _, p := range proxiers {
		log.Info("proxy histograms", "event_to_kernel", p.Latency().String(), "sync", p.SyncDurations().String())
	}
	return err
}

// traceHWM logs each 4 MB step of the process's VmHWM with the heap at that moment,
// to place the peak among the proxy's own log lines.
func traceHWM(log *slog.Logger) {
	var last int64
	var ms runtime.MemStats
	for range time.Tick(20 * time.Millisecond) {
		_, hwm, _, err := memory(os.Getpid())
		if err != nil || hwm < last+4<<20 {
			continue
		}
		last = hwm
		runtime.ReadMemStats(&ms)
		log.Info("hwm", "hwm_mb", hwm>>20, "heap_alloc_mb", ms.HeapAlloc>>20, "heap_inuse_mb", ms.HeapInuse>>20, "next_gc_mb", ms.NextGC>>20)
	}
}

// writeHeapProfiles writes path.1, path.2, ... on each SIGUSR1.
func writeHeapProfiles(path string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	for i := 1; ; i++ {
		<-sig
		runtime.GC()
		f, err := os.Create(fmt.Sprintf("%s.%d", path, i))
		if err == nil {
			err = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		// The runtime's view next to the profile: what of the RSS is heap.
		stats := fmt.Sprintf("HeapAlloc %d\nHeapInuse %d\nHeapIdle %d\nHeapReleased %d\nStackInuse %d\nGCSys %d\nOtherSys %d\nSys %d\nNextGC %d\nNumGC %d\n",
			ms.HeapAlloc, ms.HeapInuse, ms.HeapIdle, ms.HeapReleased, ms.StackInuse, ms.GCSys, ms.OtherSys, ms.Sys, ms.NextGC, ms.NumGC)
		if err == nil {
			err = os.WriteFile(fmt.Sprintf("%s.%d.txt", path, i), []byte(stats), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "heap profile:", err)
		}
	}
}

// memory reads VmRSS, VmHWM and RssFile (bytes) of a running process. RssFile is
// the part of VmRSS backed by files, i.e. the executable's pages.
func memory(pid int) (rss, hwm, file int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		case "RssFile:":
			file = v << 10
		}
	}
	if rss == 0 {
		return 0, 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, file, nil
}

// flush empties a node's ruleset so that the next proxy starts cold.
func flush(n *node) error {
	if out, err := exec.Command("nsenter", "--net="+n.path(), "--", "nft", "flush", "ruleset").CombinedOutput(); err != nil {
		return fmt.Errorf("nft flush ruleset in %s: %w: %s", n.netns, err, out)
	}
	return nil
}
