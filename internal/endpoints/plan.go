package endpoints

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultMaxEndpointsPerSlice is upstream's default.
const DefaultMaxEndpointsPerSlice = 100

// Options tune ComputePlan.
type Options struct {
	// MaxEndpointsPerSlice (default DefaultMaxEndpointsPerSlice; the API allows 1000).
	MaxEndpointsPerSlice int
	// TriggerTime goes into the endpoints.kubernetes.io/last-change-trigger-time
	// annotation of the slices written; zero removes it from them.
	TriggerTime time.Time
}

// Plan is the writes that bring a Service's slices to the desired state. Apply the
// creates and updates before the deletes so that a moved endpoint is briefly in
// two slices rather than in none.
type Plan struct {
	Create []*discoveryv1.EndpointSlice // GenerateName set, no Name
	Update []*discoveryv1.EndpointSlice // full objects with the ResourceVersion read
	Delete []*discoveryv1.EndpointSlice // as read
}

// Writes is the number of API writes of p.
func (p Plan) Writes() int { return len(p.Create) + len(p.Update) + len(p.Delete) }

// Compute is Desired followed by ComputePlan.
func Compute(svc *Service, pods []Pod, zones map[string]string, existing []*discoveryv1.EndpointSlice, opt Options) (plan Plan, missingNodes []string) {
	groups, missing := Desired(svc, pods, zones)
	return ComputePlan(svc, groups, existing, opt), missing
}

// ComputePlan diffs the desired groups against existing, the slices of svc managed
// by us (as read, never modified). To keep writes few:
//   - an endpoint stays in the slice it is in; changed endpoints are updated in place;
//   - new endpoints go first into slices written anyway (fullest first), then into
//     the unchanged slice they fit best if they fit in one, then into new slices;
//   - a slice left empty is reused for a slice that would be created (same address
//     type), else deleted;
//   - slices are compacted only when a group spreads over more than 4/3 of the
//     slices it needs, so that a pod coming and going at a boundary costs one write.
//
// Each address type of svc without any endpoint keeps one empty placeholder slice,
// as upstream. Slices not owned by svc's UID or of an address type svc no longer
// has are deleted; slices being deleted are ignored. existing must not contain
// another Service's slices.
func ComputePlan(svc *Service, groups []Group, existing []*discoveryv1.EndpointSlice, opt Options) Plan {
	max := opt.MaxEndpointsPerSlice
	if max <= 0 {
		max = DefaultMaxEndpointsPerSlice
	}
	b := planner{svc: svc, max: max, labels: sliceLabels(svc), trigger: opt.TriggerTime}

	existing = slices.Clone(existing)
	slices.SortFunc(existing, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	byKey := map[discoveryv1.AddressType]map[string][]*discoveryv1.EndpointSlice{}
	for _, t := range svc.AddressTypes {
		byKey[t] = map[string][]*discoveryv1.EndpointSlice{}
	}
	for _, s := range existing {
		if s.DeletionTimestamp != nil {
			continue
		}
		m, ok := byKey[s.AddressType]
		if !ok || !ownedBy(s, svc) {
			b.plan.Delete = append(b.plan.Delete, s)
			continue
		}
		k := portKey(s.Ports)
		m[k] = append(m[k], s)
	}

	for _, t := range svc.AddressTypes {
		var tg []Group
		for _, g := range groups {
			if g.AddressType == t && len(g.Endpoints) > 0 {
				tg = append(tg, g)
			}
		}
		placeholder := len(tg) == 0
		if placeholder {
			tg = []Group{{AddressType: t, Ports: []discoveryv1.EndpointPort{}}}
		}
		for _, g := range tg {
			b.group(byKey[t][g.key], g, placeholder)
			delete(byKey[t], g.key)
		}
		for _, k := range slices.Sorted(maps.Keys(byKey[t])) {
			b.spare = append(b.spare, byKey[t][k]...)
		}
	}
	b.reuseSpare()
	return b.plan
}

type planner struct {
	svc     *Service
	max     int
	labels  map[string]string
	trigger time.Time
	plan    Plan
	spare   []*discoveryv1.EndpointSlice // ours, to delete unless reused
	// creates carry their group so that a spare slice can take them over.
	creates []*discoveryv1.EndpointSlice
}

// slot is one slice of a group being planned: its endpoints as indices into the
// group's endpoints.
type slot struct {
	orig    *discoveryv1.EndpointSlice // nil for a new slice
	idx     []int
	changed bool // endpoints differ from orig's
}

func (b *planner) group(existing []*discoveryv1.EndpointSlice, g Group, placeholder bool) {
	want := make(map[string]int, len(g.Endpoints))
	for i := range g.Endpoints {
		want[g.Endpoints[i].TargetRef.Name] = i
	}
	placed := make([]bool, len(g.Endpoints))
	slots := make([]*slot, 0, len(existing)+1)

	// 1. Keep desired endpoints where they are.
	for _, s := range existing {
		sl := &slot{orig: s, idx: make([]int, 0, len(s.Endpoints))}
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			if e.TargetRef == nil {
				sl.changed = true
				continue
			}
			j, ok := want[e.TargetRef.Name]
			if !ok || placed[j] || len(sl.idx) == b.max {
				sl.changed = true
				continue
			}
			placed[j] = true
			sl.idx = append(sl.idx, j)
			if !endpointEqual(e, &g.Endpoints[j]) {
				sl.changed = true
			}
		}
		slots = append(slots, sl)
	}
	var left []int
	for j, ok := range placed {
		if !ok {
			left = append(left, j)
		}
	}

	// 2. Fill slices written anyway, fullest first.
	if len(left) > 0 {
		var written []*slot
		for _, sl := range slots {
			if sl.changed && len(sl.idx) < b.max {
				written = append(written, sl)
			}
		}
		slices.SortStableFunc(written, func(a, b *slot) int { return cmp.Compare(len(b.idx), len(a.idx)) })
		for _, sl := range written {
			n := min(b.max-len(sl.idx), len(left))
			sl.idx, left = append(sl.idx, left[:n]...), left[n:]
		}
	}
	// 3. The rest into the unchanged slice they fit best, or new slices.
	for len(left) > 0 {
		var best *slot
		if len(left) < b.max {
			for _, sl := range slots {
				if !sl.changed && len(sl.idx)+len(left) <= b.max && (best == nil || len(sl.idx) > len(best.idx)) {
					best = sl
				}
			}
		}
		if best == nil {
			best = &slot{changed: true}
			slots = append(slots, best)
		}
		best.changed = true
		n := min(b.max-len(best.idx), len(left))
		best.idx, left = append(best.idx, left[:n]...), left[n:]
	}

	b.compact(slots, len(g.Endpoints))

	if placeholder {
		if len(slots) == 0 {
			slots = append(slots, &slot{changed: true})
		}
		if s := slots[0]; s.orig != nil && (len(s.orig.Endpoints) > 0 || len(s.orig.Ports) > 0) {
			s.changed = true
		}
	}
	for i, sl := range slots {
		switch {
		case placeholder && i == 0 && sl.orig == nil:
			b.creates = append(b.creates, b.newSlice(g, nil))
		case placeholder && i == 0:
			if sl.changed || !maps.Equal(sl.orig.Labels, b.labels) {
				b.plan.Update = append(b.plan.Update, b.updated(sl.orig, g, nil))
			}
		case len(sl.idx) == 0:
			if sl.orig != nil {
				b.spare = append(b.spare, sl.orig)
			}
		case sl.orig == nil:
			b.creates = append(b.creates, b.newSlice(g, sl.idx))
		case sl.changed || !maps.Equal(sl.orig.Labels, b.labels):
			b.plan.Update = append(b.plan.Update, b.updated(sl.orig, g, sl.idx))
		}
	}
}

// compact drains the smallest slices of a fragmented group into the others.
func (b *planner) compact(slots []*slot, total int) {
	need := (total + b.max - 1) / b.max
	loose := (total*4 + b.max*3 - 1) / (b.max * 3) // ceil(total / (0.75 max))
	var full []*slot
	for _, sl := range slots {
		if len(sl.idx) > 0 {
			full = append(full, sl)
		}
	}
	if len(full) <= loose {
		return
	}
	// Drain the smallest; among equals a new slice (not creating it saves a write),
	// then an unchanged one (a kept slice written anyway takes endpoints for free),
	// then the later name.
	slices.SortStableFunc(full, func(x, y *slot) int {
		if c := cmp.Compare(len(x.idx), len(y.idx)); c != 0 {
			return c
		}
		if c := cmp.Compare(boolInt(x.orig != nil), boolInt(y.orig != nil)); c != 0 {
			return c
		}
		if c := cmp.Compare(boolInt(x.changed), boolInt(y.changed)); c != 0 {
			return c
		}
		if x.orig == nil {
			return 0
		}
		return strings.Compare(y.orig.Name, x.orig.Name)
	})
	// The rest can take the surplus: len(rest) >= need and need*max >= total.
	victims, rest := full[:len(full)-need], full[len(full)-need:]
	var move []int
	for _, v := range victims {
		move = append(move, v.idx...)
		v.idx, v.changed = nil, true
	}
	// Receivers: slices written anyway first, then the fullest.
	slices.SortStableFunc(rest, func(x, y *slot) int {
		if c := cmp.Compare(boolInt(y.changed), boolInt(x.changed)); c != 0 {
			return c
		}
		return cmp.Compare(len(y.idx), len(x.idx))
	})
	for _, sl := range rest {
		n := min(b.max-len(sl.idx), len(move))
		if n == 0 {
			continue
		}
		sl.idx, move = append(sl.idx, move[:n]...), move[n:]
		sl.changed = true
	}
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// reuseSpare turns a create plus a delete of the same address type into one update.
func (b *planner) reuseSpare() {
	for _, c := range b.creates {
		i := slices.IndexFunc(b.spare, func(s *discoveryv1.EndpointSlice) bool { return s.AddressType == c.AddressType })
		if i < 0 {
			b.plan.Create = append(b.plan.Create, c)
			continue
		}
		old := b.spare[i]
		b.spare = slices.Delete(b.spare, i, i+1)
		c.Name, c.GenerateName, c.ResourceVersion, c.UID = old.Name, "", old.ResourceVersion, old.UID
		b.plan.Update = append(b.plan.Update, c)
	}
	b.plan.Delete = append(b.plan.Delete, b.spare...)
}

func (b *planner) endpoints(g Group, idx []int) []discoveryv1.Endpoint {
	out := make([]discoveryv1.Endpoint, len(idx))
	for i, j := range idx {
		out[i] = g.Endpoints[j]
	}
	return out
}

func (b *planner) newSlice(g Group, idx []int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: b.svc.Name + "-",
			Namespace:    b.svc.Namespace,
			Labels:       maps.Clone(b.labels),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: b.svc.Name, UID: b.svc.UID,
				Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true),
			}},
		},
		AddressType: g.AddressType,
		Ports:       g.Ports,
		Endpoints:   b.endpoints(g, idx),
	}
	s.Annotations = b.annotations(nil)
	return s
}

func (b *planner) updated(orig *discoveryv1.EndpointSlice, g Group, idx []int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		TypeMeta:    orig.TypeMeta,
		ObjectMeta:  *orig.ObjectMeta.DeepCopy(),
		AddressType: orig.AddressType,
		Ports:       g.Ports,
		Endpoints:   b.endpoints(g, idx),
	}
	s.Labels = maps.Clone(b.labels)
	s.Annotations = b.annotations(orig.Annotations)
	return s
}

func (b *planner) annotations(old map[string]string) map[string]string {
	a := maps.Clone(old)
	if a == nil {
		a = map[string]string{}
	}
	if b.trigger.IsZero() {
		delete(a, corev1.EndpointsLastChangeTriggerTime)
	} else {
		a[corev1.EndpointsLastChangeTriggerTime] = b.trigger.UTC().Format(time.RFC3339Nano)
	}
	return a
}

// sliceLabels are the Service's labels but the reserved ones, plus ours.
func sliceLabels(svc *Service) map[string]string {
	l := make(map[string]string, len(svc.Labels)+3)
	for k, v := range svc.Labels {
		if k != discoveryv1.LabelServiceName && k != discoveryv1.LabelManagedBy && k != corev1.IsHeadlessService {
			l[k] = v
		}
	}
	if svc.Headless {
		l[corev1.IsHeadlessService] = ""
	}
	l[discoveryv1.LabelServiceName] = svc.Name
	l[discoveryv1.LabelManagedBy] = ManagedBy
	return l
}

func ownedBy(s *discoveryv1.EndpointSlice, svc *Service) bool {
	for _, o := range s.OwnerReferences {
		if o.UID == svc.UID && o.Kind == "Service" && o.APIVersion == "v1" {
			return true
		}
	}
	return false
}

func endpointEqual(a, b *discoveryv1.Endpoint) bool {
	return slices.Equal(a.Addresses, b.Addresses) &&
		ptrEqual(a.Conditions.Ready, b.Conditions.Ready) &&
		ptrEqual(a.Conditions.Serving, b.Conditions.Serving) &&
		ptrEqual(a.Conditions.Terminating, b.Conditions.Terminating) &&
		ptrEqual(a.Hostname, b.Hostname) &&
		ptrEqual(a.NodeName, b.NodeName) &&
		ptrEqual(a.Zone, b.Zone) &&
		ptrEqual(a.TargetRef, b.TargetRef) &&
		hintsEqual(a.Hints, b.Hints) &&
		len(a.DeprecatedTopology) == 0 && len(b.DeprecatedTopology) == 0
}

func ptrEqual[T comparable](a, b *T) bool {
	return a == b || a != nil && b != nil && *a == *b
}

func hintsEqual(a, b *discoveryv1.EndpointHints) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.ForZones, b.ForZones) && slices.Equal(a.ForNodes, b.ForNodes)
}
