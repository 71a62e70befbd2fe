package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"edgenet.io/edgenet/internal/computenet"
)

// The demo application that up deploys (deploy/demo), used as a site's user would:
// from the site client, at the EXTERNAL-IP of its LoadBalancer Service.

const (
	demoNS       = "demo"
	demoWebSel   = "app.kubernetes.io/name=web"
	demoRedisSel = "app.kubernetes.io/name=redis"
)

// sample is one request of a testapp http loop.
type sample struct {
	ok   bool
	pod  string
	at   time.Time
	text string
}

func parseLoop(out string) []sample {
	var ss []sample
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && f[0] == "ok":
			ms, _ := strconv.ParseInt(f[2], 10, 64)
			ss = append(ss, sample{ok: true, pod: f[1], at: time.UnixMilli(ms), text: l})
		case len(f) >= 2 && f[0] == "fail":
			ms, _ := strconv.ParseInt(f[1], 10, 64)
			ss = append(ss, sample{at: time.UnixMilli(ms), text: l})
		}
	}
	return ss
}

// outage sums up a request loop around a disruption at t0.
type outage struct {
	requests, fails int
	firstOK         time.Duration // t0 to the first success after it
	recovered       time.Duration // t0 to the first success after the last failure (0: no failure)
	longestGap      time.Duration // longest time between two successes
	lastFail        string
}

func measure(ss []sample, t0 time.Time) outage {
	var o outage
	var lastOK time.Time
	failedSince := false
	for _, s := range ss {
		o.requests++
		if !s.ok {
			o.fails++
			o.lastFail = s.text
			if s.at.After(t0) {
				failedSince = true
			}
			continue
		}
		if !lastOK.IsZero() && s.at.Sub(lastOK) > o.longestGap {
			o.longestGap = s.at.Sub(lastOK)
		}
		lastOK = s.at
		if s.at.After(t0) && o.firstOK == 0 {
			o.firstOK = s.at.Sub(t0)
		}
		if failedSince {
			o.recovered, failedSince = s.at.Sub(t0), false
		}
	}
	if failedSince {
		o.recovered = -1 // never recovered
	}
	return o
}

func (o outage) String() string {
	rec := "no failed request"
	switch {
	case o.recovered < 0:
		rec = "NOT recovered"
	case o.recovered > 0:
		rec = fmt.Sprintf("working again %s after", o.recovered.Round(time.Millisecond))
	}
	return fmt.Sprintf("%d requests, %d failed; first success %s after, %s; longest failing stretch (between successes) %s",
		o.requests, o.fails, o.firstOK.Round(time.Millisecond), rec, o.longestGap.Round(time.Millisecond))
}

// loop runs testapp's HTTP loop from the site client until stop is called, which
// returns what it printed.
func loop(url string) (stop func() []sample) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan string, 1)
	go func() {
		out, _ := inNetns(ctx, app.state.Client.Netns, filepath.Join(app.bin, "testapp"), "http",
			"-n", "100000", "-interval", "50ms", "-timeout", "1s", url)
		done <- out
	}()
	return func() []sample {
		// Let requests already sent finish, then end the loop.
		time.Sleep(1200 * time.Millisecond)
		cancel()
		return parseLoop(<-done)
	}
}

// clientCurl runs curl from the site client.
func clientCurl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return inNetns(ctx, app.state.Client.Netns, append([]string{"curl", "-sS", "--fail", "--max-time", "3"}, args...)...)
}

func readyPods(t *testing.T, sel string) []corev1.Pod {
	t.Helper()
	list, err := app.client.CoreV1().Pods(demoNS).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			out = append(out, p)
		}
	}
	return out
}

// waitReplaced waits until sel has n Ready pods, none of them named in gone, and
// returns them.
func waitReplaced(t *testing.T, sel string, n int, gone map[string]bool, timeout time.Duration) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, timeout, fmt.Sprintf("%d new ready pods %s", n, sel), func() error {
		pods = readyPods(t, sel)
		for _, p := range pods {
			if gone[p.Name] {
				return fmt.Errorf("%s still ready", p.Name)
			}
		}
		if len(pods) != n {
			return fmt.Errorf("%d of %d ready", len(pods), n)
		}
		return nil
	})
	return pods
}

func podNamesOf(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// allReplicasAnswer waits until a burst of requests from the site client is answered
// by exactly the given web pods, without a failure.
func allReplicasAnswer(t *testing.T, url string, pods []corev1.Pod) {
	t.Helper()
	want := podNamesOf(pods)
	eventually(t, 30*time.Second, "every web replica from the site client", func() error {
		out, _ := inNetns(context.Background(), app.state.Client.Netns, filepath.Join(app.bin, "testapp"), "http",
			"-n", "40", "-timeout", "1s", url)
		seen, fails := hostnames(out)
		var got []string
		for h := range seen {
			got = append(got, h)
		}
		slices.Sort(got)
		if fails > 0 || !slices.Equal(got, want) {
			return fmt.Errorf("answered by %v (%d failures), want %v", seen, fails, want)
		}
		return nil
	})
}

type entriesReply struct {
	Pod     string `json:"pod"`
	Entries []struct {
		Text string `json:"text"`
		Pod  string `json:"pod"`
	} `json:"entries"`
}

func hasEntry(t *testing.T, base, text string) bool {
	t.Helper()
	out, err := clientCurl(context.Background(), base+"/api/entries")
	if err != nil {
		t.Logf("GET /api/entries: %v %s", err, out)
		return false
	}
	var r entriesReply
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("GET /api/entries: %v: %s", err, out)
	}
	for _, e := range r.Entries {
		if e.Text == text {
			return true
		}
	}
	return false
}

func visits(t *testing.T, base string) int64 {
	t.Helper()
	out, err := clientCurl(context.Background(), base+"/api/hit")
	if err != nil {
		t.Fatalf("GET /api/hit: %v %s", err, out)
	}
	var r struct{ Visits int64 }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("GET /api/hit: %v: %s", err, out)
	}
	return r.Visits
}

// The demo's acceptance: it is reachable from the site at an EXTERNAL-IP of the
// external range and not at its ClusterIP, every replica answers, data written goes
// through the database's Service name and survives the database pod's replacement,
// and the app survives the loss of a web pod, of the database pod and of a node. The
// outages are measured and logged.
func TestDemoApp(t *testing.T) {
	ctx := context.Background()
	for _, d := range []string{"web", "redis"} {
		eventually(t, 60*time.Second, "demo/"+d+" available", func() error {
			dep, err := app.client.AppsV1().Deployments(demoNS).Get(ctx, d, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if dep.Status.AvailableReplicas != *dep.Spec.Replicas {
				return fmt.Errorf("%d of %d available", dep.Status.AvailableReplicas, *dep.Spec.Replicas)
			}
			return nil
		})
	}
	svc, err := app.client.CoreV1().Services(demoNS).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Status.LoadBalancer.Ingress) == 0 {
		t.Fatal("demo/web has no EXTERNAL-IP")
	}
	lbIP := netip.MustParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
	clusterIP := netip.MustParseAddr(svc.Spec.ClusterIP)
	ext, err := computenet.ParseRange(app.state.Settings.External[0])
	if err != nil {
		t.Fatal(err)
	}
	if !ext.Contains(lbIP) {
		t.Errorf("EXTERNAL-IP %s outside the external service range %s", lbIP, ext)
	}
	if !netip.MustParsePrefix(app.state.Settings.ServiceCIDR).Contains(clusterIP) {
		t.Errorf("CLUSTER-IP %s outside the service CIDR %s", clusterIP, app.state.Settings.ServiceCIDR)
	}
	out, err := app.kubectl(ctx, "get", "svc", "-n", demoNS, "web", "--no-headers")
	if f := strings.Fields(out); err != nil || len(f) < 4 || f[1] != "LoadBalancer" || f[2] != clusterIP.String() || f[3] != lbIP.String() {
		t.Errorf("kubectl get svc -n demo web: want LoadBalancer %s %s:\n%s %v", clusterIP, lbIP, out, err)
	}
	base := "http://" + lbIP.String()
	hit := base + "/api/hit"
	t.Logf("demo at %s (ClusterIP %s)", base, clusterIP)

	t.Run("ClusterIPNotReachableFromSite", func(t *testing.T) {
		redis, err := app.client.CoreV1().Services(demoNS).Get(ctx, "redis", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ap := range []string{clusterIP.String() + ":80", redis.Spec.ClusterIP + ":6379"} {
			h, p, _ := strings.Cut(ap, ":")
			// A bare TCP connect, so that any answer at all counts as reached.
			out, err := inNetns(ctx, app.state.Client.Netns, "timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", h, p))
			if err == nil {
				t.Errorf("site client connected to the cluster address %s: %s", ap, out)
			}
		}
		// While the EXTERNAL-IP of the same Service answers.
		if out, err := clientCurl(ctx, hit); err != nil {
			t.Fatalf("EXTERNAL-IP: %v %s", err, out)
		}
	})

	t.Run("EveryReplicaFromSite", func(t *testing.T) {
		pods := readyPods(t, demoWebSel)
		if len(pods) < 2 {
			t.Fatalf("%d web replicas ready, want at least 2", len(pods))
		}
		allReplicasAnswer(t, hit, pods)
		page, err := clientCurl(ctx, base+"/")
		if err != nil || !strings.Contains(page, "Served by pod") || !strings.Contains(page, "Visits:") {
			t.Fatalf("GET /: %v\n%s", err, page)
		}
	})

	marker := fmt.Sprintf("e2e entry %d", time.Now().UnixNano())
	t.Run("WritesPersistThroughDatabaseName", func(t *testing.T) {
		out, err := clientCurl(ctx, "-d", "text="+marker, base+"/api/entries")
		if err != nil {
			t.Fatalf("POST /api/entries: %v %s", err, out)
		}
		// Every replica reads what one of them wrote: the data is in the database.
		for range 10 {
			if !hasEntry(t, base, marker) {
				t.Fatalf("entry %q not read back", marker)
			}
		}
		if out, err := clientCurl(ctx, "-d", "text=", base+"/api/entries"); err == nil {
			t.Errorf("empty entry accepted: %s", out)
		}
		for _, p := range readyPods(t, demoWebSel) {
			for _, e := range p.Spec.Containers[0].Env {
				if e.Name == "REDIS_ADDR" && e.Value != "redis.demo.svc.cluster.local:6379" {
					t.Errorf("%s reaches the database at %s", p.Name, e.Value)
				}
			}
		}
	})

	t.Run("WebPodDeleted", func(t *testing.T) {
		before := readyPods(t, demoWebSel)
		victim := before[0]
		stop := loop(hit)
		time.Sleep(time.Second)
		t0 := time.Now()
		if err := app.client.CoreV1().Pods(demoNS).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		after := waitReplaced(t, demoWebSel, len(before), map[string]bool{victim.Name: true}, 60*time.Second)
		time.Sleep(3 * time.Second)
		o := measure(stop(), t0)
		t.Logf("web pod %s (%s) deleted: %s", victim.Name, victim.Status.PodIP, o)
		for _, p := range after {
			if p.Status.PodIP == victim.Status.PodIP {
				t.Errorf("replacement %s has the deleted pod's IP %s", p.Name, p.Status.PodIP)
			}
		}
		if o.recovered < 0 || o.longestGap > 5*time.Second {
			t.Errorf("app did not keep working: %s (last failure: %s)", o, o.lastFail)
		}
		allReplicasAnswer(t, hit, after)
	})

	t.Run("DatabasePodDeleted", func(t *testing.T) {
		before := readyPods(t, demoRedisSel)
		if len(before) != 1 {
			t.Fatalf("%d redis pods ready", len(before))
		}
		victim := before[0]
		n0 := visits(t, base)
		stop := loop(hit)
		time.Sleep(time.Second)
		t0 := time.Now()
		if err := app.client.CoreV1().Pods(demoNS).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		after := waitReplaced(t, demoRedisSel, 1, map[string]bool{victim.Name: true}, 60*time.Second)
		eventually(t, 30*time.Second, "database answering again", func() error {
			_, err := clientCurl(ctx, hit)
			return err
		})
		time.Sleep(2 * time.Second)
		o := measure(stop(), t0)
		t.Logf("database pod %s (%s) deleted, new %s (%s) on %s: %s", victim.Name, victim.Status.PodIP,
			after[0].Name, after[0].Status.PodIP, after[0].Spec.NodeName, o)
		if after[0].Status.PodIP == victim.Status.PodIP {
			t.Errorf("new database pod has the old IP %s", victim.Status.PodIP)
		}
		if o.recovered < 0 || o.longestGap > 30*time.Second {
			t.Errorf("app did not come back within 30 s: %s (last failure: %s)", o, o.lastFail)
		}
		if !hasEntry(t, base, marker) {
			t.Errorf("entry %q lost with the database pod (append-only file on the hostPath)", marker)
		}
		if n := visits(t, base); n <= n0 {
			t.Errorf("visit counter restarted: %d after %d", n, n0)
		}
	})

	// node1 hosts the control plane; the last node goes. It is frozen (every process of
	// its kubelet, containerd and pods) and cut off the site network, then restored.
	t.Run("NodeStopped", func(t *testing.T) {
		victim := app.state.Nodes[len(app.state.Nodes)-1]
		onVictim := map[string]bool{}
		for _, sel := range []string{demoWebSel, demoRedisSel} {
			for _, p := range readyPods(t, sel) {
				if p.Spec.NodeName == victim.Name {
					onVictim[p.Name] = true
				}
			}
		}
		t.Logf("demo pods on %s: %v", victim.Name, onVictim)
		webN := len(readyPods(t, demoWebSel))
		n0 := visits(t, base)
		stop := loop(hit)
		time.Sleep(time.Second)
		t0 := time.Now()
		stopNode(t, victim)
		// Every demo pod ready again, none on the stopped node.
		eventually(t, 150*time.Second, "demo pods moved off "+victim.Name, func() error {
			for _, sel := range []string{demoWebSel, demoRedisSel} {
				for _, p := range readyPods(t, sel) {
					if p.Spec.NodeName == victim.Name {
						return fmt.Errorf("%s still ready on %s", p.Name, victim.Name)
					}
				}
			}
			if n := len(readyPods(t, demoWebSel)); n != webN {
				return fmt.Errorf("%d of %d web pods ready", n, webN)
			}
			if len(readyPods(t, demoRedisSel)) != 1 {
				return fmt.Errorf("database not ready")
			}
			return nil
		})
		moved := time.Since(t0)
		allReplicasAnswer(t, hit, readyPods(t, demoWebSel))
		time.Sleep(2 * time.Second)
		o := measure(stop(), t0)
		t.Logf("%s stopped: demo pods moved off it after %s; %s (last failure: %s)", victim.Name, moved.Round(time.Second), o, o.lastFail)
		// The bound is generous: the node controller notices a silent node only after its
		// grace period (~40 s), then the pods' 10 s tolerations run out.
		if o.recovered < 0 || o.recovered > 120*time.Second {
			t.Errorf("app not working within 120 s after %s stopped: %s", victim.Name, o)
		}
		if !hasEntry(t, base, marker) {
			t.Errorf("entry %q lost when %s stopped", marker, victim.Name)
		}
		if n := visits(t, base); n <= n0 {
			t.Errorf("visit counter restarted: %d after %d", n, n0)
		}
	})
}

// stopNode freezes every process of node h (its kubelet, its containerd with the
// shims, its pods) and takes its site link down; the test's cleanup brings it back and
// waits until it is Ready with its agent running, for the tests after this one.
func stopNode(t *testing.T, h hostState) {
	t.Helper()
	routes, err := inNetns(context.Background(), h.Netns, "ip", "route", "show")
	if err != nil {
		t.Fatal(err)
	}
	cgroups := []string{"edgenet/daemons/kubelet-" + h.Name, "edgenet/daemons/containerd-" + h.Name, "edgenet/" + h.Name}
	freeze := func(state string) error {
		for _, cg := range cgroups {
			if err := os.WriteFile(filepath.Join("/sys/fs/cgroup/freezer", cg, "freezer.state"), []byte(state), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	t.Cleanup(func() {
		if err := freeze("THAWED"); err != nil {
			t.Errorf("thaw %s: %v", h.Name, err)
		}
		ctx := context.Background()
		inNetns(ctx, h.Netns, "ip", "link", "set", "eth0", "up")
		for _, r := range strings.Split(strings.TrimSpace(routes), "\n") {
			if r != "" {
				inNetns(ctx, h.Netns, append([]string{"ip", "route", "replace"}, strings.Fields(r)...)...)
			}
		}
		start := time.Now()
		eventually(t, 120*time.Second, h.Name+" Ready again with its agent", func() error {
			n, err := app.client.CoreV1().Nodes().Get(ctx, h.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !ready {
				return fmt.Errorf("%s not Ready", h.Name)
			}
			pods, err := app.client.CoreV1().Pods("edgenet-system").List(ctx, metav1.ListOptions{
				LabelSelector: "app.kubernetes.io/name=edgenet-agent", FieldSelector: "spec.nodeName=" + h.Name})
			if err != nil || len(pods.Items) != 1 || !podReady(&pods.Items[0]) {
				return fmt.Errorf("agent on %s not ready", h.Name)
			}
			return nil
		})
		t.Logf("%s restored: Ready with its agent after %s", h.Name, time.Since(start).Round(100*time.Millisecond))
	})
	if err := freeze("FROZEN"); err != nil {
		t.Fatalf("freeze %s: %v", h.Name, err)
	}
	if out, err := inNetns(context.Background(), h.Netns, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatalf("cut %s: %v %s", h.Name, err, out)
	}
}
