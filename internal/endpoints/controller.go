package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Config is what `edgenet controller` passes to Run.
type Config struct {
	Clientset kubernetes.Interface
	// Workers reconcile different Services in parallel (default 2).
	Workers int
	// BatchWindow bounds how long pod and node changes wait so that a burst for one
	// Service becomes one reconcile (default 100ms; negative: no wait).
	BatchWindow time.Duration
	// MaxEndpointsPerSlice (default 100, at most 1000).
	MaxEndpointsPerSlice int
	Logger               *slog.Logger
}

const (
	defaultBatchWindow = 100 * time.Millisecond
	// sliceChangeDelay is the least wait after a change to our slices made by someone
	// else, as upstream: such changes come in bursts (e.g. a namespace deletion).
	sliceChangeDelay = time.Second
	// staleRecheck is the backstop when the slice cache lags our own writes; the
	// informer event that catches up normally requeues the Service sooner.
	staleRecheck = time.Second
	// expectationTTL bounds how long we wait for the cache to show our writes.
	expectationTTL = 10 * time.Second
	nodeIndex      = "node"
	serviceIndex   = "service"
)

var errStale = errors.New("endpoints: endpointslice cache older than our writes")

// Run keeps the EndpointSlices of all Services with a selector up to date until ctx
// is done. Run it in one replica only (under leader election).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Clientset == nil {
		return errors.New("endpoints: no clientset")
	}
	if cfg.MaxEndpointsPerSlice < 0 || cfg.MaxEndpointsPerSlice > 1000 {
		return fmt.Errorf("endpoints: max endpoints per slice %d not in 1..1000", cfg.MaxEndpointsPerSlice)
	}
	if cfg.MaxEndpointsPerSlice == 0 {
		cfg.MaxEndpointsPerSlice = DefaultMaxEndpointsPerSlice
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	switch {
	case cfg.BatchWindow == 0:
		cfg.BatchWindow = defaultBatchWindow
	case cfg.BatchWindow < 0:
		cfg.BatchWindow = 0
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &controller{
		cs:    cfg.Clientset,
		log:   log.With("component", "endpoints"),
		max:   cfg.MaxEndpointsPerSlice,
		batch: cfg.BatchWindow,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[svcKey](100*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[svcKey]{Name: "endpoints"}),
		selectors: map[string]map[string]labels.Selector{},
		tracker:   newSliceTracker(),
		triggers:  newTriggerTracker(),
	}

	factory := informers.NewSharedInformerFactory(cfg.Clientset, 0)
	sliceFactory := informers.NewSharedInformerFactoryWithOptions(cfg.Clientset, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelManagedBy + "=" + ManagedBy
		}))
	c.services = factory.Core().V1().Services().Informer()
	c.pods = factory.Core().V1().Pods().Informer()
	c.nodes = factory.Core().V1().Nodes().Informer()
	c.slices = sliceFactory.Discovery().V1().EndpointSlices().Informer()
	if err := c.setup(); err != nil {
		return err
	}

	factory.Start(ctx.Done())
	sliceFactory.Start(ctx.Done())
	defer func() {
		c.queue.ShutDown()
		factory.Shutdown()
		sliceFactory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), c.services.HasSynced, c.pods.HasSynced, c.nodes.HasSynced, c.slices.HasSynced) {
		return nil // ctx done
	}
	c.synced.Store(true)
	c.log.Info("caches synced", "workers", cfg.Workers, "batch", c.batch, "maxEndpointsPerSlice", c.max)

	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

type svcKey struct{ Namespace, Name string }

func (k svcKey) String() string { return k.Namespace + "/" + k.Name }

type controller struct {
	cs     kubernetes.Interface
	log    *slog.Logger
	max    int
	batch  time.Duration
	queue  workqueue.TypedRateLimitingInterface[svcKey]
	synced atomic.Bool

	services, pods, nodes, slices cache.SharedIndexInformer

	selMu sync.RWMutex
	// selectors of the Services with one, by namespace and name: the pod → Services
	// mapping without listing Services on every pod event.
	selectors map[string]map[string]labels.Selector

	tracker  *sliceTracker
	triggers *triggerTracker
}

func (c *controller) setup() error {
	for _, x := range []struct {
		inf cache.SharedIndexInformer
		fn  cache.TransformFunc
	}{{c.services, stripManagedFields}, {c.pods, stripPod}, {c.nodes, stripNode}, {c.slices, stripManagedFields}} {
		if err := x.inf.SetTransform(x.fn); err != nil {
			return fmt.Errorf("endpoints: transform: %w", err)
		}
	}
	if err := c.pods.AddIndexers(cache.Indexers{nodeIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return fmt.Errorf("endpoints: pod index: %w", err)
	}
	if err := c.slices.AddIndexers(cache.Indexers{serviceIndex: func(obj any) ([]string, error) {
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] != "" {
			return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
		}
		return nil, nil
	}}); err != nil {
		return fmt.Errorf("endpoints: slice index: %w", err)
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{c.services, cache.ResourceEventHandlerFuncs{
			AddFunc: c.onService,
			UpdateFunc: func(oldObj, obj any) {
				if serviceChanged(oldObj, obj) {
					c.onService(obj)
				}
			},
			DeleteFunc: c.onServiceDelete,
		}},
		{c.pods, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.onPod(nil, obj) },
			UpdateFunc: c.onPod,
			DeleteFunc: func(obj any) { c.onPod(nil, unwrap(obj)) },
		}},
		{c.nodes, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.onNode(nil, obj) },
			UpdateFunc: c.onNode,
			DeleteFunc: func(obj any) { c.onNode(nil, unwrap(obj)) },
		}},
		{c.slices, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.onSlice(obj, false) },
			UpdateFunc: func(_, obj any) { c.onSlice(obj, false) },
			DeleteFunc: func(obj any) { c.onSlice(unwrap(obj), true) },
		}},
	}
	for _, x := range handlers {
		if _, err := x.inf.AddEventHandler(x.h); err != nil {
			return fmt.Errorf("endpoints: event handler: %w", err)
		}
	}
	return nil
}

func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (c *controller) onService(obj any) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	c.selMu.Lock()
	m := c.selectors[s.Namespace]
	if len(s.Spec.Selector) == 0 || s.Spec.Type == corev1.ServiceTypeExternalName {
		delete(m, s.Name)
	} else {
		if m == nil {
			m = map[string]labels.Selector{}
			c.selectors[s.Namespace] = m
		}
		m[s.Name] = labels.SelectorFromValidatedSet(s.Spec.Selector)
	}
	c.selMu.Unlock()
	c.queue.Add(svcKey{s.Namespace, s.Name})
}

// serviceChanged ignores updates of what we don't read, e.g. a LoadBalancer status.
func serviceChanged(oldObj, obj any) bool {
	o, ok1 := oldObj.(*corev1.Service)
	n, ok2 := obj.(*corev1.Service)
	return !ok1 || !ok2 || o.UID != n.UID ||
		!equality.Semantic.DeepEqual(o.Spec, n.Spec) ||
		!equality.Semantic.DeepEqual(o.Labels, n.Labels) ||
		(o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil)
}

func (c *controller) onServiceDelete(obj any) {
	s, ok := unwrap(obj).(*corev1.Service)
	if !ok {
		return
	}
	c.selMu.Lock()
	delete(c.selectors[s.Namespace], s.Name)
	if len(c.selectors[s.Namespace]) == 0 {
		delete(c.selectors, s.Namespace)
	}
	c.selMu.Unlock()
	c.queue.Add(svcKey{s.Namespace, s.Name})
}

// servicesFor appends the Services of ns whose selector matches l.
func (c *controller) servicesFor(out map[svcKey]bool, ns string, l map[string]string) {
	set := labels.Set(l)
	c.selMu.RLock()
	defer c.selMu.RUnlock()
	for name, sel := range c.selectors[ns] {
		if sel.Matches(set) {
			out[svcKey{ns, name}] = true
		}
	}
}

func (c *controller) onPod(oldObj, obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	keys := map[svcKey]bool{}
	if old, ok := oldObj.(*corev1.Pod); ok {
		if !podChanged(old, p) {
			return
		}
		if !equality.Semantic.DeepEqual(old.Labels, p.Labels) {
			c.servicesFor(keys, old.Namespace, old.Labels)
		}
	}
	c.servicesFor(keys, p.Namespace, p.Labels)
	for k := range keys {
		c.queue.AddAfter(k, c.batch)
	}
}

// podChanged compares stripped pods: anything left in them matters.
func podChanged(old, cur *corev1.Pod) bool {
	o := *old
	o.ResourceVersion = cur.ResourceVersion
	return !equality.Semantic.DeepEqual(&o, cur)
}

func (c *controller) onNode(oldObj, obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok || !c.synced.Load() { // before the first sync every Service is queued anyway
		return
	}
	if old, ok := oldObj.(*corev1.Node); ok && old.Labels[corev1.LabelTopologyZone] == n.Labels[corev1.LabelTopologyZone] {
		return
	}
	pods, err := c.pods.GetIndexer().ByIndex(nodeIndex, n.Name)
	if err != nil {
		return
	}
	keys := map[svcKey]bool{}
	for _, o := range pods {
		if p, ok := o.(*corev1.Pod); ok {
			c.servicesFor(keys, p.Namespace, p.Labels)
		}
	}
	for k := range keys {
		c.queue.AddAfter(k, c.batch)
	}
}

func (c *controller) onSlice(obj any, deleted bool) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
		return
	}
	key := svcKey{s.Namespace, s.Labels[discoveryv1.LabelServiceName]}
	switch c.tracker.observe(key, s, deleted) {
	case requeueNow:
		c.queue.Add(key)
	case requeueLater:
		c.queue.AddAfter(key, max(c.batch, sliceChangeDelay))
	}
}

func (c *controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.sync(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
	case errors.Is(err, errStale):
		c.log.Debug("slice cache behind our writes, waiting", "service", key)
		c.queue.AddAfter(key, staleRecheck)
	case ctx.Err() != nil:
	default:
		c.log.Warn("sync failed, retrying", "service", key, "err", err, "retries", c.queue.NumRequeues(key))
		c.queue.AddRateLimited(key)
	}
	return true
}

// sync brings the slices of one Service to the desired state.
func (c *controller) sync(ctx context.Context, key svcKey) error {
	existing := c.slicesOf(key)
	obj, exists, err := c.services.GetIndexer().GetByKey(key.String())
	if err != nil {
		return fmt.Errorf("endpoints: service %s: %w", key, err)
	}
	var svc Service
	ok := false
	if exists {
		svc, ok = ServiceFromAPI(obj.(*corev1.Service))
	}
	if !ok {
		// Gone, ExternalName or without selector now: our slices are stale. The garbage
		// collector would remove those of a deleted Service, but later.
		c.triggers.forget(key)
		return c.apply(ctx, key, nil, Plan{Delete: existing})
	}
	if c.tracker.stale(key, existing) {
		return errStale
	}

	sel := labels.SelectorFromValidatedSet(obj.(*corev1.Service).Spec.Selector)
	objs, err := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, key.Namespace)
	if err != nil {
		return fmt.Errorf("endpoints: service %s: pods: %w", key, err)
	}
	pods := make([]Pod, 0, len(objs))
	zones := map[string]string{}
	for _, o := range objs {
		p, ok := o.(*corev1.Pod)
		if !ok || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		pod, ok := PodFromAPI(p)
		if !ok {
			continue
		}
		pods = append(pods, pod)
		if _, seen := zones[pod.NodeName]; !seen && pod.NodeName != "" {
			if n, ok, _ := c.nodes.GetIndexer().GetByKey(pod.NodeName); ok {
				zones[pod.NodeName] = n.(*corev1.Node).Labels[corev1.LabelTopologyZone]
			}
		}
	}
	created := obj.(*corev1.Service).CreationTimestamp.Time
	trigger := c.triggers.compute(key, created, pods)
	plan, missing := Compute(&svc, pods, zones, existing, Options{MaxEndpointsPerSlice: c.max, TriggerTime: trigger})
	if err := c.apply(ctx, key, &svc, plan); err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("endpoints: service %s: pods on unknown nodes %v left out", key, missing)
	}
	return nil
}

func (c *controller) slicesOf(key svcKey) []*discoveryv1.EndpointSlice {
	objs, _ := c.slices.GetIndexer().ByIndex(serviceIndex, key.String())
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, s)
		}
	}
	return out
}

// apply writes plan: creates, then updates, then deletes.
func (c *controller) apply(ctx context.Context, key svcKey, svc *Service, plan Plan) error {
	api := c.cs.DiscoveryV1().EndpointSlices(key.Namespace)
	if svc == nil || !svc.Deleting { // don't race the garbage collector
		for _, s := range plan.Create {
			got, err := api.Create(ctx, s, metav1.CreateOptions{})
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("endpoints: service %s: create slice: %w", key, err)
			}
			c.tracker.expect(key, got)
			c.log.Debug("slice created", "service", key, "slice", got.Name, "endpoints", len(got.Endpoints))
		}
	}
	for _, s := range plan.Update {
		got, err := api.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("endpoints: service %s: update slice %s: %w", key, s.Name, err)
		}
		c.tracker.expect(key, got)
		c.log.Debug("slice updated", "service", key, "slice", got.Name, "endpoints", len(got.Endpoints))
	}
	for _, s := range plan.Delete {
		if s.DeletionTimestamp != nil {
			continue
		}
		err := api.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("endpoints: service %s: delete slice %s: %w", key, s.Name, err)
		}
		c.tracker.expectDeleted(key, s.Name)
		c.log.Debug("slice deleted", "service", key, "slice", s.Name)
	}
	return nil
}
