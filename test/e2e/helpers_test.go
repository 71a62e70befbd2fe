package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const testappImage = "docker.io/edgenet/testapp:dev"

// testNamespace creates a fresh namespace for a test and deletes it afterwards.
func testNamespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := app.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		app.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

func testappContainer(args ...string) corev1.Container {
	return corev1.Container{
		Name: "app", Image: testappImage, ImagePullPolicy: corev1.PullNever, Args: args,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstrPort(8080)}},
			PeriodSeconds: 1,
		},
	}
}

// echoDaemonSet runs the echo server on every node and returns its pods once Ready.
func echoDaemonSet(t *testing.T, ns, name string) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{testappContainer("serve")},
					TerminationGracePeriodSeconds: ptr(int64(1)),
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
	if _, err := app.client.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return waitPodsReady(t, ns, "app="+name, len(app.state.Nodes))
}

func waitPodsReady(t *testing.T, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, 90*time.Second, fmt.Sprintf("%d pods %s ready", n, selector), func() error {
		list, err := app.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				pods = append(pods, p)
			}
		}
		if len(pods) != n {
			return fmt.Errorf("%d of %d ready", len(pods), n)
		}
		return nil
	})
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// execIn runs the testapp in a pod (kubectl exec, through the apiserver and kubelet).
func execIn(ctx context.Context, p corev1.Pod, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return app.kubectl(ctx, append([]string{"exec", "-n", p.Namespace, p.Name, "--", "/testapp"}, args...)...)
}

// onNode runs the testapp in a node's network namespace.
func onNode(ctx context.Context, node string, args ...string) (string, error) {
	for _, n := range app.state.Nodes {
		if n.Name == node {
			return inNetns(ctx, n.Netns, append([]string{filepath.Join(app.bin, "testapp")}, args...)...)
		}
	}
	return "", fmt.Errorf("no node %s", node)
}

func inPrefix(t *testing.T, ip, cidr string) bool {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("pod IP %q: %v", ip, err)
	}
	return netip.MustParsePrefix(cidr).Contains(a)
}

// serveOnClient runs the echo server in the site client namespace for the test.
func serveOnClient(t *testing.T, httpPort int) string {
	t.Helper()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+app.state.Client.Netns, "--",
		filepath.Join(app.bin, "testapp"), "serve", "-http", fmt.Sprintf(":%d", httpPort),
		"-tcp", fmt.Sprintf(":%d", httpPort+1), "-udp", fmt.Sprintf(":%d", httpPort+1))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://%s:%d/", app.state.Client.IP, httpPort)
	eventually(t, 5*time.Second, "client echo server", func() error {
		_, err := inNetns(context.Background(), app.state.Client.Netns, filepath.Join(app.bin, "testapp"), "http", url)
		return err
	})
	return url
}

func ptr[T any](v T) *T { return &v }

func nodeOf(pods []corev1.Pod) map[string]corev1.Pod {
	m := map[string]corev1.Pod{}
	for _, p := range pods {
		m[p.Spec.NodeName] = p
	}
	return m
}
