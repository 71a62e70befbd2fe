package computenet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"strings"
)

// Range is an inclusive contiguous address range, From <= To, same family.
// The zero Range is invalid and prints as "".
type Range struct{ From, To netip.Addr }

// ParseRange parses "a.b.c.d-a.b.c.e", a single address, or a CIDR (which must
// have no host bits set), IPv4 or IPv6. Zoned addresses are refused: a range of
// the site network has no zone.
func ParseRange(s string) (Range, error) {
	r, err := parseRange(strings.TrimSpace(s))
	if err != nil {
		return Range{}, fmt.Errorf("computenet: parse range %q: %w", s, err)
	}
	return r, nil
}

func parseRange(s string) (Range, error) {
	if s == "" {
		return Range{}, errors.New("empty")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Range{}, err
		}
		if p != p.Masked() {
			return Range{}, fmt.Errorf("prefix has host bits set (did you mean %s?)", p.Masked())
		}
		return PrefixRange(p), nil
	}
	fromS, toS, isRange := strings.Cut(s, "-")
	from, err := parseAddr(fromS)
	if err != nil {
		return Range{}, err
	}
	if !isRange {
		return Range{From: from, To: from}, nil
	}
	to, err := parseAddr(toS)
	if err != nil {
		return Range{}, err
	}
	r := Range{From: from, To: to}
	if from.BitLen() != to.BitLen() {
		return Range{}, errors.New("ends are of different address families")
	}
	if from.Compare(to) > 0 {
		return Range{}, errors.New("start is after end")
	}
	return r, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %s has a zone", a)
	}
	return a, nil
}

// PrefixRange returns the addresses of p, network to last address.
// An invalid prefix gives the zero Range.
func PrefixRange(p netip.Prefix) Range {
	if !p.IsValid() {
		return Range{}
	}
	p = p.Masked()
	hi, lo := u128(p.Addr())
	hostBits := uint(p.Addr().BitLen() - p.Bits())
	// Set the low hostBits bits of the 128-bit value hi:lo.
	switch {
	case hostBits >= 64:
		lo = math.MaxUint64
		hi |= mask64(hostBits - 64)
	default:
		lo |= mask64(hostBits)
	}
	return Range{From: p.Addr(), To: fromU128(hi, lo, p.Addr().Is4())}
}

func mask64(n uint) uint64 {
	if n >= 64 {
		return math.MaxUint64
	}
	return 1<<n - 1
}

// IsValid reports whether both ends are valid zone-less addresses of the same
// family and From <= To.
func (r Range) IsValid() bool {
	return r.From.IsValid() && r.To.IsValid() &&
		r.From.Zone() == "" && r.To.Zone() == "" &&
		r.From.BitLen() == r.To.BitLen() && r.From.Compare(r.To) <= 0
}

// String returns "from-to", or the single address if From == To.
func (r Range) String() string {
	switch {
	case r == Range{}:
		return ""
	case r.From == r.To:
		return r.From.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// MarshalText makes Range usable in JSON and flags as its String form.
func (r Range) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses with ParseRange; empty text gives the zero Range.
func (r *Range) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = Range{}
		return nil
	}
	p, err := ParseRange(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

// Size is the number of addresses in r, saturating at math.MaxUint64 for huge
// IPv6 ranges; 0 for an invalid range.
func (r Range) Size() uint64 {
	if !r.IsValid() {
		return 0
	}
	fh, fl := u128(r.From)
	th, tl := u128(r.To)
	lo, borrow := bits.Sub64(tl, fl, 0)
	hi, _ := bits.Sub64(th, fh, borrow)
	if hi != 0 || lo == math.MaxUint64 {
		return math.MaxUint64
	}
	return lo + 1
}

// Contains reports whether a lies in r. Zones of a are ignored.
func (r Range) Contains(a netip.Addr) bool {
	if !r.IsValid() || !a.IsValid() || a.BitLen() != r.From.BitLen() {
		return false
	}
	a = a.WithZone("")
	return r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// Overlaps reports whether r and o share an address.
func (r Range) Overlaps(o Range) bool {
	if !r.IsValid() || !o.IsValid() || r.From.BitLen() != o.From.BitLen() {
		return false
	}
	return r.From.Compare(o.To) <= 0 && o.From.Compare(r.To) <= 0
}

// Addr returns the i-th address of r (0 is From), false if r has no such address.
func (r Range) Addr(i uint64) (netip.Addr, bool) {
	if !r.IsValid() {
		return netip.Addr{}, false
	}
	fh, fl := u128(r.From)
	th, tl := u128(r.To)
	lo, carry := bits.Add64(fl, i, 0)
	hi, overflow := bits.Add64(fh, 0, carry)
	if overflow != 0 || hi > th || (hi == th && lo > tl) {
		return netip.Addr{}, false
	}
	return fromU128(hi, lo, r.From.Is4()), true
}

// u128 returns a as a 128-bit number; IPv4 in its IPv4-mapped form, which keeps
// arithmetic within one family correct.
func u128(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

func fromU128(hi, lo uint64, is4 bool) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	a := netip.AddrFrom16(b)
	if is4 {
		a = a.Unmap()
	}
	return a
}
