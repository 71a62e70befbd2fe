package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// setPodRouting switches the agents' routing mode through the edgenet-config
// ConfigMap and restarts them, waiting until every agent is ready again.
func setPodRouting(t *testing.T, mode string) {
	t.Helper()
	ctx := context.Background()
	patch := fmt.Sprintf(`{"data":{"EDGENET_POD_ROUTING":%q}}`, mode)
	if _, err := app.client.CoreV1().ConfigMaps("edgenet-system").Patch(ctx, "edgenet-config", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=edgenet-agent"}
	old, err := app.client.CoreV1().Pods("edgenet-system").List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.client.CoreV1().Pods("edgenet-system").DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
		t.Fatal(err)
	}
	gone := map[string]bool{}
	for _, p := range old.Items {
		gone[p.Name] = true
	}
	eventually(t, 90*time.Second, "agents ready in mode "+mode, func() error {
		list, err := app.client.CoreV1().Pods("edgenet-system").List(ctx, sel)
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range list.Items {
			if !gone[p.Name] && podReady(&p) {
				ready++
			}
		}
		if ready != len(app.state.Nodes) {
			return fmt.Errorf("%d of %d new agents ready", ready, len(app.state.Nodes))
		}
		return nil
	})
}

// In VXLAN mode, pods on different nodes talk through the kernel vxlan device, whose
// MTU leaves room for the encapsulation; switching back removes it.
func TestVXLANMode(t *testing.T) {
	setPodRouting(t, "vxlan")
	t.Cleanup(func() { setPodRouting(t, "auto") })
	ctx := context.Background()
	for _, n := range app.state.Nodes {
		out, err := inNetns(ctx, n.Netns, "ip", "-d", "link", "show", "edgenet.vxlan")
		if err != nil || !strings.Contains(out, "vxlan id") || !strings.Contains(out, "mtu 1450") {
			t.Fatalf("%s: vxlan device: %v\n%s", n.Name, err, out)
		}
	}
	ns := testNamespace(t, "e2e-vxlan")
	pods := echoDaemonSet(t, ns, "echo")
	byNode := nodeOf(pods)
	for _, n := range app.state.Nodes {
		// Routes to the other nodes' blocks go through the tunnel.
		out, _ := inNetns(ctx, n.Netns, "ip", "route", "show", "proto", "126")
		for _, p := range pods {
			if p.Spec.NodeName == n.Name {
				continue
			}
			if !strings.Contains(out, "dev edgenet.vxlan") {
				t.Errorf("%s routes without the tunnel:\n%s", n.Name, out)
			}
		}
	}
	for _, from := range pods {
		for node, to := range byNode {
			if node == from.Spec.NodeName {
				continue
			}
			if out, err := execIn(ctx, from, "ping", to.Status.PodIP); err != nil {
				t.Errorf("ICMP over VXLAN %s -> %s: %v %s", from.Name, to.Name, err, out)
			}
			out, err := execIn(ctx, from, "tcp", to.Status.PodIP+":9000")
			if err != nil || !strings.HasPrefix(out, to.Name+"\n") {
				t.Errorf("TCP over VXLAN %s -> %s: %q %v", from.Name, to.Name, out, err)
			}
		}
	}
	// Pods made in VXLAN mode get the tunnel's MTU: the agent writes it into the CNI conf.
	for _, n := range app.state.Nodes {
		conf, err := os.ReadFile(filepath.Join(stateDir, "nodes", n.Name, "cni", "net.d", "10-edgenet.conflist"))
		if err != nil || !strings.Contains(string(conf), `"mtu": 1450`) {
			t.Errorf("%s: CNI conf in VXLAN mode: %v\n%s", n.Name, err, conf)
		}
	}
	setPodRouting(t, "auto")
	for _, n := range app.state.Nodes {
		if out, err := inNetns(ctx, n.Netns, "ip", "link", "show", "edgenet.vxlan"); err == nil {
			t.Errorf("%s: vxlan device left in direct mode:\n%s", n.Name, out)
		}
	}
}
