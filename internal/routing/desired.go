package routing

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Mode selects how this node reaches other nodes' pod blocks.
type Mode string

const (
	// Direct routes each remote block via the remote node's IP on the site interface (same L2 subnet only).
	Direct Mode = "direct"
	// VXLAN tunnels to every remote node over a kernel vxlan device.
	VXLAN Mode = "vxlan"
	// Auto is Direct for nodes on the site subnet and VXLAN for the others.
	Auto Mode = "auto"
)

// ParseMode accepts "direct", "vxlan" and "auto" (case-insensitive).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case Direct, VXLAN, Auto:
		return m, nil
	}
	return "", fmt.Errorf("routing: unknown mode %q (want direct, vxlan or auto)", s)
}

const (
	// DefaultVXLANDevice is the vxlan device name (a dot keeps it clear of interface-name patterns like eth*, vxlan*).
	DefaultVXLANDevice = "edgenet.vxlan"
	// DefaultVNI is arbitrary, away from flannel's 1 and Calico's 4096 so a neighbour running those never matches.
	DefaultVNI = 4100
	// DefaultVXLANPort is the IANA VXLAN port.
	DefaultVXLANPort = 4789
	// VXLANOverhead is what VXLAN over IPv4 adds to a frame: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
	VXLANOverhead = 50
)

// PodMTU is the MTU pods (and the vxlan device) should use for a mode on a site interface of siteMTU. Auto gets
// the VXLAN MTU too: the CNI conf is written once, and a node off the site subnet can join at any time.
func PodMTU(mode Mode, siteMTU int) int {
	if mode == Direct {
		return siteMTU
	}
	return siteMTU - VXLANOverhead
}

// Node is what routing needs to know of a cluster node.
type Node struct {
	Name   string
	IP     netip.Addr     // the node's address on the site network (IPv4)
	Blocks []netip.Prefix // pod blocks owned by the node
}

// VXLANConfig names the overlay. Zero fields take the defaults.
type VXLANConfig struct {
	Device string
	VNI    uint32
	Port   uint16
}

func (v VXLANConfig) withDefaults() VXLANConfig {
	if v.Device == "" {
		v.Device = DefaultVXLANDevice
	}
	if v.VNI == 0 {
		v.VNI = DefaultVNI
	}
	if v.Port == 0 {
		v.Port = DefaultVXLANPort
	}
	return v
}

// Params is the cluster- and node-level input of Compute besides the nodes.
type Params struct {
	Mode          Mode
	SiteInterface string       // e.g. "eth0"
	SiteSubnet    netip.Prefix // subnet of the site interface; required for Direct and Auto
	SiteMTU       int          // MTU of the site interface; sizes the vxlan device
	PodCIDR       netip.Prefix // every block must lie inside
	VXLAN         VXLANConfig
}

// MAC is an Ethernet address (comparable, unlike net.HardwareAddr).
type MAC [6]byte

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// VTEPMAC is the node's VXLAN MAC: 0e:ed followed by the node's IPv4 address. 0x0e has the locally-administered
// bit set and the multicast bit clear, so it never clashes with a vendor MAC.
func VTEPMAC(nodeIP netip.Addr) MAC {
	a := nodeIP.Unmap().As4()
	return MAC{0x0e, 0xed, a[0], a[1], a[2], a[3]}
}

// VTEPAddr is the node's VXLAN address: the first address of its lowest block. False when it has no block.
func VTEPAddr(n Node) (netip.Addr, bool) {
	if len(n.Blocks) == 0 {
		return netip.Addr{}, false
	}
	low := slices.MinFunc(n.Blocks, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return low.Masked().Addr(), true
}

// RouteType is the kernel route type we use.
type RouteType uint8

const (
	Unicast RouteType = iota
	Blackhole
)

// Route is one route in the main table, tagged with RouteProtocol when applied.
type Route struct {
	Dst    netip.Prefix
	Type   RouteType
	Via    netip.Addr // Unicast only
	Dev    string     // Unicast only
	Onlink bool
}

func (r Route) String() string {
	if r.Type == Blackhole {
		return "blackhole " + r.Dst.String()
	}
	s := fmt.Sprintf("%s via %s dev %s", r.Dst, r.Via, r.Dev)
	if r.Onlink {
		s += " onlink"
	}
	return s
}

// Neighbor is a permanent neighbour entry (ARP) on the vxlan device.
type Neighbor struct {
	Dev string
	IP  netip.Addr
	MAC MAC
}

func (n Neighbor) String() string {
	return fmt.Sprintf("%s lladdr %s dev %s permanent", n.IP, n.MAC, n.Dev)
}

// FDBEntry is a permanent forwarding entry of the vxlan device: frames to MAC go to the VTEP at Dst.
type FDBEntry struct {
	Dev string
	MAC MAC
	Dst netip.Addr
}

func (f FDBEntry) String() string {
	return fmt.Sprintf("%s dst %s dev %s self permanent", f.MAC, f.Dst, f.Dev)
}

// VXLANDevice is the overlay device wanted on this node.
type VXLANDevice struct {
	Name   string
	VNI    uint32
	Port   uint16
	Local  netip.Addr // this node's IP: outer source
	Parent string     // the site interface: outer packets leave by it
	MAC    MAC
	Addr   netip.Addr // VTEP IP (/32 on the device); invalid while the node has no block
	MTU    int        // 0 leaves the kernel's choice (parent MTU − 50)
}

// Desired is the routing state wanted on one node. Slices are sorted, so equal inputs give equal values.
type Desired struct {
	VXLAN     *VXLANDevice // nil: no overlay on this node (an existing one of ours is removed)
	Routes    []Route
	Neighbors []Neighbor
	FDB       []FDBEntry
	// DirectNodeIPs are this node's IP and those of nodes reached by direct routes: pod traffic to them keeps
	// the pod source address.
	DirectNodeIPs []netip.Addr
	// Paths says, per remote node name, "direct" or "vxlan" (for logs and status).
	Paths map[string]Mode
}

// Compute returns the routing state for local, given all cluster nodes (local may be among them, matched by
// name). It validates everything first: on error, nothing is to be applied.
func Compute(local Node, nodes []Node, p Params) (Desired, error) {
	d, err := compute(local, nodes, p)
	if err != nil {
		return Desired{}, fmt.Errorf("routing: %w", err)
	}
	return d, nil
}

func compute(local Node, nodes []Node, p Params) (Desired, error) {
	if err := p.validate(); err != nil {
		return Desired{}, err
	}
	vx := p.VXLAN.withDefaults()
	remotes, err := validateNodes(local, nodes, p)
	if err != nil {
		return Desired{}, err
	}
	if p.Mode == Direct && !p.SiteSubnet.Contains(local.IP) {
		return Desired{}, fmt.Errorf("direct mode: local node %s (%s) is not on the site subnet %s", local.Name, local.IP, p.SiteSubnet)
	}

	d := Desired{Paths: map[string]Mode{}, DirectNodeIPs: []netip.Addr{local.IP}}
	for _, b := range local.Blocks {
		d.Routes = append(d.Routes, Route{Dst: b, Type: Blackhole})
	}
	needVXLAN := p.Mode == VXLAN
	var offSubnet []string
	for _, n := range remotes {
		direct := p.Mode == Direct || (p.Mode == Auto && p.SiteSubnet.Contains(n.IP))
		if p.Mode == Direct && !p.SiteSubnet.Contains(n.IP) {
			offSubnet = append(offSubnet, fmt.Sprintf("%s (%s)", n.Name, n.IP))
			continue
		}
		if direct {
			d.Paths[n.Name] = Direct
			d.DirectNodeIPs = append(d.DirectNodeIPs, n.IP)
			for _, b := range n.Blocks {
				d.Routes = append(d.Routes, Route{Dst: b, Via: n.IP, Dev: p.SiteInterface})
			}
			continue
		}
		d.Paths[n.Name] = VXLAN
		needVXLAN = true
		vtep, ok := VTEPAddr(n)
		if !ok {
			continue // no pods there yet: nothing to reach
		}
		mac := VTEPMAC(n.IP)
		d.Neighbors = append(d.Neighbors, Neighbor{Dev: vx.Device, IP: vtep, MAC: mac})
		d.FDB = append(d.FDB, FDBEntry{Dev: vx.Device, MAC: mac, Dst: n.IP})
		for _, b := range n.Blocks {
			d.Routes = append(d.Routes, Route{Dst: b, Via: vtep, Dev: vx.Device, Onlink: true})
		}
	}
	if len(offSubnet) > 0 {
		return Desired{}, fmt.Errorf("direct mode needs every node on the site subnet %s; not on it: %s (use vxlan or auto)",
			p.SiteSubnet, strings.Join(offSubnet, ", "))
	}
	if needVXLAN {
		dev := &VXLANDevice{Name: vx.Device, VNI: vx.VNI, Port: vx.Port, Local: local.IP, Parent: p.SiteInterface,
			MAC: VTEPMAC(local.IP)}
		if p.SiteMTU > 0 {
			dev.MTU = PodMTU(VXLAN, p.SiteMTU)
		}
		if a, ok := VTEPAddr(local); ok {
			dev.Addr = a
		}
		d.VXLAN = dev
	}
	slices.SortFunc(d.Routes, func(a, b Route) int { return comparePrefix(a.Dst, b.Dst) })
	slices.SortFunc(d.Neighbors, func(a, b Neighbor) int { return a.IP.Compare(b.IP) })
	slices.SortFunc(d.FDB, func(a, b FDBEntry) int { return a.Dst.Compare(b.Dst) })
	slices.SortFunc(d.DirectNodeIPs, netip.Addr.Compare)
	return d, nil
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func (p Params) validate() error {
	var errs []error
	switch p.Mode {
	case Direct, VXLAN, Auto:
	default:
		errs = append(errs, fmt.Errorf("unknown mode %q", p.Mode))
	}
	if err := validIfName(p.SiteInterface); err != nil {
		errs = append(errs, fmt.Errorf("site interface: %w", err))
	}
	if p.Mode != VXLAN && (!p.SiteSubnet.IsValid() || !p.SiteSubnet.Addr().Is4()) {
		errs = append(errs, fmt.Errorf("%s mode needs the site subnet (IPv4), got %q", p.Mode, p.SiteSubnet))
	}
	if !p.PodCIDR.IsValid() || !p.PodCIDR.Addr().Is4() || p.PodCIDR.Masked() != p.PodCIDR {
		errs = append(errs, fmt.Errorf("pod CIDR %q must be a masked IPv4 prefix", p.PodCIDR))
	}
	if p.SiteMTU < 0 || (p.SiteMTU > 0 && p.SiteMTU-VXLANOverhead < 576) {
		errs = append(errs, fmt.Errorf("site MTU %d is too small", p.SiteMTU))
	}
	vx := p.VXLAN.withDefaults()
	if err := validIfName(vx.Device); err != nil {
		errs = append(errs, fmt.Errorf("vxlan device: %w", err))
	}
	if vx.Device == p.SiteInterface {
		errs = append(errs, fmt.Errorf("vxlan device and site interface are both %q", vx.Device))
	}
	if vx.VNI >= 1<<24 {
		errs = append(errs, fmt.Errorf("VNI %d does not fit 24 bits", vx.VNI))
	}
	return errors.Join(errs...)
}

func validIfName(s string) error {
	switch {
	case s == "":
		return errors.New("name is empty")
	case len(s) > 15:
		return fmt.Errorf("name %q is longer than 15 bytes", s)
	case s == "." || s == ".." || strings.ContainsAny(s, "/ \t\n:"):
		return fmt.Errorf("name %q is not a valid interface name", s)
	}
	return nil
}

// validateNodes checks local and nodes and returns the remote nodes (sorted by name, blocks deduplicated and
// sorted). Names and IPs are unique, blocks are IPv4 prefixes inside the pod CIDR that overlap nowhere.
func validateNodes(local Node, nodes []Node, p Params) ([]Node, error) {
	var errs []error
	check := func(n Node) Node {
		if n.Name == "" {
			errs = append(errs, fmt.Errorf("node with IP %s has no name", n.IP))
		}
		if !n.IP.IsValid() || !n.IP.Is4() {
			errs = append(errs, fmt.Errorf("node %s: IP %q is not IPv4", n.Name, n.IP))
		} else if p.PodCIDR.IsValid() && p.PodCIDR.Contains(n.IP) {
			errs = append(errs, fmt.Errorf("node %s: IP %s is inside the pod CIDR %s", n.Name, n.IP, p.PodCIDR))
		}
		var blocks []netip.Prefix
		for _, b := range n.Blocks {
			switch {
			case !b.IsValid() || !b.Addr().Is4() || b.Masked() != b:
				errs = append(errs, fmt.Errorf("node %s: block %q is not a masked IPv4 prefix", n.Name, b))
			case b.Bits() >= 32:
				errs = append(errs, fmt.Errorf("node %s: block %s is a single address; its blackhole would shadow the pod route", n.Name, b))
			case p.PodCIDR.IsValid() && (b.Bits() < p.PodCIDR.Bits() || !p.PodCIDR.Contains(b.Addr())):
				errs = append(errs, fmt.Errorf("node %s: block %s is outside the pod CIDR %s", n.Name, b, p.PodCIDR))
			default:
				if !slices.Contains(blocks, b) {
					blocks = append(blocks, b)
				}
			}
		}
		slices.SortFunc(blocks, comparePrefix)
		n.Blocks = blocks
		return n
	}
	all := []Node{check(local)}
	for _, n := range nodes {
		if n.Name == local.Name {
			continue
		}
		all = append(all, check(n))
	}
	byIP := map[netip.Addr]string{}
	byName := map[string]bool{}
	type owned struct {
		b    netip.Prefix
		node string
	}
	var blocks []owned
	for _, n := range all {
		if byName[n.Name] && n.Name != "" {
			errs = append(errs, fmt.Errorf("node %s is listed twice", n.Name))
		}
		byName[n.Name] = true
		if other, ok := byIP[n.IP]; ok && n.IP.IsValid() {
			errs = append(errs, fmt.Errorf("nodes %s and %s have the same IP %s", other, n.Name, n.IP))
		}
		byIP[n.IP] = n.Name
		for _, b := range n.Blocks {
			blocks = append(blocks, owned{b, n.Name})
		}
	}
	slices.SortFunc(blocks, func(a, b owned) int { return comparePrefix(a.b, b.b) })
	for i := 1; i < len(blocks); i++ {
		if blocks[i-1].b.Overlaps(blocks[i].b) {
			errs = append(errs, fmt.Errorf("block %s of node %s overlaps block %s of node %s",
				blocks[i-1].b, blocks[i-1].node, blocks[i].b, blocks[i].node))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	remotes := all[1:]
	slices.SortFunc(remotes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return remotes, nil
}
