package webui

import (
	"fmt"
	"net/netip"
	"slices"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

// SettingsFromSpec parses a ComputeNetwork spec as the admin typed it and validates it as a whole. The error is
// computenet.FieldErrors: parse problems first, then computenet's checks of the fields that did parse (a field
// that failed to parse is not reported again as missing).
func SettingsFromSpec(spec v1.ComputeNetworkSpec) (computenet.Settings, error) {
	var s computenet.Settings
	var errs computenet.FieldErrors
	bad := map[string]bool{}
	fail := func(field, value string, err error) {
		bad[field] = true
		errs = append(errs, computenet.FieldError{Field: field, Value: value, Reason: err.Error()})
	}
	s.Nodes = int(spec.Nodes)
	if spec.SiteSubnet != "" {
		p, err := netip.ParsePrefix(string(spec.SiteSubnet))
		if err != nil {
			fail(computenet.FieldSiteSubnet, string(spec.SiteSubnet), fmt.Errorf("not a CIDR like 192.168.50.0/24"))
		}
		s.SiteSubnet = p
	}
	if spec.Gateway != "" {
		a, err := netip.ParseAddr(string(spec.Gateway))
		if err != nil {
			fail(computenet.FieldGateway, string(spec.Gateway), fmt.Errorf("not an IP address"))
		}
		s.Gateway = a
	}
	if spec.NodeIPRange != "" {
		r, err := computenet.ParseRange(string(spec.NodeIPRange))
		if err != nil {
			fail(computenet.FieldNodeIPRange, string(spec.NodeIPRange), err)
		}
		s.NodeIPs = r
	}
	for i, x := range spec.ExternalServiceIPRanges {
		r, err := computenet.ParseRange(string(x))
		if err != nil {
			fail(fmt.Sprintf("%s[%d]", computenet.FieldExternalServiceIPRanges, i), string(x), err)
		}
		s.ExternalIPs = append(s.ExternalIPs, r)
	}
	if spec.PodCIDR != "" {
		p, err := netip.ParsePrefix(string(spec.PodCIDR))
		if err != nil {
			fail(computenet.FieldPodCIDR, string(spec.PodCIDR), fmt.Errorf("not a CIDR like 172.27.0.0/16"))
		}
		s.PodCIDR = p
	}
	if spec.ServiceCIDR != "" {
		p, err := netip.ParsePrefix(string(spec.ServiceCIDR))
		if err != nil {
			fail(computenet.FieldServiceCIDR, string(spec.ServiceCIDR), fmt.Errorf("not a CIDR like 172.28.0.0/16"))
		}
		s.ServiceCIDR = p
	}
	s.ClusterDomain = spec.ClusterDomain
	s.BlockSize = int(spec.PodBlockSize)
	for i, x := range spec.UpstreamDNS {
		a, err := netip.ParseAddr(string(x))
		if err != nil {
			fail(fmt.Sprintf("%s[%d]", computenet.FieldUpstreamDNS, i), string(x), fmt.Errorf("not an IP address"))
		}
		s.UpstreamDNS = append(s.UpstreamDNS, a)
	}
	// The CRD defaults these; an empty form field means "the default", as kubectl apply would.
	s = s.WithDefaults()

	if verr := s.Validate(); verr != nil {
		ves, ok := verr.(computenet.FieldErrors)
		if !ok {
			return s, verr
		}
		for _, e := range ves {
			if !bad[e.Field] {
				errs = append(errs, e)
			}
		}
	}
	if len(errs) == 0 {
		return s, nil
	}
	slices.SortStableFunc(errs, func(a, b computenet.FieldError) int { return fieldOrder(a.Field) - fieldOrder(b.Field) })
	return s, errs
}

// fieldOrder sorts errors in form order, so they read top to bottom like the page.
func fieldOrder(field string) int {
	order := []string{computenet.FieldNodes, computenet.FieldSiteSubnet, computenet.FieldGateway, computenet.FieldNodeIPRange,
		computenet.FieldExternalServiceIPRanges, computenet.FieldPodCIDR, computenet.FieldServiceCIDR, computenet.FieldPodBlockSize,
		computenet.FieldClusterDomain, computenet.FieldUpstreamDNS}
	for i, f := range order {
		if field == f || len(field) > len(f) && field[:len(f)] == f && field[len(f)] == '[' {
			return i
		}
	}
	return len(order)
}
