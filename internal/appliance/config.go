package appliance

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"edgenet.io/edgenet/internal/computenet"
)

// FileSettings is the settings file of `edgenet up --config`, with the field names of
// the ComputeNetwork API. Fields left out keep their defaults.
type FileSettings struct {
	Nodes                   int      `json:"nodes,omitempty"`
	SiteSubnet              string   `json:"siteSubnet,omitempty"`
	Gateway                 string   `json:"gateway,omitempty"`
	NodeIPRange             string   `json:"nodeIPRange,omitempty"`
	ExternalServiceIPRanges []string `json:"externalServiceIPRanges,omitempty"`
	PodCIDR                 string   `json:"podCIDR,omitempty"`
	ServiceCIDR             string   `json:"serviceCIDR,omitempty"`
	ClusterDomain           string   `json:"clusterDomain,omitempty"`
	UpstreamDNS             []string `json:"upstreamDNS,omitempty"`
	PodBlockSize            int      `json:"podBlockSize,omitempty"`
}

// LoadSettingsFile reads a settings file over base.
func LoadSettingsFile(path string, base computenet.Settings) (computenet.Settings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return base, err
	}
	var f FileSettings
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return base, fmt.Errorf("%s: %w", path, err)
	}
	s, err := f.Apply(base)
	if err != nil {
		return base, fmt.Errorf("%s:\n%w", path, err)
	}
	return s, nil
}

// Apply parses the fields that are set over base, reporting every malformed field.
func (f FileSettings) Apply(base computenet.Settings) (computenet.Settings, error) {
	s := base
	var errs computenet.FieldErrors
	bad := func(field, val string, err error) {
		errs = append(errs, computenet.FieldError{Field: "spec." + field, Value: val, Reason: err.Error()})
	}
	prefix := func(field, val string, dst *netip.Prefix) {
		if val == "" {
			return
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(val))
		if err != nil {
			bad(field, val, err)
			return
		}
		*dst = p
	}
	if f.Nodes != 0 {
		s.Nodes = f.Nodes
	}
	if f.PodBlockSize != 0 {
		s.BlockSize = f.PodBlockSize
	}
	if f.ClusterDomain != "" {
		s.ClusterDomain = f.ClusterDomain
	}
	prefix("siteSubnet", f.SiteSubnet, &s.SiteSubnet)
	prefix("podCIDR", f.PodCIDR, &s.PodCIDR)
	prefix("serviceCIDR", f.ServiceCIDR, &s.ServiceCIDR)
	if f.Gateway != "" {
		a, err := netip.ParseAddr(strings.TrimSpace(f.Gateway))
		if err != nil {
			bad("gateway", f.Gateway, err)
		}
		s.Gateway = a
	}
	if f.NodeIPRange != "" {
		r, err := computenet.ParseRange(f.NodeIPRange)
		if err != nil {
			bad("nodeIPRange", f.NodeIPRange, err)
		}
		s.NodeIPs = r
	}
	if len(f.ExternalServiceIPRanges) > 0 {
		s.ExternalIPs = nil
		for i, v := range f.ExternalServiceIPRanges {
			r, err := computenet.ParseRange(v)
			if err != nil {
				bad(fmt.Sprintf("externalServiceIPRanges[%d]", i), v, err)
				continue
			}
			s.ExternalIPs = append(s.ExternalIPs, r)
		}
	}
	if len(f.UpstreamDNS) > 0 {
		s.UpstreamDNS = nil
		for i, v := range f.UpstreamDNS {
			a, err := netip.ParseAddr(strings.TrimSpace(v))
			if err != nil {
				bad(fmt.Sprintf("upstreamDNS[%d]", i), v, err)
				continue
			}
			s.UpstreamDNS = append(s.UpstreamDNS, a)
		}
	}
	if len(errs) > 0 {
		return base, errs
	}
	return s, nil
}
