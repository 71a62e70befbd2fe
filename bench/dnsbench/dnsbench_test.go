package main

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParseDNSPerf(t *testing.T) {
	tests := []struct {
		file      string
		want      perfRun
		latencies []time.Duration
	}{
		{
			file: "testdata/dnsperf-saturated.txt",
			want: perfRun{Sent: 268663, Completed: 268663, Lost: 0, QPS: 134300.946535, AvgLatency: 537 * time.Microsecond,
				Rcodes: map[string]int{"NXDOMAIN": 268663}},
		},
		{
			file: "testdata/dnsperf-verbose.txt",
			want: perfRun{Sent: 5, Completed: 5, QPS: 4.998810, AvgLatency: 162 * time.Microsecond, Rcodes: map[string]int{"NXDOMAIN": 5}},
			latencies: []time.Duration{183 * time.Microsecond, 104 * time.Microsecond, 211 * time.Microsecond,
				116 * time.Microsecond, 196 * time.Microsecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseDNSPerf(out)
			if err != nil {
				t.Fatal(err)
			}
			if got.Sent != tt.want.Sent || got.Completed != tt.want.Completed || got.Lost != tt.want.Lost ||
				got.QPS != tt.want.QPS || got.AvgLatency != tt.want.AvgLatency {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if len(got.Rcodes) != len(tt.want.Rcodes) || got.Rcodes["NXDOMAIN"] != tt.want.Rcodes["NXDOMAIN"] {
				t.Errorf("rcodes %v, want %v", got.Rcodes, tt.want.Rcodes)
			}
			if len(got.Latencies) != len(tt.latencies) {
				t.Fatalf("latencies %v, want %v", got.Latencies, tt.latencies)
			}
			for i := range got.Latencies {
				if got.Latencies[i] != tt.latencies[i] {
					t.Errorf("latency %d: %v, want %v", i, got.Latencies[i], tt.latencies[i])
				}
			}
		})
	}
}

func TestParseDNSPerfMixedRcodes(t *testing.T) {
	out := "  Queries sent:         10\n  Queries completed:    9 (90.00%)\n  Queries lost:         1 (10.00%)\n\n" +
		"  Response codes:       NOERROR 7 (77.78%), NXDOMAIN 2 (22.22%)\n  Queries per second:   9.5\n" +
		"  Average Latency (s):  0.001500 (min 0.000100, max 0.003000)\n"
	got, err := parseDNSPerf([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if got.Rcodes["NOERROR"] != 7 || got.Rcodes["NXDOMAIN"] != 2 || got.Lost != 1 || got.AvgLatency != 1500*time.Microsecond {
		t.Errorf("got %+v", got)
	}
}

func TestParseDNSPerfTimeouts(t *testing.T) {
	full, err := os.ReadFile("testdata/dnsperf-verbose.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(full), "> NXDOMAIN x.cluster.local AAAA 0.000104", "> T x.cluster.local AAAA", 1)
	got, err := parseDNSPerf([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Latencies) != 4 {
		t.Errorf("latencies %v: want the 4 answered queries", got.Latencies)
	}
}

func TestParseDNSPerfRejects(t *testing.T) {
	full, err := os.ReadFile("testdata/dnsperf-verbose.txt")
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"empty":              "",
		"usage error":        "Error: invalid argument\nUsage: dnsperf ...\n",
		"no summary":         strings.Split(string(full), "Statistics:")[0],
		"bad verbose line":   strings.Replace(string(full), "A 0.000183", "A", 1),
		"negative latency":   strings.Replace(string(full), "A 0.000183", "A -1", 1),
		"bad qps":            strings.Replace(string(full), "4.998810", "many", 1),
		"bad response codes": strings.Replace(string(full), "NXDOMAIN 5 (100.00%)", "NXDOMAIN", 1),
	} {
		if _, err := parseDNSPerf([]byte(out)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzParseDNSPerf(f *testing.F) {
	for _, file := range []string{"testdata/dnsperf-saturated.txt", "testdata/dnsperf-verbose.txt"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseDNSPerf(b)
		if err != nil {
			return
		}
		for _, d := range r.Latencies {
			if d < 0 {
				t.Fatalf("negative latency %v", d)
			}
		}
	})
}

func TestQuantile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, .99, 0},
		{ms(5), .5, 5 * time.Millisecond},
		{ms(4, 1, 3, 2), .5, 2 * time.Millisecond}, // nearest rank: ceil(0.5*4) = 2nd smallest
		{ms(4, 1, 3, 2), .99, 4 * time.Millisecond},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), .9, 9 * time.Millisecond},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), .91, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := quantile(tt.in, tt.q); got != tt.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", tt.in, tt.q, got, tt.want)
		}
	}
}

func TestLayout(t *testing.T) {
	l := layout{namespaces: 5, podCIDR: netip.MustParsePrefix("172.27.0.0/16")}
	if s := l.service(3); s.headless || s.name != "svc-00003" || s.ns != "bench-3" || len(s.endpoints) != 0 {
		t.Errorf("service 3 = %+v", s)
	}
	s := l.service(19)
	if !s.headless || s.name != "hl-00019" || s.ns != "bench-4" || len(s.endpoints) != endpointsPerHeadless {
		t.Fatalf("service 19 = %+v", s)
	}
	if s.endpoints[0] != netip.MustParseAddr("172.27.0.11") || s.endpoints[9] != netip.MustParseAddr("172.27.0.20") {
		t.Errorf("service 19 endpoints %v", s.endpoints)
	}
	// The last service of the largest layout still has addresses inside the pod CIDR, all distinct.
	seen := map[netip.Addr]bool{}
	for i := 9; i < l.maxServices(); i += 10 {
		for _, a := range l.service(i).endpoints {
			if !l.podCIDR.Contains(a) || seen[a] || a == l.podCIDR.Addr() {
				t.Fatalf("service %d: endpoint %v outside %v or repeated", i, a, l.podCIDR)
			}
			seen[a] = true
		}
	}
}

func TestQueryFileMix(t *testing.T) {
	l := layout{namespaces: 3, podCIDR: netip.MustParsePrefix("172.27.0.0/16")}
	var svcs []service
	for i := range 100 {
		s := l.service(i)
		if !s.headless {
			s.clusterIP = netip.AddrFrom4([4]byte{172, 28, 0, byte(i + 1)})
		}
		svcs = append(svcs, s)
	}
	qs := queryFile(svcs, "cluster.local", 10000)
	if len(qs) != 10000 {
		t.Fatalf("%d queries", len(qs))
	}
	count := map[string]int{}
	for _, q := range qs {
		switch {
		case q.svc == nil:
			count["nx"]++
		case q.qtype == dns.TypeSRV:
			count["srv"]++
		case q.qtype == dns.TypeAAAA:
			count["aaaa"]++
		case q.svc.headless:
			count["headless"]++
		default:
			count["a"]++
		}
	}
	for kind, pct := range map[string]int{"a": 40, "headless": 10, "aaaa": 15, "srv": 15, "nx": 20} {
		if got := count[kind] * 100 / len(qs); got < pct-2 || got > pct+2 {
			t.Errorf("%s: %d%% of the queries, want about %d%%", kind, got, pct)
		}
	}
	again := queryFile(svcs, "cluster.local", 10000)
	for i := range qs {
		if qs[i].String() != again[i].String() {
			t.Fatalf("query %d differs between two files: %s vs %s", i, qs[i], again[i])
		}
	}
}

func TestCheck(t *testing.T) {
	const domain = "cluster.local"
	ip := &service{ns: "bench-0", name: "svc-00000", clusterIP: netip.MustParseAddr("172.28.0.20")}
	hl := &service{ns: "bench-0", name: "hl-00009", headless: true,
		endpoints: []netip.Addr{netip.MustParseAddr("172.27.0.1"), netip.MustParseAddr("172.27.0.2")}}
	reply := func(q query, rcode int, rrs ...string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.Rcode = rcode
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		return m
	}
	a := query{name: "svc-00000.bench-0.svc.cluster.local.", qtype: dns.TypeA, svc: ip}
	aaaa := query{name: a.name, qtype: dns.TypeAAAA, svc: ip}
	srv := query{name: "_http._tcp." + a.name, qtype: dns.TypeSRV, svc: ip}
	head := query{name: "hl-00009.bench-0.svc.cluster.local.", qtype: dns.TypeA, svc: hl}
	nx := query{name: "nx-00001.bench-0.svc.cluster.local.", qtype: dns.TypeA}
	tests := []struct {
		name string
		q    query
		r    *dns.Msg
		ok   bool
	}{
		{"A right", a, reply(a, dns.RcodeSuccess, a.name+" 5 IN A 172.28.0.20"), true},
		{"A wrong address", a, reply(a, dns.RcodeSuccess, a.name+" 5 IN A 172.28.0.21"), false},
		{"A empty", a, reply(a, dns.RcodeSuccess), false},
		{"A SERVFAIL", a, reply(a, dns.RcodeServerFailure), false},
		{"AAAA NODATA", aaaa, reply(aaaa, dns.RcodeSuccess), true},
		{"AAAA NXDOMAIN", aaaa, reply(aaaa, dns.RcodeNameError), false},
		{"SRV right", srv, reply(srv, dns.RcodeSuccess, srv.name+" 5 IN SRV 0 100 80 SVC-00000.bench-0.svc.cluster.local."), true},
		{"SRV wrong port", srv, reply(srv, dns.RcodeSuccess, srv.name+" 5 IN SRV 0 100 81 svc-00000.bench-0.svc.cluster.local."), false},
		{"headless both, any order", head, reply(head, dns.RcodeSuccess, head.name+" 5 IN A 172.27.0.2", head.name+" 5 IN A 172.27.0.1"), true},
		{"headless one missing", head, reply(head, dns.RcodeSuccess, head.name+" 5 IN A 172.27.0.2"), false},
		{"NXDOMAIN right", nx, reply(nx, dns.RcodeNameError), true},
		{"NXDOMAIN answered", nx, reply(nx, dns.RcodeSuccess, nx.name+" 5 IN A 172.28.0.1"), false},
	}
	for _, tt := range tests {
		if err := check(tt.q, tt.r, domain); (err == nil) != tt.ok {
			t.Errorf("%s: check = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestRenderRatios(t *testing.T) {
	r := report{
		cfg: benchConfig{coreDNSVersion: "v1.13.2", services: 1000, memServices: 10000, namespaces: 5, duration: 20 * time.Second,
			latencyDuration: 10 * time.Second, rate: 10000, coreDNSCache: 30, domain: "cluster.local"},
		load: []loadResult{
			{name: "edgenet dns", sat: perfRun{Sent: 2000, Completed: 2000, QPS: 100}, cpu: 10 * time.Second, p99: 2 * time.Millisecond, rss: 30 << 20},
			{name: "CoreDNS (cache 30)", sat: perfRun{Sent: 1000, Completed: 1000, Lost: 10, QPS: 50}, cpu: 20 * time.Second, p99: 8 * time.Millisecond, rss: 60 << 20},
		},
		mem: []memResult{
			{name: "edgenet dns", ready: time.Second, cpu: 900 * time.Millisecond, rss: [2]int64{40 << 20, 30 << 20}, hwm: 50 << 20},
			{name: "CoreDNS (cache 30)", ready: 2 * time.Second, rss: [2]int64{60 << 20, 60 << 20}, hwm: 100 << 20},
		},
	}
	out := r.render()
	for _, want := range []string{
		"| edgenet dns | 100 | 50% | 200 | 0 µs | 0.00% / n/a | 0 µs | 2000 µs |",
		"| CoreDNS (cache 30) | 50 | 100% | 50 | 0 µs | 1.00% / n/a |",
		"edgenet / CoreDNS (cache 30): QPS 2.00, queries per CPU-second 4.00, p99 at 10000 q/s 0.25, RSS 0.50.",
		"| edgenet dns | 1s | 900ms | 40.0 MiB | 30.0 MiB | 50.0 MiB |",
		"RSS 30 s after 0.50, peak RSS 0.50, time until all answers right 0.50.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
