package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// perfRun is what one dnsperf run reports.
type perfRun struct {
	Sent, Completed, Lost int
	QPS                   float64
	AvgLatency            time.Duration
	Rcodes                map[string]int
	// Latencies holds one entry per answered query; only verbose (-v) runs have them.
	Latencies []time.Duration
}

// perfArgs is one dnsperf invocation.
type perfArgs struct {
	server    netip.AddrPort
	file      string
	duration  time.Duration
	clients   int // -c: sockets
	inflight  int // -q: queries outstanding
	rate      int // -Q, 0: as fast as the server answers
	verbose   bool
	cpu       int
	timeoutTo time.Duration // -t
}

func runDNSPerf(ctx context.Context, a perfArgs) (perfRun, error) {
	argv := []string{"-c", strconv.Itoa(a.cpu), "dnsperf", "-s", a.server.Addr().String(), "-p", strconv.Itoa(int(a.server.Port())),
		"-d", a.file, "-l", strconv.Itoa(int(a.duration.Seconds())), "-c", strconv.Itoa(a.clients),
		"-q", strconv.Itoa(a.inflight), "-t", strconv.Itoa(max(1, int(a.timeoutTo.Seconds())))}
	if a.rate > 0 {
		argv = append(argv, "-Q", strconv.Itoa(a.rate))
	}
	if a.verbose {
		argv = append(argv, "-v")
	}
	cmd := exec.CommandContext(ctx, "taskset", argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return perfRun{}, fmt.Errorf("dnsperf: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	r, err := parseDNSPerf(stdout.Bytes())
	if err != nil {
		return r, fmt.Errorf("dnsperf: %w", err)
	}
	return r, nil
}

// parseDNSPerf reads dnsperf 2.x output: the "Statistics:" summary and, with -v, one
// "> RCODE name TYPE seconds" line per answered query ("> T name TYPE" per timed-out one).
func parseDNSPerf(out []byte) (perfRun, error) {
	r := perfRun{Rcodes: map[string]int{}}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "> "); ok {
			f := strings.Fields(rest)
			if len(f) == 3 && f[0] == "T" {
				continue // "> T name TYPE": timed out, counted in "Queries lost"
			}
			if len(f) != 4 {
				return r, fmt.Errorf("verbose line %q: want 4 fields", line)
			}
			d, err := parseSeconds(f[3])
			if err != nil {
				return r, fmt.Errorf("verbose line %q: %w", line, err)
			}
			r.Latencies = append(r.Latencies, d)
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		first := val
		if i := strings.IndexByte(val, ' '); i >= 0 {
			first = val[:i]
		}
		var err error
		switch key {
		case "Queries sent":
			r.Sent, err = strconv.Atoi(first)
		case "Queries completed":
			r.Completed, err = strconv.Atoi(first)
		case "Queries lost":
			r.Lost, err = strconv.Atoi(first)
		case "Queries per second":
			r.QPS, err = strconv.ParseFloat(first, 64)
		case "Average Latency (s)":
			r.AvgLatency, err = parseSeconds(first)
		case "Response codes":
			// "NOERROR 800 (80.00%), NXDOMAIN 200 (20.00%)"
			for part := range strings.SplitSeq(val, ",") {
				f := strings.Fields(part)
				if len(f) < 2 {
					return r, fmt.Errorf("response codes %q", val)
				}
				n, err := strconv.Atoi(f[1])
				if err != nil {
					return r, fmt.Errorf("response codes %q: %w", val, err)
				}
				r.Rcodes[f[0]] += n
			}
		default:
			continue
		}
		if err != nil {
			return r, fmt.Errorf("%s: %w", key, err)
		}
		seen[key] = true
	}
	for _, k := range []string{"Queries sent", "Queries completed", "Queries lost", "Queries per second", "Average Latency (s)"} {
		if !seen[k] {
			return r, fmt.Errorf("no %q in the output", k)
		}
	}
	return r, nil
}

func parseSeconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 3600 {
		return 0, fmt.Errorf("latency %q: not a number of seconds", s)
	}
	return time.Duration(f * float64(time.Second)).Round(time.Microsecond), nil
}

// quantile is the q-quantile (nearest rank) of ds; ds is sorted in place.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}
