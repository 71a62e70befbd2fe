package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/lb/allocator"
)

// Config configures Run.
type Config struct {
	// Kube reaches the core API (Services, Namespaces, Events).
	Kube kubernetes.Interface
	// Client reaches edgenet.io/v1alpha1 (AddressPool, ComputeNetwork).
	Client *v1.Client
	// Recorder records Events on Services; nil: Run records to the API itself, as component "edgenet-lb".
	Recorder record.EventRecorder
	Logger   *slog.Logger
	// Workers is the number of Services synced in parallel; 0: 4.
	Workers int
}

// Run allocates LoadBalancer addresses until ctx ends. Before it assigns anything it replays every managed
// Service's status.loadBalancer.ingress into the allocator, so a new Run (after a restart or a change of
// leader) moves no address. It returns nil when ctx ends, an error if it cannot start.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Kube == nil || cfg.Client == nil {
		return errors.New("lb controller: config needs Kube and Client")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "lb-controller")
	rec := cfg.Recorder
	if rec == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Kube.CoreV1().Events("")})
		defer b.Shutdown()
		rec = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "edgenet-lb"})
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = 4
	}
	c := newController(cfg.Kube, cfg.Client, rec, log)
	return c.run(ctx, workers)
}

type controller struct {
	kube   kubernetes.Interface
	client *v1.Client
	rec    record.EventRecorder
	log    *slog.Logger
	alloc  *allocator.Allocator

	services, namespaces, pools, networks cache.SharedIndexInformer

	queue       workqueue.TypedRateLimitingInterface[string]
	poolsDirty  chan struct{}
	statusDirty chan struct{}

	mu sync.Mutex
	// gen counts wake-ups (pools changed, addresses freed); a sync that fails to allocate compares it before
	// and after so that a wake-up between its Assign and its joining pending is not lost.
	gen     uint64
	pending map[string]struct{}
	poolSet poolSet
}

func newController(kube kubernetes.Interface, client *v1.Client, rec record.EventRecorder, log *slog.Logger) *controller {
	c := &controller{
		kube: kube, client: client, rec: rec, log: log,
		alloc:       allocator.New(),
		queue:       workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "lb-controller"}),
		poolsDirty:  make(chan struct{}, 1),
		statusDirty: make(chan struct{}, 1),
		pending:     map[string]struct{}{},
	}
	core := kube.CoreV1().RESTClient()
	c.services = cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(core, "services", metav1.NamespaceAll, fields.Everything()),
		&corev1.Service{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	c.services.SetTransform(stripService)
	c.namespaces = cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(core, "namespaces", metav1.NamespaceAll, fields.Everything()),
		&corev1.Namespace{}, 0, cache.Indexers{})
	c.namespaces.SetTransform(stripNamespace)
	c.pools = client.AddressPools().NewInformer(nil, 0)
	c.networks = client.ComputeNetworks().NewInformer(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", v1.ComputeNetworkName).String()
	}, 0)
	return c
}

func stripNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, ResourceVersion: ns.ResourceVersion, Labels: ns.Labels}}, nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *controller) addHandlers() error {
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	poolsChanged := func(any) { signal(c.poolsDirty) }
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{c.services, cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue}},
		{c.namespaces, cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(o, n any) {
				on, nn := o.(*corev1.Namespace), n.(*corev1.Namespace)
				if !reflect.DeepEqual(on.Labels, nn.Labels) {
					c.enqueueNamespace(nn.Name)
				}
			},
		}},
		{c.pools, cache.ResourceEventHandlerFuncs{
			AddFunc: poolsChanged, DeleteFunc: poolsChanged,
			UpdateFunc: func(o, n any) {
				// Our own status writes change only the status.
				if !reflect.DeepEqual(o.(*v1.AddressPool).Spec, n.(*v1.AddressPool).Spec) {
					signal(c.poolsDirty)
				} else {
					signal(c.statusDirty)
				}
			},
		}},
		{c.networks, cache.ResourceEventHandlerFuncs{
			AddFunc: poolsChanged, DeleteFunc: poolsChanged,
			UpdateFunc: func(o, n any) {
				if !slices.Equal(o.(*v1.ComputeNetwork).Spec.ExternalServiceIPRanges, n.(*v1.ComputeNetwork).Spec.ExternalServiceIPRanges) {
					signal(c.poolsDirty)
				}
			},
		}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return err
		}
	}
	return nil
}

func (c *controller) enqueueNamespace(ns string) {
	objs, err := c.services.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return
	}
	for _, o := range objs {
		if svc := o.(*corev1.Service); managed(svc) {
			c.queue.Add(svc.Namespace + "/" + svc.Name)
		}
	}
}

func (c *controller) run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	if err := c.addHandlers(); err != nil {
		return fmt.Errorf("lb controller: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, inf := range []cache.SharedIndexInformer{c.services, c.namespaces, c.pools, c.networks} {
		g.Go(func() error { inf.RunWithContext(ctx); return nil })
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.services.HasSynced, c.namespaces.HasSynced, c.pools.HasSynced, c.networks.HasSynced) {
		c.queue.ShutDown()
		g.Wait()
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("lb controller: caches did not sync")
	}
	c.syncPools()
	c.restore()
	c.log.Info("started", "services", len(c.alloc.Assignments()), "workers", workers)
	// The informers' initial adds queued every Service already; workers start only now, after the replay.
	for range workers {
		g.Go(func() error {
			for c.processNext(ctx) {
			}
			return nil
		})
	}
	g.Go(func() error { c.poolLoop(ctx); return nil })
	g.Go(func() error { c.statusLoop(ctx); return nil })
	<-ctx.Done()
	c.queue.ShutDown()
	return g.Wait()
}

// restore replays the addresses in every managed Service's status, oldest Service first, so that if two
// statuses claim one address (only a hand edit does that) the older Service keeps it.
func (c *controller) restore() {
	var svcs []*corev1.Service
	for _, o := range c.services.GetStore().List() {
		if svc := o.(*corev1.Service); managed(svc) && len(svc.Status.LoadBalancer.Ingress) > 0 {
			svcs = append(svcs, svc)
		}
	}
	slices.SortFunc(svcs, func(x, y *corev1.Service) int {
		if d := x.CreationTimestamp.Compare(y.CreationTimestamp.Time); d != 0 {
			return d
		}
		return cmpKey(x, y)
	})
	for _, svc := range svcs {
		key := svc.Namespace + "/" + svc.Name
		ips, err := ingressAddrs(svc)
		if err == nil && len(ips) > 0 {
			var s allocator.Service
			if s, err = toAllocator(svc, c.nsLabels(svc.Namespace)); err == nil || allocator.IsInvalidService(err) {
				// An invalid request does not void what the Service holds; Assign reports it.
				_, err = c.alloc.Restore(s, ips)
			}
		}
		if err != nil {
			c.log.Warn("cannot keep the addresses in a Service's status; it will get new ones", "service", key, "err", err)
			c.rec.Eventf(svc, corev1.EventTypeWarning, EventAllocationFailed, "addresses in status not kept: %s", message(err))
		}
	}
}

func cmpKey(x, y *corev1.Service) int {
	return cmpStr(x.Namespace+"/"+x.Name, y.Namespace+"/"+y.Name)
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *controller) nsLabels(ns string) map[string]string {
	o, ok, _ := c.namespaces.GetStore().GetByKey(ns)
	if !ok {
		return nil
	}
	return o.(*corev1.Namespace).Labels
}

func (c *controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			c.log.Warn("sync failed; retrying", "service", key, "err", err)
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// wake retries every pending Service: pools changed or addresses were freed.
func (c *controller) wake() {
	c.mu.Lock()
	c.gen++
	keys := make([]string, 0, len(c.pending))
	for k := range c.pending {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	for _, k := range keys {
		c.queue.Add(k)
	}
	signal(c.statusDirty)
}

func (c *controller) sync(ctx context.Context, key string) error {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	obj, exists, err := c.services.GetIndexer().GetByKey(key)
	if err != nil {
		return err
	}
	if !exists {
		c.setPending(key, false, gen)
		if c.alloc.Release(key) {
			c.log.Info("released", "service", key)
			c.wake()
		}
		return nil
	}
	svc := obj.(*corev1.Service)
	if !managed(svc) {
		c.setPending(key, false, gen)
		released := c.alloc.Release(key)
		if released {
			c.wake()
		}
		if !released && meta.FindStatusCondition(svc.Status.Conditions, ConditionIPAllocated) == nil {
			return nil // never ours
		}
		st, changed := clearedStatus(svc)
		if !changed {
			return nil
		}
		if ok, err := c.writeStatus(ctx, svc, st); !ok {
			return err
		}
		c.log.Info("released", "service", key, "type", svc.Spec.Type)
		c.rec.Eventf(svc, corev1.EventTypeNormal, EventIPReleased, "released the LoadBalancer address: the Service is no longer of type LoadBalancer for %s", LoadBalancerClass)
		return nil
	}

	before, _ := c.alloc.Get(key)
	s, err := toAllocator(svc, c.nsLabels(svc.Namespace))
	var as allocator.Assignment
	if err == nil {
		as, err = c.alloc.Assign(s)
	}
	held, _ := c.alloc.Get(key)
	if slices.ContainsFunc(before.Addrs(), func(ip netip.Addr) bool { return !slices.Contains(held.Addrs(), ip) }) {
		c.wake() // the Service moved and freed an address
	} else if !slices.Equal(before.Addrs(), held.Addrs()) {
		signal(c.statusDirty)
	}
	st, changed, events := applyOutcome(svc, outcomeOf(svc, as, err, held))
	if changed {
		ok, werr := c.writeStatus(ctx, svc, st)
		if !ok {
			return werr
		}
	}
	for _, e := range events {
		c.rec.Event(svc, e.kind, e.reason, e.message)
	}
	if err != nil {
		if changed {
			c.log.Info("pending", "service", key, "reason", meta.FindStatusCondition(st.Conditions, ConditionIPAllocated).Reason, "err", err)
		}
		if c.setPending(key, true, gen) {
			c.queue.Add(key) // woken while we tried
		}
		return nil
	}
	c.setPending(key, false, gen)
	if changed {
		c.log.Info("assigned", "service", key, "ips", as.Addrs())
	}
	return nil
}

// setPending records whether key waits for addresses; it reports whether a wake-up happened since gen.
func (c *controller) setPending(key string, pending bool, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pending {
		c.pending[key] = struct{}{}
	} else {
		delete(c.pending, key)
	}
	return c.gen != gen
}

// writeStatus replaces svc's status.loadBalancer and status.conditions with st's. It sends a merge patch
// rather than an update: the cached Service is stripped, and a Service status update takes labels and
// annotations from the request. The patch carries the cached resourceVersion, so it applies only to the status
// this sync saw. It reports whether it wrote; a conflict (the cache is behind; the update event that follows
// syncs again) or a Service gone is no error.
func (c *controller) writeStatus(ctx context.Context, svc *corev1.Service, st corev1.ServiceStatus) (bool, error) {
	type status struct {
		LoadBalancer corev1.LoadBalancerStatus `json:"loadBalancer"`
		Conditions   []metav1.Condition        `json:"conditions"`
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": svc.ResourceVersion},
		"status":   status{LoadBalancer: st.LoadBalancer, Conditions: st.Conditions},
	})
	if err != nil {
		return false, fmt.Errorf("lb controller: status patch of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	_, err = c.kube.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "edgenet-lb"}, "status")
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return false, nil
	}
	return false, fmt.Errorf("lb controller: update status of %s/%s: %w", svc.Namespace, svc.Name, err)
}

func (c *controller) poolLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.poolsDirty:
			c.syncPools()
		}
	}
}

// syncPools rebuilds the pools from the caches and gives them to the allocator. Services whose addresses left
// or rejoined every pool are synced to update their condition, pending Services are retried.
func (c *controller) syncPools() {
	var cn *v1.ComputeNetwork
	if o, ok, _ := c.networks.GetStore().GetByKey(v1.ComputeNetworkName); ok {
		cn = o.(*v1.ComputeNetwork)
	}
	var aps []*v1.AddressPool
	for _, o := range c.pools.GetStore().List() {
		aps = append(aps, o.(*v1.AddressPool))
	}
	set := buildPools(cn, aps)
	for _, w := range set.warnings {
		c.log.Warn("default pool", "problem", w)
	}
	for name, p := range set.problems {
		c.log.Warn("address pool not used", "pool", name, "reason", p.reason, "problem", p.message)
	}
	rep, err := c.alloc.SetPools(set.pools)
	if err != nil {
		// buildPools leaves out what SetPools refuses; this is a bug, keep the pools we have.
		c.log.Error("pools refused; keeping the previous ones", "err", err)
		return
	}
	c.mu.Lock()
	c.poolSet = set
	c.mu.Unlock()
	if len(rep.Added)+len(rep.Removed)+len(rep.Changed) > 0 {
		c.log.Info("pools changed", "added", rep.Added, "removed", rep.Removed, "changed", rep.Changed,
			"orphaned", len(rep.Orphaned), "readopted", len(rep.Readopted))
	}
	for _, w := range rep.Warnings() {
		c.log.Warn("address outside every pool", "problem", w)
	}
	// Orphaned or readopted addresses change a condition; a range moving between pools changes a message.
	for _, a := range c.alloc.Assignments() {
		c.queue.Add(a.Service)
	}
	c.wake()
}

// statusLoop writes pool usage to the AddressPools and the ComputeNetwork, at most every 100 ms.
func (c *controller) statusLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.statusDirty:
		}
		if err := c.writePoolStatus(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("pool status", "err", err)
			time.AfterFunc(time.Second, func() { signal(c.statusDirty) })
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *controller) writePoolStatus(ctx context.Context) error {
	c.mu.Lock()
	set := c.poolSet
	c.mu.Unlock()
	byName := map[string]allocator.Pool{}
	for _, p := range set.pools {
		byName[p.Name] = p
	}
	var errs []error
	for _, o := range c.pools.GetStore().List() {
		ap := o.(*v1.AddressPool)
		want := *ap.Status.DeepCopy()
		want.ObservedGeneration = ap.Generation
		cond := metav1.Condition{Type: v1.AddressPoolReady, ObservedGeneration: ap.Generation}
		if p, ok := byName[ap.Name]; ok {
			used, free := usage(c.alloc, p)
			want.Used, want.Free = int64(min(used, math.MaxInt64)), free.String()
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, ReasonPoolInUse, fmt.Sprintf("%d addresses in use, %s free", used, free)
		} else {
			prob, ok := set.problems[ap.Name]
			if !ok {
				continue // created after the last pool sync; the next one covers it
			}
			want.Used, want.Free = 0, "0"
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, prob.reason, prob.message
		}
		meta.SetStatusCondition(&want.Conditions, cond)
		if reflect.DeepEqual(want, ap.Status) {
			continue
		}
		out := ap.DeepCopy()
		out.Status = want
		if _, err := c.client.AddressPools().UpdateStatus(ctx, out, metav1.UpdateOptions{FieldManager: "edgenet-lb"}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("AddressPool %s: %w", ap.Name, err))
		}
	}
	if o, ok, _ := c.networks.GetStore().GetByKey(v1.ComputeNetworkName); ok {
		cn := o.(*v1.ComputeNetwork)
		var used uint64
		free := new(big.Int)
		if p, ok := byName[v1.DefaultAddressPoolName]; ok {
			used, free = usage(c.alloc, p)
		}
		u, f := int64(min(used, math.MaxInt64)), int64(math.MaxInt64)
		if free.IsInt64() {
			f = free.Int64()
		}
		if cn.Status.ExternalIPsUsed != u || cn.Status.ExternalIPsFree != f {
			// A merge patch of our two fields only: the ComputeNetwork's conditions are another controller's.
			patch, _ := json.Marshal(map[string]any{"status": map[string]any{"externalIPsUsed": u, "externalIPsFree": f}})
			err := c.client.RESTClient().Patch(types.MergePatchType).Resource(v1.ResourceComputeNetworks).
				Name(cn.Name).SubResource("status").Body(patch).Do(ctx).Error()
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("ComputeNetwork status: %w", err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lb controller: %w", errors.Join(errs...))
	}
	return nil
}
