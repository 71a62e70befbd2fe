package zone

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Store holds the model and publishes an immutable Snapshot after every change. Writers are serialized; readers
// call Snapshot() and never block.
type Store struct {
	cfg Config

	mu         sync.Mutex
	services   map[string]*Service        // by ns/name
	endpoints  map[string][]EndpointGroup // by ns/name; may arrive before the service
	namespaces map[string]bool            // explicitly known namespaces
	names      map[string]*owner          // owner name -> what the sources contribute there
	sources    map[string][]string        // source -> owner names it contributes
	gen        uint64
	serial     uint32

	cur    atomic.Pointer[Snapshot]
	synced atomic.Bool
}

// NewStore validates cfg and returns a store whose first snapshot holds only the zone's own records.
func NewStore(cfg Config) (*Store, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:        c,
		services:   map[string]*Service{},
		endpoints:  map[string][]EndpointGroup{},
		namespaces: map[string]bool{},
		names:      map[string]*owner{},
		sources:    map[string][]string{},
	}
	s.Update(func(tx *Tx) { tx.setSource("zone", s.cfg.staticRecords()) })
	return s, nil
}

// Config returns the normalized configuration (Domain lowercased and fully qualified).
func (s *Store) Config() Config { return s.cfg }

// Snapshot returns the current snapshot. It is never nil.
func (s *Store) Snapshot() *Snapshot { return s.cur.Load() }

// MarkSynced records that the source has delivered its initial state; the server is not ready before.
func (s *Store) MarkSynced() { s.synced.Store(true) }

// Synced reports whether MarkSynced was called.
func (s *Store) Synced() bool { return s.synced.Load() }

// Tx batches changes; the snapshot is published once when Update's function returns.
type Tx struct {
	s      *Store
	shards [nShards]map[string]*node
	copied [nShards]bool
	dirty  bool
	// touched names are rebuilt once when the transaction ends: names every service
	// shares (svc.<zone>, reverse-zone parents) have a source per service, so
	// rebuilding them per change would make a batch quadratic.
	touched map[string]bool
}

// Update runs fn with a transaction and publishes the result.
func (s *Store) Update(fn func(tx *Tx)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx := &Tx{s: s, touched: map[string]bool{}}
	if cur := s.cur.Load(); cur != nil {
		tx.shards = cur.shards
	}
	fn(tx)
	for n := range tx.touched {
		tx.rebuild(n)
	}
	if !tx.dirty && s.cur.Load() != nil {
		return
	}
	for i := range tx.shards {
		if tx.shards[i] == nil {
			tx.shards[i] = map[string]*node{}
		}
	}
	s.gen++
	s.serial = max(s.serial+1, uint32(time.Now().Unix()))
	s.cur.Store(newSnapshot(&s.cfg, tx.shards, s.gen, s.serial))
}

// SetService adds or replaces a service. An invalid service is rejected with an error and changes nothing.
func (tx *Tx) SetService(svc Service) error {
	if err := svc.validate(); err != nil {
		return fmt.Errorf("zone: service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	svc.ClusterIPs = slices.Clone(svc.ClusterIPs)
	svc.Ports = slices.Clone(svc.Ports)
	k := svc.key()
	tx.s.services[k] = &svc
	tx.refresh(k)
	return nil
}

// DeleteService removes a service; its endpoints are kept until DeleteEndpoints (slices may outlive it briefly).
func (tx *Tx) DeleteService(namespace, name string) {
	k := strings.ToLower(namespace + "/" + name)
	delete(tx.s.services, k)
	tx.refresh(k)
}

// SetEndpoints replaces all endpoint groups of a service.
func (tx *Tx) SetEndpoints(namespace, name string, groups []EndpointGroup) error {
	for _, g := range groups {
		for _, p := range g.Ports {
			if err := p.validate(); err != nil {
				return fmt.Errorf("zone: endpoints %s/%s: %w", namespace, name, err)
			}
		}
		for _, e := range g.Endpoints {
			if e.Hostname != "" {
				if err := checkLabel(e.Hostname); err != nil {
					return fmt.Errorf("zone: endpoints %s/%s: hostname %q: %w", namespace, name, e.Hostname, err)
				}
			}
		}
	}
	k := strings.ToLower(namespace + "/" + name)
	if len(groups) == 0 {
		delete(tx.s.endpoints, k)
	} else {
		tx.s.endpoints[k] = groups
	}
	tx.refresh(k)
	return nil
}

// SetNamespace makes a namespace exist even without services.
func (tx *Tx) SetNamespace(name string) error {
	if err := checkLabel(name); err != nil {
		return fmt.Errorf("zone: namespace %q: %w", name, err)
	}
	n := strings.ToLower(name)
	tx.s.namespaces[n] = true
	r := records{}
	tx.s.cfg.namespaceRecords(r, n)
	tx.s.cfg.addAncestors(r)
	tx.setSource("ns:"+n, r)
	return nil
}

// DeleteNamespace forgets a namespace; it still exists while services in it do.
func (tx *Tx) DeleteNamespace(name string) {
	n := strings.ToLower(name)
	delete(tx.s.namespaces, n)
	tx.setSource("ns:"+n, nil)
}

func (tx *Tx) refresh(k string) {
	svc := tx.s.services[k]
	if svc == nil {
		tx.setSource("svc:"+k, nil)
		return
	}
	tx.setSource("svc:"+k, tx.s.cfg.serviceRecords(svc, tx.s.endpoints[k]))
}

// owner is what the sources contribute at one name. Most names have one source with
// records; the names every service of a namespace shares (<ns>.svc.<zone>) only need to
// exist, so those contributions are counted instead of kept one per service: a map per
// name and an entry per service cost 10k-service zones tens of MB.
type owner struct {
	srcs []sourceRRs // sources with records, sorted by source
	ents int         // sources that only make the name exist
}

type sourceRRs struct {
	src string
	rrs []dns.RR
}

func (o *owner) find(src string) (int, bool) {
	return slices.BinarySearchFunc(o.srcs, src, func(e sourceRRs, src string) int { return strings.Compare(e.src, src) })
}

func (o *owner) add(src string, rrs []dns.RR) {
	if len(rrs) == 0 {
		o.ents++
		return
	}
	i, _ := o.find(src)
	o.srcs = slices.Insert(o.srcs, i, sourceRRs{src, rrs})
}

// remove takes back src's contribution (records, or existence only).
func (o *owner) remove(src string) {
	if i, ok := o.find(src); ok {
		o.srcs = slices.Delete(o.srcs, i, i+1)
		return
	}
	o.ents--
}

func (o *owner) empty() bool { return len(o.srcs) == 0 && o.ents <= 0 }

// setSource replaces everything one source contributes and marks the names it touched.
func (tx *Tx) setSource(src string, r records) {
	s := tx.s
	for _, n := range s.sources[src] {
		o := s.names[n]
		o.remove(src)
		if o.empty() {
			delete(s.names, n)
		}
		tx.touched[n] = true
	}
	for n, rrs := range r {
		o := s.names[n]
		if o == nil {
			o = &owner{}
			s.names[n] = o
		}
		o.add(src, rrs)
		tx.touched[n] = true
	}
	if len(r) == 0 {
		delete(s.sources, src)
	} else {
		s.sources[src] = slices.Collect(maps.Keys(r))
	}
}

func (tx *Tx) shard(i int) map[string]*node {
	if !tx.copied[i] {
		tx.shards[i] = maps.Clone(tx.shards[i])
		if tx.shards[i] == nil {
			tx.shards[i] = map[string]*node{}
		}
		tx.copied[i] = true
	}
	return tx.shards[i]
}

func (tx *Tx) rebuild(name string) {
	tx.dirty = true
	sh := tx.shard(int(hashString(name) % nShards))
	o := tx.s.names[name]
	if o == nil {
		delete(sh, name)
		return
	}
	n := &node{name: name, apex: tx.s.cfg.apexOf(name)}
	for _, e := range o.srcs {
	next:
		for _, rr := range e.rrs {
			t := rr.Header().Rrtype
			for i := range n.sets {
				if n.sets[i].typ == t {
					for _, have := range n.sets[i].rrs {
						if dns.IsDuplicate(have, rr) {
							continue next
						}
					}
					n.sets[i].rrs = append(n.sets[i].rrs, rr)
					continue next
				}
			}
			n.sets = append(n.sets, rrset{typ: t, rrs: []dns.RR{rr}})
		}
	}
	sh[name] = n
}
