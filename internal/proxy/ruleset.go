package proxy

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// staleChainDelay is how long a flushed, unreferenced chain waits before it is
// deleted: kernels before 6.2 notice a dropped map-element reference to a chain only
// a little later, and deleting earlier fails the whole transaction.
const staleChainDelay = time.Second

type elemKey struct{ Map, Key string }

type elemVal struct {
	Value, Comment string
	Owner          ServiceKey
}

// Ruleset is the content of our table as last written to the kernel, and writes the
// difference to a new desired state into a transaction. It is not safe for
// concurrent use. If running a transaction it wrote fails, the Ruleset no longer
// matches the kernel: discard it and do a full write with a new one.
type Ruleset struct {
	cfg      NodeConfig
	services map[ServiceKey]*ServiceRules
	elems    map[elemKey]elemVal
	stale    map[string]time.Time // flushed chains waiting to be deleted
	// Conflicts counts map keys claimed by two services (e.g. the same externalIP
	// and port) in the last write; the first service in name order wins.
	Conflicts int
}

// Existing is what a listing of the kernel's table found (knftables ListAll's "chain"
// and "set" entries); a full write reconciles against it.
type Existing struct {
	Chains []string
	Sets   []string
}

// NewRuleset returns an empty Ruleset for cfg.
func NewRuleset(cfg NodeConfig) (*Ruleset, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Ruleset{
		cfg:      cfg,
		services: map[ServiceKey]*ServiceRules{},
		elems:    map[elemKey]elemVal{},
		stale:    map[string]time.Time{},
	}, nil
}

// Services returns the rules last written for key (nil if none).
func (r *Ruleset) Services(key ServiceKey) *ServiceRules { return r.services[key] }

// WriteRuleset writes the complete ruleset for services and their slices on the node
// described by cfg into tx, as a first sync on an empty kernel would. It is the pure
// "desired state" function; the Proxier uses Ruleset directly to be incremental.
func WriteRuleset(tx *knftables.Transaction, cfg NodeConfig, services []*Service, eps []*EndpointSlice) error {
	r, err := NewRuleset(cfg)
	if err != nil {
		return err
	}
	bySvc := map[ServiceKey][]*EndpointSlice{}
	for _, s := range eps {
		bySvc[s.Service] = append(bySvc[s.Service], s)
	}
	all := map[ServiceKey]*ServiceRules{}
	for _, s := range services {
		if s.Validate() != nil {
			continue
		}
		all[s.Key] = ComputeService(cfg, s, bySvc[s.Key])
	}
	r.WriteFull(tx, all, Existing{}, time.Time{})
	return nil
}

// WriteFull writes everything: the table, base chains, fixed chains and maps are
// (re)created and refilled, every service chain is rewritten, and chains and
// affinity sets found in existing but no longer wanted are flushed (deleted later) or
// deleted. The table itself is never flushed or deleted, so conntrack state and
// affinity entries of surviving services live on. all becomes the Ruleset's state.
func (r *Ruleset) WriteFull(tx *knftables.Transaction, all map[ServiceKey]*ServiceRules, existing Existing, now time.Time) {
	_ = r.writeFull(&chunker{cur: tx}, all, existing, now)
}

// chunkOps is about how many operations a chunk of a streamed full sync holds.
const chunkOps = 2000

// chunker hands out the transaction to write into; with emit set it passes on full
// chunks and starts new ones, so that a full sync's text never exists in one piece.
// The chunks' texts, concatenated, are the text of the single transaction.
type chunker struct {
	cur   *knftables.Transaction
	newTx func() *knftables.Transaction
	emit  func(*knftables.Transaction) error // nil: one transaction
	err   error
}

func (c *chunker) tx() *knftables.Transaction {
	if c.emit != nil && c.err == nil && c.cur.NumOperations() >= chunkOps {
		c.err = c.emit(c.cur)
		c.cur = c.newTx()
	}
	return c.cur
}

// finish emits the last chunk.
func (c *chunker) finish() error {
	if c.emit != nil && c.err == nil {
		c.err = c.emit(c.cur)
		c.cur = c.newTx()
	}
	return c.err
}

func (r *Ruleset) writeFull(c *chunker, all map[ServiceKey]*ServiceRules, existing Existing, now time.Time) error {
	r.writeBase(c.tx())
	r.services = map[ServiceKey]*ServiceRules{}
	r.elems = map[elemKey]elemVal{}
	r.Conflicts = 0
	wantChains := map[string]bool{}
	wantSets := map[string]bool{}
	for _, k := range serviceKeys(all) {
		sr := all[k]
		if sr == nil {
			continue
		}
		r.services[k] = sr
		tx := c.tx()
		for _, name := range sortedKeys(sr.Chains) {
			wantChains[name] = true
			tx.Add(&knftables.Chain{Name: name})
			tx.Flush(&knftables.Chain{Name: name})
			delete(r.stale, name)
		}
		for _, name := range sortedKeys(sr.Affinity) {
			wantSets[name] = true
			tx.Add(affinitySet(r.cfg, name, sr.Affinity[name]))
		}
	}
	for _, k := range serviceKeys(r.services) {
		sr := r.services[k]
		tx := c.tx()
		for _, name := range sortedKeys(sr.Chains) {
			for _, rule := range sr.Chains[name] {
				tx.Add(&knftables.Rule{Chain: name, Rule: rule})
			}
		}
		for _, e := range sr.Elements {
			ek := elemKey{e.Map, e.Key}
			if old, taken := r.elems[ek]; taken && old.Owner != k {
				r.Conflicts++
				continue
			}
			r.elems[ek] = elemVal{Value: e.Value, Comment: e.Comment, Owner: k}
			tx.Add(toElement(e))
		}
	}
	var w ops
	for _, c := range existing.Chains {
		if !isServiceChain(c) || wantChains[c] {
			continue
		}
		r.retire(&w, c, now)
	}
	for _, s := range existing.Sets {
		if strings.HasPrefix(s, affinityPrefix) && !wantSets[s] {
			w.deleteSet(s)
		}
	}
	r.deleteStale(&w, now, wantChains)
	w.toTransaction(r.cfg, c.tx())
	return c.finish()
}

// WriteUpdate writes the changes for the services in changed (a nil value means the
// service is gone) and deletes chains that have been stale long enough. Services not
// in changed are not touched.
func (r *Ruleset) WriteUpdate(tx *knftables.Transaction, changed map[ServiceKey]*ServiceRules, now time.Time) {
	var w ops
	r.writeUpdate(&w, changed, now)
	w.toTransaction(r.cfg, tx)
}

func (r *Ruleset) writeUpdate(w *ops, changed map[ServiceKey]*ServiceRules, now time.Time) {
	keys := serviceKeys(changed)
	type rewrite struct {
		chain string
		rules []string
	}
	var rewrites []rewrite
	var elemDeletes, elemAdds []element
	newChains := map[string]bool{}
	for _, k := range keys {
		old, next := r.services[k], changed[k]
		if old == nil {
			old = &ServiceRules{}
		}
		if next == nil {
			next = &ServiceRules{}
		}
		// A changed affinity timeout means delete+add of the set, which needs
		// every rule referring to it gone first: rewrite all chains then.
		timeoutChanged := false
		for name, t := range next.Affinity {
			if ot, ok := old.Affinity[name]; ok && ot != t {
				timeoutChanged = true
			}
		}
		for _, name := range sortedKeys(next.Chains) {
			newChains[name] = true
			oldRules, had := old.Chains[name]
			if had && !timeoutChanged && slices.Equal(oldRules, next.Chains[name]) {
				continue
			}
			w.addChain(name)
			if had || r.stale[name] != (time.Time{}) {
				w.flushChain(name)
			}
			delete(r.stale, name)
			rewrites = append(rewrites, rewrite{name, next.Chains[name]})
		}
		for _, name := range sortedKeys(old.Chains) {
			if _, keep := next.Chains[name]; !keep {
				r.retire(w, name, now)
			}
		}
		for _, name := range sortedKeys(old.Affinity) {
			if t, keep := next.Affinity[name]; !keep || t != old.Affinity[name] {
				w.deleteSet(name)
			}
		}
		for _, name := range sortedKeys(next.Affinity) {
			if t, had := old.Affinity[name]; !had || t != next.Affinity[name] {
				w.addAffinitySet(name, next.Affinity[name])
			}
		}
		want := map[elemKey]element{}
		for _, e := range next.Elements {
			want[elemKey{e.Map, e.Key}] = e
		}
		for _, e := range old.Elements {
			ek := elemKey{e.Map, e.Key}
			cur, ok := r.elems[ek]
			if !ok || cur.Owner != k {
				continue
			}
			if n, keep := want[ek]; keep && n.Value == cur.Value && n.Comment == cur.Comment {
				continue
			}
			elemDeletes = append(elemDeletes, e)
			delete(r.elems, ek)
		}
		for _, e := range next.Elements {
			ek := elemKey{e.Map, e.Key}
			if cur, ok := r.elems[ek]; ok {
				if cur.Owner != k {
					r.Conflicts++
				}
				continue
			}
			r.elems[ek] = elemVal{Value: e.Value, Comment: e.Comment, Owner: k}
			elemAdds = append(elemAdds, e)
		}
		if changed[k] == nil {
			delete(r.services, k)
		} else {
			r.services[k] = changed[k]
		}
	}
	for _, rw := range rewrites {
		for _, rule := range rw.rules {
			w.addRule(rw.chain, rule)
		}
	}
	for _, e := range elemDeletes {
		w.deleteElement(e)
	}
	for _, e := range elemAdds {
		w.addElement(e)
	}
	r.deleteStale(w, now, newChains)
}

// Reconcile retires service chains and deletes affinity sets that the kernel has
// but the Ruleset does not know of (e.g. left by someone running nft by hand).
func (r *Ruleset) Reconcile(tx *knftables.Transaction, existing Existing, now time.Time) {
	var w ops
	r.reconcile(&w, existing, now)
	w.toTransaction(r.cfg, tx)
}

func (r *Ruleset) reconcile(w *ops, existing Existing, now time.Time) {
	known := map[string]bool{}
	sets := map[string]bool{}
	for _, sr := range r.services {
		for c := range sr.Chains {
			known[c] = true
		}
		for s := range sr.Affinity {
			sets[s] = true
		}
	}
	for _, c := range existing.Chains {
		if isServiceChain(c) && !known[c] {
			if _, stale := r.stale[c]; !stale {
				r.retire(w, c, now)
			}
		}
	}
	for _, s := range existing.Sets {
		if strings.HasPrefix(s, affinityPrefix) && !sets[s] {
			w.deleteSet(s)
		}
	}
}

// StaleChains reports how many flushed chains still wait to be deleted; the
// proxier schedules another sync while there are any.
func (r *Ruleset) StaleChains() int { return len(r.stale) }

func (r *Ruleset) retire(w *ops, chain string, now time.Time) {
	w.flushChain(chain)
	if _, ok := r.stale[chain]; !ok {
		r.stale[chain] = now
	}
}

func (r *Ruleset) deleteStale(w *ops, now time.Time, keep map[string]bool) {
	for _, c := range sortedKeys(r.stale) {
		if keep[c] {
			delete(r.stale, c)
			continue
		}
		if now.Sub(r.stale[c]) >= staleChainDelay {
			w.deleteChain(c)
			delete(r.stale, c)
		}
	}
}

func (r *Ruleset) writeBase(tx *knftables.Transaction) {
	ipX, addr := r.cfg.ipX(), r.cfg.addrType()
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("edgenet service proxy")})
	type base struct {
		name string
		typ  knftables.BaseChainType
		hook knftables.BaseChainHook
		prio knftables.BaseChainPriority
		rule string
	}
	// Filter chains run before DNAT so they see the service address.
	bases := []base{
		{"filter-input", knftables.FilterType, knftables.InputHook, knftables.DNATPriority + "-10", "ct state new jump " + chainEndpointCheck},
		{"filter-forward", knftables.FilterType, knftables.ForwardHook, knftables.DNATPriority + "-10", "ct state new jump " + chainEndpointCheck},
		{"filter-output", knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "-10", "ct state new jump " + chainEndpointCheck},
		{"nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority, "jump " + chainServices},
		{"nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority, "jump " + chainServices},
		{"nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority, "jump " + chainMasquerading},
	}
	for _, name := range []string{chainServices, chainMarkMasq, chainMasquerading, chainEndpointCheck, chainReject} {
		tx.Add(&knftables.Chain{Name: name})
		tx.Flush(&knftables.Chain{Name: name})
	}
	for _, b := range bases {
		c := &knftables.Chain{Name: b.name, Type: knftables.PtrTo(b.typ), Hook: knftables.PtrTo(b.hook), Priority: knftables.PtrTo(b.prio)}
		tx.Add(c)
		tx.Flush(c)
		tx.Add(&knftables.Rule{Chain: b.name, Rule: b.rule})
	}
	vmaps := []struct{ name, typ, comment string }{
		{mapServiceIPs, addr + " . inet_proto . inet_service : verdict", "ClusterIP, externalIP and LoadBalancer IP traffic"},
		{mapServiceNodePorts, "inet_proto . inet_service : verdict", "NodePort traffic"},
		{mapNoEndpointSvcs, addr + " . inet_proto . inet_service : verdict", "reject or drop traffic to services without endpoints"},
		{mapNoEndpointNodePts, "inet_proto . inet_service : verdict", "reject or drop traffic to nodeports without endpoints"},
	}
	for _, m := range vmaps {
		tx.Add(&knftables.Map{Name: m.name, Type: m.typ, Comment: knftables.PtrTo(m.comment)})
		tx.Flush(&knftables.Map{Name: m.name})
	}
	tx.Add(&knftables.Set{Name: setNodePortIPs, Type: addr, Comment: knftables.PtrTo("node IPs accepting NodePort traffic")})
	tx.Flush(&knftables.Set{Name: setNodePortIPs})
	seen := map[string]bool{}
	for _, a := range r.cfg.NodeIPs {
		if r.cfg.inFamily(a) && !a.IsLoopback() && !seen[a.Unmap().String()] {
			seen[a.Unmap().String()] = true
			tx.Add(&knftables.Element{Set: setNodePortIPs, Key: []string{a.Unmap().String()}})
		}
	}
	rules := []knftables.Rule{
		{Chain: chainServices, Rule: ipX + " daddr . meta l4proto . th dport vmap @" + mapServiceIPs},
		{Chain: chainServices, Rule: ipX + " daddr @" + setNodePortIPs + " meta l4proto . th dport vmap @" + mapServiceNodePorts},
		{Chain: chainEndpointCheck, Rule: ipX + " daddr . meta l4proto . th dport vmap @" + mapNoEndpointSvcs},
		{Chain: chainEndpointCheck, Rule: ipX + " daddr @" + setNodePortIPs + " meta l4proto . th dport vmap @" + mapNoEndpointNodePts},
		{Chain: chainReject, Rule: "meta l4proto tcp reject with tcp reset"},
		{Chain: chainReject, Rule: "reject"},
		{Chain: chainMarkMasq, Rule: "mark set mark or " + masqMark},
		{Chain: chainMasquerading, Rule: "mark and " + masqMark + " == 0 return"},
		{Chain: chainMasquerading, Rule: "mark set mark xor " + masqMark},
		{Chain: chainMasquerading, Rule: "masquerade fully-random"},
	}
	for i := range rules {
		tx.Add(&rules[i])
	}
}

func affinitySet(cfg NodeConfig, name string, timeout time.Duration) *knftables.Set {
	return &knftables.Set{
		Name: name,
		Type: cfg.addrType(),
		// "dynamic" because the packet path adds to it (and the kernel would add
		// the flag itself, making a later identical add fail).
		Flags:   []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag},
		Timeout: knftables.PtrTo(timeout),
	}
}

func toElement(e element) *knftables.Element {
	el := &knftables.Element{Map: e.Map, Key: strings.Split(e.Key, " . "), Value: []string{e.Value}}
	if e.Comment != "" {
		el.Comment = knftables.PtrTo(e.Comment)
	}
	return el
}

func isServiceChain(name string) bool { return strings.Contains(name, "/") }

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func serviceKeys[V any](m map[ServiceKey]V) []ServiceKey {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b ServiceKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return keys
}
