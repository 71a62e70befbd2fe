package webui

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/webhook"
)

// LBService is what a preview needs of a LoadBalancer Service.
type LBService struct {
	Key string       // namespace/name
	IPs []netip.Addr // status.loadBalancer.ingress
	// Pending is why the Service has no address yet ("" when it has one).
	Pending string
}

// FieldChange is one spec field the change touches, in text form.
type FieldChange struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// ServiceImpact is a Service address the new external ranges no longer hold: the Service keeps it (an edit
// never takes an address away) but it is flagged until moved.
type ServiceImpact struct {
	Service string `json:"service"`
	IP      string `json:"ip"`
}

// PoolChange is the default pool (the external service IP ranges) before and after.
type PoolChange struct {
	SizeBefore uint64 `json:"sizeBefore"`
	SizeAfter  uint64 `json:"sizeAfter"`
	// UsedAfter counts Service addresses inside the new ranges; FreeAfter what is left of them.
	UsedAfter uint64 `json:"usedAfter"`
	FreeAfter uint64 `json:"freeAfter"`
}

// Preview is what applying a spec would do, for the admin to read before Apply.
type Preview struct {
	// Applicable is false when Refusals is not empty: Apply would be refused.
	Applicable bool          `json:"applicable"`
	Refusals   []FieldError  `json:"refusals"`
	Changes    []FieldChange `json:"changes"`
	// ServicesOutside lists addresses left outside the new external ranges.
	ServicesOutside []ServiceImpact `json:"servicesOutside"`
	// PendingServices wait for an address; with FreeAfter > 0 the change may serve them.
	PendingServices []string   `json:"pendingServices"`
	Pool            PoolChange `json:"pool"`
}

// BuildPreview compares the stored spec with a proposed one. next and nextErr are SettingsFromSpec of the
// proposal; old is the stored settings. Immutable fields (computenet.CheckUpdate) are refusals like
// validation errors.
func BuildPreview(oldSpec, newSpec v1.ComputeNetworkSpec, old, next computenet.Settings, nextErr error, svcs []LBService) Preview {
	var refusals computenet.FieldErrors
	p := Preview{Changes: []FieldChange{}, ServicesOutside: []ServiceImpact{}, PendingServices: []string{}}
	if nextErr != nil {
		if fes, ok := nextErr.(computenet.FieldErrors); ok {
			refusals = append(refusals, fes...)
		} else {
			refusals = append(refusals, computenet.FieldError{Field: "spec", Reason: nextErr.Error()})
		}
	} else {
		// Show what will be stored, not how it was typed.
		newSpec = webhook.SpecOf(next)
	}
	if err := computenet.CheckUpdate(old, next); err != nil {
		for _, e := range err.(computenet.FieldErrors) {
			if !slices.ContainsFunc(refusals, func(r computenet.FieldError) bool { return r.Field == e.Field }) {
				refusals = append(refusals, e)
			}
		}
	}
	p.Changes = specChanges(oldSpec, newSpec)
	p.Refusals = apiFields(refusals)
	p.Applicable = len(refusals) == 0

	inRanges := func(rs []computenet.Range, a netip.Addr) bool {
		return slices.ContainsFunc(rs, func(r computenet.Range) bool { return r.Contains(a) })
	}
	used := map[netip.Addr]bool{}
	for _, s := range svcs {
		if s.Pending != "" && len(s.IPs) == 0 {
			p.PendingServices = append(p.PendingServices, s.Key)
		}
		for _, a := range s.IPs {
			if inRanges(next.ExternalIPs, a) {
				used[a] = true
			} else if inRanges(old.ExternalIPs, a) && nextErr == nil {
				p.ServicesOutside = append(p.ServicesOutside, ServiceImpact{Service: s.Key, IP: a.String()})
			}
		}
	}
	p.Pool = PoolChange{SizeBefore: old.ExternalIPCount(), SizeAfter: next.ExternalIPCount(), UsedAfter: uint64(len(used))}
	if nextErr == nil && p.Pool.SizeAfter > p.Pool.UsedAfter {
		p.Pool.FreeAfter = p.Pool.SizeAfter - p.Pool.UsedAfter
	}
	if nextErr != nil {
		p.Pool.SizeAfter, p.Pool.UsedAfter = 0, 0
	}
	slices.SortFunc(p.ServicesOutside, func(a, b ServiceImpact) int { return strings.Compare(a.Service+" "+a.IP, b.Service+" "+b.IP) })
	slices.Sort(p.PendingServices)
	return p
}

// specChanges lists the fields whose text differs, in form order.
func specChanges(a, b v1.ComputeNetworkSpec) []FieldChange {
	join := func(xs []string) string { return strings.Join(xs, ", ") }
	ranges := func(rs []v1.IPRange) string {
		var s []string
		for _, r := range rs {
			s = append(s, string(r))
		}
		return join(s)
	}
	addrs := func(as []v1.IPAddress) string {
		var s []string
		for _, x := range as {
			s = append(s, string(x))
		}
		return join(s)
	}
	pairs := []FieldChange{
		{computenet.FieldNodes, fmt.Sprint(a.Nodes), fmt.Sprint(b.Nodes)},
		{computenet.FieldSiteSubnet, string(a.SiteSubnet), string(b.SiteSubnet)},
		{computenet.FieldGateway, string(a.Gateway), string(b.Gateway)},
		{computenet.FieldNodeIPRange, string(a.NodeIPRange), string(b.NodeIPRange)},
		{computenet.FieldExternalServiceIPRanges, ranges(a.ExternalServiceIPRanges), ranges(b.ExternalServiceIPRanges)},
		{computenet.FieldPodCIDR, string(a.PodCIDR), string(b.PodCIDR)},
		{computenet.FieldServiceCIDR, string(a.ServiceCIDR), string(b.ServiceCIDR)},
		{computenet.FieldPodBlockSize, fmt.Sprint(a.PodBlockSize), fmt.Sprint(b.PodBlockSize)},
		{computenet.FieldClusterDomain, a.ClusterDomain, b.ClusterDomain},
		{computenet.FieldUpstreamDNS, addrs(a.UpstreamDNS), addrs(b.UpstreamDNS)},
	}
	out := []FieldChange{}
	for _, c := range pairs {
		if c.From != c.To {
			out = append(out, c)
		}
	}
	return out
}
