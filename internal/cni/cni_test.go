package cni

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

func addOK(t *testing.T, n *node, list *libcni.NetworkConfigList, r *libcni.RuntimeConf) *types100.Result {
	t.Helper()
	res, err := n.cni.AddNetworkList(withTimeout(t), list, r)
	if err != nil {
		t.Fatalf("ADD %s: %v", r.ContainerID, err)
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

func podIP(t testing.TB, res *types100.Result) netip.Addr {
	t.Helper()
	if len(res.IPs) != 1 {
		t.Fatalf("result has %d IPs, want 1: %v", len(res.IPs), res)
	}
	ip, _ := netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
	return ip
}

func TestAddCheckDel(t *testing.T) {
	n := newNode(t, "10.44.0.0/16", 26)
	pod := newNetns(t, "p")
	list := n.conflist("1.1.0", `"mtu":1400`)
	r := rt("c1", pod.Path(), "eth0")
	res := addOK(t, n, list, r)
	ip := podIP(t, res)
	if !netip.MustParsePrefix("10.44.0.0/16").Contains(ip) || ip == netip.MustParseAddr("10.44.0.0") {
		t.Fatalf("pod IP %s not a usable pod CIDR address", ip)
	}
	veth := HostVethName("c1", "eth0")
	if len(res.Interfaces) != 2 || res.Interfaces[0].Name != veth || res.Interfaces[1].Name != "eth0" || res.Interfaces[1].Sandbox != pod.Path() {
		t.Errorf("result interfaces = %v", res.Interfaces)
	}
	if res.IPs[0].Gateway.String() != "169.254.1.1" || *res.IPs[0].Interface != 1 {
		t.Errorf("result IP config = %+v", res.IPs[0])
	}

	// Pod side: ip/32, default via 169.254.1.1 onlink, permanent neighbour, MTU.
	pod.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().MTU != 1400 {
			t.Errorf("pod MTU %d, want 1400", l.Attrs().MTU)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if !hasAddr(addrs, ip) {
			t.Errorf("pod addresses %v lack %s/32", addrs, ip)
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		if !hasDefaultVia(routes, GatewayIP) {
			t.Errorf("pod routes %v lack default via %s", routes, GatewayIP)
		}
		neighs, _ := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if !slices.ContainsFunc(neighs, func(nb netlink.Neigh) bool {
			return nb.IP.Equal(GatewayIP.AsSlice()) && nb.State == netlink.NUD_PERMANENT
		}) {
			t.Errorf("pod has no permanent neighbour for %s: %v", GatewayIP, neighs)
		}
		return nil
	})
	// Node side: route ip/32 dev veth scope link, proxy_arp.
	n.ns.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(veth)
		if err != nil {
			t.Fatalf("host veth: %v", err)
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			return r.Dst != nil && r.Dst.String() == ip.String()+"/32" && r.Scope == netlink.SCOPE_LINK
		}) {
			t.Errorf("host routes on %s = %v, want %s/32 scope link", veth, routes, ip)
		}
		if v, _ := readSysctl("net/ipv4/conf/" + veth + "/proxy_arp"); v != "1" {
			t.Errorf("proxy_arp = %q", v)
		}
		return nil
	})

	if err := n.cni.CheckNetworkList(withTimeout(t), list, r); err != nil {
		t.Errorf("CHECK after ADD: %v", err)
	}
	if got := n.allocatedIPs(); !slices.Equal(got, []string{ip.String()}) {
		t.Errorf("agent state %v, want [%s]", got, ip)
	}

	for i := range 2 {
		if err := n.cni.DelNetworkList(withTimeout(t), list, r); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if v := n.hostVeths(); len(v) != 0 {
		t.Errorf("host veths left after DEL: %v", v)
	}
	if got := n.allocatedIPs(); len(got) != 0 {
		t.Errorf("IPs left after DEL: %v", got)
	}
	pod.Do(func(ns.NetNS) error {
		if _, err := netlink.LinkByName("eth0"); err == nil {
			t.Error("pod eth0 left after DEL")
		}
		return nil
	})
	// DEL of a container never added, with and without a netns.
	if err := n.cni.DelNetworkList(withTimeout(t), list, rt("never-added", pod.Path(), "eth0")); err != nil {
		t.Errorf("DEL unknown container: %v", err)
	}
	if err := n.cni.DelNetworkList(withTimeout(t), list, rt("never-added", "/run/netns/edgenet-t-cni-gone", "eth0")); err != nil {
		t.Errorf("DEL with a missing netns: %v", err)
	}
	if err := n.cni.DelNetworkList(withTimeout(t), list, rt("never-added", "", "eth0")); err != nil {
		t.Errorf("DEL without CNI_NETNS: %v", err)
	}
}

func TestDelAfterNetnsGone(t *testing.T) {
	n := newNode(t, "10.45.0.0/24", 28)
	list := n.conflist("1.1.0", "")
	pod := newNetns(t, "p")
	r := rt("c1", pod.Path(), "eth0")
	addOK(t, n, list, r)
	// The runtime deleted the netns first (the kernel removes the veth pair with it).
	name := strings.TrimPrefix(pod.Path(), "/run/netns/")
	pod.Close()
	if out, err := execIP("netns", "del", name); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := n.cni.DelNetworkList(withTimeout(t), list, r); err != nil {
		t.Fatalf("DEL after netns removal: %v", err)
	}
	if got := n.allocatedIPs(); len(got) != 0 {
		t.Errorf("IPs left: %v", got)
	}
	execIP("netns", "add", name) // so the cleanup's delete succeeds
}

func TestCheckDetectsTampering(t *testing.T) {
	n := newNode(t, "10.46.0.0/24", 26)
	list := n.conflist("1.1.0", "")
	tamper := []struct {
		name string
		do   func(t *testing.T, pod ns.NetNS, veth string, ip netip.Addr)
		want string
	}{
		{"host route removed", func(t *testing.T, _ ns.NetNS, veth string, ip netip.Addr) {
			n.ns.Do(func(ns.NetNS) error {
				l, _ := netlink.LinkByName(veth)
				return netlink.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: hostPrefix(ip), Scope: netlink.SCOPE_LINK})
			})
		}, "host has no route"},
		{"pod address removed", func(t *testing.T, pod ns.NetNS, _ string, ip netip.Addr) {
			pod.Do(func(ns.NetNS) error {
				l, _ := netlink.LinkByName("eth0")
				return netlink.AddrDel(l, &netlink.Addr{IPNet: hostPrefix(ip)})
			})
		}, "lacks"},
		{"pod default route removed", func(t *testing.T, pod ns.NetNS, _ string, _ netip.Addr) {
			pod.Do(func(ns.NetNS) error {
				l, _ := netlink.LinkByName("eth0")
				return netlink.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: defaultRoute(), Gw: GatewayIP.AsSlice()})
			})
		}, "no default route via 169.254.1.1"},
		{"host veth down", func(t *testing.T, _ ns.NetNS, veth string, _ netip.Addr) {
			n.ns.Do(func(ns.NetNS) error {
				l, _ := netlink.LinkByName(veth)
				return netlink.LinkSetDown(l)
			})
		}, "down"},
		{"proxy_arp off", func(t *testing.T, _ ns.NetNS, veth string, _ netip.Addr) {
			n.ns.Do(func(ns.NetNS) error { return writeSysctl("net/ipv4/conf/"+veth+"/proxy_arp", "0") })
		}, "proxy_arp"},
		{"IP reservation gone", func(t *testing.T, _ ns.NetNS, _ string, ip netip.Addr) {
			n.killAgent()
			os.Remove(n.stateDir + "/addrs/" + ip.String())
			n.startAgent()
		}, "holds no IP"},
	}
	for i, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			pod := newNetns(t, "p")
			id := fmt.Sprint("t", i)
			r := rt(id, pod.Path(), "eth0")
			ip := podIP(t, addOK(t, n, list, r))
			defer n.cni.DelNetworkList(withTimeout(t), list, r)
			if err := n.cni.CheckNetworkList(withTimeout(t), list, r); err != nil {
				t.Fatalf("CHECK before tampering: %v", err)
			}
			tt.do(t, pod, HostVethName(id, "eth0"), ip)
			err := n.cni.CheckNetworkList(withTimeout(t), list, r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CHECK after %s = %v, want error with %q", tt.name, err, tt.want)
			}
			if _, ok := cniCode(err); !ok {
				t.Errorf("CHECK error is not a CNI error: %T %v", err, err)
			}
		})
	}
}

// TestBadInputChangesNothing feeds the plugin what a runtime or an admin could get wrong; each must give the
// spec's error code and leave links, routes and IP reservations as they were.
func TestBadInputChangesNothing(t *testing.T) {
	n := newNode(t, "10.47.0.0/24", 26)
	pod := newNetns(t, "p")
	pluginPath := n.binDir + "/edgenet-cni"
	good := `{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni"}`
	args := func(cmd, netnsPath, ifName string) *invoke.Args {
		return &invoke.Args{Command: cmd, ContainerID: "bad1", NetNS: netnsPath, IfName: ifName, Path: n.binDir}
	}
	// Taken once the pod has eth0, below.
	busy := newNetns(t, "p")
	busy.Do(func(ns.NetNS) error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"})
	})
	// A stale non-veth link where the host veth must go: fails after the IP is allocated, so ADD must roll back.
	n.ns.Do(func(ns.NetNS) error {
		return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: HostVethName("bad1", "eth1")}})
	})
	tests := []struct {
		name     string
		conf     string
		args     *invoke.Args
		wantCode uint
		wantMsg  string
	}{
		{"garbage JSON", `{"cniVersion":"1.1.0",`, args("ADD", pod.Path(), "eth0"), types.ErrDecodingFailure, "unmarshal"},
		{"not an object", `[1,2]`, args("ADD", pod.Path(), "eth0"), types.ErrDecodingFailure, ""},
		{"missing CNI_NETNS", good, args("ADD", "", "eth0"), types.ErrInvalidEnvironmentVariables, "CNI_NETNS"},
		{"missing CNI_IFNAME", good, args("ADD", pod.Path(), ""), types.ErrInvalidEnvironmentVariables, "CNI_IFNAME"},
		{"CNI_NETNS not a netns", good, args("ADD", "/proc/self/status", "eth0"), types.ErrInvalidEnvironmentVariables, "CNI_NETNS"},
		{"CNI_NETNS missing file", good, args("ADD", "/run/netns/edgenet-t-cni-none", "eth0"), types.ErrInvalidEnvironmentVariables, "CNI_NETNS"},
		{"CNI_NETNS is the node", good, args("ADD", n.ns.Path(), "eth0"), types.ErrInvalidEnvironmentVariables, "node's own"},
		{"unsupported cniVersion", `{"cniVersion":"0.2.0","name":"edgenet","type":"edgenet-cni"}`, args("ADD", pod.Path(), "eth0"), types.ErrIncompatibleCNIVersion, "incompatible"},
		{"unparseable cniVersion", `{"cniVersion":"one","name":"edgenet","type":"edgenet-cni"}`, args("ADD", pod.Path(), "eth0"), types.ErrIncompatibleCNIVersion, "one"},
		{"missing name", `{"cniVersion":"1.1.0","type":"edgenet-cni"}`, args("ADD", pod.Path(), "eth0"), types.ErrInvalidNetworkConfig, "name"},
		{"mtu too small", `{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni","mtu":100}`, args("ADD", pod.Path(), "eth0"), types.ErrInvalidNetworkConfig, "mtu"},
		{"mtu not a number", `{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni","mtu":"big"}`, args("ADD", pod.Path(), "eth0"), types.ErrDecodingFailure, "mtu"},
		{"relative socket", `{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni","ipamSocket":"ipam.sock"}`, args("ADD", pod.Path(), "eth0"), types.ErrInvalidNetworkConfig, "ipamSocket"},
		{"foreign ipam", `{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni","ipam":{"type":"host-local"}}`, args("ADD", pod.Path(), "eth0"), types.ErrUnsupportedField, "ipam.type"},
		{"bad CNI_ARGS", good, &invoke.Args{Command: "ADD", ContainerID: "bad1", NetNS: pod.Path(), IfName: "eth0", Path: n.binDir, PluginArgsStr: "K8S_POD_NAME"}, types.ErrInvalidEnvironmentVariables, "CNI_ARGS"},
		{"interface exists in pod", good, args("ADD", busy.Path(), "eth0"), types.ErrInvalidEnvironmentVariables, "already exists"},
		{"agent unreachable", `{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni","ipamSocket":"@edgenet-t-cni-nobody"}`, args("ADD", pod.Path(), "eth0"), types.ErrTryAgainLater, "unavailable"},
		{"fails after allocation", good, args("ADD", pod.Path(), "eth1"), types.ErrInternal, "not a veth"},
		{"CHECK without prevResult", good, args("CHECK", pod.Path(), "eth0"), types.ErrInvalidNetworkConfig, "prevResult"},
		{"DEL garbage JSON", `nope`, args("DEL", pod.Path(), "eth0"), types.ErrDecodingFailure, ""},
		{"GC on 1.0.0", `{"cniVersion":"1.0.0","name":"edgenet","type":"edgenet-cni"}`, &invoke.Args{Command: "GC", Path: n.binDir}, types.ErrIncompatibleCNIVersion, "GC"},
		{"unknown command", good, args("FROB", pod.Path(), "eth0"), types.ErrInvalidEnvironmentVariables, "FROB"},
	}
	before := n.snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := invoke.ExecPluginWithResult(withTimeout(t), pluginPath, []byte(tt.conf), tt.args, n.exec)
			if tt.args.Command != "ADD" {
				err = invoke.ExecPluginWithoutResult(withTimeout(t), pluginPath, []byte(tt.conf), tt.args, n.exec)
			}
			code, ok := cniCode(err)
			if !ok || code != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v (code %d), want code %d with %q", err, code, tt.wantCode, tt.wantMsg)
			}
			after := n.snapshot()
			if !slices.Equal(before.links, after.links) || !slices.Equal(before.routes, after.routes) || !slices.Equal(before.ips, after.ips) {
				t.Errorf("node changed:\nbefore %+v\nafter  %+v", before, after)
			}
			pod.Do(func(ns.NetNS) error {
				if l, err := netlink.LinkByName("eth0"); err == nil {
					t.Errorf("pod got %s", l.Attrs().Name)
				}
				return nil
			})
		})
	}
}

// TestVersions runs ADD/CHECK/DEL with every configuration version the plugin accepts; results come back in it.
func TestVersions(t *testing.T) {
	n := newNode(t, "10.48.0.0/24", 26)
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			pod := newNetns(t, "p")
			list := n.conflist(v, "")
			r := rt("v"+strings.ReplaceAll(v, ".", ""), pod.Path(), "eth0")
			res, err := n.cni.AddNetworkList(withTimeout(t), list, r)
			if err != nil {
				t.Fatal(err)
			}
			if res.Version() != v {
				t.Errorf("result version %s, want %s", res.Version(), v)
			}
			if v >= "0.4.0" {
				if err := n.cni.CheckNetworkList(withTimeout(t), list, r); err != nil {
					t.Errorf("CHECK: %v", err)
				}
			}
			if err := n.cni.DelNetworkList(withTimeout(t), list, r); err != nil {
				t.Errorf("DEL: %v", err)
			}
			if len(n.allocatedIPs()) != 0 || len(n.hostVeths()) != 0 {
				t.Errorf("left behind: %v %v", n.allocatedIPs(), n.hostVeths())
			}
		})
	}
}

func TestGCAndStatus(t *testing.T) {
	n := newNode(t, "10.49.0.0/24", 26)
	list := n.conflist("1.1.0", "")
	if err := n.cni.GetStatusNetworkList(withTimeout(t), list); err != nil {
		t.Errorf("STATUS with agent up: %v", err)
	}
	pod := newNetns(t, "p")
	for _, id := range []string{"keep", "drop1", "drop2"} {
		addOK(t, n, list, rt(id, pod.Path(), "e"+id))
	}
	// A runtime without our cache: only the plugin's GC can clean up (libcni DELs cached attachments itself).
	fresh := libcni.NewCNIConfigWithCacheDir([]string{n.binDir}, t.TempDir(), n.exec)
	if err := fresh.GCNetworkList(withTimeout(t), list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "keep", IfName: "ekeep"}}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if v := n.hostVeths(); !slices.Equal(v, []string{HostVethName("keep", "ekeep")}) {
		t.Errorf("host veths after GC %v, want only keep's", v)
	}
	if ips := n.allocatedIPs(); len(ips) != 1 {
		t.Errorf("IPs after GC %v, want 1", ips)
	}
	if err := n.cni.CheckNetworkList(withTimeout(t), list, rt("keep", pod.Path(), "ekeep")); err != nil {
		t.Errorf("CHECK of kept attachment after GC: %v", err)
	}

	n.killAgent()
	err := n.cni.GetStatusNetworkList(withTimeout(t), list)
	if code, _ := cniCode(err); code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS with agent down = %v, want code 50", err)
	}
	n.startAgent("EDGENET_TEST_NOTREADY=1")
	err = n.cni.GetStatusNetworkList(withTimeout(t), list)
	if code, _ := cniCode(err); code != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("STATUS with agent not ready = %v, want code 50", err)
	}
	_, err = n.cni.AddNetworkList(withTimeout(t), list, rt("late", pod.Path(), "elate"))
	if code, _ := cniCode(err); code != types.ErrTryAgainLater {
		t.Errorf("ADD with agent not ready = %v, want code 11", err)
	}
}

func TestExhaustion(t *testing.T) {
	n := newNode(t, "10.50.0.0/29", 30) // 2 blocks of 4, each block's first address reserved: 6 pods
	list := n.conflist("1.1.0", "")
	pod := newNetns(t, "p")
	for i := range 6 {
		addOK(t, n, list, rt(fmt.Sprint("x", i), pod.Path(), fmt.Sprint("e", i)))
	}
	before := n.snapshot()
	_, err := n.cni.AddNetworkList(withTimeout(t), list, rt("x6", pod.Path(), "e6"))
	code, _ := cniCode(err)
	if code != ErrCodeExhausted || !strings.Contains(err.Error(), "pod CIDR 10.50.0.0/29 is exhausted") {
		t.Fatalf("7th ADD = %v (code %d), want code %d naming the exhausted pod CIDR", err, code, ErrCodeExhausted)
	}
	if after := n.snapshot(); !slices.Equal(before.links, after.links) || !slices.Equal(before.ips, after.ips) {
		t.Errorf("failed ADD changed the node: %v -> %v", before, after)
	}
	if err := n.cni.DelNetworkList(withTimeout(t), list, rt("x3", pod.Path(), "e3")); err != nil {
		t.Fatal(err)
	}
	addOK(t, n, list, rt("x6", pod.Path(), "e6"))
}

// TestTraffic sends real ICMP and TCP from pods through their veths: to the node and between two pods.
func TestTraffic(t *testing.T) {
	n := newNode(t, "10.51.0.0/24", 26)
	list := n.conflist("1.1.0", "")
	podA, podB := newNetns(t, "p"), newNetns(t, "p")
	ipA := podIP(t, addOK(t, n, list, rt("a", podA.Path(), "eth0")))
	ipB := podIP(t, addOK(t, n, list, rt("b", podB.Path(), "eth0")))

	if err := ping(podA, nodeIP); err != nil {
		t.Errorf("ping pod A -> node %s: %v", nodeIP, err)
	}
	if err := ping(podA, ipB); err != nil {
		t.Errorf("ping pod A -> pod B %s: %v", ipB, err)
	}
	if err := tcpEcho(n.ns, nodeIP, podA, ipA); err != nil {
		t.Errorf("TCP pod A -> node: %v", err)
	}
	if err := tcpEcho(podB, ipB, podA, ipA); err != nil {
		t.Errorf("TCP pod A -> pod B: %v", err)
	}
}

func ping(from ns.NetNS, to netip.Addr) error {
	return from.Do(func(ns.NetNS) error {
		c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 4242, Seq: 1, Data: []byte("edgenet")}}
		b, _ := msg.Marshal(nil)
		if _, err := c.WriteTo(b, &net.IPAddr{IP: to.AsSlice()}); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		for {
			nr, peer, err := c.ReadFrom(buf)
			if err != nil {
				return err
			}
			m, err := icmp.ParseMessage(1, buf[:nr])
			if err == nil && m.Type == ipv4.ICMPTypeEchoReply && peer.String() == to.String() {
				return nil
			}
		}
	})
}

// tcpEcho listens in srvNS on srvIP, dials from cliNS and checks the source address the server sees.
func tcpEcho(srvNS ns.NetNS, srvIP netip.Addr, cliNS ns.NetNS, cliIP netip.Addr) error {
	var l net.Listener
	if err := srvNS.Do(func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp4", netip.AddrPortFrom(srvIP, 0).String())
		return err
	}); err != nil {
		return err
	}
	defer l.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		defer c.Close()
		seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		io.Copy(c, c)
	}()
	return cliNS.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp4", l.Addr().String(), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			return fmt.Errorf("echo %q: %v", buf, err)
		}
		if src := <-seen; src != cliIP.String() {
			return fmt.Errorf("server saw source %s, want the pod IP %s", src, cliIP)
		}
		return nil
	})
}

func execIP(args ...string) (string, error) {
	out, err := execCommand("ip", args...)
	return out, err
}
