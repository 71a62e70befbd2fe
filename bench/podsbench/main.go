// Command podsbench measures how fast pods get running on one appliance node: it
// creates n pods pinned to a node (scheduled by the real scheduler), times until all
// are Running with an IP, and deletes them. With -cni ref it first puts the reference
// bridge + host-local plugins in front of edgenet on that node (a conflist that sorts
// first in the node's CNI conf dir), so one appliance gives both figures and the
// difference is the CNI's share. It also reports where the machine's CPU went during
// the run, by process name (exited children count towards the process that waited for
// them: runc towards containerd-shim, CNI plugins towards containerd).
//
//	podsbench -kubeconfig /var/lib/edgenet/admin.kubeconfig -node node2 -n 100 -out bench/results/RESULTS.md
//	podsbench -cni ref -node-dir /var/lib/edgenet/nodes/node2 ...
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"edgenet.io/edgenet/bench/internal/report"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podsbench:", err)
		os.Exit(1)
	}
}

// refConf is the reference network, on a bridge inside the node's namespace only.
const refConf = `{"cniVersion":"1.0.0","name":"podsbench-ref","plugins":[
 {"type":"bridge","bridge":"pbref0","isGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.251.0.0/16"}]],"dataDir":%q}}]}`

const refConfName = "00-podsbench-ref.conflist"

func run() error {
	kubeconfig := flag.String("kubeconfig", "/var/lib/edgenet/admin.kubeconfig", "admin kubeconfig of the appliance")
	node := flag.String("node", "node2", "node to fill")
	n := flag.Int("n", 100, "pods")
	image := flag.String("image", "docker.io/edgenet/testapp:dev", "pod image")
	out := flag.String("out", "", "append the result to this file")
	cni := flag.String("cni", "edgenet", "edgenet, or ref: the reference bridge + host-local plugins on the node for this run")
	nodeDir := flag.String("node-dir", "", "the node's appliance directory (default /var/lib/edgenet/nodes/<node>), for -cni ref")
	refPlugins := flag.String("ref-plugins", "/usr/lib/cni", "directory of the reference plugins")
	flag.Parse()
	if *nodeDir == "" {
		*nodeDir = filepath.Join("/var/lib/edgenet/nodes", *node)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 500, 1000
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch *cni {
	case "edgenet":
	case "ref":
		undo, err := installRef(*nodeDir, *refPlugins)
		if err != nil {
			return err
		}
		defer undo()
		time.Sleep(3 * time.Second) // containerd reloads its CNI config on an fsnotify event
	default:
		return fmt.Errorf("-cni %q: want edgenet or ref", *cni)
	}
	ns := fmt.Sprintf("podsbench-%d", time.Now().Unix())
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer func() {
		c.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		// Wait for the pods to go so that a following run (or -cni ref's undo) starts clean.
		for range 240 {
			l, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
			if err != nil || len(l.Items) == 0 {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	load := loadavg()
	cpu0, stat0 := cpuByName(), machineCPU()
	start := time.Now()
	for i := 0; i < *n; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i)},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{"kubernetes.io/hostname": *node},
				Containers:                    []corev1.Container{{Name: "app", Image: *image, ImagePullPolicy: corev1.PullNever, Args: []string{"serve"}}},
				TerminationGracePeriodSeconds: new(int64),
			},
		}
		if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	created := time.Since(start)
	deadline := time.Now().Add(3 * time.Minute)
	var running int
	var list *corev1.PodList
	for time.Now().Before(deadline) {
		list, err = c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		running = 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running++
			}
		}
		if running == *n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	all := time.Since(start)
	cpu1, stat1 := cpuByName(), machineCPU()
	if running != *n {
		return fmt.Errorf("only %d of %d pods running after %s", running, *n, all)
	}
	if *cni == "ref" {
		for _, p := range list.Items {
			if !strings.HasPrefix(p.Status.PodIP, "10.251.") {
				return fmt.Errorf("pod %s got %s, not from the reference network: containerd did not switch", p.Name, p.Status.PodIP)
			}
		}
	}
	label := map[string]string{"edgenet": "edgenet-cni", "ref": "bridge+host-local"}[*cni]
	res := fmt.Sprintf("\n### %d pods on one node (%s, CNI %s), create to all Running with an IP, one run (%s)\n\n"+
		"Load average before: %s.\n\n"+
		"| pods | created in | all Running after | pods/s | sandbox ready p50 / max | machine CPU busy |\n|---|---|---|---|---|---|\n| %d | %.1f s | %.1f s | %.0f | %s | %.0f%% of %d cores |\n",
		*n, *node, label, time.Now().UTC().Format(time.RFC3339), load, *n, created.Seconds(), all.Seconds(), float64(*n)/all.Seconds(),
		sandboxReady(list.Items, start), stat1.busyShare(stat0)*100, stat1.cores)
	res += "\nCPU seconds during the run by process name, whole machine (shared: other work shows too), top 10: " + cpuTop(cpu0, cpu1, 10) + "\n"
	return report.Append(*out, res)
}

// installRef puts the reference plugins and a conflist that sorts before edgenet's into the node's CNI dirs.
func installRef(nodeDir, refPlugins string) (func(), error) {
	bin, conf := filepath.Join(nodeDir, "cni", "bin"), filepath.Join(nodeDir, "cni", "net.d")
	var made []string
	undo := func() {
		for _, p := range slices.Backward(made) {
			os.RemoveAll(p)
		}
	}
	for _, p := range []string{"bridge", "host-local"} {
		dst := filepath.Join(bin, p)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := copyFile(filepath.Join(refPlugins, p), dst); err != nil {
			undo()
			return nil, err
		}
		made = append(made, dst)
	}
	data := filepath.Join(nodeDir, "podsbench-host-local")
	made = append(made, data)
	dst := filepath.Join(conf, refConfName)
	if err := os.WriteFile(dst, fmt.Appendf(nil, refConf, data), 0o644); err != nil {
		undo()
		return nil, err
	}
	made = append(made, dst)
	return undo, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// sandboxReady summarizes when pods' sandboxes (network included) were ready, from the PodReadyToStartContainers
// condition (whole seconds, as the API keeps them).
func sandboxReady(pods []corev1.Pod, start time.Time) string {
	var ds []time.Duration
	for _, p := range pods {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReadyToStartContainers && c.Status == corev1.ConditionTrue {
				ds = append(ds, c.LastTransitionTime.Sub(start.Truncate(time.Second)))
			}
		}
	}
	if len(ds) == 0 {
		return "?"
	}
	slices.Sort(ds)
	return fmt.Sprintf("%.0f s / %.0f s", ds[len(ds)/2].Seconds(), ds[len(ds)-1].Seconds())
}

type cpuStat struct {
	busy, total uint64
	cores       int
}

func (s cpuStat) busyShare(before cpuStat) float64 {
	if s.total == before.total {
		return 0
	}
	return float64(s.busy-before.busy) / float64(s.total-before.total)
}

func machineCPU() cpuStat {
	b, _ := os.ReadFile("/proc/stat")
	var s cpuStat
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			s.cores++
			continue
		}
		for i, v := range f[1:] {
			x, _ := strconv.ParseUint(v, 10, 64)
			s.total += x
			if i != 3 && i != 4 { // idle, iowait
				s.busy += x
			}
		}
	}
	return s
}

// cpuByName sums utime+stime+cutime+cstime (clock ticks) of every process by name. Keys are name/pid so that
// a process seen at both ends counts its difference and a new one counts whole.
func cpuByName() map[string]uint64 {
	m := map[string]uint64{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		l, r := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if l < 0 || r < l {
			continue
		}
		f := strings.Fields(s[r+1:])
		if len(f) < 15 {
			continue
		}
		var t uint64
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime, counted from the state field
			x, _ := strconv.ParseUint(f[i], 10, 64)
			t += x
		}
		m[s[l+1:r]+"/"+e.Name()] = t
	}
	return m
}

func cpuTop(before, after map[string]uint64, k int) string {
	const hz = 100 // USER_HZ
	by := map[string]uint64{}
	for key, t := range after {
		d := t
		if b, ok := before[key]; ok && b <= t {
			d = t - b
		}
		name, _, _ := strings.Cut(key, "/")
		by[name] += d
	}
	names := make([]string, 0, len(by))
	for name := range by {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return int(by[b]) - int(by[a]) })
	var parts []string
	for _, name := range names[:min(k, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.1f", name, float64(by[name])/hz))
	}
	return strings.Join(parts, ", ")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
