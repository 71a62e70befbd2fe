package computenet

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
)

// Settings is the Compute network page: what the admin enters (site subnet,
// gateway, node and external IP ranges) and what has appliance defaults.
// JSON names match the ComputeNetwork CRD spec.
type Settings struct {
	Nodes         int          `json:"nodes"`                   // nodes in the cluster
	SiteSubnet    netip.Prefix `json:"siteSubnet"`              // the compute port's subnet
	Gateway       netip.Addr   `json:"gateway"`                 // the site's router
	NodeIPs       Range        `json:"nodeIPRange"`             // one per node plus the cluster VIP
	ExternalIPs   []Range      `json:"externalServiceIPRanges"` // LoadBalancer IPs
	PodCIDR       netip.Prefix `json:"podCIDR"`
	ServiceCIDR   netip.Prefix `json:"serviceCIDR"`
	ClusterDomain string       `json:"clusterDomain"`
	UpstreamDNS   []netip.Addr `json:"upstreamDNS,omitempty"`
	BlockSize     int          `json:"podBlockSize"` // prefix length of per-node pod IP blocks
}

// Field paths of Settings, as the CRD names them; FieldErrors use these.
const (
	FieldNodes                   = "spec.nodes"
	FieldSiteSubnet              = "spec.siteSubnet"
	FieldGateway                 = "spec.gateway"
	FieldNodeIPRange             = "spec.nodeIPRange"
	FieldExternalServiceIPRanges = "spec.externalServiceIPRanges"
	FieldPodCIDR                 = "spec.podCIDR"
	FieldServiceCIDR             = "spec.serviceCIDR"
	FieldClusterDomain           = "spec.clusterDomain"
	FieldUpstreamDNS             = "spec.upstreamDNS"
	FieldPodBlockSize            = "spec.podBlockSize"
)

// Appliance defaults for the fields the admin usually leaves alone.
var (
	DefaultPodCIDR       = netip.MustParsePrefix("172.27.0.0/16")
	DefaultServiceCIDR   = netip.MustParsePrefix("172.28.0.0/16")
	DefaultClusterDomain = "cluster.local"
	DefaultBlockSize     = 26
)

// Defaults returns the appliance's factory settings: two nodes on
// 192.168.50.0/24 (gateway .1), node IPs .10-.19, external service IPs
// .100-.119, pod CIDR 172.27.0.0/16, service CIDR 172.28.0.0/16, cluster.local,
// /26 pod blocks and no upstream DNS (the host's resolvers are used).
func Defaults() Settings {
	return Settings{
		Nodes:       2,
		SiteSubnet:  netip.MustParsePrefix("192.168.50.0/24"),
		Gateway:     netip.MustParseAddr("192.168.50.1"),
		NodeIPs:     Range{netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("192.168.50.19")},
		ExternalIPs: []Range{{netip.MustParseAddr("192.168.50.100"), netip.MustParseAddr("192.168.50.119")}},
		PodCIDR:     DefaultPodCIDR, ServiceCIDR: DefaultServiceCIDR,
		ClusterDomain: DefaultClusterDomain,
		BlockSize:     DefaultBlockSize,
	}
}

// WithDefaults returns s with unset pod CIDR, service CIDR, cluster domain and
// block size filled in with the appliance defaults.
func (s Settings) WithDefaults() Settings {
	if !s.PodCIDR.IsValid() {
		s.PodCIDR = DefaultPodCIDR
	}
	if !s.ServiceCIDR.IsValid() {
		s.ServiceCIDR = DefaultServiceCIDR
	}
	if s.ClusterDomain == "" {
		s.ClusterDomain = DefaultClusterDomain
	}
	if s.BlockSize == 0 {
		s.BlockSize = DefaultBlockSize
	}
	return s
}

// NodeIP returns the i-th node IP (0-based). Every address of the node range but
// the last (the cluster VIP) is a node IP; spare ones are room to add nodes.
func (s Settings) NodeIP(i int) (netip.Addr, error) {
	n := s.NodeIPs.Size()
	if n < 2 {
		return netip.Addr{}, fmt.Errorf("computenet: node IP %d: node IP range %q has no node IPs", i, s.NodeIPs)
	}
	if i < 0 || uint64(i) >= n-1 {
		return netip.Addr{}, fmt.Errorf("computenet: node IP %d out of range: %s holds %d node IPs plus the cluster VIP", i, s.NodeIPs, n-1)
	}
	a, _ := s.NodeIPs.Addr(uint64(i))
	return a, nil
}

// ClusterVIP is the "+1" of the n+1 node IPs: the last address of the node IP
// range, reserved for the cluster (API server) virtual IP. Invalid if the range is.
func (s Settings) ClusterVIP() netip.Addr {
	if !s.NodeIPs.IsValid() {
		return netip.Addr{}
	}
	return s.NodeIPs.To
}

// APIServiceIP is the ClusterIP of the `kubernetes` service: network+1 of the
// service CIDR. Invalid if the service CIDR is.
func (s Settings) APIServiceIP() netip.Addr { return prefixAddr(s.ServiceCIDR, 1) }

// DNSServiceIP is the cluster DNS ClusterIP: network+10 of the service CIDR
// (172.28.0.10 by default). Invalid if the service CIDR is invalid or too small.
func (s Settings) DNSServiceIP() netip.Addr { return prefixAddr(s.ServiceCIDR, 10) }

func prefixAddr(p netip.Prefix, i uint64) netip.Addr {
	a, _ := PrefixRange(p).Addr(i)
	return a
}

// ExternalIPCount is the number of external service IPs over all ranges,
// saturating at math.MaxUint64. Overlapping ranges are counted twice; Validate
// refuses them.
func (s Settings) ExternalIPCount() uint64 {
	var n uint64
	for _, r := range s.ExternalIPs {
		n = addSat(n, r.Size())
	}
	return n
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// FieldError is one problem with one field. Field is the CRD path, like
// "spec.nodeIPRange" or "spec.externalServiceIPRanges[1]"; Value is the field's
// value as entered (in its text form).
type FieldError struct{ Field, Value, Reason string }

func (e FieldError) Error() string {
	return fmt.Sprintf("%s: %s (value %q)", e.Field, e.Reason, e.Value)
}

// FieldErrors holds every problem found, in field order. Get it from an error
// with errors.As.
type FieldErrors []FieldError

// Error gives one line per problem: `spec.x: reason (value "v")`.
func (es FieldErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// collector gathers FieldErrors; err returns nil (untyped) when there are none.
type collector struct{ errs FieldErrors }

func (c *collector) add(field, value, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)})
}

func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return c.errs
}

func indexed(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// prefixString is p's text, "" when p is unset (netip says "invalid Prefix").
func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// CheckUpdate refuses changes to what the running cluster has baked in: pod CIDR,
// service CIDR and pod block size (pods, ClusterIPs and IPAM blocks are allocated
// from them) and the cluster domain. Everything else may change. It does not Validate new.
func CheckUpdate(old, new Settings) error {
	var c collector
	const reason = "cannot change once the cluster exists (was %q)"
	if old.PodCIDR != new.PodCIDR {
		c.add(FieldPodCIDR, prefixString(new.PodCIDR), reason, prefixString(old.PodCIDR))
	}
	if old.ServiceCIDR != new.ServiceCIDR {
		c.add(FieldServiceCIDR, prefixString(new.ServiceCIDR), reason, prefixString(old.ServiceCIDR))
	}
	if old.BlockSize != new.BlockSize {
		c.add(FieldPodBlockSize, fmt.Sprint(new.BlockSize), reason, fmt.Sprint(old.BlockSize))
	}
	// Kubelets and every pod's DNS search path were made with it.
	if old.ClusterDomain != new.ClusterDomain {
		c.add(FieldClusterDomain, new.ClusterDomain, reason, old.ClusterDomain)
	}
	return c.err()
}

// CheckHostRoutes refuses any cluster range (site subnet, node range, external
// ranges, pod CIDR, service CIDR) that overlaps one of the host's routes, so the
// appliance never shadows or leaks into a network the host really reaches.
// Default routes (0.0.0.0/0, ::/0) are ignored. Callers leave out routes the
// appliance itself installed (its bridge, its unreachable guards).
func (s Settings) CheckHostRoutes(routes []netip.Prefix) error {
	type item struct {
		field, value string
		r            Range
	}
	items := []item{
		{FieldSiteSubnet, prefixString(s.SiteSubnet), PrefixRange(s.SiteSubnet)},
		{FieldNodeIPRange, s.NodeIPs.String(), s.NodeIPs},
	}
	for i, r := range s.ExternalIPs {
		items = append(items, item{indexed(FieldExternalServiceIPRanges, i), r.String(), r})
	}
	items = append(items,
		item{FieldPodCIDR, prefixString(s.PodCIDR), PrefixRange(s.PodCIDR)},
		item{FieldServiceCIDR, prefixString(s.ServiceCIDR), PrefixRange(s.ServiceCIDR)})

	var c collector
	for _, it := range items {
		for _, rt := range routes {
			if !rt.IsValid() || rt.Bits() == 0 {
				continue
			}
			if it.r.Overlaps(PrefixRange(rt)) {
				c.add(it.field, it.value, "overlaps the host route %s", rt.Masked())
			}
		}
	}
	return c.err()
}
