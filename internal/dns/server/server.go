// Package server is the DNS front end of edgenet dns: UDP and TCP listeners, routing of questions to the cluster
// zone core (package zone) or to the caching forwarder, and the metrics/readiness HTTP endpoint.
//
// UDP queries for cluster names are answered on the wire fast path (zone.ParseQuery + Snapshot.AppendReply) by one
// reader goroutine per SO_REUSEPORT socket, without allocation; everything else is unpacked into a dns.Msg and
// handled on its own goroutine. It does not talk to Kubernetes.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"edgenet.io/edgenet/internal/dns/zone"
)

// Zone gives the current snapshot of the cluster zone; *zone.Store implements it.
type Zone interface {
	Snapshot() *zone.Snapshot
}

// Config configures a Server. Zero durations and sizes take the defaults shown.
type Config struct {
	// Listen are host:port addresses served on both UDP and TCP, e.g. "0.0.0.0:53". Port 0 picks one port, the same
	// for UDP and TCP.
	Listen []string
	// Upstreams are host:port resolvers for names outside the cluster zone; none means such queries get SERVFAIL.
	Upstreams []string
	// UpstreamTimeout per exchange (2s).
	UpstreamTimeout time.Duration
	// CacheSize is the maximum number of cached answers (10000).
	CacheSize int
	// CacheMaxTTL caps positive answers (1h); CacheMaxNegativeTTL caps negative ones (30m).
	CacheMaxTTL, CacheMaxNegativeTTL time.Duration
	// StaleWindow is how long past expiry an answer may be served when every upstream fails (1h, RFC 8767).
	StaleWindow time.Duration
	// PrefetchHits is how many hits make an entry popular enough to be refreshed in its last 10% of TTL (3).
	PrefetchHits uint32
	// UDPWorkers is the number of SO_REUSEPORT sockets and reader goroutines per address (GOMAXPROCS).
	UDPWorkers int
	// MaxInflight bounds queries handled off the fast path at once (4096); more are dropped.
	MaxInflight int
	// HTTP is the host:port of the /metrics, /ready and /health endpoint; empty disables it.
	HTTP string
	// Ready reports readiness (the zone source's first sync); nil means always ready.
	Ready func() bool
	// Registry receives the metrics; nil makes a private one.
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

// Server answers DNS queries. Create it with New, bind with Listen, then Serve.
type Server struct {
	cfg  Config
	zone Zone
	fwd  *forwarder
	m    *metrics
	log  *slog.Logger
	reg  *prometheus.Registry
	sem  chan struct{}

	udp      []*net.UDPConn
	tcp      []net.Listener
	httpLn   net.Listener
	closeOne sync.Once
}

// New checks cfg and builds a server answering from z.
func New(cfg Config, z Zone) (*Server, error) {
	if len(cfg.Listen) == 0 {
		return nil, errors.New("server: no listen address")
	}
	if err := checkUpstreams(cfg.Upstreams); err != nil {
		return nil, err
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.UpstreamTimeout, 2*time.Second)
	def(&cfg.CacheMaxTTL, time.Hour)
	def(&cfg.CacheMaxNegativeTTL, 30*time.Minute)
	def(&cfg.StaleWindow, time.Hour)
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.PrefetchHits == 0 {
		cfg.PrefetchHits = 3
	}
	if cfg.UDPWorkers <= 0 {
		cfg.UDPWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, zone: z, log: cfg.Logger.With("component", "dns"), reg: cfg.Registry, sem: make(chan struct{}, cfg.MaxInflight)}
	c := newCache(cacheConfig{
		maxEntries: cfg.CacheSize, maxTTL: cfg.CacheMaxTTL, maxNegTTL: cfg.CacheMaxNegativeTTL,
		staleWindow: cfg.StaleWindow, prefetchMin: cfg.PrefetchHits,
	})
	s.m = newMetrics(cfg.Registry, func() float64 { return float64(c.len()) }, func() float64 { return float64(z.Snapshot().Len()) })
	s.fwd = &forwarder{timeout: cfg.UpstreamTimeout, cache: c, m: s.m, now: time.Now, bg: make(chan struct{}, 64)}
	ups := slices.Clone(cfg.Upstreams)
	s.fwd.upstreams.Store(&ups)
	return s, nil
}

func checkUpstreams(ups []string) error {
	for _, u := range ups {
		if _, err := netip.ParseAddrPort(u); err != nil {
			return fmt.Errorf("server: upstream %q: %w", u, err)
		}
	}
	return nil
}

// SetUpstreams replaces the resolvers of names outside the zone (ip:port each); an
// invalid list is refused and changes nothing. Cached answers stay: they were right
// when fetched and expire by their TTL.
func (s *Server) SetUpstreams(ups []string) error {
	if err := checkUpstreams(ups); err != nil {
		return err
	}
	ups = slices.Clone(ups)
	s.fwd.upstreams.Store(&ups)
	return nil
}

// Upstreams returns the resolvers in use.
func (s *Server) Upstreams() []string { return slices.Clone(*s.fwd.upstreams.Load()) }

// Listen binds every UDP and TCP socket (and the HTTP one); errors leave nothing bound.
func (s *Server) Listen() (err error) {
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	ctx := context.Background()
	// With port 0 the kernel picks a free UDP port, which may be taken for TCP: then pick
	// again, holding the refused UDP sockets meanwhile so that the kernel cannot hand
	// back the same port.
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for _, addr := range s.cfg.Listen {
		for try := 0; ; try++ {
			err := s.listenOne(ctx, lc, addr, &held)
			if err == nil {
				break
			}
			if _, port, _ := net.SplitHostPort(addr); port != "0" || try == 20 || !errors.Is(err, syscall.EADDRINUSE) {
				return err
			}
		}
	}
	if s.cfg.HTTP != "" {
		if s.httpLn, err = net.Listen("tcp", s.cfg.HTTP); err != nil {
			return fmt.Errorf("server: listen http %s: %w", s.cfg.HTTP, err)
		}
	}
	return nil
}

// listenOne binds the UDP sockets and the TCP listener of one address; on error it
// moves the UDP sockets it bound to held, for the caller to close.
func (s *Server) listenOne(ctx context.Context, lc net.ListenConfig, addr string, held *[]*net.UDPConn) error {
	nudp := len(s.udp)
	fail := func(err error) error {
		*held = append(*held, s.udp[nudp:]...)
		s.udp = s.udp[:nudp]
		return err
	}
	{
		first, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return fmt.Errorf("server: listen udp %s: %w", addr, err)
		}
		s.udp = append(s.udp, first.(*net.UDPConn))
		bound := first.LocalAddr().String() // port 0 resolved: later sockets share it
		for range s.cfg.UDPWorkers - 1 {
			pc, err := lc.ListenPacket(ctx, "udp", bound)
			if err != nil {
				return fail(fmt.Errorf("server: listen udp %s: %w", bound, err))
			}
			s.udp = append(s.udp, pc.(*net.UDPConn))
		}
		ln, err := net.Listen("tcp", bound)
		if err != nil {
			return fail(fmt.Errorf("server: listen tcp %s: %w", bound, err))
		}
		s.tcp = append(s.tcp, ln)
	}
	return nil
}

// Addrs are the bound DNS addresses (one per Listen entry), valid after Listen.
func (s *Server) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, ln := range s.tcp {
		out = append(out, ln.Addr().(*net.TCPAddr).AddrPort())
	}
	return out
}

// HTTPAddr is the bound metrics address, valid after Listen.
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

func (s *Server) close() {
	s.closeOne.Do(func() {
		for _, c := range s.udp {
			c.Close()
		}
		for _, l := range s.tcp {
			l.Close()
		}
		if s.httpLn != nil {
			s.httpLn.Close()
		}
	})
}

// Serve answers queries on the sockets bound by Listen until ctx is done.
func (s *Server) Serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, c := range s.udp {
		g.Go(func() error { return s.serveUDP(ctx, c) })
	}
	var tcpServers []*dns.Server
	for _, ln := range s.tcp {
		srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.ServeDNS), ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
		tcpServers = append(tcpServers, srv)
		g.Go(func() error {
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				return fmt.Errorf("server: tcp: %w", err)
			}
			return nil
		})
	}
	var hs *http.Server
	if s.httpLn != nil {
		hs = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := hs.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("server: http: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-ctx.Done()
		for _, srv := range tcpServers {
			_ = srv.Shutdown()
		}
		if hs != nil {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		}
		s.close()
		return nil
	})
	s.log.Info("serving", "addrs", s.Addrs(), "upstreams", s.cfg.Upstreams, "http", s.HTTPAddr())
	return g.Wait()
}

// Run is Listen then Serve.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK\n")) })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if s.cfg.Ready != nil && !s.cfg.Ready() {
			http.Error(w, "not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("OK\n"))
	})
	return mux
}

// udpBatch is how many datagrams one recvmmsg/sendmmsg moves: under load a worker reads
// and answers a batch per pair of system calls instead of one query per pair, and the
// system calls are most of a cluster query's cost.
const udpBatch = 32

// maxUDPQuery bounds a query datagram; a longer one is not a DNS query and is dropped.
const maxUDPQuery = 4096

// batchConn is the recvmmsg/sendmmsg view of a UDP socket (x/net's ipv4 and ipv6
// PacketConns; the family only matters for control messages, which are not used).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func newBatchConn(c *net.UDPConn) batchConn {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		return ipv4.NewPacketConn(c)
	}
	return ipv6.NewPacketConn(c)
}

func (s *Server) serveUDP(ctx context.Context, c *net.UDPConn) error {
	bc := newBatchConn(c)
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxUDPQuery+1)}
	}
	outs := make([]ipv4.Message, udpBatch)
	for i := range outs {
		outs[i].Buffers = [][]byte{make([]byte, 0, 4096)}
	}
	var q zone.WireQuery
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.log.Warn("udp read", "err", err)
			continue
		}
		k := 0
		for i := range in[:n] {
			m := &in[i]
			if m.N > maxUDPQuery {
				s.m.dropped.Inc()
				continue
			}
			pkt := m.Buffers[0][:m.N]
			o := &outs[k]
			if r, ok := s.fast(o.Buffers[0][:0], pkt, &q); ok {
				o.Buffers[0], o.Addr = r, m.Addr
				k++
				continue
			}
			select {
			case s.sem <- struct{}{}:
			default:
				s.m.dropped.Inc()
				continue
			}
			p, addr := append([]byte(nil), pkt...), m.Addr
			go func() {
				defer func() { <-s.sem }()
				if resp := s.handlePacket(ctx, p, true); resp != nil {
					_, _ = c.WriteTo(resp, addr)
				}
			}()
		}
		for out := outs[:k]; len(out) > 0; {
			sent, err := bc.WriteBatch(out, 0)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return nil
				}
				// One bad destination must not cost the rest of the batch their answers.
				sent = max(sent, 1)
			}
			out = out[sent:]
		}
	}
}

// fast answers a UDP packet on the wire path when it can; otherwise it reports false and the packet takes
// handlePacket.
func (s *Server) fast(dst, pkt []byte, q *zone.WireQuery) ([]byte, bool) {
	start := time.Now()
	if !zone.ParseQuery(pkt, q) {
		return dst, false
	}
	out, ok := s.zone.Snapshot().AppendReply(dst, pkt, q)
	if ok {
		s.m.count(q.Qtype, int(out[3]&0xf))
		s.m.latency[srcCluster].Observe(time.Since(start).Seconds())
	}
	return out, ok
}
