package l2

import (
	"net"
	"net/netip"
	"testing"
)

// FuzzParse feeds arbitrary frames to the ARP and NS parsers: no panics, and
// an accepted NS has a valid checksum and a unicast target.
func FuzzParse(f *testing.F) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	f.Add(gratuitousARP(mac, netip.MustParseAddr("192.168.50.100")).marshal())
	na := neighborAdvertisement(mac, netip.MustParseAddr("fd00:50::100"), netip.MustParseAddr("fd00:50::2"), true)
	ns := append([]byte(nil), na...)
	ns[ip6HeaderLen] = icmpNS
	ns[ip6HeaderLen+24] = optSourceLL
	ns[ip6HeaderLen+2], ns[ip6HeaderLen+3] = 0, 0
	c := icmpChecksum(netip.MustParseAddr("fd00:50::100"), netip.MustParseAddr("fd00:50::2"), ns[ip6HeaderLen:])
	ns[ip6HeaderLen+2], ns[ip6HeaderLen+3] = byte(c>>8), byte(c)
	f.Add(ns)
	f.Add(na)
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := parseARP(b); err == nil {
			_ = p.replyTo(mac).marshal()
		}
		if ns, err := parseNS(b); err == nil {
			if icmpChecksum(ns.Src, ns.Dst, b[ip6HeaderLen:ip6HeaderLen+(int(b[4])<<8|int(b[5]))]) != 0 || ns.Target.IsMulticast() {
				t.Fatalf("accepted an invalid NS: %+v", ns)
			}
		}
	})
}

func TestParseNS(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	src, dst := netip.MustParseAddr("fd00:50::2"), netip.MustParseAddr("fd00:50::100")
	pkt := neighborAdvertisement(mac, src, dst, true) // same layout as an NS with an option
	pkt[ip6HeaderLen] = icmpNS
	pkt[ip6HeaderLen+4] = 0
	copy(pkt[ip6HeaderLen+8:], dst.AsSlice())
	pkt[ip6HeaderLen+24] = optSourceLL
	fix := func(p []byte) []byte {
		p[ip6HeaderLen+2], p[ip6HeaderLen+3] = 0, 0
		c := icmpChecksum(src, dst, p[ip6HeaderLen:])
		p[ip6HeaderLen+2], p[ip6HeaderLen+3] = byte(c>>8), byte(c)
		return p
	}
	good := fix(pkt)
	ns, err := parseNS(good)
	if err != nil || ns.Target != dst || ns.Src != src || ns.SourceLL.String() != mac.String() {
		t.Fatalf("parseNS = %+v, %v", ns, err)
	}
	hop := append([]byte(nil), good...)
	hop[7] = 64
	badsum := append([]byte(nil), good...)
	badsum[ip6HeaderLen+20] ^= 1
	for name, p := range map[string][]byte{"hop limit 64": hop, "bad checksum": badsum, "truncated": good[:50]} {
		if _, err := parseNS(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := solicitedNode(dst); got != netip.MustParseAddr("ff02::1:ff00:100") {
		t.Errorf("solicitedNode(%s) = %s", dst, got)
	}
}
