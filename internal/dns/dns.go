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
	"slices"
	"strconv"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"edgenet.io/edgenet/api/v1alpha1"
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
	// FollowComputeNetwork makes the upstreams follow spec.upstreamDNS of the cluster's
	// ComputeNetwork while it runs (the resolvers of Upstreams / ResolvConf when it names
	// none, or while it does not exist).
	FollowComputeNetwork bool
	Logger               *slog.Logger
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
	if cfg.FollowComputeNetwork {
		edge, err := v1alpha1.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		g.Go(func() error { return followUpstreams(ctx, edge, srv, ups, log) })
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// upstreamAddr normalizes a resolver given as an IP or IP:port to ip:port.
func upstreamAddr(u, port string) (string, error) {
	if ap, err := netip.ParseAddrPort(u); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(u)
	if err != nil {
		return "", fmt.Errorf("dns: upstream %q: not an IP address or IP:port", u)
	}
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(a.String(), strconv.Itoa(p)), nil
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
		ap, err := upstreamAddr(u, port)
		if err != nil {
			return nil, err
		}
		out = append(out, ap)
	}
	return out, nil
}

// followUpstreams points the forwarder at the ComputeNetwork's upstreamDNS, and back at
// the configured ones when it names none.
func followUpstreams(ctx context.Context, client *v1alpha1.Client, srv *server.Server, fallback []string, log *slog.Logger) error {
	inf := client.ComputeNetworks().NewInformer(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", v1alpha1.ComputeNetworkName).String()
	}, 0)
	apply := func(obj any) {
		want := fallback
		if cn, ok := obj.(*v1alpha1.ComputeNetwork); ok && len(cn.Spec.UpstreamDNS) > 0 {
			want = nil
			for _, a := range cn.Spec.UpstreamDNS {
				ap, err := upstreamAddr(string(a), "53")
				if err != nil {
					log.Error("ComputeNetwork upstreamDNS ignored", "component", "dns", "upstream", a, "err", err)
					return
				}
				want = append(want, ap)
			}
		}
		if slices.Equal(want, srv.Upstreams()) {
			return
		}
		if err := srv.SetUpstreams(want); err != nil {
			log.Error("upstreams unchanged", "component", "dns", "err", err)
			return
		}
		log.Info("upstreams changed", "component", "dns", "upstreams", want)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    apply,
		UpdateFunc: func(_, o any) { apply(o) },
		DeleteFunc: func(any) { apply(nil) },
	}); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	inf.Run(ctx.Done())
	return nil
}
