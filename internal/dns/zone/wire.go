package zone

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// The wire fast path answers the common queries without unpacking into dns.Msg: the response is the query's own
// question (so owner names keep the asker's case through compression pointers to it) followed by a body packed once
// per snapshot, name and type.

// Query types with a cached template; others take the dns.Msg path.
var tmplIndex = [...]uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeTXT, dns.TypeCNAME, dns.TypeSOA, dns.TypeNS, dns.TypeHTTPS, dns.TypeMX}

const nTmpl = len(tmplIndex)

func tmplSlot(qtype uint16) int {
	for i, t := range tmplIndex {
		if t == qtype {
			return i
		}
	}
	return -1
}

type template struct {
	gen        uint64
	slow       bool // answer needs work per query (external CNAME target)
	rcode      int
	an, ns, ar uint16
	body       []byte
}

// EDNSSize is the UDP payload size the server advertises (DNS flag day 2020).
const EDNSSize = 1232

// WireQuery is a query parsed by ParseQuery.
type WireQuery struct {
	ID      uint16
	Qtype   uint16
	qend    int // end of the question section
	nameLen int // wire length of the name
	rd, cd  bool
	edns    bool
	do      bool
	UDPSize int // what the client can receive over UDP: 512 without EDNS
	name    [255]byte
	textLen int
}

// Name is the lowercase presentation form of the question name (fully qualified).
func (q *WireQuery) Name() []byte { return q.name[:q.textLen] }

// ParseQuery reads the plain queries the fast path handles: one IN question without compression, no answer or
// authority records, at most an EDNS0 version 0 OPT record, labels of letters, digits, '-' and '_'. It reports false
// for anything else, which then takes the full dns.Msg path.
func ParseQuery(pkt []byte, q *WireQuery) bool {
	if len(pkt) < 17 {
		return false
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	// QR=0, opcode QUERY, TC=0.
	if flags&0xfa00 != 0 {
		return false
	}
	if binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 || binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return false
	}
	ar := binary.BigEndian.Uint16(pkt[10:])
	if ar > 1 {
		return false
	}
	q.ID = binary.BigEndian.Uint16(pkt)
	q.rd = flags&0x0100 != 0
	q.cd = flags&0x0010 != 0
	off := 12
	t := 0
	for {
		if off >= len(pkt) {
			return false
		}
		l := int(pkt[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(pkt) || t+l+1 > len(q.name) {
			return false
		}
		for _, c := range pkt[off : off+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			default:
				return false
			}
			q.name[t] = c
			t++
		}
		q.name[t] = '.'
		t++
		off += l
	}
	if t == 0 {
		q.name[0] = '.'
		t = 1
	}
	q.textLen = t
	q.nameLen = off - 12
	if off+4 > len(pkt) {
		return false
	}
	q.Qtype = binary.BigEndian.Uint16(pkt[off:])
	if binary.BigEndian.Uint16(pkt[off+2:]) != dns.ClassINET {
		return false
	}
	off += 4
	q.qend = off
	q.edns, q.do, q.UDPSize = false, false, dns.MinMsgSize
	if ar == 1 {
		// OPT: root name, type 41, class = payload size, TTL = ext-rcode|version|flags, rdlength, options.
		if off+11 > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != dns.TypeOPT {
			return false
		}
		if pkt[off+6] != 0 { // version
			return false
		}
		q.edns = true
		q.UDPSize = max(int(binary.BigEndian.Uint16(pkt[off+3:])), dns.MinMsgSize)
		q.do = pkt[off+7]&0x80 != 0
		off += 11 + int(binary.BigEndian.Uint16(pkt[off+9:]))
	}
	return off == len(pkt)
}

// AppendReply appends the response to q (the packet pkt, parsed by ParseQuery) to dst. It reports false when the
// query needs the full path: a name outside what the wire path knows, pod names, external CNAME targets, or an
// answer larger than the client's UDP size (which needs truncation).
func (s *Snapshot) AppendReply(dst, pkt []byte, q *WireQuery) ([]byte, bool) {
	name := q.name[:q.textLen]
	n := s.shards[hashBytes(name)%nShards][string(name)]
	var t *template
	if n != nil {
		slot := tmplSlot(q.Qtype)
		if slot < 0 {
			return dst, false
		}
		t = n.tmpl[slot].Load()
		if t == nil || t.gen != s.gen {
			t = s.buildTemplate(n, q.Qtype)
			n.tmpl[slot].Store(t)
		}
		if t.slow {
			return dst, false
		}
	} else {
		var ok bool
		if t, ok = s.nxTemplate(name); !ok {
			return dst, false
		}
	}
	size := q.qend + len(t.body)
	ar := t.ar
	if q.edns {
		size += 11
		ar++
	}
	if size > q.UDPSize {
		return dst, false
	}
	var flags uint16 = 0x8000 | 0x0400 | 0x0080 | uint16(t.rcode&0xf) // QR, AA, RA
	if q.rd {
		flags |= 0x0100
	}
	if q.cd {
		flags |= 0x0010
	}
	dst = binary.BigEndian.AppendUint16(dst, q.ID)
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint16(dst, 1)
	dst = binary.BigEndian.AppendUint16(dst, t.an)
	dst = binary.BigEndian.AppendUint16(dst, t.ns)
	dst = binary.BigEndian.AppendUint16(dst, ar)
	dst = append(dst, pkt[12:q.qend]...)
	if n == nil {
		// NXDOMAIN: the SOA owner is the zone apex, a suffix of the question name.
		ptr := 0xc000 | uint16(12+q.nameLen-(len(s.cfg.Domain)+1))
		dst = binary.BigEndian.AppendUint16(dst, ptr)
	}
	dst = append(dst, t.body...)
	if q.edns {
		var f byte
		if q.do {
			f = 0x80
		}
		dst = append(dst, 0, 0, byte(dns.TypeOPT), byte(EDNSSize>>8), byte(EDNSSize&0xff), 0, 0, f, 0, 0, 0)
	}
	return dst, true
}

func (s *Snapshot) buildTemplate(n *node, qtype uint16) *template {
	r := s.lookup(n.name, n.name, qtype, 0)
	t := &template{gen: s.gen, rcode: r.Rcode}
	if r.ExternalTarget != "" {
		t.slow = true
		return t
	}
	m := &dns.Msg{Compress: true}
	m.Question = []dns.Question{{Name: n.name, Qtype: qtype, Qclass: dns.ClassINET}}
	m.Answer, m.Ns, m.Extra = r.Answer, r.Ns, r.Extra
	buf, err := m.Pack()
	if err != nil {
		t.slow = true
		return t
	}
	qlen := len(n.name) + 1 + 4
	if n.name == "." {
		qlen = 1 + 4
	}
	t.an, t.ns, t.ar = uint16(len(r.Answer)), uint16(len(r.Ns)), uint16(len(r.Extra))
	t.body = buf[12+qlen:]
	return t
}

// nxTemplate serves NXDOMAIN for names in the cluster zone that have no node, except pod names.
func (s *Snapshot) nxTemplate(name []byte) (*template, bool) {
	d := s.cfg.Domain
	if len(name) <= len(d) || string(name[len(name)-len(d):]) != d || name[len(name)-len(d)-1] != '.' {
		return nil, false
	}
	podZone := len(d) + 4 // "pod." + domain
	if len(name) > podZone && string(name[len(name)-podZone:len(name)-len(d)]) == "pod." &&
		name[len(name)-podZone-1] == '.' {
		return nil, false
	}
	t := s.nx.Load()
	if t == nil {
		soa := *s.soas[d]
		soa.Hdr.Name = "."
		buf := make([]byte, 512)
		off, err := dns.PackRR(&soa, buf, 0, nil, false)
		if err != nil {
			return nil, false
		}
		// Drop the root owner name; AppendReply writes a pointer to the apex inside the question instead.
		t = &template{gen: s.gen, rcode: dns.RcodeNameError, ns: 1, body: buf[1:off]}
		s.nx.Store(t)
	}
	return t, true
}
