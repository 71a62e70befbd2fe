package e2e

// This file sorts last on purpose: it uninstalls edgenet from the appliance, the way
// docs/OPERATIONS.md tells an admin to, and installs it again.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"edgenet.io/edgenet/deploy"
	"edgenet.io/edgenet/internal/cleanup"
)

// nodePaths are the agent's directories of an appliance node, as the host sees them.
func nodePaths(node string) (bin, conf, state string) {
	d := filepath.Join(stateDir, "nodes", node)
	return filepath.Join(d, "cni/bin"), filepath.Join(d, "cni/net.d"), filepath.Join(d, "agent")
}

// cleanupCheck runs `edgenet cleanup --check` for an appliance node, in its namespace.
func cleanupCheck(ctx context.Context, n hostState) (string, error) {
	bin, conf, state := nodePaths(n.Name)
	return inNetns(ctx, n.Netns, filepath.Join(app.bin, "edgenet"), "cleanup", "--check",
		"--cni-bin-dir="+bin, "--cni-conf-dir="+conf, "--state-dir="+state)
}

// kubectlOK runs kubectl and fails the test on error.
func kubectlOK(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := app.kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// saved returns the objects as JSON for a later `kubectl create`, without what the
// server set.
func saved(t *testing.T, args ...string) []byte {
	t.Helper()
	var list struct {
		Items []map[string]any `json:"items"`
	}
	out := kubectlOK(t, 30*time.Second, append([]string{"get", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get %v: %v", args, err)
	}
	for _, o := range list.Items {
		md := o["metadata"].(map[string]any)
		for _, k := range []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "annotations"} {
			delete(md, k)
		}
		delete(o, "status")
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": list.Items})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// applianceDeploy writes the deploy/ tree as `edgenet up` applies it (deploy/appliance
// with the DNS Service at the service CIDR's 10th address) and returns its directory.
func applianceDeploy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, deploy.FS); err != nil {
		t.Fatal(err)
	}
	svc, err := netip.ParsePrefix(app.state.Settings.ServiceCIDR)
	if err != nil {
		t.Fatal(err)
	}
	dns := svc.Addr()
	for range 10 {
		dns = dns.Next()
	}
	k := filepath.Join(dir, "appliance", "kustomization.yaml")
	b, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	patch := fmt.Sprintf("patches:\n  - target: {kind: Service, name: edgenet-dns}\n    patch: |-\n      - op: replace\n        path: /spec/clusterIP\n        value: %s\n", dns)
	if err := os.WriteFile(k, []byte(strings.Replace(string(b), "patches:\n", patch, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "appliance")
}

var ourTables = regexp.MustCompile(`(?m)^table ip6? edgenet(-nat|-svc-[0-9]+)?$`)

func TestUninstallLeavesNodesCleanAndReinstallWorks(t *testing.T) {
	ctx := context.Background()
	install := applianceDeploy(t)
	uninstall, err := filepath.Abs("../../deploy/uninstall/appliance")
	if err != nil {
		t.Fatal(err)
	}

	// Before: the agents' work is on every node; remember whether each node's loopback
	// plugin is the agent's copy of itself.
	ourLoopback := map[string]bool{}
	for _, n := range app.state.Nodes {
		out, err := cleanupCheck(ctx, n)
		if err == nil {
			t.Fatalf("%s: cleanup --check finds nothing while the agent runs:\n%s", n.Name, out)
		}
		for _, want := range []string{cleanup.ConfName, cleanup.PluginName, "nftables ip edgenet", "nftables ip edgenet-nat", "proto 126"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: cleanup --check does not list %q while the agent runs:\n%s", n.Name, want, out)
			}
		}
		bin, _, _ := nodePaths(n.Name)
		ourLoopback[n.Name] = cleanup.IsEdgenetBinary(filepath.Join(bin, "loopback"))
	}
	keep := saved(t, "-n", "edgenet-system", "configmap/edgenet-apiserver-endpoint", "configmap/edgenet-config", "secret/edgenet-member-key")
	cn := saved(t, "computenetwork")

	// The documented uninstall (docs/OPERATIONS.md). Pods on the pod network go first,
	// while the agents still release their IPs: edgenet's own Deployments here.
	start := time.Now()
	kubectlOK(t, 3*time.Minute, "-n", "edgenet-system", "delete", "deployment", "--all", "--cascade=foreground", "--timeout=150s")
	kubectlOK(t, 4*time.Minute, "delete", "-k", install, "--ignore-not-found", "--timeout=210s")
	t.Logf("kubectl delete -k deploy/ took %s", time.Since(start).Round(100*time.Millisecond))
	start = time.Now()
	kubectlOK(t, time.Minute, "apply", "-k", uninstall)
	kubectlOK(t, 3*time.Minute, "-n", "edgenet-uninstall", "rollout", "status", "ds/edgenet-cleanup", "--timeout=150s")
	t.Logf("cleanup on %d nodes took %s", len(app.state.Nodes), time.Since(start).Round(100*time.Millisecond))
	logs, _ := app.kubectl(ctx, "-n", "edgenet-uninstall", "logs", "-l", "app.kubernetes.io/name=edgenet-cleanup", "--prefix", "--tail=-1")
	t.Logf("cleanup logs:\n%s", logs)
	kubectlOK(t, 3*time.Minute, "delete", "-k", uninstall, "--timeout=150s")

	// Every node is clean, as edgenet sees it and as ip, nft and the filesystem do.
	for _, n := range app.state.Nodes {
		if out, err := cleanupCheck(ctx, n); err != nil {
			t.Errorf("%s: cleanup --check after uninstall: %v\n%s", n.Name, err, out)
		}
		for _, argv := range [][]string{{"ip", "route", "show", "table", "all", "proto", "126"}, {"ip", "-6", "route", "show", "table", "all", "proto", "126"}} {
			if out, err := inNetns(ctx, n.Netns, argv...); err != nil || out != "" {
				t.Errorf("%s: %s after uninstall: %v\n%s", n.Name, strings.Join(argv, " "), err, out)
			}
		}
		if out, err := inNetns(ctx, n.Netns, "nft", "list", "tables"); err != nil || ourTables.MatchString(out) {
			t.Errorf("%s: nft tables after uninstall: %v\n%s", n.Name, err, out)
		}
		if out, err := inNetns(ctx, n.Netns, "ip", "-o", "link", "show"); err != nil || strings.Contains(out, "edgenet.vxlan") {
			t.Errorf("%s: links after uninstall: %v\n%s", n.Name, err, out)
		}
		bin, conf, state := nodePaths(n.Name)
		gone := []string{filepath.Join(conf, cleanup.ConfName), filepath.Join(bin, cleanup.PluginName), state}
		if ourLoopback[n.Name] {
			gone = append(gone, filepath.Join(bin, "loopback"))
		}
		for _, p := range gone {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s: %s still there after uninstall (%v)", n.Name, p, err)
			}
		}
	}
	if t.Failed() {
		return
	}

	// Install again on the cleaned nodes: what `edgenet up` does, with the objects it
	// had made (apiserver endpoint, settings, member key, ComputeNetwork).
	start = time.Now()
	kubectlOK(t, 30*time.Second, "create", "namespace", "edgenet-system")
	applyStdin(t, keep, "create", "-f", "-")
	kubectlOK(t, time.Minute, "apply", "--server-side", "-k", install)
	kubectlOK(t, 30*time.Second, "wait", "--for", "condition=established", "--timeout=30s", "crd/computenetworks.edgenet.io")
	kubectlOK(t, 3*time.Minute, "-n", "edgenet-system", "rollout", "status", "ds/edgenet-agent", "--timeout=3m")
	kubectlOK(t, 2*time.Minute, "wait", "--for", "condition=Ready", "node", "--all", "--timeout=2m")
	// As `edgenet up` does: the ComputeNetwork goes through its webhook, which answers
	// once the controller runs and the agents proxy its ClusterIP.
	createWhenAdmitted(t, cn, 2*time.Minute)
	t.Logf("reinstall until every agent and node is Ready took %s", time.Since(start).Round(100*time.Millisecond))
	for _, n := range app.state.Nodes {
		if out, err := cleanupCheck(ctx, n); err == nil || !strings.Contains(out, cleanup.ConfName) {
			t.Errorf("%s: after reinstall the agent's CNI conf is not back: %v\n%s", n.Name, err, out)
		}
	}
	// Pods get addresses from the pod network again, on every node.
	ns := testNamespace(t, "uninstall-reinstall")
	for _, p := range echoDaemonSet(t, ns, "echo") {
		if !inPrefix(t, p.Status.PodIP, app.state.Settings.PodCIDR) {
			t.Errorf("pod %s on %s: IP %s outside the pod CIDR", p.Name, p.Spec.NodeName, p.Status.PodIP)
		}
	}
}

// createWhenAdmitted creates the objects in JSON, retrying while the admission webhook
// is not serving yet.
func createWhenAdmitted(t *testing.T, in []byte, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		cmd := exec.Command(filepath.Join(app.bin, "kube", "kubectl"), "--kubeconfig", kubeconfig, "create", "-f", "-")
		cmd.Stdin = strings.NewReader(string(in))
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		if !strings.Contains(string(out), "failed calling webhook") || time.Now().After(deadline) {
			t.Fatalf("kubectl create: %v\n%s", err, out)
		}
		time.Sleep(time.Second)
	}
}

func applyStdin(t *testing.T, in []byte, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(app.bin, "kube", "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(string(in))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
