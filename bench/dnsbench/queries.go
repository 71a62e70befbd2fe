package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// query is one line of the dnsperf query file and the answer both servers must give to it.
type query struct {
	name  string
	qtype uint16
	svc   *service // nil for NXDOMAIN names
}

func (q query) String() string { return q.name + " " + dns.TypeToString[q.qtype] }

// mix is the share of each kind of question in the query file, in percent.
var mix = []struct {
	kind   string
	weight int
}{
	{"A, ClusterIP service", 40},
	{"A, headless service (10 endpoints)", 10},
	{"AAAA, ClusterIP service (NODATA)", 15},
	{"SRV _http._tcp, ClusterIP service", 15},
	{"A, no such service (NXDOMAIN)", 20},
}

// queryFile makes n questions about svcs in the proportions of mix, in a fixed pseudo-random order (seed 1), so
// both servers get the same file.
func queryFile(svcs []service, domain string, n int) []query {
	var clusterIP, headless []*service
	for i := range svcs {
		if svcs[i].headless {
			headless = append(headless, &svcs[i])
		} else {
			clusterIP = append(clusterIP, &svcs[i])
		}
	}
	total := 0
	for _, m := range mix {
		total += m.weight
	}
	rng := rand.New(rand.NewPCG(1, 1))
	out := make([]query, 0, n)
	for len(out) < n {
		w := rng.IntN(total)
		k := 0
		for ; w >= mix[k].weight; k++ {
			w -= mix[k].weight
		}
		var q query
		switch k {
		case 0, 2, 3:
			s := clusterIP[rng.IntN(len(clusterIP))]
			q = query{name: fqdn(s, domain), qtype: [...]uint16{dns.TypeA, 0, dns.TypeAAAA, dns.TypeSRV}[k], svc: s}
			if k == 3 {
				q.name = "_http._tcp." + q.name
			}
		case 1:
			s := headless[rng.IntN(len(headless))]
			q = query{name: fqdn(s, domain), qtype: dns.TypeA, svc: s}
		case 4:
			s := svcs[rng.IntN(len(svcs))]
			q = query{name: fmt.Sprintf("nx-%05d.%s.svc.%s.", rng.IntN(len(svcs)), s.ns, domain), qtype: dns.TypeA}
		}
		out = append(out, q)
	}
	return out
}

func fqdn(s *service, domain string) string {
	return fmt.Sprintf("%s.%s.svc.%s.", s.name, s.ns, domain)
}

// distinct is each question of qs once.
func distinct(qs []query) []query {
	seen := map[string]bool{}
	var out []query
	for _, q := range qs {
		if k := q.String(); !seen[k] {
			seen[k] = true
			out = append(out, q)
		}
	}
	return out
}

// check says what is wrong with reply r to q, or nil: the spec's answer for each kind of question, so that neither
// server is measured answering something else (SERVFAIL, empty, stale).
func check(q query, r *dns.Msg, domain string) error {
	want := dns.RcodeSuccess
	if q.svc == nil {
		want = dns.RcodeNameError
	}
	if r.Rcode != want {
		return fmt.Errorf("%s: rcode %s, want %s", q, dns.RcodeToString[r.Rcode], dns.RcodeToString[want])
	}
	var got []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			got = append(got, rr.A.String())
		case *dns.SRV:
			got = append(got, fmt.Sprintf("%d %s", rr.Port, strings.ToLower(rr.Target)))
		default:
			got = append(got, rr.String())
		}
	}
	var exp []string
	switch {
	case q.svc == nil || q.qtype == dns.TypeAAAA:
	case q.qtype == dns.TypeSRV:
		exp = []string{"80 " + fqdn(q.svc, domain)}
	case q.svc.headless:
		for _, a := range q.svc.endpoints {
			exp = append(exp, a.String())
		}
	default:
		exp = []string{q.svc.clusterIP.String()}
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		return fmt.Errorf("%s: answer %v, want %v", q, got, exp)
	}
	return nil
}

// verify asks server each question once and checks the answers; it returns the first few problems.
func verify(ctx context.Context, server netip.AddrPort, qs []query, domain string) error {
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	var errs []error
	for _, q := range qs {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		r, _, err := c.ExchangeContext(ctx, m, server.String())
		if err == nil {
			err = check(q, r, domain)
		}
		if err != nil {
			if errs = append(errs, err); len(errs) == 5 {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// waitCorrect asks qs again and again until every answer is right, and returns how long that took from its start
// to the start of the first all-right pass. A server may answer its API objects one by one as its informers deliver
// them, so no single probe can say it has loaded everything.
func waitCorrect(ctx context.Context, server netip.AddrPort, qs []query, domain string, alive func() error) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		if err := alive(); err != nil {
			return 0, err
		}
		pass := time.Now()
		err := verify(ctx, server, qs, domain)
		if err == nil {
			return pass.Sub(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("answers still wrong after %s: %w", time.Since(start).Round(time.Second), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
