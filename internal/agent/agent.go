// Package agent is `edgenet agent`, the per-node DaemonSet in the node's network
// namespace. It owns the node's side of the network: the pod IPAM it serves to the CNI
// plugin (and the plugin and conf it installs), the routes to other nodes' pods, the
// nftables service proxy, and /healthz and /readyz. It writes nothing to the API but
// the IPAM blocks it claims.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/ipam"
	"edgenet.io/edgenet/internal/ipam/kubeblocks"
	"edgenet.io/edgenet/internal/proxy"
	"edgenet.io/edgenet/internal/routing"
)

// Config is the agent's configuration.
type Config struct {
	NodeName   string
	HealthAddr string
	Client     kubernetes.Interface
	Edgenet    *v1.Client
	Log        *slog.Logger
	PodNet     PodNetConfig
	BlockBits  int
	Routing    routing.Mode
	Balancing  proxy.Balancing
	Shards     int // proxy shard tables (0: proxy.DefaultShards)
	// MemberKey authenticates the agents' heartbeats; without it the node announces
	// no LoadBalancer IP.
	MemberKey []byte
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.NodeName == "" {
		return errors.New("agent: node name is empty (set NODE_NAME)")
	}
	a := &agent{cfg: cfg, log: cfg.Log}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.watchNode(ctx) })
	g.Go(func() error { return a.serveHealth(ctx) })
	g.Go(func() error { return a.runNetwork(ctx, g) })
	return g.Wait()
}

type agent struct {
	cfg Config
	log *slog.Logger
	// lastSeen is when the apiserver last answered for our Node (unix nanoseconds).
	lastSeen atomic.Int64
	// cniReady and routed say the node's pod network is in place.
	cniReady, routed atomic.Bool
}

// readyWindow is how stale the apiserver contact may be before the agent reports
// not ready.
const readyWindow = 15 * time.Second

func (a *agent) ready() error {
	seen := a.lastSeen.Load()
	switch {
	case seen == 0:
		return errors.New("node " + a.cfg.NodeName + " not seen yet")
	case time.Since(time.Unix(0, seen)) > readyWindow:
		return fmt.Errorf("apiserver not reached for %s", time.Since(time.Unix(0, seen)).Round(time.Second))
	case !a.cniReady.Load():
		return errors.New("pod network (IPAM, CNI) not installed yet")
	case !a.routed.Load():
		return errors.New("routes to other nodes not applied yet")
	}
	return nil
}

// runNetwork starts IPAM, CNI, routing and the service proxy once the node's own
// Node object tells its address.
func (a *agent) runNetwork(ctx context.Context, g *errgroup.Group) error {
	node, err := a.waitNode(ctx)
	if err != nil {
		return err
	}
	nodeIP, ok := internalIP(node)
	if !ok {
		return fmt.Errorf("agent: node %s has no InternalIP", node.Name)
	}
	pn := a.cfg.PodNet
	src, err := kubeblocks.New(ctx, kubeblocks.Config{
		Client: a.cfg.Edgenet, NodeName: node.Name, NodeUID: node.UID,
		PodCIDR: pn.PodCIDR, BlockBits: a.cfg.BlockBits, Logger: a.log,
	})
	if err != nil {
		return err
	}
	g.Go(func() error { return src.Run(ctx) })
	alloc, err := ipam.New(ipam.Config{Dir: filepath.Join(pn.StateDir, "ipam"), PodCIDR: pn.PodCIDR, Source: src, Logger: a.log})
	if err != nil {
		return fmt.Errorf("agent: ipam: %w", err)
	}
	go func() { <-ctx.Done(); alloc.Close() }()

	siteMTU := 1500
	if ifc, err := interfaceOf(nodeIP); err == nil {
		siteMTU = ifc.MTU
	}
	if pn.MTU == 0 {
		pn.MTU = routing.PodMTU(a.cfg.Routing, siteMTU)
	}
	rt, err := routing.NewManager(routing.Config{Mode: a.cfg.Routing, PodCIDR: pn.PodCIDR, Logger: a.log})
	if err != nil {
		return err
	}
	r := &router{mgr: rt, client: a.cfg.Client, blocks: src, local: node.Name, log: a.log, applied: &a.routed}
	g.Go(func() error { return r.run(ctx) })

	p := &podNet{cfg: pn, node: node.Name, client: a.cfg.Client, alloc: alloc, log: a.log}
	g.Go(func() error { return p.run(ctx, func() bool { return src.HasSynced() }, &a.cniReady) })

	if len(a.cfg.MemberKey) > 0 {
		an := &announcer{client: a.cfg.Client, node: node.Name, nodeIP: nodeIP, key: a.cfg.MemberKey, log: a.log.With("component", "announcer")}
		g.Go(func() error { return an.run(ctx) })
	} else {
		a.log.Warn("no member key (EDGENET_MEMBER_KEY): this node announces no LoadBalancer IP")
	}
	g.Go(func() error {
		return proxy.Run(ctx, proxy.Config{
			Clientset: a.cfg.Client, NodeName: node.Name, NodeIPs: []netip.Addr{nodeIP},
			PodCIDRs: []netip.Prefix{pn.PodCIDR}, Balancing: a.cfg.Balancing, Shards: a.cfg.Shards, Logger: a.log.With("component", "proxy"),
		})
	})
	return nil
}

func (a *agent) waitNode(ctx context.Context) (*corev1.Node, error) {
	for {
		n, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err == nil {
			return n, nil
		}
		a.log.Warn("get own node", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func internalIP(n *corev1.Node) (netip.Addr, bool) {
	for _, ad := range n.Status.Addresses {
		if ad.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(ad.Address); err == nil {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// interfaceOf is the interface holding ip: the node's site interface.
func interfaceOf(ip netip.Addr) (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifs {
		addrs, _ := ifs[i].Addrs()
		for _, ad := range addrs {
			if p, err := netip.ParsePrefix(ad.String()); err == nil && p.Addr() == ip {
				return &ifs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no interface holds %s", ip)
}

func (a *agent) watchNode(ctx context.Context) error {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := a.cfg.Client.CoreV1().Nodes().Get(c, a.cfg.NodeName, metav1.GetOptions{})
		cancel()
		if err == nil {
			if a.lastSeen.Swap(time.Now().UnixNano()) == 0 {
				a.log.Info("node seen", "node", a.cfg.NodeName)
			}
		} else {
			a.log.Warn("get node", "node", a.cfg.NodeName, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *agent) serveHealth(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	l, err := net.Listen("tcp", a.cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("agent: health listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent: health server: %w", err)
	}
	return nil
}
