package computenet

import (
	"fmt"
	"net/netip"
	"strings"
)

// Limits on the service CIDR: room for the DNS IP (network+10) and a useful
// number of ClusterIPs, yet no larger than kube-apiserver's allocator accepts.
const (
	minServiceBits4, maxServiceBits4 = 12, 28
	minServiceBits6, maxServiceBits6 = 108, 124
	// Pod blocks: at least 4 addresses (IPv4) / 16 (IPv6); IPv6 blocks no larger than /64.
	maxBlockBits4, minBlockBits6, maxBlockBits6 = 30, 64, 124
)

// Validate checks s as a whole and returns nil or FieldErrors listing every
// problem found, in field order. Overlap between two fields is reported on the
// later field, naming the earlier one.
func (s Settings) Validate() error {
	var c collector
	if s.Nodes < 1 {
		c.add(FieldNodes, fmt.Sprint(s.Nodes), "must be at least 1")
	}
	site := checkSiteSubnet(&c, s.SiteSubnet)
	checkGateway(&c, s.Gateway, site)

	// Ranges that passed their own checks take part in the overlap checks.
	type item struct {
		field, value string
		r            Range
	}
	var items []item
	if checkRange(&c, FieldNodeIPRange, s.NodeIPs, site, s.Gateway) {
		items = append(items, item{FieldNodeIPRange, s.NodeIPs.String(), s.NodeIPs})
		if need := uint64(s.Nodes) + 1; s.Nodes >= 1 && s.NodeIPs.Size() < need {
			c.add(FieldNodeIPRange, s.NodeIPs.String(),
				"holds %d addresses but %d nodes need %d (one per node plus one for the cluster VIP)",
				s.NodeIPs.Size(), s.Nodes, need)
		}
	}
	if len(s.ExternalIPs) == 0 {
		c.add(FieldExternalServiceIPRanges, "", "at least one external service IP range is required")
	}
	for i, r := range s.ExternalIPs {
		f := indexed(FieldExternalServiceIPRanges, i)
		if checkRange(&c, f, r, site, s.Gateway) {
			items = append(items, item{f, r.String(), r})
		}
	}
	if checkCIDR(&c, FieldPodCIDR, s.PodCIDR, site, DefaultPodCIDR) {
		items = append(items, item{FieldPodCIDR, prefixString(s.PodCIDR), PrefixRange(s.PodCIDR)})
	}
	if checkCIDR(&c, FieldServiceCIDR, s.ServiceCIDR, site, DefaultServiceCIDR) {
		checkServiceSize(&c, s.ServiceCIDR)
		items = append(items, item{FieldServiceCIDR, prefixString(s.ServiceCIDR), PrefixRange(s.ServiceCIDR)})
	}
	for j := range items {
		for i := range j {
			if items[i].r.Overlaps(items[j].r) {
				c.add(items[j].field, items[j].value, "overlaps %s (%s)", items[i].field, items[i].value)
			}
		}
	}
	checkBlocks(&c, s, site)
	if reason := dnsNameProblem(s.ClusterDomain); reason != "" {
		c.add(FieldClusterDomain, s.ClusterDomain, "%s", reason)
	}
	checkUpstreamDNS(&c, s)
	return c.err()
}

// checkSiteSubnet returns the subnet to check other fields against: masked, or
// invalid if there is none.
func checkSiteSubnet(c *collector, p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		c.add(FieldSiteSubnet, "", "required: the compute port's subnet, like 192.168.50.0/24")
		return netip.Prefix{}
	}
	if p != p.Masked() {
		c.add(FieldSiteSubnet, p.String(), "must not have host bits set (did you mean %s?)", p.Masked())
	}
	return p.Masked()
}

func checkGateway(c *collector, gw netip.Addr, site netip.Prefix) {
	v := addrString(gw)
	switch {
	case !gw.IsValid():
		c.add(FieldGateway, v, "required: the site's router address")
		return
	case gw.Zone() != "":
		c.add(FieldGateway, v, "must not have an IPv6 zone")
		return
	case !site.IsValid():
		return
	case gw.BitLen() != site.Addr().BitLen():
		c.add(FieldGateway, v, "must be of the same address family as %s %s", FieldSiteSubnet, site)
		return
	case !site.Contains(gw):
		c.add(FieldGateway, v, "must be inside the site subnet %s", site)
		return
	}
	if gw == site.Addr() {
		c.add(FieldGateway, v, "must not be the network address of the site subnet %s", site)
	}
	if gw.Is4() && gw == PrefixRange(site).To {
		c.add(FieldGateway, v, "must not be the broadcast address of the site subnet %s", site)
	}
}

// checkRange reports problems of one node or external range and whether the
// range itself is well formed (so it can take part in overlap checks).
func checkRange(c *collector, field string, r Range, site netip.Prefix, gw netip.Addr) bool {
	v := r.String()
	switch {
	case r == Range{}:
		c.add(field, v, "required: a contiguous address range like 192.168.50.10-192.168.50.19")
		return false
	case !r.From.IsValid() || !r.To.IsValid():
		c.add(field, v, "both ends must be valid addresses")
		return false
	case r.From.Zone() != "" || r.To.Zone() != "":
		c.add(field, v, "must not have IPv6 zones")
		return false
	case r.From.BitLen() != r.To.BitLen():
		c.add(field, v, "both ends must be of the same address family")
		return false
	case r.From.Compare(r.To) > 0:
		c.add(field, v, "start must not be after end")
		return false
	case !site.IsValid():
		return true
	case r.From.BitLen() != site.Addr().BitLen():
		c.add(field, v, "must be of the same address family as %s %s", FieldSiteSubnet, site)
		return true
	}
	if !site.Contains(r.From) || !site.Contains(r.To) {
		c.add(field, v, "must lie inside the site subnet %s", site)
	}
	if gw.IsValid() && r.Contains(gw) {
		c.add(field, v, "must not contain the gateway %s", gw)
	}
	if r.Contains(site.Addr()) {
		c.add(field, v, "must not contain the network address %s of the site subnet", site.Addr())
	}
	if bcast := PrefixRange(site).To; site.Addr().Is4() && r.Contains(bcast) {
		c.add(field, v, "must not contain the broadcast address %s of the site subnet", bcast)
	}
	return true
}

// checkCIDR checks the pod or service CIDR on its own and against the site
// subnet; it reports whether the prefix can take part in overlap checks.
func checkCIDR(c *collector, field string, p, site, example netip.Prefix) bool {
	if !p.IsValid() {
		c.add(field, "", "required: a private prefix like %s", example)
		return false
	}
	v := p.String()
	if p != p.Masked() {
		c.add(field, v, "must not have host bits set (did you mean %s?)", p.Masked())
	}
	if !site.IsValid() {
		return true
	}
	if p.Addr().BitLen() != site.Addr().BitLen() {
		c.add(field, v, "must be of the same address family as %s %s (single-stack)", FieldSiteSubnet, site)
	} else if p.Masked().Overlaps(site) {
		c.add(field, v, "must not overlap the site subnet %s", site)
	}
	return true
}

func checkServiceSize(c *collector, p netip.Prefix) {
	lo, hi := minServiceBits4, maxServiceBits4
	if p.Addr().Is6() {
		lo, hi = minServiceBits6, maxServiceBits6
	}
	if p.Bits() < lo || p.Bits() > hi {
		c.add(FieldServiceCIDR, p.String(), "prefix length must be between /%d and /%d", lo, hi)
	}
}

// checkBlocks checks the pod block size against the pod CIDR's family and size,
// and that the pod CIDR holds one block per node.
func checkBlocks(c *collector, s Settings, site netip.Prefix) {
	fam := s.PodCIDR
	if !fam.IsValid() {
		fam = site // still check the block size against the family's limits
	}
	if !fam.IsValid() {
		return
	}
	lo, hi := 1, maxBlockBits4
	if fam.Addr().Is6() {
		lo, hi = minBlockBits6, maxBlockBits6
	}
	v := fmt.Sprint(s.BlockSize)
	if s.PodCIDR.IsValid() && s.PodCIDR.Bits() > lo {
		lo = s.PodCIDR.Bits()
		if lo > hi {
			c.add(FieldPodCIDR, s.PodCIDR.String(), "is smaller than the smallest pod block /%d", hi)
			return
		}
		if s.BlockSize < lo || s.BlockSize > hi {
			c.add(FieldPodBlockSize, v, "must be between /%d (the prefix length of %s, which must hold at least one block) and /%d", lo, FieldPodCIDR, hi)
			return
		}
	} else if s.BlockSize < lo || s.BlockSize > hi {
		c.add(FieldPodBlockSize, v, "must be between /%d and /%d", lo, hi)
		return
	}
	if !s.PodCIDR.IsValid() || s.Nodes < 1 {
		return
	}
	if n := s.BlockSize - s.PodCIDR.Bits(); n < 62 && uint64(1)<<n < uint64(s.Nodes) {
		c.add(FieldPodCIDR, s.PodCIDR.String(), "holds %d /%d pod blocks but %d nodes need one each", uint64(1)<<n, s.BlockSize, s.Nodes)
	}
}

// dnsNameProblem returns why name is not a DNS name of RFC 1123 labels
// (lowercase, no trailing dot, at most 253 characters), or "".
func dnsNameProblem(name string) string {
	switch {
	case name == "":
		return "required: a DNS domain like cluster.local"
	case len(name) > 253:
		return fmt.Sprintf("must be at most 253 characters, not %d", len(name))
	case strings.HasSuffix(name, "."):
		return "must not end with a dot"
	}
	for label := range strings.SplitSeq(name, ".") {
		if p := labelProblem(label); p != "" {
			return fmt.Sprintf("label %q %s", label, p)
		}
	}
	return ""
}

func labelProblem(l string) string {
	if l == "" {
		return "is empty"
	}
	if len(l) > 63 {
		return "is longer than 63 characters"
	}
	for i := 0; i < len(l); i++ {
		ch := l[i]
		switch {
		case 'a' <= ch && ch <= 'z', '0' <= ch && ch <= '9':
		case ch == '-':
			if i == 0 || i == len(l)-1 {
				return "must start and end with a letter or digit"
			}
		default:
			return "must consist of lowercase letters, digits and '-'"
		}
	}
	return ""
}

func checkUpstreamDNS(c *collector, s Settings) {
	for i, a := range s.UpstreamDNS {
		f, v := indexed(FieldUpstreamDNS, i), addrString(a)
		switch {
		case !a.IsValid():
			c.add(f, v, "must be a valid IP address")
			continue
		case a.Zone() != "":
			c.add(f, v, "must not have an IPv6 zone")
			continue
		case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast():
			// The forwarder runs in a pod: loopback would be itself.
			c.add(f, v, "must be a unicast address reachable from pods (not unspecified, loopback or multicast)")
			continue
		}
		if s.PodCIDR.IsValid() && s.PodCIDR.Masked().Contains(a) {
			c.add(f, v, "must not be inside %s %s", FieldPodCIDR, s.PodCIDR.Masked())
		}
		if s.ServiceCIDR.IsValid() && s.ServiceCIDR.Masked().Contains(a) {
			c.add(f, v, "must not be inside %s %s", FieldServiceCIDR, s.ServiceCIDR.Masked())
		}
		for k, r := range s.ExternalIPs {
			if r.Contains(a) {
				c.add(f, v, "must not be inside %s (%s)", indexed(FieldExternalServiceIPRanges, k), r)
			}
		}
	}
}
