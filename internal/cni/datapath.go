package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// HostVethPrefix starts the name of every host-side pod veth; the rest is hex of a hash of the attachment.
const HostVethPrefix = "enx"

// hostVethHexLen keeps names at 14 bytes (IFNAMSIZ is 16 with the NUL) and distinct from systemd's
// enx<12 hex of MAC> names for USB NICs, which are 15 bytes.
const hostVethHexLen = 11

// GatewayIP is the pod's next hop: a link-local address the host veth answers for (permanent neighbour entry
// in the pod, proxy ARP on the host), so no address is spent per node and the pod never learns node addresses.
var GatewayIP = netip.MustParseAddr("169.254.1.1")

// HostVethName is the host-side veth name of an attachment: stable, so DEL and GC find it without state.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return HostVethPrefix + hex.EncodeToString(sum[:])[:hostVethHexLen]
}

// isHostVethName reports whether name has the shape HostVethName produces.
func isHostVethName(name string) bool {
	rest, ok := strings.CutPrefix(name, HostVethPrefix)
	if !ok || len(rest) != hostVethHexLen {
		return false
	}
	for _, c := range rest {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// attachment is what ADD builds and CHECK verifies.
type attachment struct {
	netns    string
	ifName   string
	hostVeth string
	ip       netip.Addr
	mtu      int
}

type built struct {
	hostMAC, podMAC net.HardwareAddr
}

// errIfExists marks "the pod already has CNI_IFNAME".
var errIfExists = errors.New("interface already exists in the container")

func hostPrefix(ip netip.Addr) *net.IPNet {
	return &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}
}

// openPodNS opens the pod's netns and a netlink handle in it; the caller closes both.
func openPodNS(path string) (netns.NsHandle, netlinksafe.Handle, error) {
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), netlinksafe.Handle{}, fmt.Errorf("open netns %q: %w", path, err)
	}
	h, err := netlinksafe.NewHandleAt(nsh)
	if err != nil {
		nsh.Close()
		return netns.None(), netlinksafe.Handle{}, fmt.Errorf("netlink in netns %q: %w", path, err)
	}
	return nsh, h, nil
}

// setup creates the veth pair and configures both ends. On error it removes what it made.
func setup(a attachment, tm *timing) (b built, err error) {
	nsh, ph, err := openPodNS(a.netns)
	if err != nil {
		return b, err
	}
	tm.step("netns")
	defer nsh.Close()
	defer ph.Close()
	if _, err := ph.LinkByName(a.ifName); err == nil {
		return b, fmt.Errorf("%s: %w", a.ifName, errIfExists)
	}
	// A leftover of an ADD that died midway for this very attachment: its name is ours.
	if old, err := netlinksafe.LinkByName(a.hostVeth); err == nil {
		if _, ok := old.(*netlink.Veth); !ok {
			return b, fmt.Errorf("host link %s exists and is a %s, not a veth: refusing to touch it", a.hostVeth, old.Type())
		}
		_ = netlink.LinkDel(old)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: a.hostVeth, MTU: a.mtu},
		PeerName:      a.ifName,
		PeerNamespace: netlink.NsFd(int(nsh)),
		PeerMTU:       uint32(a.mtu),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return b, fmt.Errorf("create veth %s/%s: %w", a.hostVeth, a.ifName, err)
	}
	tm.step("veth")
	defer func() {
		if err != nil {
			if l, lerr := netlinksafe.LinkByName(a.hostVeth); lerr == nil {
				_ = netlink.LinkDel(l) // takes the peer and the host route with it
			}
		}
	}()
	host, err := netlinksafe.LinkByName(a.hostVeth)
	if err != nil {
		return b, fmt.Errorf("find host veth %s: %w", a.hostVeth, err)
	}
	if err := writeSysctl("net/ipv4/conf/"+a.hostVeth+"/proxy_arp", "1"); err != nil {
		return b, err
	}
	tm.step("sysctl")
	if err := netlink.LinkSetUp(host); err != nil {
		return b, fmt.Errorf("set %s up: %w", a.hostVeth, err)
	}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostPrefix(a.ip), Scope: netlink.SCOPE_LINK}); err != nil {
		return b, fmt.Errorf("host route %s dev %s: %w", a.ip, a.hostVeth, err)
	}
	tm.step("host")

	pod, err := ph.LinkByName(a.ifName)
	if err != nil {
		return b, fmt.Errorf("find pod interface %s: %w", a.ifName, err)
	}
	if err := ph.AddrAdd(pod, &netlink.Addr{IPNet: hostPrefix(a.ip)}); err != nil {
		return b, fmt.Errorf("add %s/32 to pod %s: %w", a.ip, a.ifName, err)
	}
	if err := ph.LinkSetUp(pod); err != nil {
		return b, fmt.Errorf("set pod %s up: %w", a.ifName, err)
	}
	gw := GatewayIP.AsSlice()
	if err := ph.NeighSet(&netlink.Neigh{LinkIndex: pod.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: gw, HardwareAddr: host.Attrs().HardwareAddr}); err != nil {
		return b, fmt.Errorf("pod neighbour %s: %w", GatewayIP, err)
	}
	if err := ph.RouteReplace(&netlink.Route{LinkIndex: pod.Attrs().Index, Dst: hostPrefix(GatewayIP), Scope: netlink.SCOPE_LINK}); err != nil {
		return b, fmt.Errorf("pod route %s: %w", GatewayIP, err)
	}
	// RouteAdd, not Replace: a second attachment in the same pod must not steal the first one's default route.
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: pod.Attrs().Index, Dst: defaultRoute(), Gw: gw, Flags: int(netlink.FLAG_ONLINK)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return b, fmt.Errorf("pod default route via %s: %w", GatewayIP, err)
	}
	tm.step("pod")
	return built{hostMAC: host.Attrs().HardwareAddr, podMAC: pod.Attrs().HardwareAddr}, nil
}

func defaultRoute() *net.IPNet { return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)} }

// teardown removes the attachment's veth pair (and with it the host route and the pod interface).
// Missing pieces are not errors: DEL is idempotent.
func teardown(hostVeth string) error {
	l, err := netlinksafe.LinkByName(hostVeth)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find host veth %s: %w", hostVeth, err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return fmt.Errorf("link %s is a %s, not a veth: refusing to delete it", hostVeth, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", hostVeth, err)
	}
	return nil
}

// verify checks that a's datapath is what setup built.
func verify(a attachment) error {
	nsh, ph, err := openPodNS(a.netns)
	if err != nil {
		return err
	}
	defer nsh.Close()
	defer ph.Close()
	pod, err := ph.LinkByName(a.ifName)
	if err != nil {
		return fmt.Errorf("pod interface %s: %w", a.ifName, err)
	}
	if _, ok := pod.(*netlink.Veth); !ok {
		return fmt.Errorf("pod interface %s is a %s, want veth", a.ifName, pod.Type())
	}
	if pod.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("pod interface %s is down", a.ifName)
	}
	if pod.Attrs().MTU != a.mtu {
		return fmt.Errorf("pod interface %s has mtu %d, want %d", a.ifName, pod.Attrs().MTU, a.mtu)
	}
	addrs, err := ph.AddrList(pod, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("pod addresses: %w", err)
	}
	if !hasAddr(addrs, a.ip) {
		return fmt.Errorf("pod interface %s lacks %s/32", a.ifName, a.ip)
	}
	routes, err := ph.RouteList(nil, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("pod routes: %w", err)
	}
	if !hasDefaultVia(routes, GatewayIP) {
		return fmt.Errorf("pod has no default route via %s", GatewayIP)
	}

	host, err := netlinksafe.LinkByName(a.hostVeth)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", a.hostVeth, err)
	}
	hv, ok := host.(*netlink.Veth)
	if !ok {
		return fmt.Errorf("host link %s is a %s, want veth", a.hostVeth, host.Type())
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("host veth %s is down", a.hostVeth)
	}
	peer, err := netlink.VethPeerIndex(hv)
	if err != nil {
		return fmt.Errorf("host veth %s peer: %w", a.hostVeth, err)
	}
	if peer != pod.Attrs().Index {
		return fmt.Errorf("host veth %s is not paired with pod %s (peer ifindex %d, pod ifindex %d)", a.hostVeth, a.ifName, peer, pod.Attrs().Index)
	}
	hr, err := netlinksafe.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: hostPrefix(a.ip)}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("host routes: %w", err)
	}
	found := false
	for _, r := range hr {
		found = found || r.LinkIndex == host.Attrs().Index
	}
	if !found {
		return fmt.Errorf("host has no route %s/32 dev %s", a.ip, a.hostVeth)
	}
	if v, err := readSysctl("net/ipv4/conf/" + a.hostVeth + "/proxy_arp"); err != nil || v != "1" {
		return fmt.Errorf("host veth %s: proxy_arp is not 1 (%q, %v)", a.hostVeth, v, err)
	}
	return nil
}

func hasAddr(addrs []netlink.Addr, ip netip.Addr) bool {
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip && ones == 32 {
			return true
		}
	}
	return false
}

func hasDefaultVia(routes []netlink.Route, gw netip.Addr) bool {
	for _, r := range routes {
		isDefault := r.Dst == nil || (r.Dst.IP.IsUnspecified() && func() bool { o, _ := r.Dst.Mask.Size(); return o == 0 }())
		if g, ok := netip.AddrFromSlice(r.Gw); ok && isDefault && g.Unmap() == gw {
			return true
		}
	}
	return false
}

// staleHostVeths returns the host veths of this plugin whose attachment is not in keep.
func staleHostVeths(keep map[string]bool) ([]netlink.Link, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var stale []netlink.Link
	for _, l := range links {
		if _, ok := l.(*netlink.Veth); ok && isHostVethName(l.Attrs().Name) && !keep[l.Attrs().Name] {
			stale = append(stale, l)
		}
	}
	return stale, nil
}

func writeSysctl(key, val string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(val), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), val, err)
	}
	return nil
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + key)
	return strings.TrimSpace(string(b)), err
}
