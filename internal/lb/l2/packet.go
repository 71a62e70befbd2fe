package l2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ARP over Ethernet for IPv4 (RFC 826), as a packet socket of type
// SOCK_DGRAM sees it: without the Ethernet header.
const (
	arpLen       = 28
	arpRequest   = 1
	arpReply     = 2
	etherTypeIP4 = 0x0800
	hwEthernet   = 1
)

type arpPacket struct {
	Op       uint16
	SenderHW net.HardwareAddr
	SenderIP netip.Addr
	TargetHW net.HardwareAddr
	TargetIP netip.Addr
}

var errNotOurs = errors.New("not an Ethernet/IPv4 ARP packet")

func parseARP(b []byte) (arpPacket, error) {
	var p arpPacket
	if len(b) < arpLen { // trailing Ethernet padding is allowed
		return p, fmt.Errorf("l2: ARP packet of %d bytes: %w", len(b), errNotOurs)
	}
	if binary.BigEndian.Uint16(b[0:]) != hwEthernet || binary.BigEndian.Uint16(b[2:]) != etherTypeIP4 || b[4] != 6 || b[5] != 4 {
		return p, errNotOurs
	}
	p.Op = binary.BigEndian.Uint16(b[6:])
	p.SenderHW = net.HardwareAddr(b[8:14:14])
	p.SenderIP = netip.AddrFrom4([4]byte(b[14:18]))
	p.TargetHW = net.HardwareAddr(b[18:24:24])
	p.TargetIP = netip.AddrFrom4([4]byte(b[24:28]))
	return p, nil
}

func (p arpPacket) marshal() []byte {
	b := make([]byte, arpLen)
	binary.BigEndian.PutUint16(b[0:], hwEthernet)
	binary.BigEndian.PutUint16(b[2:], etherTypeIP4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], p.Op)
	copy(b[8:14], p.SenderHW)
	s := p.SenderIP.As4()
	copy(b[14:18], s[:])
	copy(b[18:24], p.TargetHW)
	t := p.TargetIP.As4()
	copy(b[24:28], t[:])
	return b
}

// replyTo answers a request for one of our addresses with our MAC.
func (p arpPacket) replyTo(mac net.HardwareAddr) arpPacket {
	return arpPacket{Op: arpReply, SenderHW: mac, SenderIP: p.TargetIP, TargetHW: p.SenderHW, TargetIP: p.SenderIP}
}

// gratuitousARP is an ARP announcement (RFC 5227 §2.3): a request whose
// sender and target address are both ip. Linux updates an existing neighbour
// entry from it (arp_is_garp) even with arp_accept off.
func gratuitousARP(mac net.HardwareAddr, ip netip.Addr) arpPacket {
	return arpPacket{Op: arpRequest, SenderHW: mac, SenderIP: ip, TargetHW: make(net.HardwareAddr, 6), TargetIP: ip}
}

// NDP (RFC 4861) inside IPv6, as a SOCK_DGRAM packet socket sees it: from the
// IPv6 header on.
const (
	ip6HeaderLen   = 40
	protoICMPv6    = 58
	icmpNS         = 135
	icmpNA         = 136
	nsLen          = 24 // type, code, checksum, reserved, target
	optSourceLL    = 1
	optTargetLL    = 2
	naFlagSolicit  = 0x40
	naFlagOverride = 0x20
)

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	broadcast   = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// neighborSolicitation is a validated NS (RFC 4861 §7.1.1).
type neighborSolicitation struct {
	Src, Dst netip.Addr
	Target   netip.Addr
	SourceLL net.HardwareAddr // nil when the option is absent
}

var errInvalidNS = errors.New("not a valid neighbor solicitation")

func parseNS(b []byte) (neighborSolicitation, error) {
	var ns neighborSolicitation
	if len(b) < ip6HeaderLen+nsLen || b[0]>>4 != 6 || b[6] != protoICMPv6 {
		return ns, errNotOurs
	}
	plen := int(binary.BigEndian.Uint16(b[4:]))
	if plen < nsLen || ip6HeaderLen+plen > len(b) {
		return ns, fmt.Errorf("%w: payload length %d of %d bytes", errInvalidNS, plen, len(b)-ip6HeaderLen)
	}
	if b[7] != 255 {
		return ns, fmt.Errorf("%w: hop limit %d (off-link)", errInvalidNS, b[7])
	}
	icmp := b[ip6HeaderLen : ip6HeaderLen+plen]
	if icmp[0] != icmpNS {
		return ns, errNotOurs
	}
	if icmp[1] != 0 {
		return ns, fmt.Errorf("%w: code %d", errInvalidNS, icmp[1])
	}
	ns.Src = netip.AddrFrom16([16]byte(b[8:24]))
	ns.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	if icmpChecksum(ns.Src, ns.Dst, icmp) != 0 {
		return ns, fmt.Errorf("%w: bad checksum", errInvalidNS)
	}
	ns.Target = netip.AddrFrom16([16]byte(icmp[8:24]))
	if ns.Target.IsMulticast() {
		return ns, fmt.Errorf("%w: multicast target %s", errInvalidNS, ns.Target)
	}
	for opts := icmp[nsLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return ns, fmt.Errorf("%w: bad option", errInvalidNS)
		}
		n := int(opts[1]) * 8
		if opts[0] == optSourceLL && n == 8 {
			ns.SourceLL = net.HardwareAddr(opts[2:8:8])
		}
		opts = opts[n:]
	}
	if ns.Src.IsUnspecified() && (ns.SourceLL != nil || !isSolicitedNode(ns.Dst)) {
		return ns, fmt.Errorf("%w: DAD probe with a source link-layer option or to %s", errInvalidNS, ns.Dst)
	}
	return ns, nil
}

// neighborAdvertisement builds an NA for target, from target itself (the
// interface need not have any IPv6 address), with our MAC as target
// link-layer option. solicited must be false when dst is multicast.
func neighborAdvertisement(mac net.HardwareAddr, target, dst netip.Addr, solicited bool) []byte {
	const icmpLen = nsLen + 8
	b := make([]byte, ip6HeaderLen+icmpLen)
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:], icmpLen)
	b[6], b[7] = protoICMPv6, 255
	src16, dst16 := target.As16(), dst.As16()
	copy(b[8:24], src16[:])
	copy(b[24:40], dst16[:])
	icmp := b[ip6HeaderLen:]
	icmp[0] = icmpNA
	icmp[4] = naFlagOverride
	if solicited {
		icmp[4] |= naFlagSolicit
	}
	copy(icmp[8:24], src16[:])
	icmp[24], icmp[25] = optTargetLL, 1
	copy(icmp[26:32], mac)
	binary.BigEndian.PutUint16(icmp[2:], icmpChecksum(target, dst, icmp))
	return b
}

// icmpChecksum is the ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1)
// and msg; over a message with its checksum filled in it is 0.
func icmpChecksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	var l [8]byte
	binary.BigEndian.PutUint32(l[:4], uint32(len(msg)))
	l[7] = protoICMPv6
	add(l[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// solicitedNode is the solicited-node multicast group of ip (RFC 4291
// §2.7.1), where NSs for ip are sent.
func solicitedNode(ip netip.Addr) netip.Addr {
	a := ip.As16()
	g := [16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]}
	return netip.AddrFrom16(g)
}

func isSolicitedNode(ip netip.Addr) bool { return ip.Is6() && solicitedNode(ip) == ip }

// multicastMAC is the Ethernet address of an IPv6 multicast group (RFC 2464 §7).
func multicastMAC(group netip.Addr) net.HardwareAddr {
	a := group.As16()
	return net.HardwareAddr{0x33, 0x33, a[12], a[13], a[14], a[15]}
}
