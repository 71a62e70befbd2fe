// Package dns is the `edgenet dns` component: the cluster DNS server replacing CoreDNS. It wires the Kubernetes
// source (package kube) into the zone core (package zone) and serves it with the DNS front end (package server).
// Its only entry point is Run.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"edgenet.io/edgenet/internal/dns/kube"
	"edgenet.io/edgenet/internal/dns/server"
	"edgenet.io/edgenet/internal/dns/zone"
)

// Config is everything `edgenet dns` takes.
type Config struct {
	// Kubeconfig is a kubeconfig path; empty means in-cluster configuration.
	Kubeconfig string
	// ClusterDomain, e.g. "cluster.local".
	ClusterDomain string
	// Listen are DNS host:port addresses (UDP and TCP), default ":53".
	Listen []string
	// Upstreams are resolver addresses (host or host:port) for other names; empty means the nameservers of
	// ResolvConf.
	Upstreams []string
	// ResolvConf is read when Upstreams is empty (default /etc/resolv.conf).
	ResolvConf string
	// TTL of cluster records (default 5 s) and NegativeTTL, the SOA minimum (default TTL).
	TTL, NegativeTTL time.Duration
	// NameserverAddrs are the addresses of ns.dns.<zone> (the DNS service IP).
	NameserverAddrs []netip.Addr
	// ReverseCIDRs are the pod and service CIDRs, whose reverse zones are answered locally.
	ReverseCIDRs []netip.Prefix
	// MetricsAddr serves /metrics, /ready and /health (default ":9153"); "-" disables it.
	MetricsAddr string
	// CacheSize bounds the forwarding cache (default 10000 answers).
	CacheSize int
	Logger    *slog.Logger
}

// Run serves until ctx is done. It starts answering (forwarded names, and the zone's own records) at once and
// reports ready on /ready once the API caches have synced.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	store, err := zone.NewStore(zone.Config{
		Domain: cfg.ClusterDomain, TTL: seconds(cfg.TTL), NegativeTTL: seconds(cfg.NegativeTTL),
		NameserverAddrs: cfg.NameserverAddrs, ReverseCIDRs: cfg.ReverseCIDRs,
	})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	ups, err := upstreams(cfg)
	if err != nil {
		return err
	}
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = []string{":53"}
	}
	metrics := cfg.MetricsAddr
	switch metrics {
	case "":
		metrics = ":9153"
	case "-":
		metrics = ""
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("dns: kubernetes client config: %w", err)
	}
	rc.UserAgent = "edgenet-dns"
	// Protobuf lists decode with a fraction of JSON's garbage: the initial list of 10k
	// Services and EndpointSlices sets the process's peak memory.
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("dns: kubernetes client: %w", err)
	}
	srv, err := server.New(server.Config{Listen: listen, Upstreams: ups, HTTP: metrics, Ready: store.Synced, CacheSize: cfg.CacheSize, Logger: log}, store)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx) })
	g.Go(func() error { return kube.New(client, store, log).Run(ctx) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func seconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	return uint32(max(1, d/time.Second))
}

// upstreams normalizes configured resolvers to ip:port, or reads them from resolv.conf.
func upstreams(cfg Config) ([]string, error) {
	list, port := cfg.Upstreams, "53"
	if len(list) == 0 {
		path := cfg.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		rc, err := mdns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("dns: upstreams from %s: %w", path, err)
		}
		list, port = rc.Servers, rc.Port
	}
	var out []string
	for _, u := range list {
		if ap, err := netip.ParseAddrPort(u); err == nil {
			out = append(out, ap.String())
			continue
		}
		a, err := netip.ParseAddr(u)
		if err != nil {
			return nil, fmt.Errorf("dns: upstream %q: not an IP address or IP:port", u)
		}
		p, _ := strconv.Atoi(port)
		out = append(out, net.JoinHostPort(a.String(), strconv.Itoa(p)))
	}
	return out, nil
}
