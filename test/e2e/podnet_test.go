package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func intstrPort(p int) intstr.IntOrString { return intstr.FromInt(p) }

func TestEveryNodeReady(t *testing.T) {
	nodes, err := app.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
		}
		if !ready {
			t.Errorf("node %s not Ready: %+v", n.Name, n.Status.Conditions)
		}
	}
}

// Pods on every node get distinct IPs from the pod CIDR and reach each other, and the
// nodes, across nodes: ICMP and TCP.
func TestPodNetworkAcrossNodes(t *testing.T) {
	ns := testNamespace(t, "e2e-podnet")
	pods := echoDaemonSet(t, ns, "echo")
	seen := map[string]string{}
	for _, p := range pods {
		if !inPrefix(t, p.Status.PodIP, app.state.Settings.PodCIDR) {
			t.Errorf("pod %s on %s has IP %s outside the pod CIDR %s", p.Name, p.Spec.NodeName, p.Status.PodIP, app.state.Settings.PodCIDR)
		}
		if other, dup := seen[p.Status.PodIP]; dup {
			t.Errorf("pods %s and %s share IP %s", other, p.Name, p.Status.PodIP)
		}
		seen[p.Status.PodIP] = p.Name
	}
	ctx := context.Background()
	for _, from := range pods {
		for _, to := range pods {
			if from.Name == to.Name {
				continue
			}
			if out, err := execIn(ctx, from, "ping", to.Status.PodIP); err != nil {
				t.Errorf("ICMP %s(%s) -> %s(%s): %v %s", from.Name, from.Spec.NodeName, to.Name, to.Spec.NodeName, err, out)
			}
			out, err := execIn(ctx, from, "tcp", to.Status.PodIP+":9000")
			if err != nil || !strings.HasPrefix(out, to.Name+"\n") {
				t.Errorf("TCP %s(%s) -> %s(%s): %q %v", from.Name, from.Spec.NodeName, to.Name, to.Spec.NodeName, out, err)
			}
			// The receiving pod sees the sender's pod IP: no masquerade inside the cluster.
			out, err = execIn(ctx, from, "http", "http://"+to.Status.PodIP+":8080/")
			if err != nil || !strings.Contains(out, `"remote":"`+from.Status.PodIP+":") {
				t.Errorf("HTTP %s -> %s: want remote %s, got %q %v", from.Name, to.Name, from.Status.PodIP, out, err)
			}
		}
	}
	// Every node reaches every pod, and every pod reaches every node, both ways.
	for _, n := range app.state.Nodes {
		for _, p := range pods {
			if out, err := onNode(ctx, n.Name, "ping", p.Status.PodIP); err != nil {
				t.Errorf("ICMP node %s -> pod %s on %s: %v %s", n.Name, p.Name, p.Spec.NodeName, err, out)
			}
			if out, err := onNode(ctx, n.Name, "tcp", p.Status.PodIP+":9000"); err != nil {
				t.Errorf("TCP node %s -> pod %s on %s: %v %s", n.Name, p.Name, p.Spec.NodeName, err, out)
			}
			if out, err := execIn(ctx, p, "ping", n.IP); err != nil {
				t.Errorf("ICMP pod %s on %s -> node %s: %v %s", p.Name, p.Spec.NodeName, n.Name, err, out)
			}
		}
	}
}

// Traffic leaving the cluster ranges is masqueraded to the node's IP; the site LAN
// never sees a pod IP.
func TestPodToSiteLANIsMasqueraded(t *testing.T) {
	ns := testNamespace(t, "e2e-masq")
	pods := echoDaemonSet(t, ns, "echo")
	url := serveOnClient(t, 18080)
	nodeIP := map[string]string{}
	for _, n := range app.state.Nodes {
		nodeIP[n.Name] = n.IP
	}
	for _, p := range pods {
		out, err := execIn(context.Background(), p, "http", url)
		if err != nil {
			t.Errorf("pod %s -> site client: %v %s", p.Name, err, out)
			continue
		}
		if !strings.Contains(out, `"remote":"`+nodeIP[p.Spec.NodeName]+":") {
			t.Errorf("site client saw pod %s as %q, want its node's IP %s", p.Name, out, nodeIP[p.Spec.NodeName])
		}
	}
}

// ipamFiles counts the IPs the agent of a node holds (one file per IP).
func ipamFiles(t *testing.T, node string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(stateDir, "nodes", node, "agent", "ipam", "addrs"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}

// 200 pods created and deleted in rounds: no IP is ever held twice, and afterwards each
// node holds exactly the IPs of its live pods.
func TestCreateDeleteCyclesLeaveNoLeak(t *testing.T) {
	ns := testNamespace(t, "e2e-churn")
	ctx := context.Background()
	const rounds, perRound = 10, 20
	for r := 0; r < rounds; r++ {
		for i := 0; i < perRound; i++ {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("churn-%d-%d", r, i), Namespace: ns, Labels: map[string]string{"round": fmt.Sprint(r)}},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{{Name: "app", Image: testappImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve"}}},
					TerminationGracePeriodSeconds: ptr(int64(0)),
				},
			}
			if _, err := app.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		var running []corev1.Pod
		eventually(t, 60*time.Second, fmt.Sprintf("round %d running", r), func() error {
			list, err := app.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: fmt.Sprintf("round=%d", r)})
			if err != nil {
				return err
			}
			running = running[:0]
			for _, p := range list.Items {
				if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
					running = append(running, p)
				}
			}
			if len(running) != perRound {
				return fmt.Errorf("%d of %d running", len(running), perRound)
			}
			return nil
		})
		ips := map[string]string{}
		for _, p := range running {
			if other, dup := ips[p.Status.PodIP]; dup {
				t.Fatalf("round %d: pods %s and %s share IP %s", r, other, p.Name, p.Status.PodIP)
			}
			ips[p.Status.PodIP] = p.Name
		}
		if err := app.client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))},
			metav1.ListOptions{LabelSelector: fmt.Sprintf("round=%d", r)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, "churn pods gone", func() error {
		list, err := app.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d pods left", len(list.Items))
		}
		return nil
	})
	// CNI DEL runs as a sandbox is torn down, shortly after its API object is gone. Then
	// each node holds exactly the IPs of its live pods (other tests' pods may still be
	// terminating, so both sides are read together).
	for _, n := range app.state.Nodes {
		eventually(t, 30*time.Second, "IPs of "+n.Name+" match its live pods", func() error {
			held := strings.Join(ipamFiles(t, n.Name), " ")
			list, err := app.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
			if err != nil {
				return err
			}
			var live []string
			for _, p := range list.Items {
				if !p.Spec.HostNetwork && p.Status.PodIP != "" {
					live = append(live, p.Status.PodIP)
				}
			}
			slices.Sort(live)
			if want := strings.Join(live, " "); held != want {
				return fmt.Errorf("%s holds IPs [%s], its live pods have [%s]", n.Name, held, want)
			}
			return nil
		})
	}
}
