package zone

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Config describes the zone the core is authoritative for.
type Config struct {
	// Domain is the cluster domain, e.g. "cluster.local".
	Domain string
	// TTL of every record; the spec leaves it open, CoreDNS uses 5 s. Zero means 5.
	TTL uint32
	// NegativeTTL is the SOA minimum and SOA TTL, so how long resolvers cache NXDOMAIN/NODATA (RFC 2308). Zero
	// means TTL.
	NegativeTTL uint32
	// NameserverAddrs are the addresses of ns.dns.<zone>, the name the NS and SOA records point at (usually the DNS
	// service IP). May be empty.
	NameserverAddrs []netip.Addr
	// ReverseCIDRs are the address ranges whose reverse names the core is authoritative for (the pod and service
	// CIDRs): a PTR query for an address inside one of them that has no record gets NXDOMAIN locally instead of
	// being forwarded.
	ReverseCIDRs []netip.Prefix
}

// DefaultTTL is CoreDNS's kubernetes plugin default.
const DefaultTTL = 5

func (c Config) normalize() (Config, error) {
	d, err := checkName(c.Domain)
	if err != nil {
		return Config{}, fmt.Errorf("zone: domain %q: %w", c.Domain, err)
	}
	c.Domain = d
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = c.TTL
	}
	for _, a := range c.NameserverAddrs {
		if !a.IsValid() || a.Zone() != "" {
			return Config{}, fmt.Errorf("zone: invalid nameserver address %v", a)
		}
	}
	cidrs := make([]netip.Prefix, 0, len(c.ReverseCIDRs))
	for _, p := range c.ReverseCIDRs {
		if !p.IsValid() {
			return Config{}, fmt.Errorf("zone: invalid reverse CIDR %v", p)
		}
		cidrs = append(cidrs, p.Masked())
	}
	c.ReverseCIDRs = cidrs
	c.NameserverAddrs = append([]netip.Addr(nil), c.NameserverAddrs...)
	return c, nil
}

// reverseName is the in-addr.arpa. or ip6.arpa. name of a.
func reverseName(a netip.Addr) string {
	a = a.Unmap()
	var b strings.Builder
	if a.Is4() {
		v := a.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(v[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	v := a.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[v[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[v[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

// reverseZone is the zone apex for a prefix: its reverse name cut at the octet (IPv4) or nibble (IPv6) boundary at
// or above the prefix length.
func reverseZone(p netip.Prefix) string {
	full := reverseName(p.Addr())
	labels := strings.Split(strings.TrimSuffix(full, "."), ".")
	var keep int // address labels kept
	if p.Addr().Is4() {
		keep = p.Bits() / 8
		labels = labels[4-keep:]
	} else {
		keep = p.Bits() / 4
		labels = labels[32-keep:]
	}
	return strings.Join(labels, ".") + "."
}

// parseReverse returns the address a complete reverse name (lowercase, fully qualified) stands for.
func parseReverse(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		parts := strings.Split(rest, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		var v [4]byte
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 8)
			if err != nil || p == "" || len(p) > 1 && p[0] == '0' {
				return netip.Addr{}, false
			}
			v[3-i] = byte(n)
		}
		return netip.AddrFrom4(v), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		parts := strings.Split(rest, ".")
		if len(parts) != 32 {
			return netip.Addr{}, false
		}
		var v [16]byte
		for i, p := range parts {
			if len(p) != 1 {
				return netip.Addr{}, false
			}
			n, err := strconv.ParseUint(p, 16, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			idx := 15 - i/2
			if i%2 == 0 {
				v[idx] |= byte(n)
			} else {
				v[idx] |= byte(n) << 4
			}
		}
		return netip.AddrFrom16(v), true
	}
	return netip.Addr{}, false
}

// dashed is the label a pod or unnamed endpoint address gets: dots or colons replaced by dashes (as CoreDNS does).
func dashed(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.String(), ":", "-")
}

// parseDashed reads a dashed pod label back into an address.
func parseDashed(l string) (netip.Addr, bool) {
	if strings.Count(l, "-") == 3 && !strings.ContainsAny(l, "abcdef") {
		a, err := netip.ParseAddr(strings.ReplaceAll(l, "-", "."))
		return a, err == nil && a.Is4()
	}
	a, err := netip.ParseAddr(strings.ReplaceAll(l, "-", ":"))
	return a, err == nil && a.Is6() && a.Zone() == ""
}
