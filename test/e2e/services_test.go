package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// webDeployment runs n echo replicas labelled app=<name>.
func webDeployment(t *testing.T, ns, name string, n int32) {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{testappContainer("serve")},
					TerminationGracePeriodSeconds: ptr(int64(1)),
				},
			},
		},
	}
	if _, err := app.client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func service(t *testing.T, ns, name string, spec corev1.ServiceSpec) *corev1.Service {
	t.Helper()
	svc, err := app.client.CoreV1().Services(ns).Create(context.Background(),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func httpPort() []corev1.ServicePort {
	return []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt(8080), Protocol: corev1.ProtocolTCP}}
}

// hostnames counts the "ok <hostname>" lines of testapp http -n.
func hostnames(out string) (map[string]int, int) {
	seen, fails := map[string]int{}, 0
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "ok "); ok {
			seen[strings.Fields(rest)[0]]++
		} else if strings.HasPrefix(l, "fail ") {
			fails++
		}
	}
	return seen, fails
}

func podNames(t *testing.T, ns, selector string) map[string]bool {
	list, err := app.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			out[p.Name] = true
		}
	}
	return out
}

// A ClusterIP spreads over every ready replica from every node, and follows scaling.
func TestClusterIPSpreadAndScaling(t *testing.T) {
	ns := testNamespace(t, "e2e-svc")
	ctx := context.Background()
	clients := echoDaemonSet(t, ns, "client")
	webDeployment(t, ns, "web", 4)
	waitPodsReady(t, ns, "app=web", 4)
	svc := service(t, ns, "web", corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: httpPort()})
	url := "http://" + svc.Spec.ClusterIP + "/"
	spread := func(want map[string]bool) error {
		for _, c := range clients {
			out, _ := execIn(ctx, c, "http", "-n", "60", url)
			seen, fails := hostnames(out)
			if fails > 0 {
				return fmt.Errorf("from %s: %d failures", c.Spec.NodeName, fails)
			}
			for h := range seen {
				if !want[h] {
					return fmt.Errorf("from %s: answered by %s, not a ready replica %v", c.Spec.NodeName, h, want)
				}
			}
			if len(seen) != len(want) {
				return fmt.Errorf("from %s: reached %v, want all of %v", c.Spec.NodeName, seen, want)
			}
		}
		return nil
	}
	eventually(t, 30*time.Second, "spread over 4 replicas", func() error { return spread(podNames(t, ns, "app=web")) })
	for _, n := range []int32{6, 2} {
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		if _, err := app.client.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPodsReady(t, ns, "app=web", int(n))
		eventually(t, 30*time.Second, fmt.Sprintf("spread over %d replicas", n), func() error { return spread(podNames(t, ns, "app=web")) })
	}
}

// NodePort answers on every node's IP, from the site LAN.
func TestNodePortFromSiteClient(t *testing.T) {
	ns := testNamespace(t, "e2e-nodeport")
	webDeployment(t, ns, "web", 2)
	waitPodsReady(t, ns, "app=web", 2)
	svc := service(t, ns, "web", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"}, Ports: httpPort()})
	port := svc.Spec.Ports[0].NodePort
	for _, n := range app.state.Nodes {
		url := fmt.Sprintf("http://%s:%d/", n.IP, port)
		eventually(t, 20*time.Second, "NodePort on "+n.Name, func() error {
			out, err := inNetns(context.Background(), app.state.Client.Netns, app.bin+"/testapp", "http", "-n", "10", url)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
}

// Session affinity ClientIP pins a client to one replica.
func TestSessionAffinity(t *testing.T) {
	ns := testNamespace(t, "e2e-affinity")
	ctx := context.Background()
	clients := echoDaemonSet(t, ns, "client")
	webDeployment(t, ns, "web", 3)
	waitPodsReady(t, ns, "app=web", 3)
	svc := service(t, ns, "web", corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: httpPort(),
		SessionAffinity: corev1.ServiceAffinityClientIP})
	for _, c := range clients {
		eventually(t, 20*time.Second, "affinity from "+c.Spec.NodeName, func() error {
			out, _ := execIn(ctx, c, "http", "-n", "30", "http://"+svc.Spec.ClusterIP+"/")
			seen, fails := hostnames(out)
			if fails > 0 || len(seen) != 1 {
				return fmt.Errorf("30 requests answered by %v with %d failures, want one replica", seen, fails)
			}
			return nil
		})
	}
}

// A service without endpoints refuses at once instead of black-holing.
func TestNoEndpointsRejectsFast(t *testing.T) {
	ns := testNamespace(t, "e2e-noep")
	ctx := context.Background()
	clients := echoDaemonSet(t, ns, "client")
	svc := service(t, ns, "nobody", corev1.ServiceSpec{Selector: map[string]string{"app": "nobody"}, Ports: httpPort()})
	for _, c := range clients {
		eventually(t, 20*time.Second, "reject from "+c.Spec.NodeName, func() error {
			start := time.Now()
			out, err := execIn(ctx, c, "tcp", "-timeout", "3s", svc.Spec.ClusterIP+":80")
			took := time.Since(start)
			if err == nil || !strings.Contains(out, "connection refused") {
				return fmt.Errorf("want connection refused, got %v %q", err, out)
			}
			// kubectl exec itself takes a few hundred ms; the 3 s timeout was not hit.
			if took > 2*time.Second {
				return fmt.Errorf("refusal took %s", took)
			}
			return nil
		})
	}
}

// Restarting every agent while a client loops requests through a ClusterIP fails none:
// the nftables rules stay in the kernel while the agent is away.
func TestAgentRestartFailsNoRequest(t *testing.T) {
	ns := testNamespace(t, "e2e-restart")
	ctx := context.Background()
	clients := echoDaemonSet(t, ns, "client")
	webDeployment(t, ns, "web", 2)
	waitPodsReady(t, ns, "app=web", 2)
	svc := service(t, ns, "web", corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: httpPort()})
	url := "http://" + svc.Spec.ClusterIP + "/"
	eventually(t, 20*time.Second, "service answers", func() error {
		_, err := execIn(ctx, clients[0], "http", url)
		return err
	})
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		out, err := app.kubectl(c, "exec", "-n", ns, clients[0].Name, "--", "/testapp", "http", "-n", "400", "-interval", "20ms", url)
		done <- result{out, err}
	}()
	time.Sleep(time.Second)
	setPodRouting(t, "auto") // deletes every agent pod and waits for the new ones
	r := <-done
	seen, fails := hostnames(r.out)
	if fails > 0 || r.err != nil {
		t.Fatalf("%d of 400 requests failed across the agent restart (%v); answered by %v", fails, r.err, seen)
	}
	t.Logf("400 requests across an agent restart: answered by %v, 0 failed", seen)
}
