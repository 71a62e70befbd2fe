// Package e2e tests a running edgenet appliance from the outside: through the API, and
// with real traffic from inside its node, pod and client namespaces. TestMain brings an
// appliance up with bin/edgenet (or reuses a running one), and takes down what it
// brought up, checking that down leaves nothing behind.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	stateDir   = "/var/lib/edgenet"
	kubeconfig = stateDir + "/admin.kubeconfig"
)

// appliance is the appliance under test, as `edgenet up` recorded it.
type appliance struct {
	bin    string // bin/ with edgenet and kube/
	client *kubernetes.Clientset
	state  applianceState
}

// applianceState is the part of /var/lib/edgenet/state.json the tests read.
type applianceState struct {
	Settings struct {
		Nodes       int      `json:"nodes"`
		PodCIDR     string   `json:"podCIDR"`
		ServiceCIDR string   `json:"serviceCIDR"`
		NodeIPRange string   `json:"nodeIPRange"`
		External    []string `json:"externalServiceIPRanges"`
	} `json:"settings"`
	Nodes  []hostState `json:"nodes"`
	Client hostState   `json:"client"`
	Procs  []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
	} `json:"procs"`
}

type hostState struct {
	Name  string `json:"name"`
	Netns string `json:"netns"`
	IP    string `json:"ip"`
}

var app *appliance

func binDir() string {
	if d := os.Getenv("EDGENET_BIN"); d != "" {
		return d
	}
	d, _ := filepath.Abs("../../bin")
	return d
}

func (a *appliance) edgenet(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(a.bin, "edgenet"), args...).CombinedOutput()
	return string(out), err
}

func (a *appliance) load() error {
	b, err := os.ReadFile(filepath.Join(stateDir, "state.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &a.state); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 100, 200
	a.client, err = kubernetes.NewForConfig(rc)
	return err
}

// inNetns runs argv inside a network namespace of the appliance.
func inNetns(ctx context.Context, netns string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + netns, "--"}, argv...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// kubectl runs the pinned kubectl against the appliance.
func (a *appliance) kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(a.bin, "kube", "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// hostSnapshot is what down must leave as it was before up.
type hostSnapshot struct {
	netns, links, routes, nft, cgroups string
	sysctls                            map[string]string
}

var watchedSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
}

func snapshotHost() hostSnapshot {
	sh := func(s string) string {
		out, _ := exec.Command("sh", "-c", s).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	s := hostSnapshot{
		// Test namespaces of other packages (edgenet-t-*) may come and go meanwhile.
		netns:   sh("ls /run/netns 2>/dev/null | grep -v '^edgenet-t-' | sort"),
		links:   sh("ip -o link show | awk -F': ' '{print $2}' | grep -v '^enx' | sort"),
		routes:  sh("ip route show table all | sort; ip -6 route show table all | grep -v '^fe80\\|^local fe80\\|^multicast' | sort"),
		nft:     sh("nft list tables | sort"),
		cgroups: sh("ls -d /sys/fs/cgroup/*/edgenet 2>/dev/null"),
		sysctls: map[string]string{},
	}
	for _, k := range watchedSysctls {
		s.sysctls[k] = sh("sysctl -n " + k)
	}
	return s
}

func (s hostSnapshot) diff(o hostSnapshot) []string {
	var d []string
	cmp := func(what, a, b string) {
		if a != b {
			d = append(d, fmt.Sprintf("%s differ:\n--- before\n%s\n--- after\n%s", what, a, b))
		}
	}
	cmp("network namespaces", s.netns, o.netns)
	cmp("links", s.links, o.links)
	cmp("routes", s.routes, o.routes)
	cmp("nftables tables", s.nft, o.nft)
	cmp("cgroups", s.cgroups, o.cgroups)
	for k, v := range s.sysctls {
		cmp("sysctl "+k, v, o.sysctls[k])
	}
	return d
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	a := &appliance{bin: binDir()}
	status, _ := a.edgenet("status")
	reuse := strings.Contains(status, "edgenet appliance: running")
	var before hostSnapshot
	if reuse {
		fmt.Println("e2e: reusing the running appliance; it stays up afterwards")
	} else {
		before = snapshotHost()
		start := time.Now()
		out, err := a.edgenet("up")
		fmt.Print(out)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: edgenet up: %v\n", err)
			return 1
		}
		fmt.Printf("e2e: edgenet up took %s\n", time.Since(start).Round(100*time.Millisecond))
	}
	if err := a.load(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	app = a
	code := m.Run()
	if reuse {
		return code
	}
	// The last check of the suite: down leaves the host as it found it.
	out, err := a.edgenet("down")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: edgenet down: %v\n%s", err, out)
		return 1
	}
	if pids := leftoverProcs(a.state); len(pids) > 0 {
		fmt.Fprintf(os.Stderr, "--- FAIL: down left processes running: %v\n", pids)
		code = 1
	}
	if d := before.diff(snapshotHost()); len(d) > 0 {
		fmt.Fprintf(os.Stderr, "--- FAIL: down left the host changed:\n%s\n", strings.Join(d, "\n"))
		code = 1
	} else {
		fmt.Println("e2e: down left no process, namespace, link, route, nftables table, cgroup or sysctl behind")
	}
	return code
}

// leftoverProcs lists recorded PIDs that still run the same program.
func leftoverProcs(st applianceState) []string {
	var out []string
	for _, p := range st.Procs {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID)); err == nil && len(b) > 0 {
			out = append(out, fmt.Sprintf("%s(%d): %s", p.Name, p.PID, strings.ReplaceAll(string(b), "\x00", " ")))
		}
	}
	return out
}
