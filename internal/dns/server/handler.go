package server

import (
	"context"
	"time"

	"github.com/miekg/dns"

	"edgenet.io/edgenet/internal/dns/zone"
)

// handlePacket answers one packet off the fast path. It returns nil when nothing must be sent back: packets too
// short for a header, and responses (never answer those, or two servers can loop).
func (s *Server) handlePacket(ctx context.Context, pkt []byte, udp bool) []byte {
	start := time.Now()
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		s.m.dropped.Inc()
		return nil
	}
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil {
		s.m.count(0, dns.RcodeFormatError)
		return formErr(pkt)
	}
	m, src := s.answer(ctx, req)
	if udp {
		m.Truncate(udpSize(req))
	}
	out, err := m.Pack()
	if err != nil {
		s.log.Warn("pack reply", "q", req.Question, "err", err)
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		if out, err = m.Pack(); err != nil {
			return formErr(pkt)
		}
	}
	s.observe(req, m, src, start)
	return out
}

// ServeDNS is the dns.Msg handler (TCP, and any miekg server).
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.UpstreamTimeout*time.Duration(max(1, len(s.cfg.Upstreams))))
	defer cancel()
	m, src := s.answer(ctx, req)
	if w.LocalAddr().Network() == "udp" {
		m.Truncate(udpSize(req))
	}
	_ = w.WriteMsg(m)
	s.observe(req, m, src, start)
}

func (s *Server) observe(req, m *dns.Msg, src int, start time.Time) {
	var qt uint16
	if len(req.Question) > 0 {
		qt = req.Question[0].Qtype
	}
	s.m.count(qt, m.Rcode)
	s.m.latency[src].Observe(time.Since(start).Seconds())
}

func udpSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	return dns.MinMsgSize
}

// formErr is a header-only FORMERR reply to a packet whose header was readable.
func formErr(pkt []byte) []byte {
	out := make([]byte, 12)
	copy(out, pkt[:2])
	out[2] = 0x80 | pkt[2]&0x79 // QR, opcode and RD from the query
	out[3] = dns.RcodeFormatError
	return out
}

// answer routes a parsed request: the cluster zone (and its reverse zones) to the core, the rest to the forwarder.
func (s *Server) answer(ctx context.Context, req *dns.Msg) (*dns.Msg, int) {
	m := new(dns.Msg)
	switch {
	case req.Response:
		m.SetRcode(req, dns.RcodeFormatError)
		return m, srcCluster
	case req.Opcode != dns.OpcodeQuery:
		m.SetRcode(req, dns.RcodeNotImplemented)
		return m, srcCluster
	case len(req.Question) != 1:
		m.SetRcode(req, dns.RcodeFormatError)
		return m, srcCluster
	}
	opt := req.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		m.SetRcode(req, dns.RcodeBadVers)
		m.SetEdns0(zone.EDNSSize, false)
		return m, srcCluster
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		m.SetRcode(req, dns.RcodeRefused)
		return m, srcCluster
	}
	snap := s.zone.Snapshot()
	if snap.Handles(q.Name) {
		m, r := snap.Reply(req)
		if r.ExternalTarget != "" && q.Qtype != dns.TypeCNAME {
			s.chase(ctx, req, m, r.ExternalTarget)
		}
		return m, srcCluster
	}
	m, src := s.fwd.resolve(ctx, req)
	m.RecursionAvailable = true
	if opt != nil {
		m.SetEdns0(zone.EDNSSize, opt.Do())
	}
	return m, src
}

// chase resolves an ExternalName target through the forwarder and appends its records, so stub resolvers get a
// complete answer (spec 2.5 example). On failure the CNAME alone is returned; the client can follow it.
func (s *Server) chase(ctx context.Context, req, m *dns.Msg, target string) {
	sub := new(dns.Msg)
	sub.SetQuestion(target, req.Question[0].Qtype)
	sub.Id = req.Id
	if opt := req.IsEdns0(); opt != nil {
		sub.SetEdns0(opt.UDPSize(), opt.Do())
	}
	r, _ := s.fwd.resolve(ctx, sub)
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return
	}
	m.Answer = append(m.Answer, r.Answer...)
	m.Rcode = r.Rcode
	if len(r.Answer) == 0 {
		m.Ns = r.Ns
	}
}
