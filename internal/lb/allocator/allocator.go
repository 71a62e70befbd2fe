package allocator

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"

	"edgenet.io/edgenet/internal/computenet"
)

// Allocator assigns LoadBalancer addresses from pools. The zero value is not
// usable; call New.
type Allocator struct {
	mu       sync.Mutex
	pools    []*pool // in auto-assign order
	byName   map[string]*pool
	services map[string]*record
	ips      map[netip.Addr]*ipUse
	used     [2]addrSet // by familyIndex
	poolUsed map[string]*[2]uint64
	shared   map[string]map[netip.Addr]struct{} // sharing key -> addresses
}

type pool struct {
	Pool
	pinned   bool
	capacity [2]uint64 // by familyIndex, saturating
}

// record is what a Service holds and the terms it holds it on.
type record struct {
	key           string
	ips           []netip.Addr
	ports         []Port
	sharingKey    string
	backend       string
	requestedPool string
}

// ipUse is one used address. All its users have the same sharing key and backend.
type ipUse struct {
	users   []string // sorted
	key     string
	backend string
	ports   map[Port]string // -> user
	pool    string          // "" when outside every pool
}

// New returns an Allocator with no pools.
func New() *Allocator {
	return &Allocator{
		byName:   map[string]*pool{},
		services: map[string]*record{},
		ips:      map[netip.Addr]*ipUse{},
		poolUsed: map[string]*[2]uint64{},
		shared:   map[string]map[netip.Addr]struct{}{},
	}
}

func familyIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// SetPools replaces the pool configuration. Invalid configuration (empty or
// duplicate names, invalid or overlapping ranges, bad selectors) is refused
// whole and changes nothing. No assignment is ever moved or dropped: addresses
// that end up outside every pool stay assigned and are listed as orphans.
func (a *Allocator) SetPools(pools []Pool) (PoolReport, error) {
	ps, err := buildPools(pools)
	if err != nil {
		return PoolReport{}, fmt.Errorf("allocator: set pools: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()

	var rep PoolReport
	newByName := make(map[string]*pool, len(ps))
	for _, p := range ps {
		newByName[p.Name] = p
		old, ok := a.byName[p.Name]
		switch {
		case !ok:
			rep.Added = append(rep.Added, p.Name)
		case !reflect.DeepEqual(old.Pool, p.Pool):
			rep.Changed = append(rep.Changed, p.Name)
		}
	}
	for name := range a.byName {
		if newByName[name] == nil {
			rep.Removed = append(rep.Removed, name)
		}
	}
	a.pools, a.byName = ps, newByName
	a.poolUsed = map[string]*[2]uint64{}
	for _, p := range ps {
		a.poolUsed[p.Name] = &[2]uint64{}
	}
	for addr, u := range a.ips {
		old := u.pool
		u.pool = ""
		if p := a.poolFor(addr); p != nil {
			u.pool = p.Name
			a.poolUsed[p.Name][familyIndex(addr)]++
		}
		switch {
		case old != "" && u.pool == "":
			for _, svc := range u.users {
				rep.Orphaned = append(rep.Orphaned, Orphan{Service: svc, Addr: addr, Pool: old})
			}
		case old == "" && u.pool != "":
			for _, svc := range u.users {
				rep.Readopted = append(rep.Readopted, Orphan{Service: svc, Addr: addr, Pool: u.pool})
			}
		}
	}
	slices.Sort(rep.Added)
	slices.Sort(rep.Removed)
	slices.Sort(rep.Changed)
	slices.SortFunc(rep.Orphaned, compareOrphans)
	slices.SortFunc(rep.Readopted, compareOrphans)
	return rep, nil
}

func compareOrphans(x, y Orphan) int {
	return cmp.Or(strings.Compare(x.Service, y.Service), x.Addr.Compare(y.Addr))
}

func buildPools(in []Pool) ([]*pool, error) {
	var errs []error
	seen := map[string]bool{}
	type owned struct {
		r    computenet.Range
		pool string
	}
	var all []owned
	out := make([]*pool, 0, len(in))
	for i, p := range in {
		name := p.Name
		if name == "" {
			errs = append(errs, fmt.Errorf("pool %d: empty name", i))
			name = fmt.Sprintf("#%d", i)
		} else if seen[name] {
			errs = append(errs, fmt.Errorf("pool %q: name used twice", name))
		}
		seen[name] = true
		if len(p.Ranges) == 0 {
			errs = append(errs, fmt.Errorf("pool %q: no address ranges", name))
		}
		for j, r := range p.Ranges {
			if !r.IsValid() {
				errs = append(errs, fmt.Errorf("pool %q: range %d %q is not a valid range", name, j, r))
				continue
			}
			if r.From.Is4In6() || r.To.Is4In6() {
				errs = append(errs, fmt.Errorf("pool %q: range %s is IPv4-mapped IPv6; write it as IPv4", name, r))
				continue
			}
			all = append(all, owned{r, name})
		}
		if err := p.NamespaceSelector.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("pool %q: namespace selector: %w", name, err))
		}
		if err := p.ServiceSelector.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("pool %q: service selector: %w", name, err))
		}
		cp := p
		cp.Ranges = slices.Clone(p.Ranges)
		slices.SortFunc(cp.Ranges, func(x, y computenet.Range) int { return x.From.Compare(y.From) })
		out = append(out, &pool{
			Pool:     cp,
			pinned:   !p.NamespaceSelector.IsEmpty() || !p.ServiceSelector.IsEmpty(),
			capacity: capacity(cp),
		})
	}
	// netip orders IPv4 before IPv6, so sorting by From puts any overlap next to each other.
	slices.SortFunc(all, func(x, y owned) int { return x.r.From.Compare(y.r.From) })
	for i := 1; i < len(all); i++ {
		if all[i-1].r.Overlaps(all[i].r) {
			errs = append(errs, fmt.Errorf("range %s of pool %q overlaps range %s of pool %q",
				all[i-1].r, all[i-1].pool, all[i].r, all[i].pool))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(out, func(x, y *pool) int {
		if x.Priority != y.Priority {
			return cmp.Compare(y.Priority, x.Priority)
		}
		if x.pinned != y.pinned {
			if x.pinned {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Name, y.Name)
	})
	return out, nil
}

// capacity is the number of assignable addresses of p per family, saturating.
func capacity(p Pool) [2]uint64 {
	var total [2]uint64
	for _, r := range p.Ranges {
		n := r.Size()
		if p.AvoidBuggyIPs && r.From.Is4() {
			n -= buggyCount(r.From, r.To)
		}
		total[familyIndex(r.From)] = addSat(total[familyIndex(r.From)], n)
	}
	return total
}

func addSat(x, y uint64) uint64 {
	if s := x + y; s >= x {
		return s
	}
	return math.MaxUint64
}

// poolFor returns the pool that owns addr, or nil.
func (a *Allocator) poolFor(addr netip.Addr) *pool {
	for _, p := range a.pools {
		if p.AvoidBuggyIPs && addr.Is4() && buggy(toU128(addr)) {
			continue
		}
		for _, r := range p.Ranges {
			if r.Contains(addr) {
				return p
			}
		}
	}
	return nil
}

// Assign gives svc its addresses, or says why it cannot. It is idempotent: a
// Service that already holds addresses keeps them while it still wants their
// families, its sharing terms still hold, and it does not name another pool or
// other addresses. Missing families (a PreferDualStack Service that got one, or
// a Service whose families grew) are filled in. On error nothing changes.
func (a *Allocator) Assign(svc Service) (Assignment, error) {
	s, err := normalize(svc)
	if err != nil {
		return Assignment{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ips, err := a.plan(&s)
	if err != nil {
		return Assignment{}, err
	}
	a.commit(&s, ips)
	return a.assignment(s.Key), nil
}

// Restore records that svc holds ips, as its status says, without choosing:
// the controller calls it for every Service with addresses before assigning
// any, so a restart moves nothing. Addresses outside every pool, or in pools the
// Service could no longer pick, are accepted (they are what it holds); conflicts
// with addresses already restored for other Services are not.
func (a *Allocator) Restore(svc Service, ips []netip.Addr) (Assignment, error) {
	// What the Service asks for now is for Assign to act on; a bad request
	// must not stop the replay of what it holds.
	svc.Requested = nil
	s, err := normalize(svc)
	if err != nil {
		return Assignment{}, err
	}
	if err := checkAddrs(s.Key, "restored", ips); err != nil {
		return Assignment{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ip := range ips {
		if err := a.checkShare(&s, ip, true); err != nil {
			return Assignment{}, err
		}
	}
	a.commit(&s, s.order(slices.Clone(ips)))
	return a.assignment(s.Key), nil
}

// Release frees svc's addresses; it reports whether svc held any.
func (a *Allocator) Release(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := a.services[key]
	if rec == nil {
		return false
	}
	a.drop(rec)
	return true
}

// Get returns the addresses svc holds.
func (a *Allocator) Get(key string) (Assignment, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.services[key] == nil {
		return Assignment{}, false
	}
	return a.assignment(key), true
}

// Assignments returns every assignment, sorted by Service key.
func (a *Allocator) Assignments() []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys := slices.Sorted(maps.Keys(a.services))
	out := make([]Assignment, len(keys))
	for i, k := range keys {
		out[i] = a.assignment(k)
	}
	return out
}

// Orphans returns the assigned addresses that lie outside every pool.
func (a *Allocator) Orphans() []Orphan {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Orphan
	for addr, u := range a.ips {
		if u.pool == "" {
			for _, svc := range u.users {
				out = append(out, Orphan{Service: svc, Addr: addr})
			}
		}
	}
	slices.SortFunc(out, compareOrphans)
	return out
}

// Usage returns how many addresses of the named pool are in use and how many
// are free, both families together (free saturates at MaxUint64 for huge IPv6
// pools). A shared address counts once; an orphan not at all. An unknown pool
// has neither.
func (a *Allocator) Usage(name string) (used, free uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.byName[name]
	if p == nil {
		return 0, 0
	}
	u4, f4 := a.usageLocked(p, IPv4)
	u6, f6 := a.usageLocked(p, IPv6)
	return u4 + u6, addSat(f4, f6)
}

// FamilyUsage is Usage for one family.
func (a *Allocator) FamilyUsage(name string, f Family) (used, free uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.byName[name]
	if p == nil || (f != IPv4 && f != IPv6) {
		return 0, 0
	}
	return a.usageLocked(p, f)
}

func (a *Allocator) usageLocked(p *pool, f Family) (used, free uint64) {
	i := 0
	if f == IPv6 {
		i = 1
	}
	used = a.poolUsed[p.Name][i]
	if p.capacity[i] == math.MaxUint64 {
		return used, math.MaxUint64
	}
	return used, p.capacity[i] - used
}

func (a *Allocator) assignment(key string) Assignment {
	rec := a.services[key]
	out := Assignment{Service: key, IPs: make([]AssignedIP, len(rec.ips))}
	for i, ip := range rec.ips {
		out.IPs[i] = AssignedIP{Addr: ip, Pool: a.ips[ip].pool}
	}
	return out
}

// commit replaces whatever s held with ips; the caller has checked them.
func (a *Allocator) commit(s *Service, ips []netip.Addr) {
	if old := a.services[s.Key]; old != nil {
		a.drop(old)
	}
	rec := &record{
		key:           s.Key,
		ips:           ips,
		ports:         s.Ports,
		sharingKey:    s.SharingKey,
		backend:       s.Backend,
		requestedPool: s.RequestedPool,
	}
	a.services[s.Key] = rec
	for _, ip := range ips {
		u := a.ips[ip]
		if u == nil {
			u = &ipUse{ports: map[Port]string{}}
			if p := a.poolFor(ip); p != nil {
				u.pool = p.Name
				a.poolUsed[p.Name][familyIndex(ip)]++
			}
			a.ips[ip] = u
			a.used[familyIndex(ip)].insert(toU128(ip))
		}
		u.key, u.backend = s.SharingKey, s.Backend
		i, _ := slices.BinarySearch(u.users, s.Key)
		u.users = slices.Insert(u.users, i, s.Key)
		for _, p := range s.Ports {
			u.ports[p] = s.Key
		}
		if u.key != "" {
			if a.shared[u.key] == nil {
				a.shared[u.key] = map[netip.Addr]struct{}{}
			}
			a.shared[u.key][ip] = struct{}{}
		}
	}
}

func (a *Allocator) drop(rec *record) {
	delete(a.services, rec.key)
	for _, ip := range rec.ips {
		u := a.ips[ip]
		if i, found := slices.BinarySearch(u.users, rec.key); found {
			u.users = slices.Delete(u.users, i, i+1)
		}
		for _, p := range rec.ports {
			if u.ports[p] == rec.key {
				delete(u.ports, p)
			}
		}
		if len(u.users) > 0 {
			continue
		}
		delete(a.ips, ip)
		a.used[familyIndex(ip)].remove(toU128(ip))
		if u.pool != "" {
			a.poolUsed[u.pool][familyIndex(ip)]--
		}
		if u.key != "" {
			delete(a.shared[u.key], ip)
			if len(a.shared[u.key]) == 0 {
				delete(a.shared, u.key)
			}
		}
	}
}

// plan computes the addresses s should hold, without changing anything.
func (a *Allocator) plan(s *Service) ([]netip.Addr, error) {
	rec := a.services[s.Key]
	holds := func(ip netip.Addr) bool { return rec != nil && slices.Contains(rec.ips, ip) }

	if len(s.Requested) > 0 {
		for _, ip := range s.Requested {
			if !holds(ip) {
				if err := a.checkRequested(s, ip); err != nil {
					return nil, err
				}
			}
			if err := a.checkShare(s, ip, true); err != nil {
				return nil, err
			}
		}
		return s.order(slices.Clone(s.Requested)), nil
	}

	var keep []netip.Addr
	if rec != nil {
		for _, ip := range rec.ips {
			if !slices.Contains(s.Families, FamilyOf(ip)) {
				continue
			}
			// A new edgenet.io/address-pool moves the Service; a pool edit does not.
			if s.RequestedPool != "" && s.RequestedPool != rec.requestedPool && a.ips[ip].pool != s.RequestedPool {
				continue
			}
			if err := a.checkShare(s, ip, false); err != nil {
				return nil, err
			}
			keep = append(keep, ip)
		}
	}
	var missing []Family
	for _, f := range s.Families {
		if !slices.ContainsFunc(keep, func(ip netip.Addr) bool { return FamilyOf(ip) == f }) {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return s.order(keep), nil
	}
	got, err := a.allocate(s, missing, keep)
	if err != nil && (s.Policy != PreferDualStack || len(keep)+len(got) == 0) {
		return nil, err
	}
	return s.order(append(keep, got...)), nil
}

// allocate picks one address per missing family. It returns what it found and
// an error for what it did not find.
func (a *Allocator) allocate(s *Service, missing []Family, keep []netip.Addr) ([]netip.Addr, error) {
	cands, err := a.candidatePools(s)
	if err != nil {
		return nil, err
	}
	// Prefer the pools the Service already draws from, so dual-stack halves
	// stay together.
	var first []*pool
	for _, ip := range keep {
		if p := a.byName[a.ips[ip].pool]; p != nil && slices.Contains(cands, p) && !slices.Contains(first, p) {
			first = append(first, p)
		}
	}
	if len(first) > 0 {
		rest := slices.DeleteFunc(slices.Clone(cands), func(p *pool) bool { return slices.Contains(first, p) })
		cands = append(first, rest...)
	}

	if len(missing) > 1 {
		for _, p := range cands {
			var got []netip.Addr
			for _, f := range missing {
				if ip, ok := a.pick(s, p, f); ok {
					got = append(got, ip)
				}
			}
			if len(got) == len(missing) {
				return got, nil
			}
		}
	}
	var got []netip.Addr
	var errs []*Error
	for _, f := range missing {
		found := false
		for _, p := range cands {
			if ip, ok := a.pick(s, p, f); ok {
				got = append(got, ip)
				found = true
				break
			}
		}
		if !found {
			errs = append(errs, a.familyError(s, f, cands))
		}
	}
	if len(errs) == 0 {
		return got, nil
	}
	// Prefer the error the user can act on by freeing addresses.
	for _, e := range errs {
		if e.Reason == ReasonPoolExhausted {
			return got, e
		}
	}
	return got, errs[0]
}

func (a *Allocator) familyError(s *Service, f Family, cands []*pool) *Error {
	var full []string
	for _, p := range cands {
		if hasFamily(p, f) {
			used, free := a.usageLocked(p, f)
			full = append(full, fmt.Sprintf("%q (%d in use, %d free)", p.Name, used, free))
		}
	}
	if len(full) == 0 {
		names := make([]string, len(cands))
		for i, p := range cands {
			names[i] = fmt.Sprintf("%q", p.Name)
		}
		return s.errorf(ReasonFamilyUnavailable, "no %s address: the address pools this Service may use (%s) have no %s range (ipFamilies %v, ipFamilyPolicy %s)",
			f, strings.Join(names, ", "), f, s.Families, s.Policy)
	}
	what := "pool"
	if len(full) > 1 {
		what = "pools"
	}
	msg := fmt.Sprintf("no free %s address in %s %s", f, what, strings.Join(full, ", "))
	if s.SharingKey != "" {
		msg += fmt.Sprintf(", and no address shared under %s %q accepts this Service's ports and backend", AnnotationAllowSharedIP, s.SharingKey)
	}
	return s.errorf(ReasonPoolExhausted, "%s", msg)
}

func hasFamily(p *pool, f Family) bool {
	return slices.ContainsFunc(p.Ranges, func(r computenet.Range) bool { return FamilyOf(r.From) == f })
}

// candidatePools returns the pools s may auto-assign from, best first.
func (a *Allocator) candidatePools(s *Service) ([]*pool, error) {
	if s.RequestedPool != "" {
		p := a.byName[s.RequestedPool]
		if p == nil {
			return nil, s.errorf(ReasonNoPoolForService, "pool %q named by %s does not exist", s.RequestedPool, AnnotationAddressPool)
		}
		if why := p.refuses(s); why != "" {
			return nil, s.errorf(ReasonNoPoolForService, "pool %q named by %s may not be used by this Service: %s", p.Name, AnnotationAddressPool, why)
		}
		return []*pool{p}, nil
	}
	if len(a.pools) == 0 {
		return nil, s.errorf(ReasonNoPoolForService, "no address pools are configured")
	}
	var cands []*pool
	var why []string
	for _, p := range a.pools {
		if !p.AutoAssign {
			why = append(why, fmt.Sprintf("pool %q gives addresses only on request (auto-assign off)", p.Name))
			continue
		}
		if w := p.refuses(s); w != "" {
			why = append(why, fmt.Sprintf("pool %q %s", p.Name, w))
			continue
		}
		cands = append(cands, p)
	}
	if len(cands) == 0 {
		return nil, s.errorf(ReasonNoPoolForService, "no address pool may be used by this Service: %s", strings.Join(why, "; "))
	}
	return cands, nil
}

// refuses returns why p does not admit s, or "".
func (p *pool) refuses(s *Service) string {
	if !p.NamespaceSelector.Matches(s.NamespaceLabels) {
		return fmt.Sprintf("admits only namespaces matching %s (namespace %q does not)", p.NamespaceSelector, s.Namespace)
	}
	if !p.ServiceSelector.Matches(s.Labels) {
		return fmt.Sprintf("admits only Services labelled %s", p.ServiceSelector)
	}
	return ""
}

// pick returns an address of family f from p for s: the lowest address already
// shared under s's key that accepts it, else the lowest free address.
func (a *Allocator) pick(s *Service, p *pool, f Family) (netip.Addr, bool) {
	if s.SharingKey != "" {
		group := slices.SortedFunc(maps.Keys(a.shared[s.SharingKey]), netip.Addr.Compare)
		for _, ip := range group {
			if FamilyOf(ip) == f && a.ips[ip].pool == p.Name && a.checkShare(s, ip, false) == nil {
				return ip, true
			}
		}
	}
	is4 := f == IPv4
	set := &a.used[0]
	if !is4 {
		set = &a.used[1]
	}
	for _, r := range p.Ranges {
		if FamilyOf(r.From) != f {
			continue
		}
		if u, ok := set.lowestFree(toU128(r.From), toU128(r.To), p.AvoidBuggyIPs && is4); ok {
			return u.addr(is4), true
		}
	}
	return netip.Addr{}, false
}

// checkRequested checks that s may be given the requested address ip.
func (a *Allocator) checkRequested(s *Service, ip netip.Addr) error {
	p := a.poolFor(ip)
	if p == nil {
		for _, q := range a.pools {
			if slices.ContainsFunc(q.Ranges, func(r computenet.Range) bool { return r.Contains(ip) }) {
				return s.errorf(ReasonRequestedIPOutsidePool, "requested address %s is not assignable: pool %q avoids addresses ending in .0 and .255", ip, q.Name)
			}
		}
		return s.errorf(ReasonRequestedIPOutsidePool, "requested address %s is not in any address pool", ip)
	}
	if s.RequestedPool != "" && p.Name != s.RequestedPool {
		return s.errorf(ReasonRequestedIPOutsidePool, "requested address %s is in pool %q, not in pool %q named by %s", ip, p.Name, s.RequestedPool, AnnotationAddressPool)
	}
	if why := p.refuses(s); why != "" {
		return s.errorf(ReasonNoPoolForService, "requested address %s is in pool %q, which this Service may not use: it %s", ip, p.Name, why)
	}
	return nil
}

// checkShare checks that s may hold ip alongside its other users. requested
// says whether s asked for ip by address (which changes the error kind when the
// address is simply someone else's).
func (a *Allocator) checkShare(s *Service, ip netip.Addr, requested bool) error {
	u := a.ips[ip]
	if u == nil {
		return nil
	}
	others := slices.DeleteFunc(slices.Clone(u.users), func(k string) bool { return k == s.Key })
	if len(others) == 0 {
		return nil // sole user: it may change its terms in place
	}
	who := strings.Join(others, ", ")
	switch {
	case u.key == "" && requested:
		return s.errorf(ReasonRequestedIPTaken, "requested address %s is in use by %s, which does not allow sharing it", ip, who)
	case s.SharingKey == "" && requested:
		return s.errorf(ReasonRequestedIPTaken, "requested address %s is in use by %s; to share it, set the same %s on this Service (theirs is %q)", ip, who, AnnotationAllowSharedIP, u.key)
	case s.SharingKey == "":
		return s.errorf(ReasonSharingConflict, "address %s is shared with %s under %s %q; this Service cannot drop the key while keeping the address", ip, who, AnnotationAllowSharedIP, u.key)
	case u.key != s.SharingKey:
		return s.errorf(ReasonSharingConflict, "address %s is shared by %s under %s %q, but this Service's key is %q", ip, who, AnnotationAllowSharedIP, u.key, s.SharingKey)
	case u.backend != s.Backend:
		return s.errorf(ReasonSharingConflict, "address %s is used by %s with backend %q, this Service has backend %q: Services sharing an address must have the same externalTrafficPolicy and, with Local, the same selector", ip, who, u.backend, s.Backend)
	}
	for _, p := range s.Ports {
		if owner, ok := u.ports[p]; ok && owner != s.Key {
			return s.errorf(ReasonSharingConflict, "port %s on %s is already used by %s", p, ip, owner)
		}
	}
	return nil
}

func (s *Service) errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Service: s.Key, Message: fmt.Sprintf(format, args...)}
}

// order sorts ips by the Service's family preference (families it does not
// want, which only Restore can bring, last).
func (s *Service) order(ips []netip.Addr) []netip.Addr {
	rank := func(ip netip.Addr) int {
		if i := slices.Index(s.Families, FamilyOf(ip)); i >= 0 {
			return i
		}
		return len(s.Families) + familyIndex(ip)
	}
	slices.SortStableFunc(ips, func(x, y netip.Addr) int { return cmp.Compare(rank(x), rank(y)) })
	return ips
}

// normalize validates svc and returns a private copy with defaults filled in.
func normalize(svc Service) (Service, error) {
	s := svc
	var problems []string
	if s.Key == "" {
		problems = append(problems, "empty key")
	}
	if s.Namespace == "" {
		s.Namespace, _, _ = strings.Cut(s.Key, "/")
	}
	switch s.Policy {
	case SingleStack, PreferDualStack, RequireDualStack:
	default:
		problems = append(problems, fmt.Sprintf("unknown ipFamilyPolicy %s", s.Policy))
	}
	for _, f := range s.Families {
		if f != IPv4 && f != IPv6 {
			problems = append(problems, fmt.Sprintf("unknown IP family %s", f))
		}
	}
	switch {
	case len(s.Families) == 0:
		problems = append(problems, "no ipFamilies")
	case len(s.Families) > 2 || (len(s.Families) == 2 && s.Families[0] == s.Families[1]):
		problems = append(problems, fmt.Sprintf("ipFamilies %v must be one family or two different ones", s.Families))
	case s.Policy == SingleStack && len(s.Families) != 1:
		problems = append(problems, fmt.Sprintf("ipFamilyPolicy SingleStack with ipFamilies %v", s.Families))
	case s.Policy == RequireDualStack && len(s.Families) != 2:
		problems = append(problems, fmt.Sprintf("ipFamilyPolicy RequireDualStack with ipFamilies %v", s.Families))
	}
	s.Families = slices.Clone(s.Families)
	ports := slices.Clone(s.Ports)
	for _, p := range ports {
		switch {
		case p.Protocol != TCP && p.Protocol != UDP && p.Protocol != SCTP:
			problems = append(problems, fmt.Sprintf("port %s: unknown protocol", p))
		case p.Port == 0:
			problems = append(problems, fmt.Sprintf("port %s: port 0", p))
		}
	}
	slices.SortFunc(ports, func(x, y Port) int {
		return cmp.Or(strings.Compare(string(x.Protocol), string(y.Protocol)), cmp.Compare(x.Port, y.Port))
	})
	s.Ports = slices.Compact(ports)
	if len(problems) > 0 {
		return s, s.errorf(ReasonInvalidService, "invalid Service: %s", strings.Join(problems, "; "))
	}
	s.NamespaceLabels = maps.Clone(s.NamespaceLabels)
	if _, ok := s.NamespaceLabels[namespaceNameLabel]; !ok {
		if s.NamespaceLabels == nil {
			s.NamespaceLabels = map[string]string{}
		}
		s.NamespaceLabels[namespaceNameLabel] = s.Namespace
	}
	if len(s.Requested) > 0 {
		if err := checkAddrs(s.Key, "requested", s.Requested); err != nil {
			return s, err
		}
		s.Requested = slices.Clone(s.Requested)
		var fams []Family
		for _, ip := range s.Requested {
			f := FamilyOf(ip)
			fams = append(fams, f)
			if !slices.Contains(s.Families, f) {
				return s, s.errorf(ReasonFamilyUnavailable, "requested address %s is %s, but the Service's ipFamilies are %v", ip, f, s.Families)
			}
		}
		if s.Policy == RequireDualStack && len(fams) < 2 {
			return s, s.errorf(ReasonFamilyUnavailable, "ipFamilyPolicy RequireDualStack needs an IPv4 and an IPv6 address, but the requested addresses (%s) are only %s",
				s.Requested[0], fams[0])
		}
	}
	return s, nil
}

// checkAddrs checks a list of addresses a Service names: valid, no zone, not
// IPv4-mapped, at most one per family.
func checkAddrs(key, what string, ips []netip.Addr) error {
	var problems []string
	if len(ips) == 0 {
		problems = append(problems, "no addresses")
	}
	seen := map[Family]netip.Addr{}
	for _, ip := range ips {
		switch {
		case !ip.IsValid():
			problems = append(problems, "invalid address")
			continue
		case ip.Zone() != "":
			problems = append(problems, fmt.Sprintf("address %s has a zone", ip))
		case ip.Is4In6():
			problems = append(problems, fmt.Sprintf("address %s is IPv4-mapped; use %s", ip, ip.Unmap()))
		}
		f := FamilyOf(ip)
		if prev, ok := seen[f]; ok {
			problems = append(problems, fmt.Sprintf("two %s addresses (%s, %s); at most one per family", f, prev, ip))
		}
		seen[f] = ip
	}
	if len(problems) > 0 {
		return &Error{Reason: ReasonInvalidService, Service: key, Message: fmt.Sprintf("invalid %s addresses: %s", what, strings.Join(problems, "; "))}
	}
	return nil
}
