package ipam

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestNewBlocking(t *testing.T) {
	tests := []struct {
		cidr    string
		bits    int
		wantErr string
		count   int
	}{
		{cidr: "10.244.0.0/16", bits: 26, count: 1024},
		{cidr: "10.244.0.0/24", bits: 24, count: 1},
		{cidr: "10.244.0.0/24", bits: 32, count: 256},
		{cidr: "fd00:10::/64", bits: 80, count: 65536},
		{cidr: "10.244.0.1/16", bits: 26, wantErr: "host bits set"},
		{cidr: "10.244.0.0/16", bits: 15, wantErr: "between /16 and /32"},
		{cidr: "10.244.0.0/16", bits: 33, wantErr: "between /16 and /32"},
		{cidr: "fd00::/48", bits: 112, wantErr: "more than 2^24 blocks"},
		{cidr: "::ffff:10.0.0.0/104", bits: 120, wantErr: "plain IPv4 or IPv6"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s_in_%d", tt.cidr, tt.bits), func(t *testing.T) {
			b, err := NewBlocking(netip.MustParsePrefix(tt.cidr), tt.bits)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Count() != tt.count {
				t.Errorf("Count() = %d, want %d", b.Count(), tt.count)
			}
		})
	}
}

func TestBlockingLookup(t *testing.T) {
	b, err := NewBlocking(netip.MustParsePrefix("10.244.0.0/16"), 26)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr  string
		index int
		block string
		in    bool
	}{
		{"10.244.0.0", 0, "10.244.0.0/26", true},
		{"10.244.0.63", 0, "10.244.0.0/26", true},
		{"10.244.0.64", 1, "10.244.0.64/26", true},
		{"10.244.1.5", 4, "10.244.1.0/26", true},
		{"10.244.255.255", 1023, "10.244.255.192/26", true},
		{"10.245.0.0", 0, "", false},
		{"fd00::1", 0, "", false},
	}
	for _, tt := range tests {
		i, ok := b.Index(netip.MustParseAddr(tt.addr))
		if ok != tt.in || (ok && i != tt.index) {
			t.Errorf("Index(%s) = %d,%v want %d,%v", tt.addr, i, ok, tt.index, tt.in)
		}
		p, ok := b.BlockOf(netip.MustParseAddr(tt.addr))
		if ok && p.String() != tt.block {
			t.Errorf("BlockOf(%s) = %s, want %s", tt.addr, p, tt.block)
		}
		if ok {
			if at, _ := b.At(i); at != p || !b.IsBlock(p) {
				t.Errorf("At(%d) = %s, BlockOf = %s, IsBlock=%v", i, at, p, b.IsBlock(p))
			}
		}
	}
	if _, ok := b.At(1024); ok {
		t.Error("At(1024) in range")
	}
	if _, ok := b.At(-1); ok {
		t.Error("At(-1) in range")
	}
	if b.IsBlock(netip.MustParsePrefix("10.244.0.0/25")) || b.IsBlock(netip.MustParsePrefix("10.244.0.1/26")) {
		t.Error("IsBlock accepts non-blocks")
	}
}

func TestBlockingAllTilesTheCIDR(t *testing.T) {
	for _, c := range []struct {
		cidr string
		bits int
	}{{"10.0.0.0/22", 26}, {"192.168.8.0/29", 30}, {"fd00:1::/120", 124}} {
		b, err := NewBlocking(netip.MustParsePrefix(c.cidr), c.bits)
		if err != nil {
			t.Fatal(err)
		}
		next := b.CIDR.Addr()
		n := 0
		for i, p := range b.All() {
			if i != n || p.Addr() != next || p.Bits() != c.bits {
				t.Fatalf("%s: block %d = %s, want %s/%d", c.cidr, i, p, next, c.bits)
			}
			for a := range Addrs(p) {
				if a != next {
					t.Fatalf("%s: addr %s, want %s", c.cidr, a, next)
				}
				next = next.Next()
			}
			n++
		}
		if n != b.Count() || b.CIDR.Contains(next) {
			t.Fatalf("%s: %d blocks, ended at %s", c.cidr, n, next)
		}
	}
}
