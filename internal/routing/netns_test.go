package routing

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestDatapath(t *testing.T) {
	for _, mode := range []Mode{Direct, VXLAN} {
		t.Run(string(mode), func(t *testing.T) { testDatapath(t, mode) })
	}
}

func testDatapath(t *testing.T, mode Mode) {
	l := newLab(t, PodMTU(mode, 1500))
	n1, n2 := l.nodes[0], l.nodes[1]
	mustNotPing(t, n1.pod.ns, n2.pod.ip) // nothing routes pods before us

	for _, n := range l.nodes {
		if ch := apply(t, l.manager(n, mode), n.node(), l.nodeSet()); ch.Zero() || !ch.Masquerade {
			t.Errorf("first Apply on %s reported %+v", n.name, ch)
		}
	}

	wantRoutes := map[Mode][]string{
		Direct: {"blackhole 172.27.0.64/26", "172.27.0.128/26 via 192.168.50.11 dev eth0"},
		VXLAN:  {"blackhole 172.27.0.64/26", "172.27.0.128/26 via 172.27.0.128 dev edgenet.vxlan onlink"},
	}[mode]
	if got := l.ourRoutes(n1.ns); !slices.Equal(got, wantRoutes) {
		t.Errorf("routes of n1 = %q, want %q", got, wantRoutes)
	}
	if v := readSysctlIn(t, n1.ns, "net/ipv4/ip_forward"); v != "1" {
		t.Errorf("ip_forward = %q", v)
	}

	// pod ↔ pod across nodes, ICMP and TCP; the pod IP is kept.
	mustPing(t, n1.pod.ns, n2.pod.ip)
	mustPing(t, n2.pod.ns, n1.pod.ip)
	if src := tcpSource(t, n1.pod.ns, n2.pod.ns, n2.pod.ip); src != n1.pod.ip {
		t.Errorf("pod1 → pod2 arrived from %s, want the pod IP %s", src, n1.pod.ip)
	}
	if src := tcpSource(t, n2.pod.ns, n1.pod.ns, n1.pod.ip); src != n2.pod.ip {
		t.Errorf("pod2 → pod1 arrived from %s, want the pod IP %s", src, n2.pod.ip)
	}

	// node ↔ remote pod, both ways.
	mustPing(t, n1.ns, n2.pod.ip)
	mustPing(t, n2.pod.ns, n1.ip)
	wantNodeSrc := n1.ip // direct: the node's site address
	if mode == VXLAN {
		wantNodeSrc = n1.block.Addr() // the VTEP address, routed back through the overlay
	}
	if src := tcpSource(t, n1.ns, n2.pod.ns, n2.pod.ip); src != wantNodeSrc {
		t.Errorf("node1 → pod2 arrived from %s, want %s", src, wantNodeSrc)
	}
	wantPodSrc := n2.pod.ip // direct: n1 routes the pod block back via n2
	if mode == VXLAN {
		wantPodSrc = n2.ip // masqueraded: unencapsulated pod-sourced packets would meet n1's overlay route back
	}
	if src := tcpSource(t, n2.pod.ns, n1.ns, n1.ip); src != wantPodSrc {
		t.Errorf("pod2 → node1 arrived from %s, want %s", src, wantPodSrc)
	}

	// An outside host on the site network sees the node's IP.
	outside := addr("192.168.50.100")
	for _, n := range l.nodes {
		if src := tcpSource(t, n.pod.ns, l.outside, outside); src != n.ip {
			t.Errorf("%s's pod → outside arrived from %s, want the node IP %s (masquerade)", n.name, src, n.ip)
		}
	}

	if mode == VXLAN {
		l.checkVXLANDevice(n1)
		// A full-size pod packet with DF set fits the overlay on a 1500-byte site network.
		if err := ping(t, n1.pod.ns, n2.pod.ip, 1450-28, 3); err != nil {
			t.Error(err)
		}
	}

	// Unallocated pod IPs of the local block are dropped, not sent to the default gateway; pods still win.
	l.checkBlackhole(n1)

	// Re-applying the same state changes nothing in the kernel.
	m1 := l.manager(n1, mode)
	apply(t, m1, n1.node(), l.nodeSet()) // a fresh Manager over existing state: a restart
	l.quiet(n1.ns, "re-Apply", func() {
		if ch := apply(t, m1, n1.node(), l.nodeSet()); !ch.Zero() {
			t.Errorf("re-Apply reported changes: %+v", ch)
		}
	})
	l.quiet(n1.ns, "restart", func() {
		if ch := apply(t, l.manager(n1, mode), n1.node(), l.nodeSet()); !ch.Zero() {
			t.Errorf("Apply by a new Manager reported changes: %+v", ch)
		}
	})
	mustPing(t, n1.pod.ns, n2.pod.ip)

	// Someone flushes our chain: the next Apply puts the masquerade back.
	run(t, "ip", "netns", "exec", n1.ns, "nft", "flush", "chain", "ip", NATTable, "postrouting")
	if ch := apply(t, m1, n1.node(), l.nodeSet()); !ch.Masquerade {
		t.Errorf("Apply after an external flush: %+v, want the masquerade re-applied", ch)
	}
	if src := tcpSource(t, n1.pod.ns, l.outside, outside); src != n1.ip {
		t.Errorf("after repair, pod → outside arrived from %s, want %s", src, n1.ip)
	}

	// n2 leaves: its routes (and overlay entries) go, and so does the traffic.
	ch := apply(t, m1, n1.node(), []Node{n1.node()})
	if ch.RoutesDeleted != 1 {
		t.Errorf("leave: %+v, want 1 route deleted", ch)
	}
	if got := l.ourRoutes(n1.ns); !slices.Equal(got, []string{"blackhole 172.27.0.64/26"}) {
		t.Errorf("routes after n2 left = %q", got)
	}
	if mode == VXLAN {
		if arp, fdb := l.vxlanEntries(n1); len(arp)+len(fdb) != 0 {
			t.Errorf("overlay entries after n2 left: %v %v", arp, fdb)
		}
	}
	mustNotPing(t, n1.pod.ns, n2.pod.ip)

	// And comes back.
	if ch := apply(t, m1, n1.node(), l.nodeSet()); ch.RoutesAdded != 1 {
		t.Errorf("rejoin: %+v, want 1 route added", ch)
	}
	mustPing(t, n1.pod.ns, n2.pod.ip)
}

func (l *lab) checkVXLANDevice(n *labNode) {
	l.t.Helper()
	link, err := l.handle(n.ns).LinkByName(DefaultVXLANDevice)
	if err != nil {
		l.t.Fatal(err)
	}
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		l.t.Fatalf("%s is a %s", DefaultVXLANDevice, link.Type())
	}
	if vx.MTU != 1450 || vx.VxlanId != DefaultVNI || vx.Port != DefaultVXLANPort || vx.Learning ||
		!vx.SrcAddr.Equal(n.ip.AsSlice()) || vx.HardwareAddr.String() != VTEPMAC(n.ip).String() || vx.Flags&net.FlagUp == 0 {
		l.t.Errorf("vxlan device: mtu %d vni %d port %d learning %v local %s mac %s flags %v",
			vx.MTU, vx.VxlanId, vx.Port, vx.Learning, vx.SrcAddr, vx.HardwareAddr, vx.Flags)
	}
	addrs, _ := l.handle(n.ns).AddrList(link, unix.AF_INET)
	if len(addrs) != 1 || addrs[0].IPNet.String() != n.block.Addr().String()+"/32" {
		l.t.Errorf("vxlan addresses = %v, want %s/32", addrs, n.block.Addr())
	}
	if v := readSysctlIn(l.t, n.ns, "net/ipv4/conf/"+DefaultVXLANDevice+"/rp_filter"); v != "2" {
		l.t.Errorf("rp_filter on the vxlan device = %q, want 2", v)
	}
	arp, fdb := l.vxlanEntries(n)
	if want := []string{"172.27.0.128 0e:ed:c0:a8:32:0b"}; !slices.Equal(arp, want) {
		l.t.Errorf("vxlan neighbours = %q, want %q", arp, want)
	}
	if want := []string{"192.168.50.11 0e:ed:c0:a8:32:0b"}; !slices.Equal(fdb, want) {
		l.t.Errorf("vxlan fdb = %q, want %q", fdb, want)
	}
}

// vxlanEntries lists the permanent neighbour and FDB entries on n's vxlan device as "ip mac".
func (l *lab) vxlanEntries(n *labNode) (arp, fdb []string) {
	h := l.handle(n.ns)
	link, err := h.LinkByName(DefaultVXLANDevice)
	if err != nil {
		l.t.Fatal(err)
	}
	for fam, out := range map[int]*[]string{unix.AF_INET: &arp, unix.AF_BRIDGE: &fdb} {
		ns, err := h.NeighList(link.Attrs().Index, fam)
		if err != nil {
			l.t.Fatal(err)
		}
		for _, e := range ns {
			if e.State&netlink.NUD_PERMANENT != 0 && e.IP != nil {
				*out = append(*out, e.IP.String()+" "+e.HardwareAddr.String())
			}
		}
	}
	return arp, fdb
}

func (l *lab) checkBlackhole(n *labNode) {
	l.t.Helper()
	run(l.t, "ip", "-n", n.ns, "route", "add", "default", "via", "192.168.50.100")
	defer run(l.t, "ip", "-n", n.ns, "route", "del", "default", "via", "192.168.50.100")
	h := l.handle(n.ns)
	unallocated := n.block.Addr().Next().Next().Next() // .67: no pod
	rs, err := h.RouteGet(unallocated.AsSlice())
	if err == nil && (len(rs) != 1 || rs[0].Type != unix.RTN_BLACKHOLE) {
		l.t.Errorf("route to unallocated %s = %v, want the blackhole", unallocated, rs)
	}
	rs, err = h.RouteGet(n.pod.ip.AsSlice())
	if err != nil || len(rs) != 1 || rs[0].Gw != nil {
		l.t.Errorf("route to pod %s = %v, %v; want its veth", n.pod.ip, rs, err)
	} else if link, _ := h.LinkByIndex(rs[0].LinkIndex); link == nil || link.Attrs().Name != n.pod.veth {
		l.t.Errorf("route to pod %s leaves by %v, want %s", n.pod.ip, link, n.pod.veth)
	}
}

func readSysctlIn(t testing.TB, nsName, key string) string {
	return strings.TrimSpace(run(t, "ip", "netns", "exec", nsName, "cat", "/proc/sys/"+key))
}

// TestModeSwitchAndCleanup moves a live cluster from direct routes to VXLAN and back, checks that a pod on the
// VTEP address is refused, and that Cleanup leaves nothing of ours.
func TestModeSwitchAndCleanup(t *testing.T) {
	l := newLab(t, 1450)
	n1, n2 := l.nodes[0], l.nodes[1]
	for _, mode := range []Mode{Direct, VXLAN, Direct} {
		for _, n := range l.nodes {
			apply(t, l.manager(n, mode), n.node(), l.nodeSet())
		}
		if _, err := l.handle(n1.ns).LinkByName(DefaultVXLANDevice); (err == nil) != (mode == VXLAN) {
			t.Errorf("%s: vxlan device present = %v", mode, err == nil)
		}
		mustPing(t, n1.pod.ns, n2.pod.ip)
		mustPing(t, n2.pod.ns, n1.pod.ip)
	}

	// A pod holding n2's VTEP address: Apply in VXLAN mode refuses and changes nothing.
	before := l.ourRoutes(n2.ns)
	squatter := l.attachPod(n2, n2.block.Addr(), 1450)
	_, err := l.manager(n2, VXLAN).Apply(context.Background(), n2.node(), l.nodeSet())
	if err == nil || !strings.Contains(err.Error(), "VTEP address 172.27.0.128 is in use") {
		t.Errorf("Apply with the VTEP address taken: %v", err)
	}
	if after := l.ourRoutes(n2.ns); !slices.Equal(before, after) {
		t.Errorf("refused Apply changed routes: %q → %q", before, after)
	}
	run(t, "ip", "-n", n2.ns, "link", "del", squatter.veth)

	// Bad input: clear error, nothing changed.
	_, err = l.manager(n1, Direct).Apply(context.Background(), n1.node(), append(l.nodeSet(), Node{Name: "n3", IP: n2.ip}))
	if err == nil || !strings.Contains(err.Error(), "same IP") {
		t.Errorf("Apply with a duplicate node IP: %v", err)
	}
	mustPing(t, n1.pod.ns, n2.pod.ip)

	// Updating the overlay in place: the MTU follows the site interface; a new VNI recreates the device.
	m := l.manager(n1, VXLAN)
	apply(t, m, n1.node(), l.nodeSet())
	run(t, "ip", "-n", n1.ns, "link", "set", "eth0", "mtu", "1400")
	if ch := apply(t, m, n1.node(), l.nodeSet()); ch.Link != 1 || ch.RoutesAdded+ch.RoutesReplaced+ch.RoutesDeleted != 0 {
		t.Errorf("site MTU change: %+v, want one link update and no route change", ch)
	}
	if link, err := l.handle(n1.ns).LinkByName(DefaultVXLANDevice); err != nil || link.Attrs().MTU != 1350 {
		t.Errorf("vxlan MTU after the site MTU went to 1400: %v %v", link, err)
	}
	run(t, "ip", "-n", n1.ns, "link", "set", "eth0", "mtu", "1500")
	for _, n := range l.nodes {
		m, err := NewManager(Config{Mode: VXLAN, PodCIDR: podCIDR, NetNS: "/run/netns/" + n.ns, VXLAN: VXLANConfig{VNI: 77}})
		if err != nil {
			t.Fatal(err)
		}
		apply(t, m, n.node(), l.nodeSet())
	}
	if link, err := l.handle(n1.ns).LinkByName(DefaultVXLANDevice); err != nil || link.(*netlink.Vxlan).VxlanId != 77 {
		t.Errorf("vxlan device after VNI change: %v %v", link, err)
	}
	mustPing(t, n1.pod.ns, n2.pod.ip)

	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := l.ourRoutes(n1.ns); len(got) != 0 {
		t.Errorf("routes after Cleanup: %q", got)
	}
	var nf netlink.LinkNotFoundError
	if _, err := l.handle(n1.ns).LinkByName(DefaultVXLANDevice); !errors.As(err, &nf) {
		t.Errorf("vxlan device after Cleanup: %v", err)
	}
	if out := run(t, "ip", "netns", "exec", n1.ns, "nft", "list", "tables"); strings.Contains(out, NATTable) {
		t.Errorf("nft table after Cleanup: %s", out)
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
	if got := l.ourRoutes(n1.ns); len(got) != 0 {
		t.Errorf("routes after Cleanup: %q", got)
	}
}

// TestAutoAcrossARouter puts n3 on another subnet behind a router that knows nothing of pods: in Auto mode n1
// and n2 route to each other directly and reach n3 over VXLAN through the router.
func TestAutoAcrossARouter(t *testing.T) {
	mtu := PodMTU(Auto, 1500)
	l := newLab(t, mtu)
	n1, n2 := l.nodes[0], l.nodes[1]
	run(t, "ip", "-n", l.site, "link", "add", "br1", "type", "bridge")
	run(t, "ip", "-n", l.site, "link", "set", "br1", "up")
	router := newNS(t, "rtr")
	l.plug(router, "s-rtr0", "br0", "eth0", pfx("192.168.50.1/24"))
	l.plug(router, "s-rtr1", "br1", "eth1", pfx("192.168.60.1/24"))
	run(t, "ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	n3 := l.addNode("n3", "br1", "192.168.60.10", "172.27.1.0/26", "172.27.1.1", mtu)
	run(t, "ip", "-n", n1.ns, "route", "add", "192.168.60.0/24", "via", "192.168.50.1")
	run(t, "ip", "-n", n2.ns, "route", "add", "192.168.60.0/24", "via", "192.168.50.1")
	run(t, "ip", "-n", n3.ns, "route", "add", "192.168.50.0/24", "via", "192.168.60.1")

	for _, n := range l.nodes {
		apply(t, l.manager(n, Auto), n.node(), l.nodeSet())
	}
	want := []string{
		"blackhole 172.27.0.64/26",
		"172.27.0.128/26 via 192.168.50.11 dev eth0",
		"172.27.1.0/26 via 172.27.1.0 dev edgenet.vxlan onlink",
	}
	if got := l.ourRoutes(n1.ns); !slices.Equal(got, want) {
		t.Errorf("routes of n1 = %q, want %q", got, want)
	}
	want = []string{
		"172.27.0.64/26 via 172.27.0.64 dev edgenet.vxlan onlink",
		"172.27.0.128/26 via 172.27.0.128 dev edgenet.vxlan onlink",
		"blackhole 172.27.1.0/26",
	}
	if got := l.ourRoutes(n3.ns); !slices.Equal(got, want) {
		t.Errorf("routes of n3 = %q, want %q", got, want)
	}
	for _, pair := range [][2]*labNode{{n1, n3}, {n3, n1}, {n2, n3}, {n1, n2}} {
		mustPing(t, pair[0].pod.ns, pair[1].pod.ip)
	}
	if src := tcpSource(t, n1.pod.ns, n3.pod.ns, n3.pod.ip); src != n1.pod.ip {
		t.Errorf("pod1 → pod3 arrived from %s, want %s", src, n1.pod.ip)
	}
	if src := tcpSource(t, n3.pod.ns, n1.ns, n1.ip); src != n3.ip {
		t.Errorf("pod3 → node1 (over the router) arrived from %s, want n3's IP %s", src, n3.ip)
	}
	if src := tcpSource(t, n2.pod.ns, n1.ns, n1.ip); src != n2.pod.ip {
		t.Errorf("pod2 → node1 (same subnet) arrived from %s, want the pod IP %s", src, n2.pod.ip)
	}
	if err := ping(t, n3.pod.ns, n2.pod.ip, mtu-28, 3); err != nil {
		t.Errorf("full-size pod packet over the routed overlay: %v", err)
	}
}
