package proxy

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// latencyBounds are the upper bounds of the buckets of the event→kernel histogram.
var latencyBounds = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
}

// Histogram counts durations in fixed buckets; safe for concurrent use.
type Histogram struct {
	mu     sync.Mutex
	counts []uint64 // len(latencyBounds)+1, the last one is +Inf
	sum    time.Duration
	max    time.Duration
}

// HistogramSnapshot is a copy of a Histogram's state.
type HistogramSnapshot struct {
	Bounds []time.Duration
	Counts []uint64 // Counts[i] observations ≤ Bounds[i] (and > Bounds[i-1]); last is +Inf
	Count  uint64
	Sum    time.Duration
	Max    time.Duration
}

func (h *Histogram) Observe(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = make([]uint64, len(latencyBounds)+1)
	}
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += d
	h.max = max(h.max, d)
}

func (h *Histogram) Snapshot() HistogramSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := HistogramSnapshot{Bounds: latencyBounds, Counts: make([]uint64, len(latencyBounds)+1), Sum: h.sum, Max: h.max}
	copy(s.Counts, h.counts)
	for _, c := range s.Counts {
		s.Count += c
	}
	return s
}

// Quantile returns the upper bound of the bucket holding quantile q (0..1), or Max
// for the +Inf bucket.
func (s HistogramSnapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(s.Count) + 0.5)
	var seen uint64
	for i, c := range s.Counts {
		seen += c
		if seen >= rank && c > 0 {
			if i == len(s.Bounds) {
				return s.Max
			}
			return s.Bounds[i]
		}
	}
	return s.Max
}

func (s HistogramSnapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "n=%d", s.Count)
	if s.Count > 0 {
		fmt.Fprintf(&b, " mean=%v p50≤%v p99≤%v max=%v", s.Sum/time.Duration(s.Count), s.Quantile(0.5), s.Quantile(0.99), s.Max)
	}
	return b.String()
}
