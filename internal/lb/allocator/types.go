package allocator

import (
	"fmt"
	"net/netip"

	"edgenet.io/edgenet/internal/computenet"
)

// Annotations the controller reads into a Service. They are named here so that
// error messages point the user at the field to change.
const (
	AnnotationLoadBalancerIPs = "edgenet.io/load-balancer-ips"
	AnnotationAddressPool     = "edgenet.io/address-pool"
	AnnotationAllowSharedIP   = "edgenet.io/allow-shared-ip"
)

// namespaceNameLabel is set on every namespace by the API server; the
// allocator adds it when the caller did not, so pools can pin namespaces by name.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// Family is an IP family. The zero Family is invalid.
type Family uint8

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// FamilyOf returns the family of a, or 0 for the zero Addr. IPv4-mapped IPv6
// addresses are IPv6, as netip sees them.
func FamilyOf(a netip.Addr) Family {
	switch {
	case a.Is4():
		return IPv4
	case a.Is6():
		return IPv6
	}
	return 0
}

// FamilyPolicy mirrors spec.ipFamilyPolicy; the zero value is SingleStack,
// which is also the API default.
type FamilyPolicy uint8

const (
	SingleStack FamilyPolicy = iota
	PreferDualStack
	RequireDualStack
)

func (p FamilyPolicy) String() string {
	switch p {
	case SingleStack:
		return "SingleStack"
	case PreferDualStack:
		return "PreferDualStack"
	case RequireDualStack:
		return "RequireDualStack"
	}
	return fmt.Sprintf("FamilyPolicy(%d)", uint8(p))
}

// Protocol is a Service port protocol as spelled in the API.
type Protocol string

const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Port is one port a Service exposes; two Services sharing an address must not
// expose the same Port.
type Port struct {
	Protocol Protocol
	Port     uint16
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", p.Protocol, p.Port) }

// Service is the part of a LoadBalancer Service the allocator needs.
type Service struct {
	// Key is "namespace/name".
	Key string
	// Namespace defaults to the part of Key before "/".
	Namespace string
	// Labels are the Service's labels; NamespaceLabels its namespace's.
	Labels          map[string]string
	NamespaceLabels map[string]string
	// Families is spec.ipFamilies in order of preference; Policy is
	// spec.ipFamilyPolicy. SingleStack takes one family, RequireDualStack two,
	// PreferDualStack one or two (and is satisfied by any one of them).
	Families []Family
	Policy   FamilyPolicy
	// Requested is spec.loadBalancerIP or edgenet.io/load-balancer-ips: at most
	// one address per family. When set, the Service gets exactly these.
	Requested []netip.Addr
	// RequestedPool is edgenet.io/address-pool: allocate only from this pool,
	// even if it does not auto-assign.
	RequestedPool string
	// SharingKey is edgenet.io/allow-shared-ip: Services with the same
	// non-empty key, the same Backend and no clashing Port may share an address.
	SharingKey string
	Ports      []Port
	// Backend identifies where the Service sends traffic, for the sharing rule:
	// empty for externalTrafficPolicy Cluster, a stable rendering of the
	// endpoint selector for Local (an address announced from the nodes of one
	// Service's endpoints cannot serve another's).
	Backend string
}

// Pool is a set of addresses Services may draw from.
type Pool struct {
	Name string
	// Ranges may mix IPv4 and IPv6; ranges of all pools must not overlap.
	Ranges []computenet.Range
	// AutoAssign lets Services without a RequestedPool or Requested address
	// get addresses from this pool.
	AutoAssign bool
	// AvoidBuggyIPs skips IPv4 addresses ending in .0 or .255, which some
	// consumer routers drop as broadcast.
	AvoidBuggyIPs bool
	// Priority orders auto-assignment: higher first. Among equal priorities a
	// pool with a selector comes before one without (it was made for those
	// Services), then name order.
	Priority int
	// NamespaceSelector and ServiceSelector restrict the pool to Services whose
	// namespace labels and own labels match; nil admits every Service.
	// Namespace labels always include kubernetes.io/metadata.name.
	NamespaceSelector *Selector
	ServiceSelector   *Selector
}

// AssignedIP is one address of an Assignment.
type AssignedIP struct {
	Addr netip.Addr
	// Pool is the pool the address lies in now; "" if it is outside every
	// pool (the pool shrank or was removed after the address was assigned).
	Pool string
}

// Assignment is the set of addresses a Service holds, in the order of the
// Service's families.
type Assignment struct {
	Service string
	IPs     []AssignedIP
}

// Addrs returns the addresses alone, for the Service's status.
func (a Assignment) Addrs() []netip.Addr {
	out := make([]netip.Addr, len(a.IPs))
	for i, ip := range a.IPs {
		out[i] = ip.Addr
	}
	return out
}

// Orphan is an assigned address outside every pool.
type Orphan struct {
	Service string
	Addr    netip.Addr
	// Pool is, in PoolReport.Orphaned, the pool the address left; in
	// PoolReport.Readopted, the pool it joined; in Allocator.Orphans, "".
	Pool string
}

// PoolReport says what a SetPools call changed.
type PoolReport struct {
	Added, Removed, Changed []string
	// Orphaned lists addresses that this edit put outside every pool; their
	// Services keep them.
	Orphaned []Orphan
	// Readopted lists addresses that were outside every pool and are in one now.
	Readopted []Orphan
}

// Warnings renders the report's orphans as messages for a log or an Event.
func (r PoolReport) Warnings() []string {
	var w []string
	for _, o := range r.Orphaned {
		w = append(w, fmt.Sprintf("address %s of %s is no longer in any pool (it was in %q); %s keeps it until it is released",
			o.Addr, o.Service, o.Pool, o.Service))
	}
	return w
}
