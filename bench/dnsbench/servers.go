package main

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"edgenet.io/edgenet/internal/subproc"
)

// serverSpec is one DNS server under test: how to start it listening on 127.0.0.1:port.
type serverSpec struct {
	name string
	// argv is the command line; it may write config files into dir.
	argv func(dir string, port int) ([]string, error)
}

func edgenetSpec(bin, kubeconfig string, c benchConfig) serverSpec {
	return serverSpec{name: "edgenet dns", argv: func(_ string, port int) ([]string, error) {
		return []string{bin, "dns", "--kubeconfig", kubeconfig, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
			"--metrics-addr", "-", "--cluster-domain", c.domain,
			// Nothing outside the zone is asked, and nothing may leave loopback if it were.
			"--upstream", "127.0.0.1:9",
			"--pod-cidr", c.podCIDR.String(), "--service-cidr", c.serviceCIDR.String()}, nil
	}}
}

// coreDNSSpec is CoreDNS with the kubernetes plugin and, unless cache is 0, the cache plugin at that many seconds
// (the TTL of cluster answers is 5 s in both servers, so cached answers live 5 s).
func coreDNSSpec(bin, kubeconfig string, c benchConfig, cache int) serverSpec {
	name := fmt.Sprintf("CoreDNS (cache %d)", cache)
	if cache == 0 {
		name = "CoreDNS (no cache)"
	}
	return serverSpec{name: name, argv: func(dir string, port int) ([]string, error) {
		cacheLine := ""
		if cache > 0 {
			cacheLine = fmt.Sprintf("    cache %d\n", cache)
		}
		corefile := fmt.Sprintf("%s:%d {\n    bind 127.0.0.1\n    kubernetes %s {\n        kubeconfig %s\n        pods insecure\n    }\n%s}\n",
			c.domain, port, c.domain, kubeconfig, cacheLine)
		path := filepath.Join(dir, fmt.Sprintf("Corefile-%d", port))
		if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
			return nil, err
		}
		return []string{bin, "-conf", path}, nil
	}}
}

// runningServer is a DNS server under test, pinned to one CPU.
type runningServer struct {
	*subproc.Process
	addr netip.AddrPort
}

func startServer(dir string, s serverSpec, cpu int) (*runningServer, error) {
	port, err := freeUDPTCPPort()
	if err != nil {
		return nil, err
	}
	argv, err := s.argv(dir, port)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	// taskset execs the server, so the child's pid is the server's.
	name := fmt.Sprintf("%s-%d", strings.Fields(s.name)[0], port)
	p, err := subproc.Start(name, filepath.Join(dir, name+".log"), append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return &runningServer{Process: p, addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}, nil
}

func (r *runningServer) alive() error {
	if r.Exited() {
		return fmt.Errorf("%s exited: see %s", r.Name, r.Log)
	}
	return nil
}

// memory is VmRSS and VmHWM (peak RSS) of the process, in bytes.
func (r *runningServer) memory() (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", r.Cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status %s: %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status %s: %w", k, err)
		}
		*dst = n << 10
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM in /proc/%d/status", r.Cmd.Process.Pid)
	}
	return rss, hwm, sc.Err()
}

// cpuTime is the user + system CPU time the process (all its threads) has used.
func (r *runningServer) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it don't.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %q", b)
	}
	// utime and stime are fields 14 and 15 of stat(5), in clock ticks (USER_HZ, 100 on Linux).
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// ensureCoreDNS builds CoreDNS version from the Go module proxy into dir/coredns/<version>, once.
func ensureCoreDNS(ctx context.Context, dir, version string) (string, error) {
	binDir, err := filepath.Abs(filepath.Join(dir, "coredns", version))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(binDir, "coredns")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(os.Stderr, "dnsbench: building CoreDNS %s into %s (minutes, once)\n", version, binDir)
	// Built as CoreDNS's own release Makefile builds it: static (CGO_ENABLED=0), stripped.
	cmd := exec.CommandContext(ctx, "go", "install", "-ldflags=-s -w", "github.com/coredns/coredns@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+binDir, "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build CoreDNS %s: %w", version, err)
	}
	return bin, nil
}
