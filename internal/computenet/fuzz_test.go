package computenet

import (
	"errors"
	"math"
	"math/big"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go4.org/netipx"
)

// The fuzz targets re-check accepted input with independent code: netipx for
// ranges, math/big for counts, a regexp for the domain.

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"192.168.50.10-192.168.50.19", "10.0.0.1", "10.0.0.0/8", "2001:db8::/64",
		"::/0", "fe80::1%eth0", "10.0.0.9-10.0.0.1", "::ffff:1.2.3.4-::ffff:1.2.3.9", " 1.2.3.4 - 1.2.3.5 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if r != (Range{}) {
				t.Fatalf("error %v with non-zero range %v", err, r)
			}
			return
		}
		ir := netipx.IPRangeFrom(r.From, r.To)
		if !r.IsValid() || !ir.IsValid() {
			t.Fatalf("ParseRange(%q) = %#v, not a valid range", s, r)
		}
		if back, err := ParseRange(r.String()); err != nil || back != r {
			t.Fatalf("round trip %q -> %v -> %q -> %v, %v", s, r, r.String(), back, err)
		}
		if p, ok := ir.Prefix(); ok && PrefixRange(p) != r {
			t.Fatalf("PrefixRange(%v) = %v, want %v", p, PrefixRange(p), r)
		}
		size := r.Size()
		if want := satSize(r.From, r.To); size != want {
			t.Fatalf("Size(%v) = %d, want %d", r, size, want)
		}
		if !r.Contains(r.From) || !r.Contains(r.To) || !r.Overlaps(r) {
			t.Fatalf("%v does not contain/overlap itself", r)
		}
		if a, ok := r.Addr(0); !ok || a != r.From {
			t.Fatalf("Addr(0) = %v, %v; want %v", a, ok, r.From)
		}
		if a, ok := r.Addr(size / 2); !ok || !ir.Contains(a) {
			t.Fatalf("Addr(%d) = %v, %v; not in %v", size/2, a, ok, r)
		}
		if size < math.MaxUint64 {
			if a, ok := r.Addr(size - 1); !ok || a != r.To {
				t.Fatalf("Addr(%d) = %v, %v; want %v", size-1, a, ok, r.To)
			}
			if a, ok := r.Addr(size); ok {
				t.Fatalf("Addr(%d) = %v past the end of %v", size, a, r)
			}
		}
		if next := r.To.Next(); next.IsValid() && r.Contains(next) {
			t.Fatalf("%v contains %v after its end", r, next)
		}
	})
}

// satSize is To-From+1 by math/big, saturated to uint64.
func satSize(from, to netip.Addr) uint64 {
	n := new(big.Int).Sub(addrInt(to), addrInt(from))
	n.Add(n, big.NewInt(1))
	if !n.IsUint64() {
		return math.MaxUint64
	}
	return n.Uint64()
}

func addrInt(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }

func FuzzValidate(f *testing.F) {
	f.Add(2, 26, "192.168.50.0/24", "192.168.50.1", "192.168.50.10-192.168.50.19", "192.168.50.100-192.168.50.119", "",
		"172.27.0.0/16", "172.28.0.0/16", "cluster.local", "")
	f.Add(3, 64, "2001:db8:50::/64", "2001:db8:50::1", "2001:db8:50::10-2001:db8:50::19", "2001:db8:50::100-2001:db8:50::1ff",
		"2001:db8:50::200/120", "fd00:27::/56", "fd00:28::/112", "edge", "2001:db8::53")
	f.Add(1, 30, "10.0.0.0/29", "10.0.0.1", "10.0.0.2-10.0.0.3", "10.0.0.4-10.0.0.6", "", "10.1.0.0/30", "10.2.0.0/28", "a", "192.0.2.1")
	f.Add(0, 0, "", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, nodes, block int, subnet, gw, nodeRange, ext1, ext2, pod, svc, domain, dns string) {
		s := Settings{Nodes: nodes, BlockSize: block, ClusterDomain: domain}
		s.SiteSubnet, _ = netip.ParsePrefix(subnet)
		s.Gateway, _ = netip.ParseAddr(gw)
		s.NodeIPs, _ = ParseRange(nodeRange)
		for _, e := range []string{ext1, ext2} {
			if e != "" {
				r, _ := ParseRange(e) // keep failures as zero ranges: Validate must refuse them
				s.ExternalIPs = append(s.ExternalIPs, r)
			}
		}
		s.PodCIDR, _ = netip.ParsePrefix(pod)
		s.ServiceCIDR, _ = netip.ParsePrefix(svc)
		if dns != "" {
			a, _ := netip.ParseAddr(dns)
			s.UpstreamDNS = []netip.Addr{a}
		}

		err := s.Validate()
		if err2 := s.Validate(); !reflect.DeepEqual(err, err2) {
			t.Fatalf("Validate not deterministic:\n%v\nthen\n%v", err, err2)
		}
		if err != nil {
			var fes FieldErrors
			if !errors.As(err, &fes) || len(fes) == 0 {
				t.Fatalf("error %v (%T) is not non-empty FieldErrors", err, err)
			}
			if lines := strings.Count(err.Error(), "\n") + 1; lines != len(fes) {
				t.Fatalf("Error() has %d lines for %d errors:\n%v", lines, len(fes), err)
			}
			for _, fe := range fes {
				if !strings.HasPrefix(fe.Field, "spec.") || fe.Reason == "" {
					t.Fatalf("malformed FieldError %#v", fe)
				}
			}
			return
		}
		checkAccepted(t, s)
	})
}

var dnsName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// checkAccepted re-checks the invariants of accepted settings independently.
func checkAccepted(t *testing.T, s Settings) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("accepted %+v but "+format, append([]any{s}, args...)...)
	}
	site := s.SiteSubnet
	siteR := netipx.RangeOfPrefix(site)
	if s.Nodes < 1 || !site.IsValid() || site.Masked() != site {
		fail("nodes or site subnet invalid")
	}
	if !site.Contains(s.Gateway) || s.Gateway == siteR.From() || (site.Addr().Is4() && s.Gateway == siteR.To()) {
		fail("gateway %v is not a host of the site subnet", s.Gateway)
	}
	ranges := []netipx.IPRange{netipx.IPRangeFrom(s.NodeIPs.From, s.NodeIPs.To)}
	for _, r := range s.ExternalIPs {
		ranges = append(ranges, netipx.IPRangeFrom(r.From, r.To))
	}
	for _, r := range ranges {
		if !r.IsValid() || !site.Contains(r.From()) || !site.Contains(r.To()) {
			fail("range %v is not inside the site subnet", r)
		}
		if r.Contains(s.Gateway) || r.Contains(siteR.From()) || (site.Addr().Is4() && r.Contains(siteR.To())) {
			fail("range %v holds the gateway, network or broadcast address", r)
		}
	}
	if satSize(s.NodeIPs.From, s.NodeIPs.To) < uint64(s.Nodes)+1 {
		fail("node range too small for %d nodes", s.Nodes)
	}
	total := new(big.Int)
	for _, r := range s.ExternalIPs {
		total.Add(total, new(big.Int).Add(new(big.Int).Sub(addrInt(r.To), addrInt(r.From)), big.NewInt(1)))
	}
	if want := uint64(math.MaxUint64); total.IsUint64() {
		want = total.Uint64()
		if s.ExternalIPCount() != want || want < 1 {
			fail("ExternalIPCount %d, want %d >= 1", s.ExternalIPCount(), want)
		}
	} else if s.ExternalIPCount() != want {
		fail("ExternalIPCount %d did not saturate", s.ExternalIPCount())
	}
	for _, p := range []netip.Prefix{s.PodCIDR, s.ServiceCIDR} {
		if !p.IsValid() || p.Masked() != p || p.Addr().BitLen() != site.Addr().BitLen() || p.Overlaps(site) {
			fail("pod/service CIDR %v invalid or overlapping the site subnet", p)
		}
		ranges = append(ranges, netipx.RangeOfPrefix(p))
	}
	for i := range ranges {
		for j := range i {
			if ranges[i].Overlaps(ranges[j]) {
				fail("%v overlaps %v", ranges[i], ranges[j])
			}
		}
	}
	minSvc, maxSvc, maxBlock := 12, 28, 30
	if site.Addr().Is6() {
		minSvc, maxSvc, maxBlock = 108, 124, 124
	}
	if b := s.ServiceCIDR.Bits(); b < minSvc || b > maxSvc {
		fail("service CIDR size /%d", b)
	}
	api, dns := s.APIServiceIP(), s.DNSServiceIP()
	if !s.ServiceCIDR.Contains(api) || !s.ServiceCIDR.Contains(dns) || api == dns || api == s.ServiceCIDR.Addr() {
		fail("service IPs %v, %v not usable in %v", api, dns, s.ServiceCIDR)
	}
	if s.BlockSize < s.PodCIDR.Bits() || s.BlockSize > maxBlock || (site.Addr().Is6() && s.BlockSize < 64) {
		fail("block size /%d", s.BlockSize)
	}
	blocks := new(big.Int).Lsh(big.NewInt(1), uint(s.BlockSize-s.PodCIDR.Bits()))
	if blocks.Cmp(big.NewInt(int64(s.Nodes))) < 0 {
		fail("%v holds %v blocks for %d nodes", s.PodCIDR, blocks, s.Nodes)
	}
	if len(s.ClusterDomain) > 253 || !dnsName.MatchString(s.ClusterDomain) {
		fail("cluster domain %q", s.ClusterDomain)
	}
	for _, l := range strings.Split(s.ClusterDomain, ".") {
		if len(l) > 63 {
			fail("domain label %q", l)
		}
	}
	for _, a := range s.UpstreamDNS {
		if !a.IsValid() || s.PodCIDR.Contains(a) || s.ServiceCIDR.Contains(a) {
			fail("upstream DNS %v", a)
		}
		for _, r := range ranges[1 : 1+len(s.ExternalIPs)] {
			if r.Contains(a) {
				fail("upstream DNS %v in external range %v", a, r)
			}
		}
	}
	vip := s.ClusterVIP()
	if vip != s.NodeIPs.To {
		fail("ClusterVIP %v", vip)
	}
	for i := 0; i < min(s.Nodes, 1000); i++ {
		ip, err := s.NodeIP(i)
		if err != nil || !ranges[0].Contains(ip) || ip == vip {
			fail("NodeIP(%d) = %v, %v", i, ip, err)
		}
	}
	if err := CheckUpdate(s, s); err != nil {
		fail("CheckUpdate(s, s) = %v", err)
	}
}
