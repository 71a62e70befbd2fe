package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/knftables"
)

// Config is what `edgenet agent` passes to Run.
type Config struct {
	Clientset kubernetes.Interface
	NodeName  string
	NodeIPs   []netip.Addr
	// PodCIDRs are the cluster pod ranges, at most one per family; a proxier runs
	// for each family given (e.g. 172.27.0.0/16).
	PodCIDRs []netip.Prefix
	// Balancing: see NodeConfig.Balancing ("" = vmap).
	Balancing Balancing
	// Shards: see NodeConfig.Shards (0 = DefaultShards).
	Shards int
	// MinSyncInterval and FullSyncPeriod: see Options.
	MinSyncInterval time.Duration
	FullSyncPeriod  time.Duration
	// InformerResync is the informers' resync period; 0 disables it.
	InformerResync time.Duration
	Logger         *slog.Logger
	// NewNFT opens one of our tables in a family (see Options.NFT). If set, the
	// proxy runs transactions through it and lists tables with it, not with nft
	// and netlink (tests give knftables fakes).
	NewNFT func(family knftables.Family, table string) knftables.Interface
	// Conntrack defaults to netlink in the current namespace.
	Conntrack Conntrack
	// HealthListen defaults to DefaultHealthListen.
	HealthListen func(port uint16) (net.Listener, error)
	// OnProxiers, if set, receives the proxiers once created (for metrics/tests).
	OnProxiers func([]*Proxier)
}

// DefaultGCPercent is the GOGC `edgenet agent` runs with (unless GOGC or GOMEMLIMIT
// is set): it is a setting of the process, not of Run. The agent's heap is mostly the
// proxy's long-lived state (models and rules: ~40 MB at 10k services with 5
// endpoints each), and its garbage comes in bursts: the informers' initial lists,
// the first sync, the periodic resync that recomputes every service. Go's default
// of 100 lets each burst grow the heap to twice the live data, and the RSS
// follows. At 10k services (bench/proxybench, same code otherwise) the cold start
// peaked at 148 MB of RSS with 100, 125 MB with 50 and 102 MB with 25, and the cold
// sync took as long: the kernel's work dominates it. Between bursts little is
// allocated, so the extra collections cost little CPU.
const DefaultGCPercent = 25

// Labels that take a Service out of our hands, as for kube-proxy.
const (
	labelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	labelHeadless         = "service.kubernetes.io/headless"
)

// Run proxies Services on this node until ctx is done. The nftables table is left in
// place on return so that traffic keeps flowing across agent restarts.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Clientset == nil {
		return errors.New("proxy: no clientset")
	}
	if len(cfg.PodCIDRs) == 0 || len(cfg.PodCIDRs) > 2 {
		return fmt.Errorf("proxy: want one pod CIDR per family, got %v", cfg.PodCIDRs)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var nftCommand func(context.Context) *exec.Cmd
	netlinkConn := defaultNetlink
	if cfg.NewNFT == nil {
		// Transactions only need knftables to write their text, which then
		// runs through one nft process per sync (NFTCommand): a knftables
		// interface names one table and a sync may touch several. The fake
		// writes the same text as the real one and never runs anything.
		cfg.NewNFT = func(f knftables.Family, table string) knftables.Interface { return knftables.NewFake(f, table) }
		nftCommand = DefaultNFTCommand
		if _, err := exec.LookPath("nft"); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
	} else {
		netlinkConn = nil
	}
	if cfg.Conntrack == nil {
		cfg.Conntrack = NetlinkConntrack{}
	}
	if cfg.HealthListen == nil {
		cfg.HealthListen = DefaultHealthListen
	}
	var proxiers []*Proxier
	seen := map[knftables.Family]bool{}
	for i, cidr := range cfg.PodCIDRs {
		fam := knftables.IPv4Family
		if cidr.Addr().Is6() {
			fam = knftables.IPv6Family
		}
		if seen[fam] {
			return fmt.Errorf("proxy: two pod CIDRs of family %s", fam)
		}
		seen[fam] = true
		opts := Options{
			Node:            NodeConfig{Family: fam, NodeName: cfg.NodeName, NodeIPs: cfg.NodeIPs, PodCIDR: cidr, Balancing: cfg.Balancing, Shards: cfg.Shards},
			NFT:             func(table string) knftables.Interface { return cfg.NewNFT(fam, table) },
			Netlink:         netlinkConn,
			NFTCommand:      nftCommand,
			Conntrack:       cfg.Conntrack,
			MinSyncInterval: cfg.MinSyncInterval,
			FullSyncPeriod:  cfg.FullSyncPeriod,
			Logger:          log,
		}
		if i == 0 { // one health server per port, whatever the families
			opts.HealthListen = cfg.HealthListen
		}
		p, err := NewProxier(opts)
		if err != nil {
			return err
		}
		proxiers = append(proxiers, p)
	}
	if cfg.OnProxiers != nil {
		cfg.OnProxiers(proxiers)
	}

	// No indexers: a factory's informers index by namespace, a second copy of
	// every key (~3 MB at 10k services and slices) that nothing here reads.
	svcInf := coreinformers.NewFilteredServiceInformer(cfg.Clientset, metav1.NamespaceAll, cfg.InformerResync, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = "!" + labelServiceProxyName })
	sliceInf := discoveryinformers.NewFilteredEndpointSliceInformer(cfg.Clientset, metav1.NamespaceAll, cfg.InformerResync, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = "!" + labelServiceProxyName + ",!" + labelHeadless })
	if err := svcInf.SetTransform(stripService); err != nil {
		return fmt.Errorf("proxy: service transform: %w", err)
	}
	if err := sliceInf.SetTransform(stripEndpointSlice); err != nil {
		return fmt.Errorf("proxy: endpointslice transform: %w", err)
	}
	_, err := svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { onService(proxiers, obj) },
		UpdateFunc: func(_, obj any) { onService(proxiers, obj) },
		DeleteFunc: func(obj any) {
			if c, ok := unwrapTombstone(obj).(*cachedService); ok {
				for _, p := range proxiers {
					p.OnServiceDelete(ServiceKey{c.Namespace, c.Name})
				}
			}
		},
	})
	if err != nil {
		return fmt.Errorf("proxy: service handler: %w", err)
	}
	_, err = sliceInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { onSlice(proxiers, obj) },
		UpdateFunc: func(_, obj any) { onSlice(proxiers, obj) },
		DeleteFunc: func(obj any) {
			if c, ok := unwrapTombstone(obj).(*cachedSlice); ok && c.model != nil {
				for _, p := range proxiers {
					p.OnEndpointSliceDelete(c.model.Service, c.model.Name)
				}
			}
		},
	})
	if err != nil {
		return fmt.Errorf("proxy: endpointslice handler: %w", err)
	}

	g, ctx := errgroup.WithContext(ctx)
	for _, p := range proxiers {
		g.Go(func() error { return p.Run(ctx) })
	}
	var informers sync.WaitGroup
	informers.Go(func() { svcInf.Run(ctx.Done()) })
	informers.Go(func() {
		// One initial list at a time: client-go decodes a whole list (and copies
		// its items) before the transforms strip them, ~40 MB each at 10k
		// services; in turn they add ~0.2 s to a cold start.
		if cache.WaitForCacheSync(ctx.Done(), svcInf.HasSynced) {
			sliceInf.Run(ctx.Done())
		}
	})
	g.Go(func() error {
		if !cache.WaitForCacheSync(ctx.Done(), svcInf.HasSynced, sliceInf.HasSynced) {
			return nil // ctx done
		}
		log.Info("service and endpointslice caches synced", "component", "proxy")
		for _, p := range proxiers {
			p.OnSynced()
		}
		return nil
	})
	err = g.Wait()
	informers.Wait() // they end with ctx, which g's end cancels
	return err
}

// defaultNetlink talks to nftables in the namespace of the thread that flushes, as
// the nft runs do.
func defaultNetlink() (*nftables.Conn, error) {
	return nftables.New(nftables.WithSockOptions(bigBuffers))
}

func unwrapTombstone(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func onService(proxiers []*Proxier, obj any) {
	c, ok := obj.(*cachedService)
	if !ok {
		return
	}
	for _, p := range proxiers {
		if c.model == nil {
			p.OnServiceDelete(ServiceKey{c.Namespace, c.Name}) // e.g. became ExternalName or headless
		} else {
			p.OnServiceUpdate(c.model)
		}
	}
}

func onSlice(proxiers []*Proxier, obj any) {
	c, ok := obj.(*cachedSlice)
	if !ok || c.model == nil {
		return
	}
	for _, p := range proxiers {
		p.OnEndpointSliceUpdate(c.model)
	}
}

// The informers keep only names and our models, which the proxiers share, not
// the API objects: at 10k services with 5 endpoints each, the stripped API objects
// were ~20 MB of live heap next to the same data as models.

// objectRef is what the caches need of an object's metadata: the store key and
// the resource version (an unchanged one marks a resync). A metav1.ObjectMeta is
// 232 bytes, 4.6 MB at 10k services and 10k slices; the informers reach these
// fields through meta.Accessor, which takes an ObjectMetaAccessor.
type objectRef struct {
	Namespace, Name, ResourceVersion string
}

func (r objectRef) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: r.Namespace, Name: r.Name, ResourceVersion: r.ResourceVersion}
}

func refOf(m *metav1.ObjectMeta) objectRef {
	return objectRef{Namespace: m.Namespace, Name: m.Name, ResourceVersion: m.ResourceVersion}
}

// cachedService is what the Service informer stores; model is nil for Services
// that are not proxied.
type cachedService struct {
	objectRef
	model *Service
}

func (c *cachedService) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (c *cachedService) DeepCopyObject() runtime.Object   { cp := *c; return &cp }

// cachedSlice is what the EndpointSlice informer stores; model is nil for slices
// that belong to no Service or carry FQDNs.
type cachedSlice struct {
	objectRef
	model *EndpointSlice
}

func (c *cachedSlice) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (c *cachedSlice) DeepCopyObject() runtime.Object   { cp := *c; return &cp }

// stripService turns a Service into its cache entry.
func stripService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	return &cachedService{objectRef: refOf(&s.ObjectMeta), model: ServiceFromAPI(s)}, nil
}

// stripEndpointSlice turns an EndpointSlice into its cache entry.
func stripEndpointSlice(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	return &cachedSlice{objectRef: refOf(&s.ObjectMeta), model: EndpointSliceFromAPI(s)}, nil
}

// ServiceFromAPI converts a core/v1 Service to the model; nil for Services that are
// not proxied (ExternalName, headless). Unparsable addresses are dropped.
func ServiceFromAPI(s *corev1.Service) *Service {
	if s.Spec.Type == corev1.ServiceTypeExternalName || s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil
	}
	m := &Service{
		Key:                 ServiceKey{s.Namespace, s.Name},
		Type:                ServiceType(s.Spec.Type),
		ExternalLocal:       s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		InternalLocal:       s.Spec.InternalTrafficPolicy != nil && *s.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
		HealthCheckNodePort: uint16(s.Spec.HealthCheckNodePort),
	}
	if m.Type == "" {
		m.Type = ClusterIP
	}
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{s.Spec.ClusterIP}
	}
	m.ClusterIPs = parseAddrs(ips)
	m.ExternalIPs = parseAddrs(s.Spec.ExternalIPs)
	for _, in := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			m.LoadBalancerIPs = append(m.LoadBalancerIPs, a)
		}
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		timeout := int32(corev1.DefaultClientIPServiceAffinitySeconds)
		if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			timeout = *c.ClientIP.TimeoutSeconds
		}
		m.AffinityTimeout = time.Duration(timeout) * time.Second
	}
	m.Ports = make([]ServicePort, 0, len(s.Spec.Ports))
	for _, p := range s.Spec.Ports {
		proto := Protocol(strings.ToLower(string(p.Protocol)))
		if proto == "" {
			proto = TCP
		}
		m.Ports = append(m.Ports, ServicePort{Name: p.Name, Protocol: proto, Port: uint16(p.Port), NodePort: uint16(p.NodePort)})
	}
	return m
}

// EndpointSliceFromAPI converts a discovery/v1 EndpointSlice to the model; nil when
// it belongs to no Service or carries FQDN addresses.
func EndpointSliceFromAPI(s *discoveryv1.EndpointSlice) *EndpointSlice {
	svc := s.Labels[discoveryv1.LabelServiceName]
	if svc == "" || s.AddressType == discoveryv1.AddressTypeFQDN {
		return nil
	}
	// Sized exactly: append's doubling would leave 5 endpoints in room for 8, and
	// the cache keeps every slice for the life of the agent.
	m := &EndpointSlice{Service: ServiceKey{s.Namespace, svc}, Name: s.Name,
		Ports: make([]EndpointPort, 0, len(s.Ports)), Endpoints: make([]Endpoint, 0, len(s.Endpoints))}
	for _, p := range s.Ports {
		if p.Port == nil {
			continue
		}
		ep := EndpointPort{Protocol: TCP, Port: uint16(*p.Port)}
		if p.Name != nil {
			ep.Name = *p.Name
		}
		if p.Protocol != nil {
			ep.Protocol = Protocol(strings.ToLower(string(*p.Protocol)))
		}
		m.Ports = append(m.Ports, ep)
	}
	for _, e := range s.Endpoints {
		c := e.Conditions
		me := Endpoint{
			Addresses: parseAddrs(e.Addresses),
			// A nil ready condition means ready (unknown state, as kube-proxy).
			Ready:       c.Ready == nil || *c.Ready,
			Serving:     c.Serving == nil && (c.Ready == nil || *c.Ready) || c.Serving != nil && *c.Serving,
			Terminating: c.Terminating != nil && *c.Terminating,
		}
		if me.Terminating {
			me.Ready = false
		}
		if e.NodeName != nil {
			me.NodeName = *e.NodeName
			// Endpoints of a slice mostly share few nodes: keep one copy of each name.
			for j := len(m.Endpoints) - 1; j >= 0 && j >= len(m.Endpoints)-4; j-- {
				if m.Endpoints[j].NodeName == me.NodeName {
					me.NodeName = m.Endpoints[j].NodeName
					break
				}
			}
		}
		m.Endpoints = append(m.Endpoints, me)
	}
	return m
}

func parseAddrs(ss []string) []netip.Addr {
	if len(ss) == 0 {
		return nil
	}
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}
