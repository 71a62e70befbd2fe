package routing

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/knftables"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestNoMasquerade(t *testing.T) {
	got := noMasquerade(pfx("172.27.0.0/16"),
		[]netip.Addr{addr("192.168.50.10"), addr("192.168.50.11"), addr("10.1.2.3")},
		[]netip.Prefix{pfx("10.1.0.0/16"), pfx("172.27.5.0/24"), pfx("192.168.60.7/24")})
	want := []netip.Prefix{pfx("10.1.0.0/16"), pfx("172.27.0.0/16"), pfx("192.168.50.10/31"), pfx("192.168.60.0/24")}
	if !slices.Equal(got, want) {
		t.Errorf("noMasquerade = %v, want %v (merged, disjoint, sorted)", got, want)
	}
}

func TestMasqueradeGolden(t *testing.T) {
	fake := knftables.NewFake(knftables.IPv4Family, NATTable)
	keep := noMasquerade(pfx("172.27.0.0/16"), []netip.Addr{addr("192.168.50.10"), addr("192.168.50.12")}, nil)
	tx := fake.NewTransaction()
	masqTransaction(tx, pfx("172.27.0.0/16"), keep)
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	got := fake.Dump()
	golden := filepath.Join("testdata", "masquerade.nft")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("ruleset differs from %s (run with -update to accept):\n%s", golden, got)
	}

	// Applying again with fewer exceptions leaves exactly the new state, not a union.
	keep2 := noMasquerade(pfx("172.27.0.0/16"), []netip.Addr{addr("192.168.50.10")}, nil)
	tx = fake.NewTransaction()
	masqTransaction(tx, pfx("172.27.0.0/16"), keep2)
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	elems, err := fake.ListElements(context.Background(), "set", noMasqSet)
	if err != nil {
		t.Fatal(err)
	}
	if len(elems) != 2 {
		t.Errorf("set after shrinking has %d elements, want 2: %v", len(elems), elems)
	}
	ok, err := masqUpToDate(context.Background(), fake, pfx("172.27.0.0/16"), keep2)
	if err != nil || !ok {
		t.Errorf("masqUpToDate after apply = %v, %v; want true", ok, err)
	}
	if ok, _ := masqUpToDate(context.Background(), fake, pfx("172.27.0.0/16"), keep); ok {
		t.Error("masqUpToDate with other exceptions = true")
	}
}
