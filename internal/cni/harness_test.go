package cni

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"edgenet.io/edgenet/internal/ipam"
)

// The test binary plays three parts: the test itself, the plugin (when run as edgenet-cni, the way cmd/edgenet
// multi-calls) and the node agent serving IPAM (when EDGENET_TEST_AGENT is set), so the plugin and the agent
// are real processes that the test can SIGKILL.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "edgenet-cni" {
		Main()
		os.Exit(0)
	}
	if os.Getenv("EDGENET_TEST_AGENT") != "" {
		if err := runTestAgent(); err != nil {
			fmt.Fprintln(os.Stderr, "test agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runTestAgent serves IPAM the way the edgenet agent does, with StaticBlocks instead of the API.
func runTestAgent() error {
	cidr := netip.MustParsePrefix(os.Getenv("EDGENET_TEST_CIDR"))
	bits, _ := strconv.Atoi(os.Getenv("EDGENET_TEST_BLOCKBITS"))
	b, err := ipam.NewBlocking(cidr, bits)
	if err != nil {
		return err
	}
	a, err := ipam.New(ipam.Config{Dir: os.Getenv("EDGENET_TEST_DIR"), PodCIDR: cidr, Source: ipam.NewStaticBlocks(b, 0)})
	if err != nil {
		return err
	}
	l, err := net.Listen("unix", os.Getenv("EDGENET_TEST_AGENT"))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return ipam.Serve(ctx, l, a, func() bool { return os.Getenv("EDGENET_TEST_NOTREADY") == "" })
}

func requireRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// newNetns creates /run/netns/edgenet-t-cni-<tag><rand> and deletes it at test end.
func newNetns(t testing.TB, tag string) ns.NetNS {
	t.Helper()
	name := "edgenet-t-cni-" + tag + randHex(6)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n, err := ns.GetNS("/run/netns/" + name)
	if err != nil {
		exec.Command("ip", "netns", "del", name).Run()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Close()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if err := n.Do(func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// nsExec runs plugins inside the node's netns, as containerd does when it runs there.
type nsExec struct {
	node ns.NetNS
	*invoke.DefaultExec
}

func (e *nsExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	var out []byte
	err := e.node.Do(func(ns.NetNS) error {
		var err error
		out, err = e.DefaultExec.ExecPlugin(ctx, path, stdin, environ)
		return err
	})
	return out, err
}

// node is one appliance node in miniature: a netns with the plugin, an agent process and a runtime (libcni).
type node struct {
	t        testing.TB
	ns       ns.NetNS
	binDir   string
	stateDir string
	cidr     string
	bits     int
	socket   string
	agent    *exec.Cmd
	cni      *libcni.CNIConfig
	exec     *nsExec
}

func newNode(t testing.TB, cidr string, bits int) *node {
	t.Helper()
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, ns: newNetns(t, "n"), binDir: t.TempDir(), stateDir: t.TempDir(), cidr: cidr, bits: bits, socket: ipam.DefaultSocket}
	if err := os.Symlink(self, filepath.Join(n.binDir, "edgenet-cni")); err != nil {
		t.Fatal(err)
	}
	n.exec = &nsExec{node: n.ns, DefaultExec: &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{n.binDir}, t.TempDir(), n.exec)
	// A node address the pods can reach, and forwarding for pod-to-pod: only inside our own netns.
	if err := n.ns.Do(func(ns.NetNS) error {
		lo, _ := netlink.LinkByName("lo")
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 255, 0, 1), Mask: net.CIDRMask(32, 32)}}); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	n.startAgent()
	t.Cleanup(n.stopAgent)
	return n
}

var nodeIP = netip.MustParseAddr("10.255.0.1")

func (n *node) startAgent(extraEnv ...string) {
	n.t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "EDGENET_TEST_AGENT="+n.socket, "EDGENET_TEST_DIR="+n.stateDir,
		"EDGENET_TEST_CIDR="+n.cidr, "EDGENET_TEST_BLOCKBITS="+strconv.Itoa(n.bits))
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	stdout, _ := cmd.StdoutPipe()
	if err := n.ns.Do(func(ns.NetNS) error { return cmd.Start() }); err != nil {
		n.t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		n.t.Fatalf("agent did not start: %q %v", line, err)
	}
	n.agent = cmd
}

// killAgent SIGKILLs the agent process we started.
func (n *node) killAgent() {
	if n.agent == nil {
		return
	}
	n.agent.Process.Signal(syscall.SIGKILL)
	n.agent.Wait()
	n.agent = nil
}

func (n *node) stopAgent() { n.killAgent() }

func (n *node) conflist(cniVersion, pluginExtra string) *libcni.NetworkConfigList {
	n.t.Helper()
	extra := ""
	if pluginExtra != "" {
		extra = ", " + pluginExtra
	}
	l, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(
		`{"cniVersion":%q,"name":"edgenet","plugins":[{"type":"edgenet-cni"%s}]}`, cniVersion, extra)))
	if err != nil {
		n.t.Fatal(err)
	}
	return l
}

func rt(id, netnsPath, ifName string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netnsPath, IfName: ifName,
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "pod-" + id}}}
}

// snapshot is the node state bad input must not change.
type snapshot struct {
	links, routes, ips []string
}

func (n *node) snapshot() snapshot {
	n.t.Helper()
	var s snapshot
	if err := n.ns.Do(func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			s.links = append(s.links, l.Attrs().Name)
		}
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			s.routes = append(s.routes, r.String())
		}
		return nil
	}); err != nil {
		n.t.Fatal(err)
	}
	s.ips = n.allocatedIPs()
	slices.Sort(s.links)
	slices.Sort(s.routes)
	return s
}

// allocatedIPs reads the agent's durable state: one file per allocated IP.
func (n *node) allocatedIPs() []string {
	ents, err := os.ReadDir(filepath.Join(n.stateDir, "addrs"))
	if err != nil && !os.IsNotExist(err) {
		n.t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// hostVeths lists this plugin's host-side veths in the node.
func (n *node) hostVeths() []string {
	var out []string
	for _, l := range n.snapshot().links {
		if isHostVethName(l) {
			out = append(out, l)
		}
	}
	return out
}

func cniCode(err error) (uint, bool) {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code, true
	}
	return 0, false
}

func withTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
