package routing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// The lab: a "site" netns holding a bridge, "node" netns and an "outside" host on it (eth0 each), and in each
// node a "pod" netns attached the way the CNI plugin does it (routed veth, /32, default via 169.254.1.1 onlink,
// proxy_arp on the host side, podIP/32 dev <veth> scope link on the node). Every namespace is ours and deleted
// at test end; nothing leaves them.

var podCIDR = pfx("172.27.0.0/16")

type labNode struct {
	name  string
	ns    string // netns name
	ip    netip.Addr
	block netip.Prefix
	pod   labPod
}

type labPod struct {
	ns   string
	ip   netip.Addr
	veth string
}

type lab struct {
	t       testing.TB
	site    string
	outside string
	nodes   []*labNode
}

func requireRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNS creates netns edgenet-t-routing-<tag>-<rand>, with lo up, removed at test end.
func newNS(t testing.TB, tag string) string {
	t.Helper()
	name := "edgenet-t-routing-" + tag + "-" + randHex(6)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// plug connects netns h to a site bridge as ifName with addr.
func (l *lab) plug(h, port, bridge, ifName string, addr netip.Prefix) {
	run(l.t, "ip", "-n", l.site, "link", "add", port, "type", "veth", "peer", "name", ifName, "netns", h)
	run(l.t, "ip", "-n", l.site, "link", "set", port, "master", bridge, "up")
	run(l.t, "ip", "-n", h, "addr", "add", addr.String(), "dev", ifName)
	run(l.t, "ip", "-n", h, "link", "set", ifName, "up")
}

// addNode adds a node netns on bridge with a pod at podIP (MTU podMTU).
func (l *lab) addNode(name, bridge, ip, block, podIP string, podMTU int) *labNode {
	n := &labNode{name: name, ns: newNS(l.t, name), ip: addr(ip), block: pfx(block)}
	l.plug(n.ns, "s-"+name, bridge, "eth0", netip.PrefixFrom(n.ip, 24))
	n.pod = l.attachPod(n, addr(podIP), podMTU)
	l.nodes = append(l.nodes, n)
	return n
}

// newLab builds two nodes (n1 192.168.50.10 with block 172.27.0.64/26, n2 .11 with 172.27.0.128/26), one pod on
// each with MTU podMTU, and an outside host 192.168.50.100.
func newLab(t *testing.T, podMTU int) *lab {
	requireRoot(t)
	l := &lab{t: t, site: newNS(t, "site")}
	run(t, "ip", "-n", l.site, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.site, "link", "set", "br0", "up")
	l.outside = newNS(t, "out")
	l.plug(l.outside, "s-out", "br0", "eth0", pfx("192.168.50.100/24"))
	l.addNode("n1", "br0", "192.168.50.10", "172.27.0.64/26", "172.27.0.65", podMTU)
	l.addNode("n2", "br0", "192.168.50.11", "172.27.0.128/26", "172.27.0.129", podMTU)
	return l
}

// attachPod wires a pod netns to node n exactly like internal/cni's datapath.
func (l *lab) attachPod(n *labNode, ip netip.Addr, mtu int) labPod {
	p := labPod{ns: newNS(l.t, "pod"), ip: ip, veth: "enx" + randHex(11)}
	m := fmt.Sprint(mtu)
	run(l.t, "ip", "-n", n.ns, "link", "add", p.veth, "mtu", m, "type", "veth", "peer", "name", "eth0", "mtu", m, "netns", p.ns)
	run(l.t, "ip", "netns", "exec", n.ns, "sysctl", "-qw", "net.ipv4.conf."+p.veth+".proxy_arp=1")
	run(l.t, "ip", "-n", n.ns, "link", "set", p.veth, "up")
	run(l.t, "ip", "-n", n.ns, "route", "add", ip.String()+"/32", "dev", p.veth, "scope", "link")
	h := l.handle(n.ns)
	link, err := h.LinkByName(p.veth)
	if err != nil {
		l.t.Fatal(err)
	}
	run(l.t, "ip", "-n", p.ns, "addr", "add", ip.String()+"/32", "dev", "eth0")
	run(l.t, "ip", "-n", p.ns, "link", "set", "eth0", "up")
	run(l.t, "ip", "-n", p.ns, "neigh", "add", "169.254.1.1", "lladdr", link.Attrs().HardwareAddr.String(), "dev", "eth0", "nud", "permanent")
	run(l.t, "ip", "-n", p.ns, "route", "add", "169.254.1.1/32", "dev", "eth0", "scope", "link")
	run(l.t, "ip", "-n", p.ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0", "onlink")
	return p
}

// handle is a netlink handle inside netns name, closed at test end.
func (l *lab) handle(name string) *netlink.Handle {
	l.t.Helper()
	nsh, err := netns.GetFromName(name)
	if err != nil {
		l.t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(h.Close)
	return h
}

func (l *lab) nodeSet() []Node {
	var out []Node
	for _, n := range l.nodes {
		out = append(out, n.node())
	}
	return out
}

func (n *labNode) node() Node { return Node{Name: n.name, IP: n.ip, Blocks: []netip.Prefix{n.block}} }

func (l *lab) manager(n *labNode, mode Mode) *Manager {
	l.t.Helper()
	m, err := NewManager(Config{Mode: mode, PodCIDR: podCIDR, NetNS: "/run/netns/" + n.ns})
	if err != nil {
		l.t.Fatal(err)
	}
	return m
}

func apply(t testing.TB, m *Manager, local Node, nodes []Node) Changes {
	t.Helper()
	ch, err := m.Apply(context.Background(), local, nodes)
	if err != nil {
		t.Fatalf("Apply on %s: %v", local.Name, err)
	}
	return ch
}

// ping sends ICMP echo requests of size payload bytes (DF set) from netns src to dst and waits up to a second
// for the reply; tries times, to absorb the first packet's ARP resolution. (No ping(8) on this machine.)
func ping(t testing.TB, src string, dst netip.Addr, payload, tries int) error {
	t.Helper()
	var c *net.IPConn
	inNS(t, src, func() error {
		pc, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		c = pc.(*net.IPConn)
		return nil
	})
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	raw.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	})
	if err != nil {
		return err
	}
	id := int(randUint16())
	for seq := 1; seq <= tries; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: make([]byte, payload)}}
		b, _ := msg.Marshal(nil)
		if _, err = c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("ping %s from %s: %w", dst, src, err)
		}
		deadline := time.Now().Add(time.Second)
		c.SetReadDeadline(deadline)
		for {
			buf := make([]byte, 65536)
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				if seq < tries {
					t.Logf("ping %s from %s: no reply to try %d", dst, src, seq)
				}
				break
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq && from.String() == dst.String() {
				return nil
			}
		}
	}
	return fmt.Errorf("ping %s (%d bytes) from %s: no reply", dst, payload, src)
}

func randUint16() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return uint16(b[0])<<8 | uint16(b[1])
}

func mustPing(t testing.TB, src string, dst netip.Addr) {
	t.Helper()
	if err := ping(t, src, dst, 56, 3); err != nil {
		t.Error(err)
	}
}

func mustNotPing(t testing.TB, src string, dst netip.Addr) {
	t.Helper()
	if err := ping(t, src, dst, 56, 1); err == nil {
		t.Errorf("ping %s from %s got a reply, want none", dst, src)
	}
}

func inNS(t testing.TB, name string, f func() error) {
	t.Helper()
	n, err := ns.GetNS("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Do(func(ns.NetNS) error { return f() }); err != nil {
		t.Fatal(err)
	}
}

// tcpSource opens a TCP connection from netns src to dst (listening in netns dstNS), exchanges a message both
// ways and returns the source address the listener saw.
func tcpSource(t testing.TB, src, dstNS string, dst netip.Addr) netip.Addr {
	t.Helper()
	var ln net.Listener
	inNS(t, dstNS, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(dst, 0).String())
		return err
	})
	defer ln.Close()
	seen := make(chan netip.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(seen)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(buf)
		}
		seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	}()
	var c net.Conn
	inNS(t, src, func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 3*time.Second)
		return err
	})
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("tcp %s → %s: echo %q, %v", src, dst, buf, err)
	}
	return <-seen
}

// ourRoutes lists the routes Manager owns in netns name, as "ip route"-like strings.
func (l *lab) ourRoutes(name string) []string {
	l.t.Helper()
	h := l.handle(name)
	rs, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Type == unix.RTN_BLACKHOLE {
			out = append(out, "blackhole "+r.Dst.String())
			continue
		}
		dev := "?"
		if link, err := h.LinkByIndex(r.LinkIndex); err == nil {
			dev = link.Attrs().Name
		}
		s := fmt.Sprintf("%s via %s dev %s", r.Dst, r.Gw, dev)
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		out = append(out, s)
	}
	return out
}

// quiet runs f and fails if netlink reports any route change, or any link, address, neighbour or FDB change
// on the vxlan device, in netns name meanwhile.
func (l *lab) quiet(name, what string, f func()) {
	l.t.Helper()
	nsh, err := netns.GetFromName(name)
	if err != nil {
		l.t.Fatal(err)
	}
	defer nsh.Close()
	done := make(chan struct{})
	routes := make(chan netlink.RouteUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	neighs := make(chan netlink.NeighUpdate, 64)
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: &nsh}); err != nil {
		l.t.Fatal(err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &nsh}); err != nil {
		l.t.Fatal(err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &nsh}); err != nil {
		l.t.Fatal(err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{Namespace: &nsh}); err != nil {
		l.t.Fatal(err)
	}
	f()
	time.Sleep(200 * time.Millisecond)
	close(done)
	var vxIndex int
	if link, err := l.handle(name).LinkByName(DefaultVXLANDevice); err == nil {
		vxIndex = link.Attrs().Index
	}
	var events []string
	for routes != nil || links != nil || addrs != nil || neighs != nil {
		select {
		case u, ok := <-routes:
			if !ok {
				routes = nil
			} else if u.Family == unix.AF_INET { // IPv6 link-local housekeeping is not ours
				events = append(events, fmt.Sprintf("route %d %s", u.Type, u.Route))
			}
		case u, ok := <-links:
			if !ok {
				links = nil
			} else if u.Attrs() != nil && u.Attrs().Name == DefaultVXLANDevice {
				events = append(events, fmt.Sprintf("link %d %s", u.Header.Type, u.Attrs().Name))
			}
		case u, ok := <-addrs:
			if !ok {
				addrs = nil
			} else if u.LinkIndex == vxIndex && u.LinkAddress.IP.To4() != nil {
				events = append(events, fmt.Sprintf("addr %v %s", u.NewAddr, u.LinkAddress.String()))
			}
		case u, ok := <-neighs:
			if !ok {
				neighs = nil
			} else if u.LinkIndex == vxIndex && u.Family != unix.AF_INET6 {
				events = append(events, fmt.Sprintf("neigh %d %s %s", u.Type, u.IP, u.HardwareAddr))
			}
		case <-time.After(100 * time.Millisecond):
			routes, links, addrs, neighs = nil, nil, nil, nil
		}
	}
	if len(events) > 0 {
		l.t.Errorf("%s changed the kernel state of %s:\n\t%s", what, name, strings.Join(events, "\n\t"))
	}
}

// TestQuietSeesChanges keeps the no-churn checks honest: a route change during quiet must be reported.
func TestQuietSeesChanges(t *testing.T) {
	requireRoot(t)
	name := newNS(t, "quiet")
	run(t, "ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	run(t, "ip", "-n", name, "link", "set", "eth0", "up")
	rec := &recorder{TB: t}
	(&lab{t: rec}).quiet(name, "adding a route", func() {
		run(t, "ip", "-n", name, "route", "add", "10.99.0.0/24", "dev", "eth0")
	})
	if !rec.failed {
		t.Error("quiet did not report a route added meanwhile")
	}
}

// recorder notes Errorf instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
