package v1alpha1

import (
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestBlockName(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		name   string // "" when BlockName must fail
		err    string
	}{
		{prefix: "172.27.0.64/26", name: "172-27-0-64-26"},
		{prefix: "10.0.0.0/8", name: "10-0-0-0-8"},
		{prefix: "0.0.0.0/0", name: "0-0-0-0-0"},
		{prefix: "fd00:27::40/122", name: "fd00-27--40-122"},
		{prefix: "fd00::/64", name: "fd00---64"},
		{prefix: "2001:db8:0:1::/64", name: "2001-db8-0-1---64"},
		{prefix: "172.27.0.65/26", err: "host bits"},
		{prefix: "::ffff:10.0.0.0/120", err: "IPv4-mapped"},
		{prefix: "::/64", err: "starts with"},
	} {
		name, err := BlockName(netip.MustParsePrefix(tc.prefix))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("BlockName(%s) = %q, %v; want error containing %q", tc.prefix, name, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name {
			t.Errorf("BlockName(%s) = %q, %v; want %q", tc.prefix, name, err, tc.name)
		}
	}
	if _, err := BlockName(netip.Prefix{}); err == nil {
		t.Error("BlockName of the zero prefix succeeded")
	}
}

// The name rule the CRD enforces (replace '.', ':', '/' by '-' in the canonical text) must give a valid object
// name for every prefix BlockName accepts, and distinct blocks must get distinct names: that is what makes
// the apiserver's name uniqueness mean block uniqueness.
func FuzzBlockName(f *testing.F) {
	for _, s := range [][2]string{
		{"172.27.0.64/26", "172.27.0.128/26"},
		{"fd00::/64", "fd00::/65"},
		{"1.2.3.0/24", "1:2:3::/24"},
		{"2001:db8::/32", "2001:db8::/48"},
		{"0.0.0.0/0", "::/0"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		pa, errA := netip.ParsePrefix(a)
		pb, errB := netip.ParsePrefix(b)
		if errA != nil || errB != nil {
			return
		}
		na, errA := BlockName(pa)
		nb, errB := BlockName(pb)
		if errA == nil {
			if msgs := validation.IsDNS1123Subdomain(na); len(msgs) > 0 {
				t.Fatalf("BlockName(%s) = %q, not an object name: %v", pa, na, msgs)
			}
		}
		if errA == nil && errB == nil && na == nb && pa != pb {
			t.Fatalf("BlockName(%s) == BlockName(%s) == %q", pa, pb, na)
		}
	})
}
