// Package kube feeds the DNS zone core from the Kubernetes API: it watches Services, discovery.k8s.io/v1
// EndpointSlices and Namespaces with client-go informers, keeps only the fields DNS needs (informer transforms), and
// applies the changes to a zone.Store in batches. It writes nothing to the API. When the apiserver is unreachable
// the informers keep their caches, so the store keeps serving the last state.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"edgenet.io/edgenet/internal/dns/zone"
)

// Store is what the source writes to; *zone.Store implements it.
type Store interface {
	Update(func(tx *zone.Tx))
	MarkSynced()
}

// Source mirrors the API into a Store.
type Source struct {
	client kubernetes.Interface
	store  Store
	log    *slog.Logger
	slices cache.Indexer

	// Changes queue up and are applied in one Update per batch: a snapshot is
	// published per batch, not per event (the initial list of 10k services is a handful
	// of Updates instead of 10k).
	mu      sync.Mutex
	pending []func(tx *zone.Tx)
	kick    chan struct{}
}

// batchWindow is how long the flusher waits for more changes before publishing.
const batchWindow = 5 * time.Millisecond

func (s *Source) update(f func(tx *zone.Tx)) {
	s.mu.Lock()
	s.pending = append(s.pending, f)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// flush applies every queued change in one Update.
func (s *Source) flush() {
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	s.store.Update(func(tx *zone.Tx) {
		for _, f := range batch {
			f(tx)
		}
	})
}

func (s *Source) flusher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		time.Sleep(batchWindow)
		s.flush()
	}
}

// New returns a source; Run starts it.
func New(client kubernetes.Interface, store Store, log *slog.Logger) *Source {
	if log == nil {
		log = slog.Default()
	}
	return &Source{client: client, store: store, log: log.With("component", "dns-kube"), kick: make(chan struct{}, 1)}
}

const byService = "service"

// Run watches until ctx is done. The store is marked synced once every informer has listed.
func (s *Source) Run(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(s.client, 0)
	svcInf := f.Core().V1().Services().Informer()
	epsInf := f.Discovery().V1().EndpointSlices().Informer()
	nsInf := f.Core().V1().Namespaces().Informer()
	for _, err := range []error{
		svcInf.SetTransform(stripService),
		epsInf.SetTransform(stripSlice),
		nsInf.SetTransform(stripNamespace),
		epsInf.AddIndexers(cache.Indexers{byService: func(obj any) ([]string, error) {
			es, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				return nil, nil
			}
			name := es.Labels[discoveryv1.LabelServiceName]
			if name == "" {
				return nil, nil
			}
			return []string{es.Namespace + "/" + name}, nil
		}}),
	} {
		if err != nil {
			return fmt.Errorf("dns-kube: informer setup: %w", err)
		}
	}
	s.slices = epsInf.GetIndexer()

	svcReg, err := svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.onService(o, false) },
		UpdateFunc: func(_, o any) { s.onService(o, false) },
		DeleteFunc: func(o any) { s.onService(o, true) },
	})
	if err != nil {
		return fmt.Errorf("dns-kube: %w", err)
	}
	epsReg, err := epsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.onSlice,
		UpdateFunc: func(old, o any) { s.onSlice(old); s.onSlice(o) },
		DeleteFunc: s.onSlice,
	})
	if err != nil {
		return fmt.Errorf("dns-kube: %w", err)
	}
	nsReg, err := nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.onNamespace(o, false) },
		UpdateFunc: func(_, o any) { s.onNamespace(o, false) },
		DeleteFunc: func(o any) { s.onNamespace(o, true) },
	})
	if err != nil {
		return fmt.Errorf("dns-kube: %w", err)
	}
	go s.flusher(ctx)
	f.Start(ctx.Done())
	defer f.Shutdown()
	// Ready only once the handlers have seen the whole initial list and it is in the
	// store: before that, existing names would answer NXDOMAIN.
	if !cache.WaitForCacheSync(ctx.Done(), svcReg.HasSynced, epsReg.HasSynced, nsReg.HasSynced) {
		return ctx.Err()
	}
	s.flush()
	s.store.MarkSynced()
	// The initial list is the largest garbage this process makes; give its pages back
	// now rather than over the scavenger's minutes.
	debug.FreeOSMemory()
	s.log.Info("synced", "services", len(svcInf.GetStore().ListKeys()), "endpointslices", len(epsInf.GetStore().ListKeys()))
	<-ctx.Done()
	return nil
}

func tombstone(o any) any {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return o
}

func (s *Source) onService(o any, deleted bool) {
	svc, ok := tombstone(o).(*corev1.Service)
	if !ok {
		return
	}
	m, ok := ServiceModel(svc)
	s.update(func(tx *zone.Tx) {
		if deleted || !ok {
			tx.DeleteService(svc.Namespace, svc.Name)
			return
		}
		if err := tx.SetService(m); err != nil {
			s.log.Error("service rejected; keeping its previous records", "service", svc.Namespace+"/"+svc.Name, "err", err)
		}
	})
}

func (s *Source) onSlice(o any) {
	es, ok := tombstone(o).(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	name := es.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return
	}
	objs, err := s.slices.ByIndex(byService, es.Namespace+"/"+name)
	if err != nil {
		s.log.Error("endpointslice index", "err", err)
		return
	}
	var all []*discoveryv1.EndpointSlice
	for _, o := range objs {
		if e, ok := o.(*discoveryv1.EndpointSlice); ok {
			all = append(all, e)
		}
	}
	groups := EndpointModel(all)
	s.update(func(tx *zone.Tx) {
		if err := tx.SetEndpoints(es.Namespace, name, groups); err != nil {
			s.log.Error("endpoints rejected; keeping the previous ones", "service", es.Namespace+"/"+name, "err", err)
		}
	})
}

func (s *Source) onNamespace(o any, deleted bool) {
	ns, ok := tombstone(o).(*corev1.Namespace)
	if !ok {
		return
	}
	s.update(func(tx *zone.Tx) {
		if deleted {
			tx.DeleteNamespace(ns.Name)
			return
		}
		if err := tx.SetNamespace(ns.Name); err != nil {
			s.log.Error("namespace rejected", "namespace", ns.Name, "err", err)
		}
	})
}

// ServiceModel converts a Service; false means it has no DNS records (a ClusterIP service still without an IP).
func ServiceModel(svc *corev1.Service) (zone.Service, bool) {
	m := zone.Service{Namespace: svc.Namespace, Name: svc.Name}
	for _, p := range svc.Spec.Ports {
		m.Ports = append(m.Ports, zone.Port{Name: p.Name, Protocol: string(p.Protocol), Port: uint16(p.Port)})
	}
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		m.Type = zone.ExternalName
		m.ExternalName = svc.Spec.ExternalName
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		m.Type = zone.Headless
	case svc.Spec.ClusterIP == "":
		return m, false
	default:
		m.Type = zone.ClusterIP
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 {
			ips = []string{svc.Spec.ClusterIP}
		}
		for _, s := range ips {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue // the zone rejects a service left without addresses
			}
			m.ClusterIPs = append(m.ClusterIPs, a)
		}
	}
	return m, true
}

// EndpointModel converts the EndpointSlices of one service into endpoint groups (FQDN slices are ignored).
func EndpointModel(slices_ []*discoveryv1.EndpointSlice) []zone.EndpointGroup {
	sorted := slices.Clone(slices_)
	slices.SortFunc(sorted, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	var groups []zone.EndpointGroup
	for _, es := range sorted {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var g zone.EndpointGroup
		for _, p := range es.Ports {
			if p.Port == nil {
				continue
			}
			zp := zone.Port{Port: uint16(*p.Port)}
			if p.Name != nil {
				zp.Name = *p.Name
			}
			if p.Protocol != nil {
				zp.Protocol = string(*p.Protocol)
			}
			g.Ports = append(g.Ports, zp)
		}
		for _, ep := range es.Endpoints {
			ze := zone.Endpoint{Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready}
			if ep.Hostname != nil {
				ze.Hostname = *ep.Hostname
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					ze.Addresses = append(ze.Addresses, ip)
				}
			}
			g.Endpoints = append(g.Endpoints, ze)
		}
		groups = append(groups, g)
	}
	return groups
}

// The transforms keep only what ServiceModel and EndpointModel read, plus what the informer needs (name, namespace,
// resourceVersion), so the caches stay small.

func stripMeta(m metav1.ObjectMeta, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, ResourceVersion: m.ResourceVersion, UID: m.UID, Labels: labels}
}

func stripService(o any) (any, error) {
	svc, ok := o.(*corev1.Service)
	if !ok {
		return o, nil
	}
	out := &corev1.Service{ObjectMeta: stripMeta(svc.ObjectMeta, nil)}
	out.Spec.Type = svc.Spec.Type
	out.Spec.ClusterIP = svc.Spec.ClusterIP
	out.Spec.ClusterIPs = svc.Spec.ClusterIPs
	out.Spec.ExternalName = svc.Spec.ExternalName
	for _, p := range svc.Spec.Ports {
		out.Spec.Ports = append(out.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port})
	}
	return out, nil
}

func stripSlice(o any) (any, error) {
	es, ok := o.(*discoveryv1.EndpointSlice)
	if !ok {
		return o, nil
	}
	var labels map[string]string
	if n, ok := es.Labels[discoveryv1.LabelServiceName]; ok {
		labels = map[string]string{discoveryv1.LabelServiceName: n}
	}
	out := &discoveryv1.EndpointSlice{ObjectMeta: stripMeta(es.ObjectMeta, labels), AddressType: es.AddressType, Ports: es.Ports}
	for _, ep := range es.Endpoints {
		out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{
			Addresses: ep.Addresses, Hostname: ep.Hostname, Conditions: discoveryv1.EndpointConditions{Ready: ep.Conditions.Ready},
		})
	}
	return out, nil
}

func stripNamespace(o any) (any, error) {
	ns, ok := o.(*corev1.Namespace)
	if !ok {
		return o, nil
	}
	return &corev1.Namespace{ObjectMeta: stripMeta(ns.ObjectMeta, nil)}, nil
}
