package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/lb/allocator"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func network(ranges ...string) *v1.ComputeNetwork {
	cn := &v1.ComputeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	for _, r := range ranges {
		cn.Spec.ExternalServiceIPRanges = append(cn.Spec.ExternalServiceIPRanges, v1.IPRange(r))
	}
	return cn
}

func apool(name string, age int, addrs ...string) *v1.AddressPool {
	ap := &v1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Minute))}}
	for _, a := range addrs {
		ap.Spec.Addresses = append(ap.Spec.Addresses, v1.IPRange(a))
	}
	return ap
}

func TestBuildPools(t *testing.T) {
	withSel := apool("sel", 5, "10.3.0.0/24")
	withSel.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "In"}}}
	off := false
	manual := apool("manual", 1, "10.4.0.0/24")
	manual.Spec.AutoAssign = &off
	manual.Spec.Priority = 7

	for _, tc := range []struct {
		what         string
		cn           *v1.ComputeNetwork
		pools        []*v1.AddressPool
		wantPools    []string // name: ranges
		wantProblems map[string]string
		wantWarnings int
	}{
		{what: "no ComputeNetwork, no pools"},
		{what: "default pool from the ComputeNetwork", cn: network("192.168.50.100-192.168.50.199", "fd00::/120"),
			wantPools: []string{"default: 192.168.50.100-192.168.50.199, fd00::-fd00::ff"}},
		{what: "bad ComputeNetwork range left out", cn: network("bogus", "192.168.50.100-192.168.50.101"),
			wantPools: []string{"default: 192.168.50.100-192.168.50.101"}, wantWarnings: 1},
		{what: "AddressPool named default ignored: the ComputeNetwork wins", cn: network("192.168.50.100/30"),
			pools:        []*v1.AddressPool{apool("default", 0, "10.1.0.0/24")},
			wantPools:    []string{"default: 192.168.50.100-192.168.50.103"},
			wantProblems: map[string]string{"default": ReasonNameReserved}},
		{what: "overlap with the default pool: the default keeps it", cn: network("192.168.50.100/30"),
			pools:        []*v1.AddressPool{apool("a", 0, "192.168.50.103-192.168.50.110"), apool("b", 1, "10.1.0.0/24")},
			wantPools:    []string{"default: 192.168.50.100-192.168.50.103", "b: 10.1.0.0-10.1.0.255"},
			wantProblems: map[string]string{"a": ReasonOverlapsOtherPool}},
		{what: "overlap between pools: the older keeps it, whatever the names",
			pools:        []*v1.AddressPool{apool("a-new", 2, "10.1.0.128/25"), apool("z-old", 1, "10.1.0.0/24")},
			wantPools:    []string{"z-old: 10.1.0.0-10.1.0.255"},
			wantProblems: map[string]string{"a-new": ReasonOverlapsOtherPool}},
		{what: "a left-out pool claims nothing",
			pools:     []*v1.AddressPool{apool("bad", 0, "10.1.0.0/24", "nonsense"), apool("good", 1, "10.1.0.0/25")},
			wantPools: []string{"good: 10.1.0.0-10.1.0.127"}, wantProblems: map[string]string{"bad": ReasonInvalidAddresses}},
		{what: "ranges of one pool overlapping each other",
			pools:        []*v1.AddressPool{apool("self", 0, "10.1.0.0/24", "10.1.0.5")},
			wantProblems: map[string]string{"self": ReasonInvalidAddresses}},
		{what: "IPv4-mapped range", pools: []*v1.AddressPool{apool("mapped", 0, "::ffff:10.1.0.0/120")},
			wantProblems: map[string]string{"mapped": ReasonInvalidAddresses}},
		{what: "no addresses", pools: []*v1.AddressPool{apool("empty", 0)},
			wantProblems: map[string]string{"empty": ReasonInvalidAddresses}},
		{what: "selector In without values", pools: []*v1.AddressPool{withSel},
			wantProblems: map[string]string{"sel": ReasonInvalidSelector}},
		{what: "autoAssign and priority carried", pools: []*v1.AddressPool{manual},
			wantPools: []string{"manual: 10.4.0.0-10.4.0.255 manual p7"}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			set := buildPools(tc.cn, tc.pools)
			var got []string
			for _, p := range set.pools {
				rs := make([]string, len(p.Ranges))
				for i, r := range p.Ranges {
					rs[i] = r.String()
				}
				s := p.Name + ": " + strings.Join(rs, ", ")
				if !p.AutoAssign {
					s += " manual"
				}
				if p.Priority != 0 {
					s += fmt.Sprintf(" p%d", p.Priority)
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tc.wantPools) {
				t.Errorf("pools:\n got %q\nwant %q", got, tc.wantPools)
			}
			gotProblems := map[string]string{}
			for name, p := range set.problems {
				gotProblems[name] = p.reason
				if p.message == "" {
					t.Errorf("pool %s: problem %s without a message", name, p.reason)
				}
			}
			if len(tc.wantProblems) == 0 {
				tc.wantProblems = map[string]string{}
			}
			if !maps.Equal(gotProblems, tc.wantProblems) {
				t.Errorf("problems %v, want %v", gotProblems, tc.wantProblems)
			}
			if len(set.warnings) != tc.wantWarnings {
				t.Errorf("warnings %q, want %d", set.warnings, tc.wantWarnings)
			}
			if _, err := allocator.New().SetPools(set.pools); err != nil {
				t.Errorf("allocator refuses the pools: %v", err)
			}
		})
	}
}

func TestUsageCountsHugePoolsExactly(t *testing.T) {
	a := allocator.New()
	p := allocator.Pool{Name: "big", AutoAssign: true, Ranges: []computenet.Range{
		mustRange(t, "10.0.0.0/30"), mustRange(t, "fd00::/64"), mustRange(t, "fd01::/64")}}
	if _, err := a.SetPools([]allocator.Pool{p}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ns/a", "ns/b"} {
		if _, err := a.Assign(allocator.Service{Key: k, Families: []allocator.Family{allocator.IPv6}}); err != nil {
			t.Fatal(err)
		}
	}
	used, free := usage(a, p)
	// 4 + 2*2^64 - 2
	if used != 2 || free.String() != "36893488147419103234" {
		t.Errorf("usage = %d used, %s free; want 2, 36893488147419103234", used, free)
	}
	small := allocator.Pool{Name: "small", Ranges: []computenet.Range{mustRange(t, "10.1.0.0/24")}, AvoidBuggyIPs: true}
	if _, err := a.SetPools([]allocator.Pool{p, small}); err != nil {
		t.Fatal(err)
	}
	if used, free := usage(a, small); used != 0 || free.String() != "254" {
		t.Errorf("avoidBuggyIPs /24: %d used, %s free; want 0, 254", used, free)
	}
}

func mustRange(t *testing.T, s string) computenet.Range {
	t.Helper()
	r, err := computenet.ParseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// FuzzBuildPools checks that whatever the admin writes into AddressPools and the ComputeNetwork, the derived
// configuration is one the allocator accepts (so one bad pool never stops every other), and that no two
// accepted pools share an address.
func FuzzBuildPools(f *testing.F) {
	for _, s := range []string{
		"192.168.50.100-192.168.50.199|10.0.0.0/24;10.0.0.128/25|fd00::/64,fd00::1",
		"10.0.0.0/8||10.1.0.0/16;10.1.0.0/16",
		"bogus|::ffff:1.2.3.4|1.2.3.4-1.2.3.1;1.2.3.4-fd00::1",
		"|0.0.0.0/0|::/0;1.1.1.1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		parts := strings.Split(spec, "|")
		if len(parts) > 8 {
			return
		}
		var cn *v1.ComputeNetwork
		if parts[0] != "" {
			cn = network(strings.Split(parts[0], ",")...)
		}
		var aps []*v1.AddressPool
		for i, p := range parts[1:] {
			aps = append(aps, apool(string(rune('a'+i)), i%3, strings.Split(p, ",")...))
		}
		set := buildPools(cn, aps)
		if _, err := allocator.New().SetPools(set.pools); err != nil {
			t.Fatalf("allocator refuses the derived pools: %v", err)
		}
		var all []computenet.Range
		for _, p := range set.pools {
			if _, bad := set.problems[p.Name]; bad && p.Name != v1.DefaultAddressPoolName {
				t.Errorf("pool %s is used and has a problem", p.Name)
			}
			for _, r := range p.Ranges {
				for _, o := range all {
					if r.Overlaps(o) {
						t.Errorf("%s overlaps %s", r, o)
					}
				}
				all = append(all, r)
			}
		}
		for i := range aps {
			name := string(rune('a' + i))
			_, bad := set.problems[name]
			used := slices.ContainsFunc(set.pools, func(p allocator.Pool) bool { return p.Name == name })
			if bad == used {
				t.Errorf("pool %s: used %v, problem %v: want exactly one", name, used, bad)
			}
		}
	})
}
