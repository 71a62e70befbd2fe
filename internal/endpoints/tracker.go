package endpoints

import (
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// sliceTracker remembers our writes until the informer cache shows them, so that a
// reconcile never plans from a cache older than our last writes (which would create
// duplicate slices or undo updates).
type sliceTracker struct {
	mu      sync.Mutex
	now     func() time.Time
	want    map[svcKey]map[string]expectation // by slice name
	waiting map[svcKey]bool                   // a sync found the cache stale
}

type expectation struct {
	deleted bool
	rv      string // the ResourceVersion we wrote
	gen     int64
	until   time.Time
}

type requeue int

const (
	noRequeue    requeue = iota
	requeueNow           // the cache caught up with our writes a sync waits for
	requeueLater         // someone else changed our slices
)

func newSliceTracker() *sliceTracker {
	return &sliceTracker{now: time.Now, want: map[svcKey]map[string]expectation{}, waiting: map[svcKey]bool{}}
}

func (t *sliceTracker) set(key svcKey, name string, e expectation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.want[key]
	if m == nil {
		m = map[string]expectation{}
		t.want[key] = m
	}
	e.until = t.now().Add(expectationTTL)
	m[name] = e
}

func (t *sliceTracker) expect(key svcKey, written *discoveryv1.EndpointSlice) {
	t.set(key, written.Name, expectation{rv: written.ResourceVersion, gen: written.Generation})
}

func (t *sliceTracker) expectDeleted(key svcKey, name string) {
	t.set(key, name, expectation{deleted: true})
}

// met: the slice as cached (nil if absent) shows the write, or a later one.
func (e expectation) met(s *discoveryv1.EndpointSlice) bool {
	if e.deleted {
		return s == nil
	}
	return s != nil && (s.ResourceVersion == e.rv || s.Generation > e.gen)
}

// observe handles an informer event for one of our slices and says whether the
// Service needs a sync.
func (t *sliceTracker) observe(key svcKey, s *discoveryv1.EndpointSlice, deleted bool) requeue {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.want[key]
	e, ok := m[s.Name]
	if !ok {
		return requeueLater
	}
	cached := s
	if deleted {
		cached = nil
	}
	switch {
	case e.met(cached):
		delete(m, s.Name)
		if cached != nil && s.ResourceVersion != e.rv {
			return requeueLater // a change after ours
		}
	case !deleted && !e.deleted:
		return noRequeue // an event from before our write; ours follows
	default:
		delete(m, s.Name) // deleted under us, or recreated after our delete
		return requeueLater
	}
	if len(m) == 0 {
		delete(t.want, key)
		if t.waiting[key] {
			delete(t.waiting, key)
			return requeueNow
		}
	}
	return noRequeue
}

// stale says whether cached (the Service's slices in the cache) misses some of our
// writes; expectations met or expired are dropped.
func (t *sliceTracker) stale(key svcKey, cached []*discoveryv1.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.want[key]
	if len(m) == 0 {
		delete(t.waiting, key)
		return false
	}
	byName := make(map[string]*discoveryv1.EndpointSlice, len(cached))
	for _, s := range cached {
		byName[s.Name] = s
	}
	now := t.now()
	for name, e := range m {
		if e.met(byName[name]) || now.After(e.until) {
			delete(m, name)
		}
	}
	if len(m) == 0 {
		delete(t.want, key)
		delete(t.waiting, key)
		return false
	}
	t.waiting[key] = true
	return true
}

// triggerTracker computes the endpoints.kubernetes.io/last-change-trigger-time
// value as upstream: the earliest change (a pod's Ready transition, the Service's
// creation) not seen by the previous sync of the Service; for a Service not synced
// before, its creation time.
type triggerTracker struct {
	mu     sync.Mutex
	states map[svcKey]triggerState
}

type triggerState struct {
	created time.Time
	pods    map[string]time.Time
}

func newTriggerTracker() *triggerTracker {
	return &triggerTracker{states: map[svcKey]triggerState{}}
}

func (t *triggerTracker) compute(key svcKey, created time.Time, pods []Pod) time.Time {
	t.mu.Lock()
	prev, known := t.states[key]
	t.mu.Unlock()
	next := triggerState{created: created, pods: make(map[string]time.Time, len(pods))}
	var earliest time.Time
	note := func(at time.Time) {
		if earliest.IsZero() || at.Before(earliest) {
			earliest = at
		}
	}
	for i := range pods {
		at := pods[i].ReadyChanged
		if at.IsZero() {
			continue
		}
		next.pods[pods[i].Name] = at
		if at.After(prev.pods[pods[i].Name]) {
			note(at)
		}
	}
	if created.After(prev.created) {
		note(created)
	}
	t.mu.Lock()
	t.states[key] = next
	t.mu.Unlock()
	if !known {
		return created
	}
	return earliest
}

func (t *triggerTracker) forget(key svcKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.states, key)
}
