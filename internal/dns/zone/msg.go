package zone

import "github.com/miekg/dns"

// Reply builds the full response to req, whose single question the snapshot Handles. The records are shared with
// the snapshot: callers may pack the message but must not modify the records. The OPT record mirrors the request's
// (our payload size, DO copied); truncation is the caller's job.
func (s *Snapshot) Reply(req *dns.Msg) (*dns.Msg, Result) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	q := req.Question[0]
	r := s.Lookup(q.Name, q.Qtype)
	m.Rcode = r.Rcode
	m.Answer, m.Ns, m.Extra = r.Answer, r.Ns, r.Extra
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(EDNSSize, opt.Do())
	}
	return m, r
}
