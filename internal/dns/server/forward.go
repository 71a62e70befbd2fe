package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// forwarder resolves names outside the cluster zone through upstream resolvers, with a cache of positive and
// negative answers (RFC 2308), prefetch of popular entries and serve-stale (RFC 8767).
type forwarder struct {
	// upstreams change when the admin changes the Compute network settings; a query
	// uses the list it started with.
	upstreams atomic.Pointer[[]string]
	timeout   time.Duration
	cache     *cache
	flight    singleflight.Group
	next      atomic.Uint32
	m         *metrics
	now       func() time.Time
	// bg bounds prefetches and refreshes running in the background.
	bg chan struct{}
}

// errNoUpstream means every upstream failed.
var errNoUpstream = errors.New("server: no upstream answered")

type cacheKey struct {
	name  string // lowercase
	qtype uint16
	do    bool
}

type entry struct {
	msg     *dns.Msg // Id 0, no OPT, TTLs as received
	stored  time.Time
	ttl     time.Duration // freshness lifetime
	hits    atomic.Uint32
	fetched atomic.Bool // a prefetch is running or done
}

func (e *entry) expires() time.Time { return e.stored.Add(e.ttl) }

type cacheConfig struct {
	maxEntries  int
	maxTTL      time.Duration
	maxNegTTL   time.Duration
	staleWindow time.Duration // how long past expiry an entry may still be served when upstreams fail
	prefetchMin uint32        // hits before an entry counts as popular
}

const cacheShards = 64

type cache struct {
	cfg    cacheConfig
	shards [cacheShards]struct {
		sync.RWMutex
		m map[cacheKey]*entry
	}
}

func newCache(cfg cacheConfig) *cache {
	c := &cache{cfg: cfg}
	for i := range c.shards {
		c.shards[i].m = map[cacheKey]*entry{}
	}
	return c
}

func (c *cache) shard(k cacheKey) int {
	h := uint32(2166136261)
	for i := 0; i < len(k.name); i++ {
		h = (h ^ uint32(k.name[i])) * 16777619
	}
	return int((h ^ uint32(k.qtype)) % cacheShards)
}

func (c *cache) get(k cacheKey) *entry {
	s := &c.shards[c.shard(k)]
	s.RLock()
	e := s.m[k]
	s.RUnlock()
	return e
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].RLock()
		n += len(c.shards[i].m)
		c.shards[i].RUnlock()
	}
	return n
}

// ttlOf is how long a reply may be cached: the smallest answer TTL for positive answers, min(SOA TTL, SOA MINIMUM)
// for negative ones (RFC 2308 section 5). Zero means do not cache.
func (c *cache) ttlOf(m *dns.Msg) time.Duration {
	if m.Truncated {
		return 0
	}
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		minTTL := ^uint32(0)
		for _, rr := range m.Answer {
			minTTL = min(minTTL, rr.Header().Ttl)
		}
		return min(time.Duration(minTTL)*time.Second, c.cfg.maxTTL)
	case m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, c.cfg.maxNegTTL)
			}
		}
	}
	return 0 // negative without SOA (RFC 2308 section 5: SHOULD NOT cache), SERVFAIL, REFUSED, ...
}

func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl := c.ttlOf(m)
	if ttl <= 0 {
		return
	}
	e := &entry{msg: m, stored: now, ttl: ttl}
	s := &c.shards[c.shard(k)]
	s.Lock()
	defer s.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= max(1, c.cfg.maxEntries/cacheShards) {
		// Evict: the first entry past its stale window, else an arbitrary one (map order is random).
		var victim *cacheKey
		n := 0
		for vk, ve := range s.m {
			if victim == nil {
				victim = &vk
			}
			if now.After(ve.expires().Add(c.cfg.staleWindow)) {
				victim = &vk
				break
			}
			if n++; n > 8 {
				break
			}
		}
		delete(s.m, *victim)
	}
	s.m[k] = e
}

// reply builds the answer to req from a cached message, TTLs reduced by the entry's age; stale entries get ttl 30
// (RFC 8767 section 4).
func reply(req *dns.Msg, e *entry, now time.Time, stale bool) *dns.Msg {
	m := e.msg.Copy()
	m.Id = req.Id
	m.Question = req.Question
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			switch {
			case stale:
				h.Ttl = 30
			case h.Ttl > age:
				h.Ttl -= age
			default:
				h.Ttl = 0
			}
		}
	}
	return m
}

// resolve answers a question outside the cluster zone. The returned message has the request's ID and question;
// src tells where it came from.
func (f *forwarder) resolve(ctx context.Context, req *dns.Msg) (*dns.Msg, int) {
	q := req.Question[0]
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, do: do}
	now := f.now()
	e := f.cache.get(k)
	if e != nil && now.Before(e.expires()) {
		f.m.hits.Inc()
		f.maybePrefetch(k, e, now)
		return reply(req, e, now, false), srcCache
	}
	f.m.misses.Inc()
	m, err := f.fetch(ctx, k)
	if err != nil || m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused {
		if e != nil && now.Before(e.expires().Add(f.cache.cfg.staleWindow)) {
			f.m.stale.Inc()
			return reply(req, e, now, true), srcUpstream
		}
		if err != nil {
			r := new(dns.Msg)
			r.SetRcode(req, dns.RcodeServerFailure)
			r.RecursionAvailable = true
			return r, srcUpstream
		}
	}
	return reply(req, &entry{msg: m, stored: now}, now, false), srcUpstream
}

func (f *forwarder) maybePrefetch(k cacheKey, e *entry, now time.Time) {
	hits := e.hits.Add(1)
	if hits < f.cache.cfg.prefetchMin || e.ttl < 10*time.Second || e.expires().Sub(now) > e.ttl/10 {
		return
	}
	if !e.fetched.CompareAndSwap(false, true) {
		return
	}
	select {
	case f.bg <- struct{}{}:
	default:
		e.fetched.Store(false)
		return
	}
	f.m.prefetch.Inc()
	go func() {
		defer func() { <-f.bg }()
		ctx, cancel := context.WithTimeout(context.Background(), 2*f.timeout*time.Duration(max(1, len(*f.upstreams.Load()))))
		defer cancel()
		_, _ = f.fetch(ctx, k)
	}()
}

// fetch asks the upstreams (one exchange per key at a time) and caches the reply.
func (f *forwarder) fetch(ctx context.Context, k cacheKey) (*dns.Msg, error) {
	sk := fmt.Sprintf("%s/%d/%v", k.name, k.qtype, k.do)
	v, err, _ := f.flight.Do(sk, func() (any, error) {
		m, err := f.exchange(ctx, k)
		if err != nil {
			return nil, err
		}
		f.cache.put(k, m, f.now())
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*dns.Msg), nil
}

func (f *forwarder) exchange(ctx context.Context, k cacheKey) (*dns.Msg, error) {
	ups := *f.upstreams.Load()
	if len(ups) == 0 {
		return nil, errNoUpstream
	}
	q := new(dns.Msg)
	q.SetQuestion(k.name, k.qtype)
	q.RecursionDesired = true
	q.SetEdns0(1232, k.do)
	start := int(f.next.Add(1))
	var errs []error
	for i := range ups {
		up := ups[(start+i)%len(ups)]
		m, err := f.exchangeOne(ctx, q, up)
		if err == nil {
			return m, nil
		}
		f.m.upErrors.Inc()
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", errNoUpstream, errors.Join(errs...))
}

func (f *forwarder) exchangeOne(ctx context.Context, q *dns.Msg, up string) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: f.timeout, UDPSize: 1232}
	m, _, err := c.ExchangeContext(ctx, q, up)
	if err == nil && m.Truncated {
		c.Net = "tcp"
		m, _, err = c.ExchangeContext(ctx, q, up)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", up, err)
	}
	if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, q.Question[0].Name) || m.Question[0].Qtype != q.Question[0].Qtype {
		return nil, fmt.Errorf("upstream %s: reply for another question", up)
	}
	// Keep our own OPT per reply; drop the upstream's.
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	m.Id = 0
	return m, nil
}
