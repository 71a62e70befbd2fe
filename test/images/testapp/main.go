// Command testapp is the appliance's test workload: an HTTP/TCP/UDP echo server that
// says which pod answered, and a probe client for HTTP and DNS.
//
//	testapp serve [-http :8080] [-tcp :9000] [-udp :9001]
//	testapp http [-timeout 2s] URL
//	testapp dns [-server ADDR] [-type A] [-tcp] NAME
//	testapp ping [-timeout 2s] ADDR
//	testapp tcp [-timeout 2s] ADDR:PORT
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: testapp serve|http|dns|ping|tcp [args]")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "http":
		return probeHTTP(args[1:])
	case "dns":
		return probeDNS(args[1:])
	case "ping":
		return probePing(args[1:])
	case "tcp":
		return probeTCP(args[1:])
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

type whoami struct {
	Hostname string `json:"hostname"`
	Remote   string `json:"remote"`
	Path     string `json:"path"`
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	httpAddr := fs.String("http", ":8080", "HTTP listen address")
	tcpAddr := fs.String("tcp", ":9000", "TCP echo listen address")
	udpAddr := fs.String("udp", ":9001", "UDP echo listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _ := os.Hostname()
	errc := make(chan error, 3)
	go func() {
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(whoami{Hostname: host, Remote: r.RemoteAddr, Path: r.URL.Path})
		})
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		errc <- (&http.Server{Addr: *httpAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}).ListenAndServe()
	}()
	go func() {
		l, err := net.Listen("tcp", *tcpAddr)
		if err != nil {
			errc <- err
			return
		}
		for {
			c, err := l.Accept()
			if err != nil {
				errc <- err
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", host)
				io.Copy(c, c)
			}()
		}
	}()
	go func() {
		pc, err := net.ListenPacket("udp", *udpAddr)
		if err != nil {
			errc <- err
			return
		}
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				errc <- err
				return
			}
			pc.WriteTo([]byte(host+" "+string(buf[:n])), from)
		}
	}()
	return <-errc
}

func probeHTTP(args []string) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "request timeout")
	n := fs.Int("n", 1, "requests; more than one prints one line per request and a summary")
	interval := fs.Duration("interval", 0, "pause between requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: testapp http URL")
	}
	if *n > 1 {
		return loopHTTP(fs.Arg(0), *n, *timeout, *interval)
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get(fs.Arg(0))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	os.Stdout.Write(body)
	if resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

func probeDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	server := fs.String("server", "", "DNS server address (default: first nameserver of /etc/resolv.conf)")
	qtype := fs.String("type", "A", "query type")
	tcp := fs.Bool("tcp", false, "query over TCP")
	search := fs.Bool("search", true, "apply the resolv.conf search path to names without a trailing dot")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: testapp dns NAME")
	}
	t, ok := dns.StringToType[strings.ToUpper(*qtype)]
	if !ok {
		return fmt.Errorf("unknown type %q", *qtype)
	}
	names := []string{dns.Fqdn(fs.Arg(0))}
	conf, confErr := dns.ClientConfigFromFile("/etc/resolv.conf")
	if *server == "" {
		if confErr != nil {
			return confErr
		}
		*server = net.JoinHostPort(conf.Servers[0], conf.Port)
	}
	if *search && confErr == nil && !strings.HasSuffix(fs.Arg(0), ".") {
		names = conf.NameList(fs.Arg(0))
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	if *tcp {
		c.Net = "tcp"
	}
	var last *dns.Msg
	for _, n := range names {
		m := new(dns.Msg).SetQuestion(n, t)
		r, _, err := c.ExchangeContext(context.Background(), m, *server)
		if err != nil {
			return err
		}
		last = r
		if r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			break
		}
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "rcode %s\n", dns.RcodeToString[last.Rcode])
	for _, rr := range last.Answer {
		fmt.Fprintln(w, rr.String())
	}
	return w.Flush()
}

// probePing sends one ICMP echo request and waits for the reply.
func probePing(args []string) error {
	fs := flag.NewFlagSet("ping", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "reply timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: testapp ping ADDR")
	}
	dst, err := net.ResolveIPAddr("ip4", fs.Arg(0))
	if err != nil {
		return err
	}
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return err
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("edgenet")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := c.WriteTo(b, dst); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(*timeout))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no reply from %s: %w", dst, err)
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && from.String() == dst.String() {
			fmt.Printf("reply from %s in %s\n", from, time.Since(start).Round(time.Microsecond))
			return nil
		}
	}
}

// probeTCP connects, reads the echo server's greeting and echoes a line back.
func probeTCP(args []string) error {
	fs := flag.NewFlagSet("tcp", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: testapp tcp ADDR:PORT")
	}
	c, err := net.DialTimeout("tcp", fs.Arg(0), *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(*timeout))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		return err
	}
	echo, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Printf("%s%s", greeting, echo)
	return nil
}

// loopHTTP sends n requests, each on a new connection, and prints "ok <hostname> <unix
// ms>" or "fail <unix ms> <error>" per request, then "summary ok=N fail=M"; it fails if
// any request did.
func loopHTTP(url string, n int, timeout, interval time.Duration) error {
	fails := 0
	for i := 0; i < n; i++ {
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(url)
		if err == nil {
			var w whoami
			err = json.NewDecoder(resp.Body).Decode(&w)
			resp.Body.Close()
			if err == nil {
				fmt.Printf("ok %s %d\n", w.Hostname, time.Now().UnixMilli())
			}
		}
		if err != nil {
			fails++
			fmt.Printf("fail %d %v\n", time.Now().UnixMilli(), err)
		}
		time.Sleep(interval)
	}
	fmt.Printf("summary ok=%d fail=%d\n", n-fails, fails)
	if fails > 0 {
		return fmt.Errorf("%d of %d requests failed", fails, n)
	}
	return nil
}
