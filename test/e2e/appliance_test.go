package e2e

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEveryNodeRegisteredWithItsIP(t *testing.T) {
	ctx := context.Background()
	nodes, err := app.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != len(app.state.Nodes) {
		t.Fatalf("%d nodes registered, want %d", len(nodes.Items), len(app.state.Nodes))
	}
	want := map[string]string{}
	for _, n := range app.state.Nodes {
		want[n.Name] = n.IP
	}
	for _, n := range nodes.Items {
		var ip string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
			}
		}
		if ip == "" || ip != want[n.Name] {
			t.Errorf("node %s has InternalIP %q, want %q", n.Name, ip, want[n.Name])
		}
	}
}

func TestAgentRunningOnEveryNode(t *testing.T) {
	ctx := context.Background()
	pods, err := app.client.CoreV1().Pods("edgenet-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=edgenet-agent"})
	if err != nil {
		t.Fatal(err)
	}
	on := map[string]bool{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning {
			on[p.Spec.NodeName] = true
		}
	}
	for _, n := range app.state.Nodes {
		if !on[n.Name] {
			t.Errorf("no running agent on %s", n.Name)
		}
		// The agent is hostNetwork: its health endpoint answers on the node's IP,
		// from the node's own namespace.
		out, err := inNetns(ctx, n.Netns, filepath.Join(app.bin, "testapp"), "http", "http://"+n.IP+":9440/readyz")
		if err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("agent /readyz on %s: %q %v", n.Name, out, err)
		}
	}
}

// The root namespace must never route a cluster range off the machine.
func TestGuardRoutesInRootNamespace(t *testing.T) {
	s := app.state.Settings
	probes := map[string]string{"pod CIDR": s.PodCIDR, "service CIDR": s.ServiceCIDR}
	for i, r := range s.External {
		probes["external range "+string(rune('0'+i))] = r
	}
	for what, cidr := range probes {
		first := strings.Split(strings.Split(cidr, "/")[0], "-")[0]
		a, err := netip.ParseAddr(first)
		if err != nil {
			t.Fatalf("%s %q: %v", what, cidr, err)
		}
		// The kernel answers a lookup on an unreachable route with EHOSTUNREACH.
		out, err := exec.Command("ip", "route", "get", a.Next().String()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "No route to host") {
			t.Errorf("%s: root namespace routes %s: %s (want unreachable)", what, a.Next(), out)
		}
		if out, _ := exec.Command("ip", "route", "show", "match", a.Next().String()).CombinedOutput(); !strings.Contains(string(out), "unreachable") {
			t.Errorf("%s: no unreachable route covers %s:\n%s", what, a.Next(), out)
		}
	}
	// And the root namespace does not forward from the site bridge elsewhere.
	out, err := exec.Command("nft", "list", "table", "inet", "edgenet-guard").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `iifname "edgenet0" oifname != "edgenet0" drop`) {
		t.Errorf("guard table: %s %v", out, err)
	}
}

func TestUpOnRunningApplianceChangesNothing(t *testing.T) {
	out, err := app.edgenet("up")
	if err != nil {
		t.Fatalf("up on a running appliance: %v\n%s", err, out)
	}
	if !strings.Contains(out, "already running") {
		t.Fatalf("up did not report the running appliance:\n%s", out)
	}
	var st applianceState
	before := app.state
	if err := app.load(); err != nil {
		t.Fatal(err)
	}
	st = app.state
	for i := range before.Procs {
		if before.Procs[i].PID != st.Procs[i].PID {
			t.Errorf("%s restarted: pid %d -> %d", before.Procs[i].Name, before.Procs[i].PID, st.Procs[i].PID)
		}
	}
}

// Bad settings are refused with the field and reason, before anything is made. The
// command runs against an empty state dir so that the running appliance is not seen.
func TestBadSettingsRefusedBeforeAnythingIsMade(t *testing.T) {
	cases := []struct {
		name  string
		flags []string
		want  []string
	}{
		{"too few node IPs", []string{"--nodes", "3", "--node-ips", "192.168.60.10-192.168.60.12", "--site-subnet", "192.168.60.0/24", "--gateway", "192.168.60.1", "--external-ips", "192.168.60.100-192.168.60.110"},
			[]string{"spec.nodeIPRange", "4"}},
		{"overlapping ranges", []string{"--site-subnet", "192.168.60.0/24", "--gateway", "192.168.60.1", "--node-ips", "192.168.60.10-192.168.60.20", "--external-ips", "192.168.60.15-192.168.60.30"},
			[]string{"spec.externalServiceIPRanges[0]", "overlaps"}},
		{"outside the site subnet", []string{"--site-subnet", "192.168.60.0/24", "--gateway", "192.168.60.1", "--node-ips", "192.168.61.10-192.168.61.20", "--external-ips", "192.168.60.100-192.168.60.110"},
			[]string{"spec.nodeIPRange", "site subnet"}},
		{"malformed", []string{"--pod-cidr", "172.27.0.0/33"},
			[]string{"spec.podCIDR"}},
		{"pod CIDR overlaps service CIDR", []string{"--pod-cidr", "172.28.0.0/16"},
			[]string{"spec.serviceCIDR", "overlaps"}},
	}
	before := snapshotHost()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"up", "--state-dir", dir, "--run-dir", filepath.Join(dir, "run")}, c.flags...)
			out, err := app.edgenet(args...)
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("error does not mention %q:\n%s", w, out)
				}
			}
			if ents, _ := os.ReadDir(dir); len(ents) > 0 {
				t.Errorf("state dir written: %v", ents)
			}
		})
	}
	if d := before.diff(snapshotHost()); len(d) > 0 {
		t.Errorf("refused settings changed the host:\n%s", strings.Join(d, "\n"))
	}
}

func waitNodesRegistered(t *testing.T, n int) {
	eventually(t, 90*time.Second, "nodes registered", func() error {
		nodes, err := app.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(nodes.Items) != n {
			return errorf("%d of %d nodes", len(nodes.Items), n)
		}
		return nil
	})
}
