package webhook

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

// SettingsOf converts a ComputeNetwork spec into computenet.Settings. Fields that do
// not parse are left zero and reported as FieldErrors (the CRD schema refuses them,
// but objects can be older than the schema, and the handler must not trust it).
func SettingsOf(spec v1.ComputeNetworkSpec) (computenet.Settings, error) {
	s := computenet.Settings{
		Nodes:         int(spec.Nodes),
		ClusterDomain: spec.ClusterDomain,
		BlockSize:     int(spec.PodBlockSize),
	}
	var errs computenet.FieldErrors
	bad := func(field, value string, err error) {
		errs = append(errs, computenet.FieldError{Field: field, Value: value, Reason: reason(err)})
	}
	prefix := func(field string, v v1.CIDR) netip.Prefix {
		if v == "" {
			return netip.Prefix{}
		}
		p, err := netip.ParsePrefix(string(v))
		if err != nil {
			bad(field, string(v), err)
		}
		return p
	}
	addr := func(field string, v v1.IPAddress) netip.Addr {
		if v == "" {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(string(v))
		if err != nil {
			bad(field, string(v), err)
		}
		return a
	}
	rng := func(field string, v v1.IPRange) computenet.Range {
		if v == "" {
			return computenet.Range{}
		}
		r, err := computenet.ParseRange(string(v))
		if err != nil {
			bad(field, string(v), err)
		}
		return r
	}
	s.SiteSubnet = prefix(computenet.FieldSiteSubnet, spec.SiteSubnet)
	s.Gateway = addr(computenet.FieldGateway, spec.Gateway)
	s.NodeIPs = rng(computenet.FieldNodeIPRange, spec.NodeIPRange)
	for i, r := range spec.ExternalServiceIPRanges {
		f := fmt.Sprintf("%s[%d]", computenet.FieldExternalServiceIPRanges, i)
		// A malformed entry keeps its place so later indexes still name the right item;
		// Validate would call the zero Range "required", which the parse error replaces.
		s.ExternalIPs = append(s.ExternalIPs, rng(f, r))
	}
	s.PodCIDR = prefix(computenet.FieldPodCIDR, spec.PodCIDR)
	s.ServiceCIDR = prefix(computenet.FieldServiceCIDR, spec.ServiceCIDR)
	for i, a := range spec.UpstreamDNS {
		s.UpstreamDNS = append(s.UpstreamDNS, addr(fmt.Sprintf("%s[%d]", computenet.FieldUpstreamDNS, i), a))
	}
	if len(errs) > 0 {
		return s, errs
	}
	return s, nil
}

// SpecOf is the ComputeNetwork spec that stores s: SettingsOf's inverse, for everything
// that writes the object (edgenet up, the UI).
func SpecOf(s computenet.Settings) v1.ComputeNetworkSpec {
	spec := v1.ComputeNetworkSpec{
		Nodes: int32(s.Nodes), SiteSubnet: v1.CIDR(s.SiteSubnet.String()), Gateway: v1.IPAddress(s.Gateway.String()),
		NodeIPRange: v1.IPRange(s.NodeIPs.String()), PodCIDR: v1.CIDR(s.PodCIDR.String()),
		ServiceCIDR: v1.CIDR(s.ServiceCIDR.String()), PodBlockSize: int32(s.BlockSize), ClusterDomain: s.ClusterDomain,
	}
	for _, r := range s.ExternalIPs {
		spec.ExternalServiceIPRanges = append(spec.ExternalServiceIPRanges, v1.IPRange(r.String()))
	}
	for _, a := range s.UpstreamDNS {
		spec.UpstreamDNS = append(spec.UpstreamDNS, v1.IPAddress(a.String()))
	}
	return spec
}

// reason strips the "computenet: parse range ...:" prefix, which repeats the value.
func reason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "computenet: parse range") {
		msg = msg[i+2:]
	}
	return "does not parse: " + msg
}

// Check returns every problem of spec as FieldErrors, in field order: fields that do
// not parse, then computenet's Validate on the rest (without repeating a field that
// did not parse as "required").
func Check(spec v1.ComputeNetworkSpec) (computenet.Settings, computenet.FieldErrors) {
	s, err := SettingsOf(spec)
	var errs computenet.FieldErrors
	unparsed := map[string]bool{}
	if fe, ok := err.(computenet.FieldErrors); ok {
		errs = append(errs, fe...)
		for _, e := range fe {
			unparsed[e.Field] = true
		}
	}
	if fe, ok := s.Validate().(computenet.FieldErrors); ok {
		for _, e := range fe {
			if !unparsed[e.Field] {
				errs = append(errs, e)
			}
		}
	}
	return s, errs
}
