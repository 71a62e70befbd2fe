package routing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// RouteProtocol tags every route Manager installs (rtm_protocol 0x7e = 126, unassigned in iproute2's
// rt_protos). Manager lists and deletes only routes with this protocol; `ip route show proto 126` shows them.
const RouteProtocol netlink.RouteProtocol = 0x7e

// Config configures a Manager.
type Config struct {
	Mode          Mode
	SiteInterface string // default "eth0"
	// SiteSubnet is the site interface's subnet. Zero: derived from the site interface's address that holds the
	// local node IP.
	SiteSubnet netip.Prefix
	PodCIDR    netip.Prefix
	VXLAN      VXLANConfig
	// NoMasquerade are extra destinations that see pod IPs unmasqueraded (routers that know the pod routes).
	NoMasquerade []netip.Prefix
	// NetNS is the path of the network namespace to work in; empty means the calling thread's.
	NetNS  string
	Logger *slog.Logger
}

// Manager applies Desired routing state to the kernel of one node. Apply is safe for concurrent use (calls
// are serialised). A new Manager over an existing state changes nothing when the desired state is unchanged.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu  sync.Mutex
	nft knftables.Interface
}

// NewManager validates cfg. It touches no kernel state.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.SiteInterface == "" {
		cfg.SiteInterface = "eth0"
	}
	cfg.VXLAN = cfg.VXLAN.withDefaults()
	p := Params{Mode: cfg.Mode, SiteInterface: cfg.SiteInterface, SiteSubnet: cfg.SiteSubnet, PodCIDR: cfg.PodCIDR, VXLAN: cfg.VXLAN}
	if !p.SiteSubnet.IsValid() {
		p.SiteSubnet = netip.MustParsePrefix("0.0.0.0/0") // checked for real once derived
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	for _, x := range cfg.NoMasquerade {
		if !x.IsValid() || !x.Addr().Is4() {
			return nil, fmt.Errorf("routing: no-masquerade entry %q is not an IPv4 prefix", x)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Manager{cfg: cfg, log: log.With("component", "routing")}, nil
}

// Changes counts what an Apply changed in the kernel.
type Changes struct {
	RoutesAdded, RoutesReplaced, RoutesDeleted int
	NeighborsSet, NeighborsDeleted             int
	FDBSet, FDBDeleted                         int
	// Link counts vxlan device creations, deletions and attribute/address/sysctl updates.
	Link int
	// Masquerade is true when the nftables transaction ran.
	Masquerade bool
}

// Zero reports whether nothing changed.
func (c Changes) Zero() bool { return c == Changes{} }

// Apply makes the kernel match Compute(local, nodes) and returns what it changed. On a validation error
// nothing is changed.
func (m *Manager) Apply(ctx context.Context, local Node, nodes []Node) (Changes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ch Changes
	err := m.inNetNS(func() error {
		var err error
		ch, err = m.apply(ctx, local, nodes)
		return err
	})
	if err != nil {
		return ch, fmt.Errorf("routing: %w", err)
	}
	if !ch.Zero() {
		m.log.Info("applied routes", "changes", fmt.Sprintf("%+v", ch))
	}
	return ch, nil
}

func (m *Manager) inNetNS(f func() error) error {
	if m.cfg.NetNS == "" {
		return f()
	}
	n, err := ns.GetNS(m.cfg.NetNS)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", m.cfg.NetNS, err)
	}
	defer n.Close()
	return n.Do(func(ns.NetNS) error { return f() })
}

func (m *Manager) apply(ctx context.Context, local Node, nodes []Node) (Changes, error) {
	var ch Changes
	site, err := netlinksafe.LinkByName(m.cfg.SiteInterface)
	if err != nil {
		return ch, fmt.Errorf("site interface %s: %w", m.cfg.SiteInterface, err)
	}
	p := Params{Mode: m.cfg.Mode, SiteInterface: m.cfg.SiteInterface, SiteSubnet: m.cfg.SiteSubnet,
		SiteMTU: site.Attrs().MTU, PodCIDR: m.cfg.PodCIDR, VXLAN: m.cfg.VXLAN}
	if !p.SiteSubnet.IsValid() {
		if p.SiteSubnet, err = subnetOf(site, local.IP); err != nil && p.Mode != VXLAN {
			return ch, err
		}
	}
	d, err := compute(local, nodes, p)
	if err != nil {
		return ch, err
	}
	if err := m.checkVTEPFree(d.VXLAN); err != nil {
		return ch, err
	}

	if err := ensureSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return ch, err
	}
	var vxIndex int
	if d.VXLAN != nil {
		if vxIndex, err = m.ensureVXLAN(d.VXLAN, site, &ch); err != nil {
			return ch, err
		}
		if err := m.syncNeighbors(vxIndex, d, &ch); err != nil {
			return ch, err
		}
	}
	if err := m.syncRoutes(d, site, vxIndex, &ch); err != nil {
		return ch, err
	}
	if d.VXLAN == nil {
		if err := m.deleteVXLAN(&ch); err != nil {
			return ch, err
		}
	}
	ran, err := m.syncMasquerade(ctx, noMasquerade(m.cfg.PodCIDR, d.DirectNodeIPs, m.cfg.NoMasquerade))
	ch.Masquerade = ran
	return ch, err
}

// subnetOf is the prefix of the site interface's address that is the node IP.
func subnetOf(site netlink.Link, ip netip.Addr) (netip.Prefix, error) {
	addrs, err := netlinksafe.AddrList(site, unix.AF_INET)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("addresses of %s: %w", site.Attrs().Name, err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok && p.Addr() == ip {
			return p.Masked(), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("site interface %s does not hold the node IP %s (set the site subnet explicitly)", site.Attrs().Name, ip)
}

// checkVTEPFree refuses to put the VTEP address on the vxlan device while a pod uses it: the local address
// would swallow the pod's traffic.
func (m *Manager) checkVTEPFree(dev *VXLANDevice) error {
	if dev == nil || !dev.Addr.IsValid() {
		return nil
	}
	rs, err := netlinksafe.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: ipNet(netip.PrefixFrom(dev.Addr, 32)), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes to %s: %w", dev.Addr, err)
	}
	for _, r := range rs {
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().Name != dev.Name {
			return fmt.Errorf("VTEP address %s is in use by %s (a pod?); IPAM must not hand out the first address of a node's lowest block", dev.Addr, l.Attrs().Name)
		}
	}
	return nil
}

func (m *Manager) ensureVXLAN(want *VXLANDevice, site netlink.Link, ch *Changes) (int, error) {
	link, err := netlinksafe.LinkByName(want.Name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return 0, fmt.Errorf("vxlan device %s: %w", want.Name, err)
	}
	if link != nil {
		vx, ok := link.(*netlink.Vxlan)
		if !ok {
			return 0, fmt.Errorf("link %s exists and is a %s, not a vxlan device: refusing to touch it", want.Name, link.Type())
		}
		// VNI, port, local address and parent cannot change on a live vxlan device: recreate it.
		if vx.VxlanId != int(want.VNI) || vx.Port != int(want.Port) || vx.VtepDevIndex != site.Attrs().Index ||
			!vx.SrcAddr.Equal(want.Local.AsSlice()) || vx.Learning {
			m.log.Info("recreating vxlan device", "device", want.Name, "vni", want.VNI, "port", want.Port, "local", want.Local)
			if err := netlink.LinkDel(link); err != nil {
				return 0, fmt.Errorf("delete vxlan device %s: %w", want.Name, err)
			}
			ch.Link++
			link = nil
		}
	}
	if link == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = want.Name
		attrs.MTU = want.MTU
		attrs.HardwareAddr = net.HardwareAddr(want.MAC[:])
		vx := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(want.VNI), VtepDevIndex: site.Attrs().Index,
			SrcAddr: want.Local.AsSlice(), Port: int(want.Port), Learning: false}
		if err := netlink.LinkAdd(vx); err != nil {
			return 0, fmt.Errorf("create vxlan device %s: %w", want.Name, err)
		}
		ch.Link++
		if link, err = netlinksafe.LinkByName(want.Name); err != nil {
			return 0, fmt.Errorf("vxlan device %s after creation: %w", want.Name, err)
		}
	}
	if want.MTU > 0 && link.Attrs().MTU != want.MTU {
		if err := netlink.LinkSetMTU(link, want.MTU); err != nil {
			return 0, fmt.Errorf("set mtu of %s: %w", want.Name, err)
		}
		ch.Link++
	}
	if !bytes.Equal(link.Attrs().HardwareAddr, want.MAC[:]) {
		if err := netlink.LinkSetHardwareAddr(link, net.HardwareAddr(want.MAC[:])); err != nil {
			return 0, fmt.Errorf("set mac of %s: %w", want.Name, err)
		}
		ch.Link++
	}
	// Loose reverse-path filtering on the overlay: a peer's packets may carry any source its routes chose.
	if changed, err := setSysctl("net/ipv4/conf/"+want.Name+"/rp_filter", "2"); err != nil {
		return 0, err
	} else if changed {
		ch.Link++
	}
	if err := m.syncVTEPAddr(link, want.Addr, ch); err != nil {
		return 0, err
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return 0, fmt.Errorf("set %s up: %w", want.Name, err)
		}
		ch.Link++
	}
	return link.Attrs().Index, nil
}

func (m *Manager) syncVTEPAddr(link netlink.Link, want netip.Addr, ch *Changes) error {
	addrs, err := netlinksafe.AddrList(link, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", link.Attrs().Name, err)
	}
	have := false
	for _, a := range addrs {
		p, _ := prefixOf(a.IPNet)
		if want.IsValid() && p == netip.PrefixFrom(want, 32) {
			have = true
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove %s from %s: %w", p, link.Attrs().Name, err)
		}
		ch.Link++
	}
	if want.IsValid() && !have {
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(want, 32))}); err != nil {
			return fmt.Errorf("add %s/32 to %s: %w", want, link.Attrs().Name, err)
		}
		ch.Link++
	}
	return nil
}

func (m *Manager) deleteVXLAN(ch *Changes) error {
	link, err := netlinksafe.LinkByName(m.cfg.VXLAN.Device)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("vxlan device %s: %w", m.cfg.VXLAN.Device, err)
	}
	if _, ok := link.(*netlink.Vxlan); !ok {
		return nil // not ours
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete vxlan device %s: %w", m.cfg.VXLAN.Device, err)
	}
	m.log.Info("deleted vxlan device", "device", m.cfg.VXLAN.Device)
	ch.Link++
	return nil
}

// syncNeighbors makes the vxlan device's ARP and FDB entries exactly the desired ones. The device is ours, so
// every entry on it is too.
func (m *Manager) syncNeighbors(index int, d Desired, ch *Changes) error {
	arp, err := neighList(index, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("neighbours of %s: %w", d.VXLAN.Name, err)
	}
	wantARP := map[netip.Addr]MAC{}
	for _, n := range d.Neighbors {
		wantARP[n.IP] = n.MAC
	}
	for _, n := range arp {
		ip, _ := netip.AddrFromSlice(n.IP)
		mac, ok := wantARP[ip.Unmap()]
		if ok && n.State == netlink.NUD_PERMANENT && bytes.Equal(n.HardwareAddr, mac[:]) {
			delete(wantARP, ip.Unmap())
			continue
		}
		if ok {
			continue // replaced below
		}
		if err := netlink.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete neighbour %s on %s: %w", n.IP, d.VXLAN.Name, err)
		}
		ch.NeighborsDeleted++
	}
	for _, n := range d.Neighbors {
		if _, ok := wantARP[n.IP]; !ok {
			continue
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: n.IP.AsSlice(), HardwareAddr: net.HardwareAddr(n.MAC[:])}); err != nil {
			return fmt.Errorf("neighbour %s: %w", n, err)
		}
		ch.NeighborsSet++
	}

	fdb, err := neighList(index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("fdb of %s: %w", d.VXLAN.Name, err)
	}
	type key struct {
		mac MAC
		dst netip.Addr
	}
	wantFDB := map[key]bool{}
	for _, f := range d.FDB {
		wantFDB[key{f.MAC, f.Dst}] = true
	}
	for _, f := range fdb {
		if len(f.HardwareAddr) != 6 {
			continue
		}
		var mac MAC
		copy(mac[:], f.HardwareAddr)
		dst, _ := netip.AddrFromSlice(f.IP)
		k := key{mac, dst.Unmap()}
		if wantFDB[k] && f.State&netlink.NUD_PERMANENT != 0 {
			delete(wantFDB, k)
			continue
		}
		f.Family = unix.AF_BRIDGE
		if err := netlink.NeighDel(&f); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete fdb %s dst %s on %s: %w", mac, dst, d.VXLAN.Name, err)
		}
		ch.FDBDeleted++
	}
	for _, f := range d.FDB {
		if !wantFDB[key{f.MAC, f.Dst}] {
			continue
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: f.Dst.AsSlice(), HardwareAddr: net.HardwareAddr(f.MAC[:])}); err != nil {
			return fmt.Errorf("fdb %s: %w", f, err)
		}
		ch.FDBSet++
	}
	return nil
}

// neighList retries dumps the kernel interrupted (the table changed meanwhile): a partial list would make us
// delete live entries.
func neighList(index, family int) ([]netlink.Neigh, error) {
	for range 5 {
		ns, err := netlink.NeighList(index, family)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return ns, err
		}
	}
	return nil, fmt.Errorf("neighbour dump kept being interrupted: %w", netlink.ErrDumpInterrupted)
}

func (m *Manager) syncRoutes(d Desired, site netlink.Link, vxIndex int, ch *Changes) error {
	have, err := netlinksafe.RouteListFiltered(unix.AF_INET, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	want := map[netip.Prefix]netlink.Route{}
	for _, r := range d.Routes {
		want[r.Dst] = m.kernelRoute(r, site, vxIndex)
	}
	seen := map[netip.Prefix]bool{}
	for _, r := range have {
		dst, ok := prefixOf(r.Dst)
		w, wanted := want[dst]
		switch {
		case ok && wanted && !seen[dst] && sameRoute(r, w):
			seen[dst] = true
		case ok && wanted && !seen[dst]:
			seen[dst] = true
			if err := netlink.RouteReplace(&w); err != nil {
				return fmt.Errorf("replace route %s: %w", dst, err)
			}
			m.log.Debug("replaced route", "dst", dst)
			ch.RoutesReplaced++
		default:
			if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("delete route %s: %w", r.Dst, err)
			}
			m.log.Debug("deleted route", "dst", r.Dst)
			ch.RoutesDeleted++
		}
	}
	for _, r := range d.Routes {
		if seen[r.Dst] {
			continue
		}
		w := want[r.Dst]
		if err := netlink.RouteAdd(&w); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add route %s: a route to %s that is not ours is in the way", r, r.Dst)
			}
			return fmt.Errorf("add route %s: %w", r, err)
		}
		ch.RoutesAdded++
	}
	return nil
}

func (m *Manager) kernelRoute(r Route, site netlink.Link, vxIndex int) netlink.Route {
	k := netlink.Route{Dst: ipNet(r.Dst), Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN, Family: unix.AF_INET}
	if r.Type == Blackhole {
		k.Type = unix.RTN_BLACKHOLE
		return k
	}
	k.Type = unix.RTN_UNICAST
	k.Gw = r.Via.AsSlice()
	k.LinkIndex = site.Attrs().Index
	if r.Dev != site.Attrs().Name {
		k.LinkIndex = vxIndex
	}
	if r.Onlink {
		k.Flags = int(netlink.FLAG_ONLINK)
	}
	return k
}

func sameRoute(have, want netlink.Route) bool {
	if have.Type != want.Type || have.Priority != 0 || have.Tos != 0 || len(have.MultiPath) > 0 {
		return false
	}
	if want.Type == unix.RTN_BLACKHOLE {
		return true
	}
	return have.LinkIndex == want.LinkIndex && have.Gw.Equal(want.Gw) &&
		have.Flags&int(netlink.FLAG_ONLINK) == want.Flags&int(netlink.FLAG_ONLINK)
}

func (m *Manager) syncMasquerade(ctx context.Context, keep []netip.Prefix) (bool, error) {
	if m.nft == nil {
		// knftables probes nft at construction, so it must happen inside the target netns.
		nft, err := knftables.New(knftables.IPv4Family, NATTable)
		if err != nil {
			return false, fmt.Errorf("nftables: %w", err)
		}
		m.nft = nft
	}
	// Read back every time (two nft list calls) rather than trusting memory: a table flushed or edited by
	// someone else is repaired on the next Apply.
	ok, err := masqUpToDate(ctx, m.nft, m.cfg.PodCIDR, keep)
	if err != nil {
		return false, fmt.Errorf("nftables: read table %s: %w", NATTable, err)
	}
	if ok {
		return false, nil
	}
	tx := m.nft.NewTransaction()
	masqTransaction(tx, m.cfg.PodCIDR, keep)
	if err := m.nft.Run(ctx, tx); err != nil {
		return false, fmt.Errorf("nftables: apply table %s: %w", NATTable, err)
	}
	return true, nil
}

// Cleanup removes everything Manager installs: our routes, the vxlan device and the nftables table. Sysctls
// stay as they are.
func (m *Manager) Cleanup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inNetNS(func() error {
		var errs []error
		have, err := netlinksafe.RouteListFiltered(unix.AF_INET, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		errs = append(errs, err)
		for _, r := range have {
			if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
			}
		}
		var ch Changes
		errs = append(errs, m.deleteVXLAN(&ch))
		nft, err := knftables.New(knftables.IPv4Family, NATTable)
		if err == nil {
			tx := nft.NewTransaction()
			tx.Add(&knftables.Table{}) // make the delete valid when the table is absent
			tx.Delete(&knftables.Table{})
			err = nft.Run(ctx, tx)
		}
		errs = append(errs, err)
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("routing: cleanup: %w", err)
		}
		return nil
	})
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if a.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones), true
}

// setSysctl writes val if the key holds something else; it reports whether it wrote. /proc/sys/net is the
// calling thread's network namespace.
func setSysctl(key, val string) (bool, error) {
	path := "/proc/sys/" + key
	cur, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(key, "/", "."), err)
	}
	if strings.TrimSpace(string(cur)) == val {
		return false, nil
	}
	if err := os.WriteFile(path, []byte(val), 0o644); err != nil {
		return false, fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), val, err)
	}
	return true, nil
}

func ensureSysctl(key, val string) error {
	_, err := setSysctl(key, val)
	return err
}
