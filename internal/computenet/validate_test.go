package computenet

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
)

var (
	addr = netip.MustParseAddr
	pfx  = netip.MustParsePrefix
)

func rng(s string) Range {
	r, err := ParseRange(s)
	if err != nil {
		panic(err)
	}
	return r
}

// v6Defaults is a valid IPv6 single-stack appliance.
func v6Defaults() Settings {
	return Settings{
		Nodes:         3,
		SiteSubnet:    pfx("2001:db8:50::/64"),
		Gateway:       addr("2001:db8:50::1"),
		NodeIPs:       rng("2001:db8:50::10-2001:db8:50::19"),
		ExternalIPs:   []Range{rng("2001:db8:50::100-2001:db8:50::1ff")},
		PodCIDR:       pfx("fd00:27::/56"),
		ServiceCIDR:   pfx("fd00:28::/112"),
		ClusterDomain: "cluster.local",
		BlockSize:     64,
	}
}

// fe is a wanted FieldError: exact field, reason substring.
type fe struct{ field, reason string }

// checkErrors asserts err is exactly the wanted FieldErrors, in order.
func checkErrors(t *testing.T, err error, want []fe) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error:\n%v", err)
		}
		return
	}
	var got FieldErrors
	if !errors.As(err, &got) {
		t.Fatalf("error %v (%T) is not FieldErrors; want %v", err, err, want)
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i].Field == want[i].field && strings.Contains(got[i].Reason, want[i].reason)
	}
	if !ok {
		t.Fatalf("got errors:\n%v\nwant (field: reason substring):\n%v", err, want)
	}
}

func TestDefaultsValid(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("Defaults() invalid: %v", err)
	}
	if err := v6Defaults().Validate(); err != nil {
		t.Fatalf("IPv6 settings invalid: %v", err)
	}
	d := Defaults()
	if d.Nodes != 2 || d.SiteSubnet != pfx("192.168.50.0/24") || d.Gateway != addr("192.168.50.1") ||
		d.NodeIPs != rng("192.168.50.10-192.168.50.19") || len(d.ExternalIPs) != 1 ||
		d.ExternalIPs[0] != rng("192.168.50.100-192.168.50.119") || d.PodCIDR != pfx("172.27.0.0/16") ||
		d.ServiceCIDR != pfx("172.28.0.0/16") || d.ClusterDomain != "cluster.local" || d.BlockSize != 26 ||
		len(d.UpstreamDNS) != 0 {
		t.Errorf("Defaults() = %+v", d)
	}
}

func TestWithDefaults(t *testing.T) {
	s := Settings{Nodes: 1, SiteSubnet: pfx("10.9.0.0/24")}.WithDefaults()
	if s.PodCIDR != DefaultPodCIDR || s.ServiceCIDR != DefaultServiceCIDR || s.ClusterDomain != "cluster.local" ||
		s.BlockSize != 26 || s.SiteSubnet != pfx("10.9.0.0/24") || s.Nodes != 1 {
		t.Errorf("WithDefaults = %+v", s)
	}
	keep := Settings{PodCIDR: pfx("10.1.0.0/16"), ServiceCIDR: pfx("10.2.0.0/16"), ClusterDomain: "edge", BlockSize: 24}
	if got := keep.WithDefaults(); got.PodCIDR != keep.PodCIDR || got.ServiceCIDR != keep.ServiceCIDR ||
		got.ClusterDomain != "edge" || got.BlockSize != 24 {
		t.Errorf("WithDefaults overwrote set fields: %+v", got)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		base func() Settings // Defaults when nil
		edit func(*Settings)
		want []fe
	}{
		// nodes
		{name: "no nodes", edit: func(s *Settings) { s.Nodes = 0 }, want: []fe{{"spec.nodes", "at least 1"}}},
		{name: "negative nodes", edit: func(s *Settings) { s.Nodes = -1 }, want: []fe{{"spec.nodes", "at least 1"}}},
		{name: "nodes fill the range exactly", edit: func(s *Settings) { s.Nodes = 9 }},

		// site subnet
		{name: "site subnet missing", edit: func(s *Settings) { s.SiteSubnet = netip.Prefix{} },
			want: []fe{{"spec.siteSubnet", "required"}}},
		{name: "site subnet host bits", edit: func(s *Settings) { s.SiteSubnet = pfx("192.168.50.7/24") },
			want: []fe{{"spec.siteSubnet", "host bits set (did you mean 192.168.50.0/24?)"}}},
		{name: "site subnet too small for the ranges", edit: func(s *Settings) { s.SiteSubnet = pfx("192.168.50.0/28") },
			want: []fe{
				{"spec.nodeIPRange", "inside the site subnet 192.168.50.0/28"},
				{"spec.nodeIPRange", "broadcast address 192.168.50.15"},
				{"spec.externalServiceIPRanges[0]", "inside the site subnet"}}},

		// gateway
		{name: "gateway missing", edit: func(s *Settings) { s.Gateway = netip.Addr{} },
			want: []fe{{"spec.gateway", "required"}}},
		{name: "gateway outside", edit: func(s *Settings) { s.Gateway = addr("192.168.51.1") },
			want: []fe{{"spec.gateway", "inside the site subnet 192.168.50.0/24"}}},
		{name: "gateway is network address", edit: func(s *Settings) { s.Gateway = addr("192.168.50.0") },
			want: []fe{{"spec.gateway", "network address"}}},
		{name: "gateway is broadcast address", edit: func(s *Settings) { s.Gateway = addr("192.168.50.255") },
			want: []fe{{"spec.gateway", "broadcast address"}}},
		{name: "gateway other family", edit: func(s *Settings) { s.Gateway = addr("2001:db8::1") },
			want: []fe{{"spec.gateway", "same address family"}}},
		{name: "gateway v4-mapped", edit: func(s *Settings) { s.Gateway = addr("::ffff:192.168.50.1") },
			want: []fe{{"spec.gateway", "same address family"}}},
		{name: "gateway with zone", edit: func(s *Settings) { s.Gateway = addr("fe80::1%eth0") },
			want: []fe{{"spec.gateway", "zone"}}},
		{name: "gateway inside node range", edit: func(s *Settings) { s.Gateway = addr("192.168.50.12") },
			want: []fe{{"spec.nodeIPRange", "must not contain the gateway 192.168.50.12"}}},
		{name: "gateway inside external range", edit: func(s *Settings) { s.Gateway = addr("192.168.50.119") },
			want: []fe{{"spec.externalServiceIPRanges[0]", "must not contain the gateway"}}},
		{name: "gateway last address of v6 subnet is fine", base: v6Defaults,
			edit: func(s *Settings) { s.Gateway = addr("2001:db8:50::ffff:ffff:ffff:ffff") }},
		{name: "gateway network address of v6 subnet", base: v6Defaults,
			edit: func(s *Settings) { s.Gateway = addr("2001:db8:50::") },
			want: []fe{{"spec.gateway", "network address"}}},

		// node IP range
		{name: "node range missing", edit: func(s *Settings) { s.NodeIPs = Range{} },
			want: []fe{{"spec.nodeIPRange", "required"}}},
		{name: "node range inverted", edit: func(s *Settings) { s.NodeIPs = Range{addr("192.168.50.19"), addr("192.168.50.10")} },
			want: []fe{{"spec.nodeIPRange", "start must not be after end"}}},
		{name: "node range mixed families", edit: func(s *Settings) { s.NodeIPs = Range{addr("192.168.50.10"), addr("2001:db8::1")} },
			want: []fe{{"spec.nodeIPRange", "both ends must be of the same address family"}}},
		{name: "node range half set", edit: func(s *Settings) { s.NodeIPs = Range{From: addr("192.168.50.10")} },
			want: []fe{{"spec.nodeIPRange", "both ends must be valid"}}},
		{name: "node range zoned", base: v6Defaults,
			edit: func(s *Settings) { s.NodeIPs = Range{addr("fe80::1%eth0"), addr("fe80::9%eth0")} },
			want: []fe{{"spec.nodeIPRange", "zones"}}},
		{name: "node range other family than site", edit: func(s *Settings) { s.NodeIPs = rng("2001:db8::10-2001:db8::19") },
			want: []fe{{"spec.nodeIPRange", "same address family as spec.siteSubnet"}}},
		{name: "node range outside site", edit: func(s *Settings) { s.NodeIPs = rng("192.168.51.10-192.168.51.19") },
			want: []fe{{"spec.nodeIPRange", "inside the site subnet 192.168.50.0/24"}}},
		{name: "node range straddles broadcast", edit: func(s *Settings) { s.NodeIPs = rng("192.168.50.250-192.168.51.5") },
			want: []fe{
				{"spec.nodeIPRange", "inside the site subnet"},
				{"spec.nodeIPRange", "broadcast address 192.168.50.255"}}},
		{name: "node range holds network address and gateway", edit: func(s *Settings) { s.NodeIPs = rng("192.168.50.0-192.168.50.9") },
			want: []fe{
				{"spec.nodeIPRange", "gateway 192.168.50.1"},
				{"spec.nodeIPRange", "network address 192.168.50.0"}}},
		{name: "node range too small", edit: func(s *Settings) { s.NodeIPs = rng("192.168.50.10-192.168.50.11") },
			want: []fe{{"spec.nodeIPRange", "holds 2 addresses but 2 nodes need 3 (one per node plus one for the cluster VIP)"}}},
		{name: "node range n+1 exactly", edit: func(s *Settings) { s.NodeIPs = rng("192.168.50.10-192.168.50.12") }},
		{name: "more nodes than range", edit: func(s *Settings) { s.Nodes = 10 },
			want: []fe{{"spec.nodeIPRange", "holds 10 addresses but 10 nodes need 11"}}},
		{name: "single node single address", edit: func(s *Settings) { s.Nodes = 1; s.NodeIPs = rng("192.168.50.10") },
			want: []fe{{"spec.nodeIPRange", "holds 1 addresses but 1 nodes need 2"}}},

		// external service IP ranges
		{name: "no external ranges", edit: func(s *Settings) { s.ExternalIPs = nil },
			want: []fe{{"spec.externalServiceIPRanges", "at least one"}}},
		{name: "empty external ranges", edit: func(s *Settings) { s.ExternalIPs = []Range{} },
			want: []fe{{"spec.externalServiceIPRanges", "at least one"}}},
		{name: "second external range fine", edit: func(s *Settings) {
			s.ExternalIPs = append(s.ExternalIPs, rng("192.168.50.200-192.168.50.210"))
		}},
		{name: "second external range missing", edit: func(s *Settings) { s.ExternalIPs = append(s.ExternalIPs, Range{}) },
			want: []fe{{"spec.externalServiceIPRanges[1]", "required"}}},
		{name: "second external range outside", edit: func(s *Settings) {
			s.ExternalIPs = append(s.ExternalIPs, rng("192.168.49.200-192.168.49.210"))
		}, want: []fe{{"spec.externalServiceIPRanges[1]", "inside the site subnet"}}},
		{name: "external ranges overlap each other", edit: func(s *Settings) {
			s.ExternalIPs = append(s.ExternalIPs, rng("192.168.50.119-192.168.50.130"))
		}, want: []fe{{"spec.externalServiceIPRanges[1]", "overlaps spec.externalServiceIPRanges[0] (192.168.50.100-192.168.50.119)"}}},
		{name: "external range overlaps node range", edit: func(s *Settings) { s.ExternalIPs[0] = rng("192.168.50.19-192.168.50.30") },
			want: []fe{{"spec.externalServiceIPRanges[0]", "overlaps spec.nodeIPRange (192.168.50.10-192.168.50.19)"}}},
		{name: "external range holds broadcast", edit: func(s *Settings) { s.ExternalIPs[0] = rng("192.168.50.200-192.168.50.255") },
			want: []fe{{"spec.externalServiceIPRanges[0]", "broadcast address"}}},
		{name: "external range as CIDR holds network and gateway", edit: func(s *Settings) { s.ExternalIPs[0] = rng("192.168.50.0/28") },
			want: []fe{
				{"spec.externalServiceIPRanges[0]", "gateway"},
				{"spec.externalServiceIPRanges[0]", "network address"},
				{"spec.externalServiceIPRanges[0]", "overlaps spec.nodeIPRange"}}},
		{name: "external range single address", edit: func(s *Settings) { s.ExternalIPs[0] = rng("192.168.50.100") }},

		// pod and service CIDR
		{name: "pod CIDR missing", edit: func(s *Settings) { s.PodCIDR = netip.Prefix{} },
			want: []fe{{"spec.podCIDR", "required"}}},
		{name: "service CIDR missing", edit: func(s *Settings) { s.ServiceCIDR = netip.Prefix{} },
			want: []fe{{"spec.serviceCIDR", "required"}}},
		{name: "pod CIDR host bits", edit: func(s *Settings) { s.PodCIDR = pfx("172.27.1.0/16") },
			want: []fe{{"spec.podCIDR", "host bits set (did you mean 172.27.0.0/16?)"}}},
		{name: "service CIDR host bits", edit: func(s *Settings) { s.ServiceCIDR = pfx("172.28.0.1/16") },
			want: []fe{{"spec.serviceCIDR", "host bits set"}}},
		{name: "pod CIDR overlaps site", edit: func(s *Settings) { s.PodCIDR = pfx("192.168.0.0/16") },
			want: []fe{
				{"spec.podCIDR", "must not overlap the site subnet 192.168.50.0/24"},
				{"spec.podCIDR", "overlaps spec.nodeIPRange"},
				{"spec.podCIDR", "overlaps spec.externalServiceIPRanges[0]"}}},
		{name: "service CIDR inside site", edit: func(s *Settings) { s.ServiceCIDR = pfx("192.168.50.128/28") },
			want: []fe{{"spec.serviceCIDR", "must not overlap the site subnet"}}},
		{name: "service CIDR overlaps pod CIDR", edit: func(s *Settings) { s.ServiceCIDR = pfx("172.27.128.0/20") },
			want: []fe{{"spec.serviceCIDR", "overlaps spec.podCIDR (172.27.0.0/16)"}}},
		{name: "service CIDR equals pod CIDR", edit: func(s *Settings) { s.ServiceCIDR = s.PodCIDR },
			want: []fe{{"spec.serviceCIDR", "overlaps spec.podCIDR"}}},
		{name: "external range outside site inside service CIDR", edit: func(s *Settings) {
			s.ExternalIPs = append(s.ExternalIPs, rng("172.28.0.100-172.28.0.200"))
		}, want: []fe{
			{"spec.externalServiceIPRanges[1]", "inside the site subnet"},
			{"spec.serviceCIDR", "overlaps spec.externalServiceIPRanges[1]"}}},
		{name: "pod CIDR other family", edit: func(s *Settings) { s.PodCIDR = pfx("fd00:27::/56") },
			want: []fe{
				{"spec.podCIDR", "same address family as spec.siteSubnet"},
				{"spec.podBlockSize", "between /64 and /124"}}},
		{name: "service CIDR other family", edit: func(s *Settings) { s.ServiceCIDR = pfx("fd00:28::/112") },
			want: []fe{{"spec.serviceCIDR", "same address family as spec.siteSubnet"}}},
		{name: "service CIDR /12", edit: func(s *Settings) { s.ServiceCIDR = pfx("172.16.0.0/12"); s.PodCIDR = pfx("10.0.0.0/16") }},
		{name: "service CIDR /11", edit: func(s *Settings) { s.ServiceCIDR = pfx("172.0.0.0/11"); s.PodCIDR = pfx("10.0.0.0/16") },
			want: []fe{{"spec.serviceCIDR", "prefix length must be between /12 and /28"}}},
		{name: "service CIDR /28", edit: func(s *Settings) { s.ServiceCIDR = pfx("172.28.0.0/28") }},
		{name: "service CIDR /29", edit: func(s *Settings) { s.ServiceCIDR = pfx("172.28.0.0/29") },
			want: []fe{{"spec.serviceCIDR", "between /12 and /28"}}},
		{name: "v6 service CIDR /107", base: v6Defaults, edit: func(s *Settings) { s.ServiceCIDR = pfx("fd00:28::/107") },
			want: []fe{{"spec.serviceCIDR", "between /108 and /124"}}},
		{name: "v6 service CIDR /125", base: v6Defaults, edit: func(s *Settings) { s.ServiceCIDR = pfx("fd00:28::/125") },
			want: []fe{{"spec.serviceCIDR", "between /108 and /124"}}},
		{name: "v6 service CIDR /108", base: v6Defaults, edit: func(s *Settings) { s.ServiceCIDR = pfx("fd00:28::/108") }},

		// pod blocks
		{name: "block size unset", edit: func(s *Settings) { s.BlockSize = 0 },
			want: []fe{{"spec.podBlockSize", "between /16 (the prefix length of spec.podCIDR"}}},
		{name: "block size /31", edit: func(s *Settings) { s.BlockSize = 31 },
			want: []fe{{"spec.podBlockSize", "and /30"}}},
		{name: "block larger than pod CIDR", edit: func(s *Settings) { s.BlockSize = 15 },
			want: []fe{{"spec.podBlockSize", "between /16"}}},
		{name: "block /30", edit: func(s *Settings) { s.BlockSize = 30 }},
		{name: "pod CIDR one block, two nodes", edit: func(s *Settings) { s.BlockSize = 16 },
			want: []fe{{"spec.podCIDR", "holds 1 /16 pod blocks but 2 nodes need one each"}}},
		{name: "pod CIDR exactly nodes blocks", edit: func(s *Settings) { s.PodCIDR = pfx("172.27.0.0/24"); s.Nodes = 4 }},
		{name: "pod CIDR one block short", edit: func(s *Settings) {
			s.PodCIDR = pfx("172.27.0.0/24")
			s.Nodes = 5
			s.NodeIPs = rng("192.168.50.10-192.168.50.15")
		},
			want: []fe{{"spec.podCIDR", "holds 4 /26 pod blocks but 5 nodes"}}},
		{name: "pod CIDR smaller than any block", edit: func(s *Settings) { s.PodCIDR = pfx("172.27.0.0/31") },
			want: []fe{{"spec.podCIDR", "smaller than the smallest pod block /30"}}},
		{name: "pod CIDR missing and block bad", edit: func(s *Settings) { s.PodCIDR = netip.Prefix{}; s.BlockSize = 31 },
			want: []fe{{"spec.podCIDR", "required"}, {"spec.podBlockSize", "between /1 and /30"}}},
		{name: "v6 block /63", base: v6Defaults, edit: func(s *Settings) { s.BlockSize = 63 },
			want: []fe{{"spec.podBlockSize", "between /64 and /124"}}},
		{name: "v6 block /125", base: v6Defaults, edit: func(s *Settings) { s.BlockSize = 125 },
			want: []fe{{"spec.podBlockSize", "between /64 and /124"}}},
		{name: "v6 IPv4 default block size", base: v6Defaults, edit: func(s *Settings) { s.BlockSize = 26 },
			want: []fe{{"spec.podBlockSize", "between /64 and /124"}}},
		{name: "v6 small pod CIDR", base: v6Defaults, edit: func(s *Settings) { s.PodCIDR = pfx("fd00:27::/120"); s.BlockSize = 124 }},
		{name: "v6 block larger than pod CIDR", base: v6Defaults, edit: func(s *Settings) { s.PodCIDR = pfx("fd00:27::/100") },
			want: []fe{{"spec.podBlockSize", "between /100"}}},

		// cluster domain
		{name: "domain single label", edit: func(s *Settings) { s.ClusterDomain = "edge" }},
		{name: "domain with digits and hyphens", edit: func(s *Settings) { s.ClusterDomain = "site-1.k8s.example" }},
		{name: "domain missing", edit: func(s *Settings) { s.ClusterDomain = "" },
			want: []fe{{"spec.clusterDomain", "required"}}},
		{name: "domain uppercase", edit: func(s *Settings) { s.ClusterDomain = "Cluster.local" },
			want: []fe{{"spec.clusterDomain", `label "Cluster" must consist of lowercase`}}},
		{name: "domain trailing dot", edit: func(s *Settings) { s.ClusterDomain = "cluster.local." },
			want: []fe{{"spec.clusterDomain", "must not end with a dot"}}},
		{name: "domain empty label", edit: func(s *Settings) { s.ClusterDomain = "cluster..local" },
			want: []fe{{"spec.clusterDomain", `label "" is empty`}}},
		{name: "domain leading dot", edit: func(s *Settings) { s.ClusterDomain = ".local" },
			want: []fe{{"spec.clusterDomain", "is empty"}}},
		{name: "domain label starts with hyphen", edit: func(s *Settings) { s.ClusterDomain = "-cluster.local" },
			want: []fe{{"spec.clusterDomain", "start and end with a letter or digit"}}},
		{name: "domain label ends with hyphen", edit: func(s *Settings) { s.ClusterDomain = "cluster-.local" },
			want: []fe{{"spec.clusterDomain", "start and end"}}},
		{name: "domain underscore", edit: func(s *Settings) { s.ClusterDomain = "my_cluster.local" },
			want: []fe{{"spec.clusterDomain", "lowercase letters, digits and '-'"}}},
		{name: "domain space", edit: func(s *Settings) { s.ClusterDomain = "cluster local" },
			want: []fe{{"spec.clusterDomain", "lowercase letters"}}},
		{name: "domain 63-char label", edit: func(s *Settings) { s.ClusterDomain = strings.Repeat("a", 63) + ".local" }},
		{name: "domain 64-char label", edit: func(s *Settings) { s.ClusterDomain = strings.Repeat("a", 64) + ".local" },
			want: []fe{{"spec.clusterDomain", "longer than 63"}}},
		{name: "domain 253 chars", edit: func(s *Settings) { s.ClusterDomain = longDomain(253) }},
		{name: "domain 254 chars", edit: func(s *Settings) { s.ClusterDomain = longDomain(254) },
			want: []fe{{"spec.clusterDomain", "at most 253 characters, not 254"}}},

		// upstream DNS
		{name: "upstream DNS fine", edit: func(s *Settings) {
			s.UpstreamDNS = []netip.Addr{addr("192.0.2.53"), addr("2001:db8::53"), addr("192.168.50.1")}
		}},
		{name: "upstream DNS invalid", edit: func(s *Settings) { s.UpstreamDNS = []netip.Addr{addr("192.0.2.53"), {}} },
			want: []fe{{"spec.upstreamDNS[1]", "valid IP address"}}},
		{name: "upstream DNS loopback", edit: func(s *Settings) { s.UpstreamDNS = []netip.Addr{addr("127.0.0.53")} },
			want: []fe{{"spec.upstreamDNS[0]", "unicast"}}},
		{name: "upstream DNS unspecified", edit: func(s *Settings) { s.UpstreamDNS = []netip.Addr{addr("::")} },
			want: []fe{{"spec.upstreamDNS[0]", "unicast"}}},
		{name: "upstream DNS multicast", edit: func(s *Settings) { s.UpstreamDNS = []netip.Addr{addr("224.0.0.251")} },
			want: []fe{{"spec.upstreamDNS[0]", "unicast"}}},
		{name: "upstream DNS zoned", edit: func(s *Settings) { s.UpstreamDNS = []netip.Addr{addr("fe80::53%eth0")} },
			want: []fe{{"spec.upstreamDNS[0]", "zone"}}},
		{name: "upstream DNS in pod CIDR", edit: func(s *Settings) { s.UpstreamDNS = []netip.Addr{addr("172.27.3.4")} },
			want: []fe{{"spec.upstreamDNS[0]", "inside spec.podCIDR 172.27.0.0/16"}}},
		{name: "upstream DNS is the cluster DNS", edit: func(s *Settings) { s.UpstreamDNS = []netip.Addr{addr("172.28.0.10")} },
			want: []fe{{"spec.upstreamDNS[0]", "inside spec.serviceCIDR"}}},
		{name: "upstream DNS in external range", edit: func(s *Settings) {
			s.ExternalIPs = append(s.ExternalIPs, rng("192.168.50.200-192.168.50.210"))
			s.UpstreamDNS = []netip.Addr{addr("192.0.2.53"), addr("192.168.50.205")}
		}, want: []fe{{"spec.upstreamDNS[1]", "inside spec.externalServiceIPRanges[1] (192.168.50.200-192.168.50.210)"}}},

		// combinations: every problem at once
		{name: "empty settings", base: func() Settings { return Settings{} }, edit: func(*Settings) {},
			want: []fe{
				{"spec.nodes", "at least 1"},
				{"spec.siteSubnet", "required"},
				{"spec.gateway", "required"},
				{"spec.nodeIPRange", "required"},
				{"spec.externalServiceIPRanges", "at least one"},
				{"spec.podCIDR", "required"},
				{"spec.serviceCIDR", "required"},
				{"spec.clusterDomain", "required"}}},
		{name: "admin typed the wrong subnet everywhere", edit: func(s *Settings) {
			s.SiteSubnet = pfx("10.20.0.0/24")
			s.Gateway = addr("10.20.0.1")
		}, want: []fe{
			{"spec.nodeIPRange", "inside the site subnet 10.20.0.0/24"},
			{"spec.externalServiceIPRanges[0]", "inside the site subnet 10.20.0.0/24"}}},
		{name: "many fields wrong", edit: func(s *Settings) {
			s.Nodes = 12
			s.Gateway = addr("192.168.50.255")
			s.ExternalIPs = []Range{rng("192.168.50.15-192.168.50.30"), rng("192.168.50.25-192.168.50.40")}
			s.ServiceCIDR = s.PodCIDR
			s.ClusterDomain = "Edge"
			s.UpstreamDNS = []netip.Addr{addr("172.27.0.1")}
		}, want: []fe{
			{"spec.gateway", "broadcast address"},
			{"spec.nodeIPRange", "holds 10 addresses but 12 nodes need 13"},
			{"spec.externalServiceIPRanges[0]", "overlaps spec.nodeIPRange"},
			{"spec.externalServiceIPRanges[1]", "overlaps spec.externalServiceIPRanges[0]"},
			{"spec.serviceCIDR", "overlaps spec.podCIDR"},
			{"spec.clusterDomain", "lowercase"},
			{"spec.upstreamDNS[0]", "inside spec.podCIDR"},
			{"spec.upstreamDNS[0]", "inside spec.serviceCIDR"}}},
		{name: "v6 ranges in v4 appliance", edit: func(s *Settings) {
			s.NodeIPs = rng("2001:db8::10-2001:db8::19")
			s.ExternalIPs = []Range{rng("2001:db8::15-2001:db8::20")}
		}, want: []fe{
			{"spec.nodeIPRange", "same address family"},
			{"spec.externalServiceIPRanges[0]", "same address family"},
			{"spec.externalServiceIPRanges[0]", "overlaps spec.nodeIPRange"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Defaults()
			if tc.base != nil {
				s = tc.base()
			}
			tc.edit(&s)
			err := s.Validate()
			checkErrors(t, err, tc.want)
			if err2 := s.Validate(); fmt.Sprint(err2) != fmt.Sprint(err) {
				t.Errorf("Validate not deterministic:\n%v\nthen\n%v", err, err2)
			}
		})
	}
}

// longDomain builds a valid domain of exactly n characters.
func longDomain(n int) string {
	var labels []string
	for n > 0 {
		l := min(n, 63)
		if n-l == 1 { // a trailing 1-char remainder would need a dot of its own
			l--
		}
		labels = append(labels, strings.Repeat("a", l))
		n -= l + 1 // the dot before the next label
	}
	return strings.Join(labels, ".")
}

func TestLongDomainHelper(t *testing.T) {
	for _, n := range []int{64, 127, 128, 253} {
		if d := longDomain(n); len(d) != n || dnsNameProblem(d) != "" {
			t.Errorf("longDomain(%d) = %q (length %d, problem %q)", n, d, len(d), dnsNameProblem(d))
		}
	}
}

func TestFieldErrorsFormat(t *testing.T) {
	s := Defaults()
	s.Nodes = 0
	s.ExternalIPs[0] = rng("192.168.50.200-192.168.50.255")
	err := s.Validate()
	want := `spec.nodes: must be at least 1 (value "0")` + "\n" +
		`spec.externalServiceIPRanges[0]: must not contain the broadcast address 192.168.50.255 of the site subnet (value "192.168.50.200-192.168.50.255")`
	if err == nil || err.Error() != want {
		t.Fatalf("Error() =\n%v\nwant\n%s", err, want)
	}
	var fes FieldErrors
	if !errors.As(err, &fes) || len(fes) != 2 || fes[1] != (FieldError{
		Field: "spec.externalServiceIPRanges[0]", Value: "192.168.50.200-192.168.50.255",
		Reason: "must not contain the broadcast address 192.168.50.255 of the site subnet"}) {
		t.Errorf("FieldErrors = %#v", fes)
	}
}

func TestDerivedAddresses(t *testing.T) {
	d := Defaults()
	for i := range 9 {
		got, err := d.NodeIP(i)
		if want := addr(fmt.Sprintf("192.168.50.%d", 10+i)); err != nil || got != want {
			t.Errorf("NodeIP(%d) = %v, %v; want %v", i, got, err, want)
		}
	}
	for _, i := range []int{-1, 9, 10, math.MaxInt} { // 9 is the cluster VIP, not a node IP
		if got, err := d.NodeIP(i); err == nil {
			t.Errorf("NodeIP(%d) = %v, want error", i, got)
		}
	}
	if _, err := (Settings{NodeIPs: rng("10.0.0.1")}).NodeIP(0); err == nil {
		t.Error("NodeIP(0) of a one-address range (VIP only) succeeded")
	}
	if _, err := (Settings{}).NodeIP(0); err == nil {
		t.Error("NodeIP(0) without a node range succeeded")
	}
	check := func(name string, got, want netip.Addr) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("ClusterVIP", d.ClusterVIP(), addr("192.168.50.19"))
	check("APIServiceIP", d.APIServiceIP(), addr("172.28.0.1"))
	check("DNSServiceIP", d.DNSServiceIP(), addr("172.28.0.10"))

	v6 := v6Defaults()
	ip, err := v6.NodeIP(2)
	check("v6 NodeIP(2)", ip, addr("2001:db8:50::12"))
	if err != nil {
		t.Error(err)
	}
	check("v6 ClusterVIP", v6.ClusterVIP(), addr("2001:db8:50::19"))
	check("v6 APIServiceIP", v6.APIServiceIP(), addr("fd00:28::1"))
	check("v6 DNSServiceIP", v6.DNSServiceIP(), addr("fd00:28::a"))

	odd := Settings{ServiceCIDR: pfx("10.96.0.0/29")} // too small for +10; Validate refuses it
	check("DNSServiceIP of /29", odd.DNSServiceIP(), netip.Addr{})
	check("APIServiceIP of /29", odd.APIServiceIP(), addr("10.96.0.1"))
	check("APIServiceIP unset", (Settings{}).APIServiceIP(), netip.Addr{})
	check("ClusterVIP unset", (Settings{}).ClusterVIP(), netip.Addr{})
}

func TestExternalIPCount(t *testing.T) {
	for _, tc := range []struct {
		ranges []string
		want   uint64
	}{
		{nil, 0},
		{[]string{"192.168.50.100-192.168.50.119"}, 20},
		{[]string{"192.168.50.100-192.168.50.119", "192.168.50.200", "10.0.0.0/30"}, 25},
		{[]string{"2001:db8::/65", "2001:db9::/65", "2001:dba::/120"}, math.MaxUint64},
	} {
		s := Settings{}
		for _, r := range tc.ranges {
			s.ExternalIPs = append(s.ExternalIPs, rng(r))
		}
		if got := s.ExternalIPCount(); got != tc.want {
			t.Errorf("ExternalIPCount(%v) = %d, want %d", tc.ranges, got, tc.want)
		}
	}
}

func TestCheckUpdate(t *testing.T) {
	const immutable = "cannot change once the cluster exists"
	for _, tc := range []struct {
		name string
		edit func(*Settings)
		want []fe
	}{
		{name: "unchanged", edit: func(*Settings) {}},
		{name: "external ranges, node range, DNS and nodes may change", edit: func(s *Settings) {
			s.ExternalIPs = append(s.ExternalIPs, rng("192.168.50.200-192.168.50.220"))
			s.NodeIPs = rng("192.168.50.10-192.168.50.40")
			s.Nodes = 5
			s.UpstreamDNS = []netip.Addr{addr("192.0.2.53")}
			s.SiteSubnet, s.Gateway = pfx("192.168.50.0/23"), addr("192.168.51.254")
		}},
		{name: "pod CIDR", edit: func(s *Settings) { s.PodCIDR = pfx("10.244.0.0/16") },
			want: []fe{{"spec.podCIDR", immutable + ` (was "172.27.0.0/16")`}}},
		{name: "service CIDR", edit: func(s *Settings) { s.ServiceCIDR = pfx("172.28.0.0/20") },
			want: []fe{{"spec.serviceCIDR", immutable}}},
		{name: "block size", edit: func(s *Settings) { s.BlockSize = 24 },
			want: []fe{{"spec.podBlockSize", immutable + ` (was "26")`}}},
		{name: "cluster domain", edit: func(s *Settings) { s.ClusterDomain = "edge.example" },
			want: []fe{{"spec.clusterDomain", immutable + ` (was "cluster.local")`}}},
		{name: "all three", edit: func(s *Settings) { s.PodCIDR, s.ServiceCIDR, s.BlockSize = netip.Prefix{}, pfx("10.96.0.0/12"), 25 },
			want: []fe{{"spec.podCIDR", immutable}, {"spec.serviceCIDR", immutable}, {"spec.podBlockSize", immutable}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := Defaults()
			nu := Defaults()
			tc.edit(&nu)
			checkErrors(t, CheckUpdate(old, nu), tc.want)
		})
	}
}

func TestCheckHostRoutes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes []string
		want   []fe
	}{
		{name: "no routes"},
		{name: "host uplink on a documentation range, default routes", routes: []string{"192.0.2.0/24", "0.0.0.0/0", "::/0", "2001:db8::/64"}},
		{name: "host already on the site subnet", routes: []string{"192.168.50.0/24"}, want: []fe{
			{"spec.siteSubnet", "overlaps the host route 192.168.50.0/24"},
			{"spec.nodeIPRange", "overlaps the host route 192.168.50.0/24"},
			{"spec.externalServiceIPRanges[0]", "overlaps the host route"}}},
		{name: "host route to one node IP", routes: []string{"192.168.50.15/32"}, want: []fe{
			{"spec.siteSubnet", "192.168.50.15/32"},
			{"spec.nodeIPRange", "192.168.50.15/32"}}},
		{name: "host route inside the subnet, outside the ranges", routes: []string{"192.168.50.64/27"}, want: []fe{
			{"spec.siteSubnet", "192.168.50.64/27"}}},
		{name: "docker-style 172.16/12 route", routes: []string{"172.16.0.0/12"}, want: []fe{
			{"spec.podCIDR", "172.16.0.0/12"},
			{"spec.serviceCIDR", "172.16.0.0/12"}}},
		{name: "unmasked route is masked", routes: []string{"172.28.9.9/16"}, want: []fe{
			{"spec.serviceCIDR", "overlaps the host route 172.28.0.0/16"}}},
		{name: "broad route covers everything", routes: []string{"128.0.0.0/1"}, want: []fe{
			{"spec.siteSubnet", ""}, {"spec.nodeIPRange", ""}, {"spec.externalServiceIPRanges[0]", ""},
			{"spec.podCIDR", ""}, {"spec.serviceCIDR", ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var routes []netip.Prefix
			for _, r := range tc.routes {
				routes = append(routes, pfx(r))
			}
			routes = append(routes, netip.Prefix{}) // invalid entries are ignored
			checkErrors(t, Defaults().CheckHostRoutes(routes), tc.want)
		})
	}
}
