package controller

import (
	"fmt"
	"maps"
	"math"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/lb/allocator"
)

// Reasons of an AddressPool's Ready condition.
const (
	ReasonPoolInUse         = "InUse"
	ReasonNameReserved      = "NameReserved"
	ReasonInvalidAddresses  = "InvalidAddresses"
	ReasonInvalidSelector   = "InvalidSelector"
	ReasonOverlapsOtherPool = "OverlapsOtherPool"
)

// poolProblem is why an AddressPool object is left out of the allocator.
type poolProblem struct{ reason, message string }

// poolSet is the allocator's pool configuration derived from the API objects.
type poolSet struct {
	pools []allocator.Pool
	// problems of AddressPool objects left out, by name.
	problems map[string]poolProblem
	// warnings about ComputeNetwork ranges left out of the default pool.
	warnings []string
}

// buildPools derives the pools from the ComputeNetwork (may be nil) and the AddressPool objects. It never fails
// as a whole: a bad or overlapping AddressPool is left out with a problem, so one admin mistake cannot stop
// allocation from every other pool. The default pool claims its ranges first, then AddressPools in creation
// order (name order among equals), so adding a pool can never take ranges from an existing one.
func buildPools(cn *v1.ComputeNetwork, aps []*v1.AddressPool) poolSet {
	set := poolSet{problems: map[string]poolProblem{}}
	type owned struct {
		r    computenet.Range
		pool string
	}
	var taken []owned
	overlap := func(r computenet.Range) (owned, bool) {
		for _, o := range taken {
			if o.r.Overlaps(r) {
				return o, true
			}
		}
		return owned{}, false
	}

	if cn != nil {
		var ranges []computenet.Range
		for i, s := range cn.Spec.ExternalServiceIPRanges {
			r, err := parsePoolRange(string(s))
			if err != nil {
				set.warnings = append(set.warnings, fmt.Sprintf("ComputeNetwork externalServiceIPRanges[%d]: %v; left out of the default pool", i, err))
				continue
			}
			if o, ok := overlap(r); ok {
				set.warnings = append(set.warnings, fmt.Sprintf("ComputeNetwork externalServiceIPRanges[%d] %s overlaps %s; left out of the default pool", i, r, o.r))
				continue
			}
			taken = append(taken, owned{r, v1.DefaultAddressPoolName})
			ranges = append(ranges, r)
		}
		if len(ranges) > 0 {
			set.pools = append(set.pools, allocator.Pool{Name: v1.DefaultAddressPoolName, Ranges: ranges, AutoAssign: true})
		}
	}

	aps = slices.Clone(aps)
	slices.SortFunc(aps, func(x, y *v1.AddressPool) int {
		if c := x.CreationTimestamp.Compare(y.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
	for _, ap := range aps {
		if ap.Name == v1.DefaultAddressPoolName {
			set.problems[ap.Name] = poolProblem{ReasonNameReserved,
				"the pool named \"default\" is the ComputeNetwork's externalServiceIPRanges; this object is ignored: give it another name"}
			continue
		}
		var ranges []computenet.Range
		var bad, clash []string
		for i, s := range ap.Spec.Addresses {
			r, err := parsePoolRange(string(s))
			if err != nil {
				bad = append(bad, fmt.Sprintf("addresses[%d]: %v", i, err))
				continue
			}
			if j := slices.IndexFunc(ranges, r.Overlaps); j >= 0 {
				bad = append(bad, fmt.Sprintf("addresses[%d] %s overlaps addresses[%d] %s", i, r, j, ranges[j]))
				continue
			}
			if o, ok := overlap(r); ok {
				clash = append(clash, fmt.Sprintf("%s overlaps %s of pool %q", r, o.r, o.pool))
			}
			ranges = append(ranges, r)
		}
		if len(ranges) == 0 && len(bad) == 0 {
			bad = append(bad, "no addresses")
		}
		if len(bad) > 0 {
			set.problems[ap.Name] = poolProblem{ReasonInvalidAddresses, strings.Join(bad, "; ")}
			continue
		}
		if len(clash) > 0 {
			set.problems[ap.Name] = poolProblem{ReasonOverlapsOtherPool,
				"not used: " + strings.Join(clash, "; ") + " (the older pool keeps its addresses)"}
			continue
		}
		nsSel, err := selectorFrom(ap.Spec.NamespaceSelector)
		if err != nil {
			set.problems[ap.Name] = poolProblem{ReasonInvalidSelector, "namespaceSelector: " + err.Error()}
			continue
		}
		svcSel, err := selectorFrom(ap.Spec.ServiceSelector)
		if err != nil {
			set.problems[ap.Name] = poolProblem{ReasonInvalidSelector, "serviceSelector: " + err.Error()}
			continue
		}
		for _, r := range ranges {
			taken = append(taken, owned{r, ap.Name})
		}
		set.pools = append(set.pools, allocator.Pool{
			Name:              ap.Name,
			Ranges:            ranges,
			AutoAssign:        ap.Spec.AutoAssignEnabled(),
			AvoidBuggyIPs:     ap.Spec.AvoidBuggyIPs,
			Priority:          int(ap.Spec.Priority),
			NamespaceSelector: nsSel,
			ServiceSelector:   svcSel,
		})
	}
	return set
}

// parsePoolRange parses one range and refuses what the allocator would refuse for the whole configuration.
func parsePoolRange(s string) (computenet.Range, error) {
	r, err := computenet.ParseRange(s)
	if err != nil {
		return r, err
	}
	if r.From.Is4In6() || r.To.Is4In6() {
		return r, fmt.Errorf("range %s is IPv4-mapped IPv6; write it as IPv4", r)
	}
	return r, nil
}

func selectorFrom(ls *metav1.LabelSelector) (*allocator.Selector, error) {
	if ls == nil {
		return nil, nil
	}
	s := &allocator.Selector{MatchLabels: maps.Clone(ls.MatchLabels)}
	for _, r := range ls.MatchExpressions {
		s.MatchExpressions = append(s.MatchExpressions, allocator.Requirement{
			Key: r.Key, Operator: allocator.Operator(r.Operator), Values: slices.Clone(r.Values)})
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// usage returns how many of p's addresses are used and, exactly, how many are free (the allocator saturates
// at 2^64-1, which an IPv6 /64 pool exceeds).
func usage(a *allocator.Allocator, p allocator.Pool) (used uint64, free *big.Int) {
	u4, f4 := a.FamilyUsage(p.Name, allocator.IPv4)
	u6, f6 := a.FamilyUsage(p.Name, allocator.IPv6)
	free = new(big.Int).SetUint64(f4)
	if f6 != math.MaxUint64 {
		return u4 + u6, free.Add(free, new(big.Int).SetUint64(f6))
	}
	cap6 := new(big.Int)
	for _, r := range p.Ranges {
		if r.From.Is6() {
			n := new(big.Int).Sub(addrInt(r.To), addrInt(r.From))
			cap6.Add(cap6, n.Add(n, big.NewInt(1)))
		}
	}
	cap6.Sub(cap6, new(big.Int).SetUint64(u6))
	return u4 + u6, free.Add(free, cap6)
}

func addrInt(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }
