package computenet

import (
	"encoding/json"
	"math"
	"net/netip"
	"strings"
	"testing"
)

func mustRange(t testing.TB, s string) Range {
	t.Helper()
	r, err := ParseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRange(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		in       string
		from, to string
		str      string // String() of the result
		err      string // substring of the error; "" means success
	}{
		{in: "192.168.50.10-192.168.50.19", from: "192.168.50.10", to: "192.168.50.19", str: "192.168.50.10-192.168.50.19"},
		{in: " 10.0.0.1 - 10.0.0.2 ", from: "10.0.0.1", to: "10.0.0.2", str: "10.0.0.1-10.0.0.2"},
		{in: "10.0.0.7", from: "10.0.0.7", to: "10.0.0.7", str: "10.0.0.7"},
		{in: "10.0.0.7-10.0.0.7", from: "10.0.0.7", to: "10.0.0.7", str: "10.0.0.7"},
		{in: "10.1.2.0/24", from: "10.1.2.0", to: "10.1.2.255", str: "10.1.2.0-10.1.2.255"},
		{in: "10.1.2.3/32", from: "10.1.2.3", to: "10.1.2.3", str: "10.1.2.3"},
		{in: "0.0.0.0/0", from: "0.0.0.0", to: "255.255.255.255", str: "0.0.0.0-255.255.255.255"},
		{in: "2001:db8::10-2001:db8::1f", from: "2001:db8::10", to: "2001:db8::1f", str: "2001:db8::10-2001:db8::1f"},
		{in: "2001:db8::/64", from: "2001:db8::", to: "2001:db8::ffff:ffff:ffff:ffff", str: "2001:db8::-2001:db8::ffff:ffff:ffff:ffff"},
		{in: "::/0", from: "::", to: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", str: "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{in: "::ffff:10.0.0.1", from: "::ffff:10.0.0.1", to: "::ffff:10.0.0.1", str: "::ffff:10.0.0.1"},

		{in: "", err: "empty"},
		{in: "   ", err: "empty"},
		{in: "10.0.0.9-10.0.0.1", err: "start is after end"},
		{in: "10.0.0.1-2001:db8::1", err: "different address families"},
		{in: "10.0.0.1-::ffff:10.0.0.2", err: "different address families"},
		{in: "10.1.2.3/24", err: "host bits set (did you mean 10.1.2.0/24?)"},
		{in: "10.0.0.1/33", err: "10.0.0.1/33"},
		{in: "10.0.0.256", err: "10.0.0.256"},
		{in: "10.0.0.1-", err: "unable to parse"},
		{in: "-10.0.0.1", err: "unable to parse"},
		{in: "10.0.0.1-10.0.0.2-10.0.0.3", err: "10.0.0.2-10.0.0.3"},
		{in: "fe80::1%eth0", err: "has a zone"},
		{in: "fe80::1-fe80::2%eth0", err: "has a zone"},
		{in: "hello", err: "hello"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRange(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseRange(%q) = %v, %v; want error containing %q", tc.in, r, err, tc.err)
				}
				if !strings.HasPrefix(err.Error(), "computenet: parse range") {
					t.Errorf("error %q does not name the component", err)
				}
				if r != (Range{}) {
					t.Errorf("failed parse returned non-zero range %v", r)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRange(%q): %v", tc.in, err)
			}
			if want := (Range{a(tc.from), a(tc.to)}); r != want {
				t.Errorf("ParseRange(%q) = %#v, want %#v", tc.in, r, want)
			}
			if got := r.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
			if back := mustRange(t, r.String()); back != r {
				t.Errorf("String round trip: %v -> %v", r, back)
			}
		})
	}
}

func TestRangeSize(t *testing.T) {
	for _, tc := range []struct {
		r    string
		want uint64
	}{
		{"10.0.0.1", 1},
		{"192.168.50.10-192.168.50.19", 10},
		{"10.0.0.0/8", 1 << 24},
		{"0.0.0.0/0", 1 << 32},
		{"10.0.0.255-10.0.1.0", 2},
		{"2001:db8::/120", 256},
		{"2001:db8::/65", 1 << 63},
		{"2001:db8::/64", math.MaxUint64},                            // 2^64: saturates
		{"2001:db8::-2001:db8::ffff:ffff:ffff:fffe", math.MaxUint64}, // exactly 2^64-1
		{"2001:db8::1-2001:db8:0:1::", math.MaxUint64},               // exactly 2^64 across the 64-bit boundary
		{"2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::", 2},          // borrow across halves
		{"::/0", math.MaxUint64},
	} {
		if got := mustRange(t, tc.r).Size(); got != tc.want {
			t.Errorf("Size(%s) = %d, want %d", tc.r, got, tc.want)
		}
	}
	if got := (Range{}).Size(); got != 0 {
		t.Errorf("zero Range Size = %d, want 0", got)
	}
	inverted := Range{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")}
	if got := inverted.Size(); got != 0 {
		t.Errorf("inverted range Size = %d, want 0", got)
	}
}

func TestRangeAddr(t *testing.T) {
	for _, tc := range []struct {
		r    string
		i    uint64
		want string // "" means no such address
	}{
		{"192.168.50.10-192.168.50.19", 0, "192.168.50.10"},
		{"192.168.50.10-192.168.50.19", 9, "192.168.50.19"},
		{"192.168.50.10-192.168.50.19", 10, ""},
		{"10.0.0.250-10.0.1.5", 6, "10.0.1.0"},
		{"255.255.255.254-255.255.255.255", 1, "255.255.255.255"},
		{"255.255.255.254-255.255.255.255", 2, ""},
		{"255.255.255.255", math.MaxUint64, ""},
		{"2001:db8::ffff:ffff:ffff:fffe-2001:db8:0:1::1", 2, "2001:db8:0:1::"},
		{"2001:db8::/64", math.MaxUint64, "2001:db8::ffff:ffff:ffff:ffff"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, ""},
		{"::/0", math.MaxUint64, "::ffff:ffff:ffff:ffff"},
	} {
		got, ok := mustRange(t, tc.r).Addr(tc.i)
		if tc.want == "" {
			if ok {
				t.Errorf("Addr(%s, %d) = %v, want none", tc.r, tc.i, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("Addr(%s, %d) = %v, %v; want %s", tc.r, tc.i, got, ok, tc.want)
		}
		if got.Is4() != mustRange(t, tc.r).From.Is4() {
			t.Errorf("Addr(%s, %d) changed family: %v", tc.r, tc.i, got)
		}
	}
}

func TestRangeContainsOverlaps(t *testing.T) {
	r := mustRange(t, "192.168.50.10-192.168.50.19")
	for _, tc := range []struct {
		a    string
		want bool
	}{
		{"192.168.50.9", false}, {"192.168.50.10", true}, {"192.168.50.15", true},
		{"192.168.50.19", true}, {"192.168.50.20", false},
		{"::ffff:192.168.50.15", false}, // other family, even when mapped
	} {
		if got := r.Contains(netip.MustParseAddr(tc.a)); got != tc.want {
			t.Errorf("%v.Contains(%s) = %v, want %v", r, tc.a, got, tc.want)
		}
	}
	if r.Contains(netip.Addr{}) {
		t.Error("Contains(invalid) = true")
	}
	if (Range{}).Contains(netip.MustParseAddr("0.0.0.0")) {
		t.Error("zero Range contains 0.0.0.0")
	}

	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"10.0.0.1-10.0.0.5", "10.0.0.5-10.0.0.9", true}, // shared end
		{"10.0.0.1-10.0.0.5", "10.0.0.6-10.0.0.9", false},
		{"10.0.0.1-10.0.0.9", "10.0.0.3", true}, // nested
		{"10.0.0.0/8", "10.200.0.0/16", true},
		{"10.0.0.0/8", "11.0.0.0/8", false},
		{"0.0.0.0/0", "::/0", false}, // families never overlap
		{"2001:db8::1-2001:db8::5", "2001:db8::5", true},
	} {
		a, b := mustRange(t, tc.a), mustRange(t, tc.b)
		if got := a.Overlaps(b); got != tc.want {
			t.Errorf("%v.Overlaps(%v) = %v, want %v", a, b, got, tc.want)
		}
		if got := b.Overlaps(a); got != tc.want {
			t.Errorf("%v.Overlaps(%v) = %v, want %v (not symmetric)", b, a, got, tc.want)
		}
	}
}

func TestPrefixRange(t *testing.T) {
	for _, tc := range []struct{ p, want string }{
		{"172.28.0.0/16", "172.28.0.0-172.28.255.255"},
		{"172.28.1.2/16", "172.28.0.0-172.28.255.255"}, // host bits are dropped
		{"10.0.0.0/31", "10.0.0.0-10.0.0.1"},
		{"2001:db8::/125", "2001:db8::-2001:db8::7"},
		{"2001:db8::/63", "2001:db8::-2001:db8:0:1:ffff:ffff:ffff:ffff"},
	} {
		if got := PrefixRange(netip.MustParsePrefix(tc.p)).String(); got != tc.want {
			t.Errorf("PrefixRange(%s) = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := PrefixRange(netip.Prefix{}); got != (Range{}) {
		t.Errorf("PrefixRange(invalid) = %v, want zero", got)
	}
}

func TestRangeJSON(t *testing.T) {
	type doc struct {
		R  Range   `json:"r"`
		Rs []Range `json:"rs"`
	}
	in := doc{R: mustRange(t, "10.0.0.1-10.0.0.9"), Rs: []Range{mustRange(t, "10.0.1.0/30"), {}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"r":"10.0.0.1-10.0.0.9","rs":["10.0.1.0-10.0.1.3",""]}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.R != in.R || len(out.Rs) != 2 || out.Rs[0] != in.Rs[0] || out.Rs[1] != (Range{}) {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"r":"10.0.0.9-10.0.0.1"}`), &out); err == nil {
		t.Error("unmarshal of an inverted range succeeded")
	}
}
