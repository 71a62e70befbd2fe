package zone

import (
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

const nShards = 256

type rrset struct {
	typ uint16
	rrs []dns.RR
}

// node is one owner name. Nodes are shared between snapshots and never modified after publication, except for the
// wire template cache, which is keyed by snapshot generation.
type node struct {
	name string // lowercase, fully qualified
	apex string // zone whose SOA goes in negative answers
	sets []rrset
	tmpl [nTmpl]atomic.Pointer[template]
}

func (n *node) get(t uint16) []dns.RR {
	for i := range n.sets {
		if n.sets[i].typ == t {
			return n.sets[i].rrs
		}
	}
	return nil
}

// Snapshot is an immutable view of the zone. Lookups on it are safe for concurrent use.
type Snapshot struct {
	cfg    *Config
	shards [nShards]map[string]*node
	gen    uint64
	serial uint32
	soas   map[string]*dns.SOA
	nx     atomic.Pointer[template] // NXDOMAIN body: the zone SOA after its owner name
}

func newSnapshot(cfg *Config, shards [nShards]map[string]*node, gen uint64, serial uint32) *Snapshot {
	s := &Snapshot{cfg: cfg, shards: shards, gen: gen, serial: serial, soas: map[string]*dns.SOA{}}
	for _, apex := range []string{cfg.Domain, "in-addr.arpa.", "ip6.arpa."} {
		s.soas[apex] = cfg.soa(apex, serial)
	}
	for _, p := range cfg.ReverseCIDRs {
		z := reverseZone(p)
		s.soas[z] = cfg.soa(z, serial)
	}
	return s
}

// Serial is the SOA serial of this snapshot.
func (s *Snapshot) Serial() uint32 { return s.serial }

// Domain is the normalized cluster domain ("cluster.local.").
func (s *Snapshot) Domain() string { return s.cfg.Domain }

func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func hashBytes(s []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range s {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

func (s *Snapshot) node(name string) *node { return s.shards[hashString(name)%nShards][name] }

// Len is the number of owner names in the snapshot.
func (s *Snapshot) Len() int {
	n := 0
	for _, sh := range s.shards {
		n += len(sh)
	}
	return n
}

// Result is the core's answer to one question.
type Result struct {
	Rcode  int
	Answer []dns.RR
	Ns     []dns.RR
	Extra  []dns.RR
	// ExternalTarget is set when the answer ends in a CNAME pointing outside the cluster zone (an ExternalName
	// service); the caller may resolve it and append the records.
	ExternalTarget string
}

// Handles reports whether the core is authoritative for qname: the cluster zone, names it holds records for
// (PTRs), and reverse names of addresses in the configured CIDRs. Everything else goes to the forwarder.
func (s *Snapshot) Handles(qname string) bool {
	n := strings.ToLower(dns.Fqdn(qname))
	if n == s.cfg.Domain || strings.HasSuffix(n, "."+s.cfg.Domain) || s.node(n) != nil {
		return true
	}
	if a, ok := parseReverse(n); ok {
		for _, p := range s.cfg.ReverseCIDRs {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
	}
	return false
}

// Lookup answers a question the core Handles. Owner names in the answer use the question's spelling.
func (s *Snapshot) Lookup(qname string, qtype uint16) Result {
	qname = dns.Fqdn(qname)
	return s.lookup(qname, strings.ToLower(qname), qtype, 0)
}

const maxChase = 8

func (s *Snapshot) lookup(qname, lname string, qtype uint16, depth int) Result {
	if n := s.node(lname); n != nil {
		return s.answerNode(n, qname, qtype, depth)
	}
	apex := s.cfg.apexOf(lname)
	if apex == s.cfg.Domain {
		if r, ok := s.pod(qname, lname, qtype); ok {
			return r
		}
	}
	return Result{Rcode: dns.RcodeNameError, Ns: []dns.RR{s.soas[apex]}}
}

func (s *Snapshot) answerNode(n *node, qname string, qtype uint16, depth int) Result {
	if qtype != dns.TypeCNAME {
		if cn := n.get(dns.TypeCNAME); len(cn) > 0 {
			r := Result{Rcode: dns.RcodeSuccess, Answer: []dns.RR{rename(cn[0], qname)}}
			target := cn[0].(*dns.CNAME).Target
			if !s.inZone(target) {
				r.ExternalTarget = target
				return r
			}
			if depth >= maxChase {
				r.Rcode = dns.RcodeServerFailure
				return r
			}
			next := s.lookup(target, target, qtype, depth+1)
			r.Rcode = next.Rcode
			r.Answer = append(r.Answer, next.Answer...)
			r.Ns, r.Extra, r.ExternalTarget = next.Ns, next.Extra, next.ExternalTarget
			return r
		}
	}
	var ans []dns.RR
	switch {
	case qtype == dns.TypeANY:
		for _, set := range n.sets {
			for _, rr := range set.rrs {
				ans = append(ans, rename(rr, qname))
			}
		}
		if n.name == s.cfg.Domain {
			ans = append(ans, rename(s.soas[s.cfg.Domain], qname))
		}
	case qtype == dns.TypeSOA && n.name == s.cfg.Domain:
		ans = []dns.RR{rename(s.soas[s.cfg.Domain], qname)}
	default:
		for _, rr := range n.get(qtype) {
			ans = append(ans, rename(rr, qname))
		}
	}
	if len(ans) == 0 {
		return Result{Rcode: dns.RcodeSuccess, Ns: []dns.RR{s.soas[n.apex]}}
	}
	r := Result{Rcode: dns.RcodeSuccess, Answer: ans}
	r.Extra = s.additional(ans)
	return r
}

// additional adds the address records of SRV targets and of the nameserver (RFC 2782, RFC 1035 section 3.3.11).
func (s *Snapshot) additional(ans []dns.RR) []dns.RR {
	var extra []dns.RR
	seen := map[string]bool{}
	for _, rr := range ans {
		var target string
		switch v := rr.(type) {
		case *dns.SRV:
			target = v.Target
		case *dns.NS:
			target = v.Ns
		default:
			continue
		}
		if seen[target] {
			continue
		}
		seen[target] = true
		if t := s.node(strings.ToLower(target)); t != nil {
			extra = append(extra, t.get(dns.TypeA)...)
			extra = append(extra, t.get(dns.TypeAAAA)...)
		}
	}
	return extra
}

func (s *Snapshot) inZone(name string) bool {
	n := strings.ToLower(name)
	return n == s.cfg.Domain || strings.HasSuffix(n, "."+s.cfg.Domain)
}

// pod answers <dashed-ip>.<ns>.pod.<zone> for existing namespaces ("pods insecure").
func (s *Snapshot) pod(qname, lname string, qtype uint16) (Result, bool) {
	rest, ok := strings.CutSuffix(lname, ".pod."+s.cfg.Domain)
	if !ok {
		return Result{}, false
	}
	label, ns, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(ns, ".") || s.node(ns+".pod."+s.cfg.Domain) == nil {
		return Result{}, false
	}
	a, ok := parseDashed(label)
	if !ok {
		return Result{}, false
	}
	rr := s.cfg.addr(qname, a)
	if qtype == rr.Header().Rrtype || qtype == dns.TypeANY {
		return Result{Rcode: dns.RcodeSuccess, Answer: []dns.RR{rr}}, true
	}
	return Result{Rcode: dns.RcodeSuccess, Ns: []dns.RR{s.soas[s.cfg.Domain]}}, true
}

func rename(rr dns.RR, name string) dns.RR {
	if rr.Header().Name == name {
		return rr
	}
	c := dns.Copy(rr)
	c.Header().Name = name
	return c
}
