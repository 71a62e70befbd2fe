package allocator

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
)

// FuzzOperations plays random sequences of Assign, Release, SetPools and
// restart-with-Restore on small pools (so that exhaustion, sharing and pool
// edits happen often) and checks after every step:
//   - the allocator's indices agree with its assignments;
//   - no address is held by two Services unless both share it under the same
//     key and backend without clashing ports;
//   - every address is inside a pool unless it was assigned before a pool edit;
//   - a new address comes from a pool the Service may use, and is the lowest
//     free one of that pool unless it joins a shared address;
//   - Assign is idempotent, a failed Assign changes nothing, and a restart
//     that replays assignments with Restore changes nothing.
func FuzzOperations(f *testing.F) {
	f.Add([]byte{0, 0, 2, 0, 0, 0, 1, 2, 3, 0, 1, 2, 4, 2, 0, 5})
	f.Add([]byte{0, 0, 9, 7, 5, 0, 1, 9, 6, 5, 4, 2, 0, 0, 2, 0, 5, 3, 1})
	f.Fuzz(playOperations)
}

func playOperations(t *testing.T, data []byte) {
	h := &harness{t: t, a: New(), epoch: map[string]map[netip.Addr]int{}, specs: map[string]Service{}}
	h.setPools(0)
	r := &reader{data: data}
	for step := 0; !r.done() && step < 300; step++ {
		switch op := r.next() % 8; op {
		case 0, 1, 2, 3:
			h.assign(h.service(r))
		case 4, 5:
			key := svcKeys[int(r.next())%len(svcKeys)]
			h.a.Release(key)
			delete(h.epoch, key)
			delete(h.specs, key)
		case 6:
			h.setPools(int(r.next()))
		case 7:
			h.restart(int(r.next()))
		}
		h.check(step)
	}
}

type reader struct {
	data []byte
	i    int
}

func (r *reader) done() bool { return r.i >= len(r.data) }

func (r *reader) next() byte {
	if r.i >= len(r.data) {
		return 0
	}
	b := r.data[r.i]
	r.i++
	return b
}

var svcKeys = []string{"x/s0", "y/s1", "x/s2", "y/s3", "x/s4", "y/s5"}

var fuzzPoolSets = func() [][]Pool {
	must := mustRanges
	a := Pool{Name: "a", AutoAssign: true, Ranges: must("10.0.0.0-10.0.0.5", "fd00::-fd00::2")}
	b := Pool{Name: "b", AutoAssign: true, Priority: 1, AvoidBuggyIPs: true, Ranges: must("10.0.1.254-10.0.2.1"),
		NamespaceSelector: &Selector{MatchExpressions: []Requirement{{Key: namespaceNameLabel, Operator: In, Values: []string{"x"}}}}}
	c := Pool{Name: "c", Ranges: must("10.0.3.0/30")}
	d := Pool{Name: "d", AutoAssign: true, Ranges: must("fd00:1::/64"), ServiceSelector: &Selector{MatchLabels: map[string]string{"app": "web"}}}
	grown := with2(a, func(p *Pool) { p.Ranges = must("10.0.0.0-10.0.0.9", "fd00::-fd00::2") })
	shrunk := with2(a, func(p *Pool) { p.Ranges = must("10.0.0.0-10.0.0.2", "fd00::") })
	return [][]Pool{
		{a, b, c, d},
		{grown, b, c, d},
		{shrunk, b, c, d},
		{a, c, d},
		{with2(a, func(p *Pool) { p.AvoidBuggyIPs = true }), with2(b, func(p *Pool) { p.AvoidBuggyIPs = false }), with2(c, func(p *Pool) { p.AutoAssign = true }), d},
		{with2(a, func(p *Pool) { p.Priority = 5 }), b, c, with2(d, func(p *Pool) { p.ServiceSelector = nil })},
	}
}()

var fuzzRequested = []netip.Addr{
	netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.2.0"), netip.MustParseAddr("10.0.1.255"),
	netip.MustParseAddr("fd00::1"), netip.MustParseAddr("10.0.3.1"), netip.MustParseAddr("10.0.0.8"),
	netip.MustParseAddr("fd00:1::5"), netip.MustParseAddr("192.0.2.1"),
}

type harness struct {
	t       *testing.T
	a       *Allocator
	pools   []Pool
	variant int
	cur     int                           // pool edits so far
	epoch   map[string]map[netip.Addr]int // when each held address was first given
	specs   map[string]Service            // the spec each holder last succeeded with
}

func (h *harness) service(r *reader) Service {
	b0, b1, b2, b3 := r.next(), r.next(), r.next(), r.next()
	key := svcKeys[int(b0)%len(svcKeys)]
	s := Service{Key: key}
	switch b1 % 5 {
	case 0:
		s.Families = []Family{IPv4}
	case 1:
		s.Families = []Family{IPv6}
	case 2:
		s.Families, s.Policy = []Family{IPv4, IPv6}, PreferDualStack
	case 3:
		s.Families, s.Policy = []Family{IPv6, IPv4}, PreferDualStack
	case 4:
		s.Families, s.Policy = []Family{IPv4, IPv6}, RequireDualStack
	}
	s.SharingKey = []string{"", "k1", "k2"}[(b1/5)%3]
	s.Backend = []string{"", "L"}[(b1/15)%2]
	for i, p := range []Port{{TCP, 80}, {TCP, 443}, {UDP, 53}} {
		if b2&(1<<i) != 0 {
			s.Ports = append(s.Ports, p)
		}
	}
	if b2&8 != 0 {
		s.Labels = map[string]string{"app": "web"}
	}
	if i := int(b3 % 16); i < len(fuzzRequested) {
		s.Requested = []netip.Addr{fuzzRequested[i]}
		if b2&16 != 0 {
			s.Requested = append(s.Requested, fuzzRequested[(i+3)%len(fuzzRequested)])
		}
	}
	s.RequestedPool = []string{"", "", "c", "a", "zz"}[int(b3/16)%5]
	return s
}

func (h *harness) setPools(v int) {
	h.variant = v % len(fuzzPoolSets)
	h.pools = fuzzPoolSets[h.variant]
	if _, err := h.a.SetPools(h.pools); err != nil {
		h.t.Fatalf("SetPools(variant %d): %v", h.variant, err)
	}
	h.cur++
}

// poolOf finds addr's pool by scanning the configuration, independently of
// the allocator's index.
func (h *harness) poolOf(addr netip.Addr) *Pool {
	for i, p := range h.pools {
		if p.AvoidBuggyIPs && addr.Is4() && (addr.As4()[3] == 0 || addr.As4()[3] == 255) {
			continue
		}
		for _, r := range p.Ranges {
			if r.Contains(addr) {
				return &h.pools[i]
			}
		}
	}
	return nil
}

func (h *harness) assign(s Service) {
	t := h.t
	before := h.a.Assignments()
	got, err := h.a.Assign(s)
	if err != nil {
		if _, ok := ReasonOf(err); !ok {
			t.Fatalf("Assign(%+v): error without a reason: %v", s, err)
		}
		if after := h.a.Assignments(); !equalAssignments(before, after) {
			t.Fatalf("failed Assign(%+v) (%v) changed state:\n%v\n%v", s, err, before, after)
		}
		return
	}
	mid := h.a.Assignments()
	again, err := h.a.Assign(s)
	if err != nil || !slices.Equal(again.IPs, got.IPs) {
		t.Fatalf("Assign(%+v) not idempotent: %v then %v, %v", s, got.IPs, again.IPs, err)
	}
	if after := h.a.Assignments(); !equalAssignments(mid, after) {
		t.Fatalf("repeated Assign(%+v) changed state", s)
	}
	old := h.epoch[s.Key]
	h.epoch[s.Key] = map[netip.Addr]int{}
	h.specs[s.Key] = s
	fams := map[Family]bool{}
	for _, ip := range got.IPs {
		f := FamilyOf(ip.Addr)
		if fams[f] || !slices.Contains(s.Families, f) {
			t.Fatalf("Assign(%+v) = %v: family %v unwanted or twice", s, got.IPs, f)
		}
		fams[f] = true
		if e, held := old[ip.Addr]; held {
			h.epoch[s.Key][ip.Addr] = e
			continue
		}
		h.epoch[s.Key][ip.Addr] = h.cur
		h.checkNew(s, ip.Addr)
	}
	if s.Policy == RequireDualStack && len(got.IPs) != 2 {
		t.Fatalf("RequireDualStack got %v", got.IPs)
	}
	if len(s.Requested) > 0 {
		if !slices.Equal(sorted(got.Addrs()), sorted(s.Requested)) {
			t.Fatalf("Assign(%+v) = %v, not the requested addresses", s, got.IPs)
		}
	}
}

func sorted(as []netip.Addr) []netip.Addr {
	return slices.SortedFunc(slices.Values(as), netip.Addr.Compare)
}

// checkNew checks an address s did not hold before.
func (h *harness) checkNew(s Service, addr netip.Addr) {
	t := h.t
	p := h.poolOf(addr)
	if p == nil {
		t.Fatalf("%s got %v, outside every pool", s.Key, addr)
	}
	nsLabels := map[string]string{namespaceNameLabel: s.Key[:1]}
	if !p.NamespaceSelector.Matches(nsLabels) || !p.ServiceSelector.Matches(s.Labels) {
		t.Fatalf("%s got %v from pool %q, which does not admit it", s.Key, addr, p.Name)
	}
	if len(s.Requested) > 0 {
		return
	}
	if s.RequestedPool != "" && p.Name != s.RequestedPool {
		t.Fatalf("%s asked for pool %q, got %v from %q", s.Key, s.RequestedPool, addr, p.Name)
	}
	if s.RequestedPool == "" && !p.AutoAssign {
		t.Fatalf("%s got %v from pool %q without auto-assign", s.Key, addr, p.Name)
	}
	users := h.users(addr)
	if len(users) > 1 {
		return // joined a shared address
	}
	// Lowest free: every lower address of the range is used or avoided.
	for _, r := range p.Ranges {
		if !r.Contains(addr) {
			continue
		}
		for x, n := r.From, 0; x.Less(addr) && n < 4096; x, n = x.Next(), n+1 {
			if len(h.users(x)) == 0 && h.poolOf(x) == p {
				t.Fatalf("%s got %v from pool %q, but %v is free", s.Key, addr, p.Name, x)
			}
		}
	}
}

func (h *harness) users(addr netip.Addr) []string {
	var out []string
	for _, as := range h.a.Assignments() {
		if slices.Contains(as.Addrs(), addr) {
			out = append(out, as.Service)
		}
	}
	return out
}

// restart builds a new allocator with the same pools and replays every
// assignment in an order chosen by seed.
func (h *harness) restart(seed int) {
	t := h.t
	before := h.a.Assignments()
	b := New()
	if _, err := b.SetPools(h.pools); err != nil {
		t.Fatal(err)
	}
	order := slices.Clone(before)
	if len(order) > 0 {
		k := seed % len(order)
		order = append(order[k:], order[:k]...)
		if seed&1 == 1 {
			slices.Reverse(order)
		}
	}
	for _, as := range order {
		if _, err := b.Restore(h.specs[as.Service], as.Addrs()); err != nil {
			t.Fatalf("Restore(%s, %v): %v", as.Service, as.Addrs(), err)
		}
	}
	if after := b.Assignments(); !equalAssignments(before, after) {
		t.Fatalf("restart changed assignments:\n%v\n%v", before, after)
	}
	if !slices.Equal(h.a.Orphans(), b.Orphans()) {
		t.Fatalf("restart changed orphans: %v, %v", h.a.Orphans(), b.Orphans())
	}
	for _, p := range h.pools {
		u1, f1 := h.a.Usage(p.Name)
		u2, f2 := b.Usage(p.Name)
		if u1 != u2 || f1 != f2 {
			t.Fatalf("restart changed Usage(%s): %d/%d, %d/%d", p.Name, u1, f1, u2, f2)
		}
	}
	// The next choice is the same before and after.
	probe := Service{Key: "probe/p", Families: []Family{IPv4, IPv6}, Policy: PreferDualStack, SharingKey: "k1", Ports: []Port{{TCP, 8080}}}
	p1, e1 := h.a.Assign(probe)
	p2, e2 := b.Assign(probe)
	if fmt.Sprint(e1) != fmt.Sprint(e2) || !slices.Equal(p1.IPs, p2.IPs) {
		t.Fatalf("probe after restart: %v %v, before %v %v", p2.IPs, e2, p1.IPs, e1)
	}
	b.Release(probe.Key)
	h.a = b
}

// check verifies the invariants and the allocator's internal indices.
func (h *harness) check(step int) {
	t := h.t
	a := h.a
	a.mu.Lock()
	defer a.mu.Unlock()
	users := map[netip.Addr][]*record{}
	for _, rec := range a.services {
		fams := map[Family]bool{}
		for _, ip := range rec.ips {
			if fams[FamilyOf(ip)] {
				t.Fatalf("step %d: %s holds two %v addresses", step, rec.key, FamilyOf(ip))
			}
			fams[FamilyOf(ip)] = true
			users[ip] = append(users[ip], rec)
			if a.ips[ip] == nil {
				t.Fatalf("step %d: %s holds %v, which is not indexed", step, rec.key, ip)
			}
			pool := ""
			if p := h.poolOf(ip); p != nil {
				pool = p.Name
			} else if e, ok := h.epoch[rec.key][ip]; !ok || e >= h.cur {
				t.Fatalf("step %d: %s holds %v outside every pool, given after the last pool edit (epoch %d, now %d, known %v)", step, rec.key, ip, e, h.cur, ok)
			}
			if a.ips[ip].pool != pool {
				t.Fatalf("step %d: %v indexed in pool %q, is in %q", step, ip, a.ips[ip].pool, pool)
			}
		}
	}
	if len(users) != len(a.ips) {
		t.Fatalf("step %d: %d addresses indexed, %d held", step, len(a.ips), len(users))
	}
	for ip, recs := range users {
		u := a.ips[ip]
		var keys []string
		ports := map[Port]string{}
		for _, rec := range recs {
			keys = append(keys, rec.key)
			if len(recs) > 1 && (rec.sharingKey == "" || rec.sharingKey != recs[0].sharingKey || rec.backend != recs[0].backend) {
				t.Fatalf("step %d: %v held by %d Services without a common sharing key and backend", step, ip, len(recs))
			}
			for _, p := range rec.ports {
				if other, clash := ports[p]; clash {
					t.Fatalf("step %d: %s and %s both use %s on %v", step, other, rec.key, p, ip)
				}
				ports[p] = rec.key
			}
		}
		slices.Sort(keys)
		if !slices.Equal(keys, u.users) || !maps.Equal(ports, u.ports) || u.key != recs[0].sharingKey || u.backend != recs[0].backend {
			t.Fatalf("step %d: index for %v = %+v, want users %v ports %v", step, ip, u, keys, ports)
		}
		if in := a.shared[u.key]; u.key != "" {
			if _, ok := in[ip]; !ok {
				t.Fatalf("step %d: %v missing from sharing index %q", step, ip, u.key)
			}
		}
	}
	for key, set := range a.shared {
		for ip := range set {
			if a.ips[ip] == nil || a.ips[ip].key != key {
				t.Fatalf("step %d: stale sharing index %q: %v", step, key, ip)
			}
		}
	}
	for fi := range a.used {
		var want []u128
		for ip := range a.ips {
			if familyIndex(ip) == fi {
				want = append(want, toU128(ip))
			}
		}
		slices.SortFunc(want, u128.cmp)
		if !slices.Equal(want, a.used[fi].s) {
			t.Fatalf("step %d: used set %d = %v, want %v", step, fi, a.used[fi].s, want)
		}
	}
	for _, p := range a.pools {
		var n [2]uint64
		for ip, u := range a.ips {
			if u.pool == p.Name {
				n[familyIndex(ip)]++
			}
		}
		if *a.poolUsed[p.Name] != n {
			t.Fatalf("step %d: poolUsed[%s] = %v, want %v", step, p.Name, *a.poolUsed[p.Name], n)
		}
	}
}
