package server

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

var metricTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeTXT, dns.TypeCNAME, dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypeANY, dns.TypeHTTPS}

var metricRcodes = []int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused}

// Answer sources, the label of the latency histogram.
const (
	srcCluster  = iota // cluster zone, wire fast path or dns.Msg path
	srcCache           // forwarded name answered from the cache
	srcUpstream        // forwarded name answered by an upstream (or failed)
	nSources
)

var sourceNames = [nSources]string{"cluster", "cache", "upstream"}

// metrics resolves every label combination up front so the hot path only increments.
type metrics struct {
	requests [][]prometheus.Counter // [type index][rcode index]
	latency  [nSources]prometheus.Observer
	hits     prometheus.Counter
	stale    prometheus.Counter
	misses   prometheus.Counter
	prefetch prometheus.Counter
	upErrors prometheus.Counter
	dropped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, cacheLen, names func() float64) *metrics {
	req := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgenet_dns_requests_total", Help: "DNS requests answered, by query type and response code.",
	}, []string{"type", "rcode"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "edgenet_dns_request_duration_seconds",
		Help:    "Time from receiving a query to writing its answer, by answer source.",
		Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"source"})
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	m := &metrics{
		hits:     counter("edgenet_dns_cache_hits_total", "Forwarded queries answered from fresh cache entries."),
		stale:    counter("edgenet_dns_cache_stale_total", "Forwarded queries answered from expired entries because upstreams failed (RFC 8767)."),
		misses:   counter("edgenet_dns_cache_misses_total", "Forwarded queries not in the cache (or expired)."),
		prefetch: counter("edgenet_dns_cache_prefetches_total", "Popular cache entries refreshed before they expired."),
		upErrors: counter("edgenet_dns_upstream_errors_total", "Upstream exchanges that failed (timeout, network error, bad reply)."),
		dropped:  counter("edgenet_dns_dropped_total", "Packets dropped: not a query, unparseable header, or overload."),
	}
	reg.MustRegister(req, lat,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgenet_dns_cache_entries", Help: "Entries in the forwarding cache."}, cacheLen),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgenet_dns_zone_names", Help: "Owner names in the current cluster zone snapshot."}, names),
	)
	for _, t := range append(metricTypes, 0) {
		tl := "other"
		if t != 0 {
			tl = dns.TypeToString[t]
		}
		row := make([]prometheus.Counter, 0, len(metricRcodes)+1)
		for _, rc := range metricRcodes {
			row = append(row, req.WithLabelValues(tl, dns.RcodeToString[rc]))
		}
		row = append(row, req.WithLabelValues(tl, "other"))
		m.requests = append(m.requests, row)
	}
	for i, n := range sourceNames {
		m.latency[i] = lat.WithLabelValues(n)
	}
	return m
}

func (m *metrics) count(qtype uint16, rcode int) {
	ti := len(metricTypes)
	for i, t := range metricTypes {
		if t == qtype {
			ti = i
			break
		}
	}
	ri := len(metricRcodes)
	for i, r := range metricRcodes {
		if r == rcode {
			ri = i
			break
		}
	}
	m.requests[ti][ri].Inc()
}
