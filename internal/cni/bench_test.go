package cni

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkAdd measures one CNI ADD through libcni, as a runtime runs it (plugin process exec, agent round trip,
// durable allocation, veth and routes); the DEL after each ADD is not timed. Reports p50/p99 besides ns/op.
func BenchmarkAdd(b *testing.B) {
	n := newNode(b, "10.61.0.0/16", 26)
	list := n.conflist("1.1.0", "")
	pod := newNetns(b, "b")
	var lat []time.Duration
	i := 0
	for b.Loop() {
		r := rt(fmt.Sprint("bench", i), pod.Path(), "eth0")
		i++
		start := time.Now()
		if _, err := n.cni.AddNetworkList(withTimeout(b), list, r); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if err := n.cni.DelNetworkList(withTimeout(b), list, r); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	p50, p99 := percentiles(lat)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}
