// Command svcbench measures, on a running appliance, the time from a pod becoming Ready
// to its first answer through its Service's ClusterIP from another node: the whole
// path of EndpointSlice controller, service proxy and pod network. Each round scales a
// one-replica Deployment on node1 to zero and back, while a client in node2's network
// namespace requests the ClusterIP every 2 ms.
//
//	svcbench -kubeconfig /var/lib/edgenet/admin.kubeconfig -rounds 20 -out bench/results/RESULTS.md
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"edgenet.io/edgenet/bench/internal/report"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "svcbench:", err)
		os.Exit(1)
	}
}

// firstSeen records when each pod (by hostname) first answered.
type firstSeen struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (f *firstSeen) get(h string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.at[h]
	return t, ok
}

// probe requests url every interval from a thread inside the network namespace at
// nsPath until ctx ends.
func probe(ctx context.Context, nsPath, addr string, seen *firstSeen) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromPath(nsPath)
		if err != nil {
			errc <- err
			return
		}
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- nil
		// Dial here, on this thread: http.Transport dials from goroutines of its own,
		// which would run in the root namespace.
		for ctx.Err() == nil {
			w, err := get(addr)
			if err != nil && os.Getenv("SVCBENCH_DEBUG") != "" {
				fmt.Fprintln(os.Stderr, "probe:", err)
			}
			if err == nil && w != "" {
				now := time.Now()
				seen.mu.Lock()
				if _, ok := seen.at[w]; !ok {
					seen.at[w] = now
				}
				seen.mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return <-errc
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "/var/lib/edgenet/admin.kubeconfig", "admin kubeconfig of the appliance")
	rounds := flag.Int("rounds", 20, "rounds")
	out := flag.String("out", "", "append the result to this file")
	flag.Parse()
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := fmt.Sprintf("svcbench-%d", time.Now().Unix())
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer c.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	labels := map[string]string{"app": "target"}
	zero := int32(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "target"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"kubernetes.io/hostname": "node1"},
					Containers: []corev1.Container{{Name: "app", Image: "docker.io/edgenet/testapp:dev", ImagePullPolicy: corev1.PullNever,
						Args: []string{"serve"},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(8080)}},
							PeriodSeconds: 1}}},
					TerminationGracePeriodSeconds: new(int64),
				},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return err
	}
	svc, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "target"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}}}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	seen := &firstSeen{at: map[string]time.Time{}}
	if err := probe(ctx, "/run/netns/edgenet-node2", net.JoinHostPort(svc.Spec.ClusterIP, "80"), seen); err != nil {
		return err
	}
	scale := func(n int) error {
		_, err := c.AppsV1().Deployments(ns).Patch(ctx, "target", types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)), metav1.PatchOptions{})
		return err
	}
	var lat []time.Duration
	for r := 0; r < *rounds; r++ {
		if err := scale(1); err != nil {
			return err
		}
		// Watch for the pod turning Ready; note when we saw it.
		var name string
		var ready time.Time
		for deadline := time.Now().Add(60 * time.Second); ready.IsZero(); {
			if time.Now().After(deadline) {
				return fmt.Errorf("round %d: no pod Ready", r)
			}
			pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, p := range pods.Items {
				for _, cond := range p.Status.Conditions {
					if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
						name, ready = p.Name, time.Now()
					}
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if t, ok := seen.get(name); ok {
				lat = append(lat, max(0, t.Sub(ready)))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("round %d: pod %s Ready but not served through %s within 10 s", r, name, svc.Spec.ClusterIP)
			}
		}
		if err := scale(0); err != nil {
			return err
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			pods, _ := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if len(pods.Items) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("round %d: pods not gone", r)
			}
		}
	}
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(float64(len(lat)-1)*q)].Microseconds()) / 1000 }
	res := fmt.Sprintf("\n### Pod Ready (as seen by a client polling the API every 5 ms) to first answer through its ClusterIP from another node, %d rounds, one run (%s)\n\n"+
		"| p50 | p99 | max |\n|---|---|---|\n| %.0f ms | %.0f ms | %.0f ms |\n", len(lat), time.Now().UTC().Format(time.RFC3339), p(.5), p(.99), p(1))
	return report.Append(*out, res)
}

// get sends one HTTP/1.0 request on a new connection and returns the answering pod's
// hostname.
func get(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: svcbench\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var w struct{ Hostname string }
	if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
		return "", err
	}
	return w.Hostname, nil
}
