package proxy

import (
	"cmp"
	"fmt"
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
	stale    map[qname]time.Time // flushed chains waiting to be deleted
	// Conflicts counts map keys claimed by two services (e.g. the same externalIP
	// and port) in the last write; the first service in name order wins.
	Conflicts int
}

// Existing is what a listing of the kernel found in our tables (as knftables
// ListAll's "chain" and "set" entries); a full write reconciles against it.
type Existing struct {
	Tables []string
	Chains []qname
	Sets   []qname
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
		stale:    map[qname]time.Time{},
	}, nil
}

// Services returns the rules last written for key (nil if none).
func (r *Ruleset) Services(key ServiceKey) *ServiceRules { return r.services[key] }

// WriteRuleset writes the complete ruleset for services and their slices on the node
// described by cfg into tx, as a first sync on an empty kernel would. It is the pure
// "desired state" function; the Proxier uses Ruleset directly to be incremental.
func WriteRuleset(tx *Tx, cfg NodeConfig, services []*Service, eps []*EndpointSlice) error {
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
func (r *Ruleset) WriteFull(tx *Tx, all map[ServiceKey]*ServiceRules, existing Existing, now time.Time) {
	_ = r.writeFull(&chunker{cur: tx}, all, existing, now)
}

// chunkOps is about how many operations a chunk of a streamed full sync holds.
const chunkOps = 2000

// chunker hands out the transaction to write into; with emit set it passes on full
// chunks and starts new ones, so that a full sync's text never exists in one piece.
// The chunks' texts, concatenated, are the text of the single transaction.
type chunker struct {
	cur   *Tx
	newTx func() *Tx
	emit  func(*Tx) error // nil: one transaction
	err   error
}

func (c *chunker) tx() *Tx {
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
	ours := map[string]bool{}
	for _, t := range r.cfg.tables() {
		ours[t] = true
	}
	// A main table holding more than the main chains was written by an agent
	// from before the shards: it is replaced, in this same transaction, so that
	// its service chains do not DNAT next to the shards'. Conntrack keeps the
	// NAT of established connections either way.
	dropMain := false
	for _, ch := range existing.Chains {
		if ch.Table == TableName && !mainChains[ch.Name] {
			dropMain = true
		}
	}
	if dropMain {
		c.tx().Table(TableName).Delete(&knftables.Table{})
	}
	gone := map[string]bool{}
	for _, t := range existing.Tables {
		if !ours[t] {
			gone[t] = true // a shard of a larger shard count
			c.tx().Table(t).Delete(&knftables.Table{})
		}
	}
	r.writeBase(c.tx())
	r.services = map[ServiceKey]*ServiceRules{}
	r.elems = map[elemKey]elemVal{}
	r.Conflicts = 0
	wantChains := map[qname]bool{}
	wantSets := map[qname]bool{}
	for _, k := range serviceKeys(all) {
		sr := all[k]
		if sr == nil {
			continue
		}
		r.services[k] = sr
		shard := r.cfg.shardOf(k)
		tx := c.tx().Table(shard)
		for _, name := range sortedKeys(sr.Chains) {
			q := qname{shard, name}
			wantChains[q] = true
			tx.Add(&knftables.Chain{Name: name})
			tx.Flush(&knftables.Chain{Name: name})
			delete(r.stale, q)
		}
		for _, name := range sortedKeys(sr.Affinity) {
			wantSets[qname{shard, name}] = true
			tx.Add(affinitySet(r.cfg, name, sr.Affinity[name]))
		}
	}
	for _, k := range serviceKeys(r.services) {
		sr := r.services[k]
		t := c.tx()
		tx := t.Table(r.cfg.shardOf(k))
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
			t.Table(r.cfg.elementTable(k, e)).Add(toElement(e))
		}
	}
	var w ops
	for _, ch := range existing.Chains {
		if gone[ch.Table] || (dropMain && ch.Table == TableName) || !isServiceChain(ch.Name) || wantChains[ch] {
			continue
		}
		r.retire(&w, ch, now)
	}
	for _, s := range existing.Sets {
		if gone[s.Table] || (dropMain && s.Table == TableName) {
			continue
		}
		if strings.HasPrefix(s.Name, affinityPrefix) && !wantSets[s] {
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
func (r *Ruleset) WriteUpdate(tx *Tx, changed map[ServiceKey]*ServiceRules, now time.Time) {
	var w ops
	r.writeUpdate(&w, changed, now)
	w.toTransaction(r.cfg, tx)
}

func (r *Ruleset) writeUpdate(w *ops, changed map[ServiceKey]*ServiceRules, now time.Time) {
	keys := serviceKeys(changed)
	type rewrite struct {
		chain qname
		rules []string
	}
	type tableElem struct {
		table string
		element
	}
	var rewrites []rewrite
	var elemDeletes, elemAdds []tableElem
	newChains := map[qname]bool{}
	for _, k := range keys {
		old, next := r.services[k], changed[k]
		if old == nil {
			old = &ServiceRules{}
		}
		if next == nil {
			next = &ServiceRules{}
		}
		shard := r.cfg.shardOf(k)
		// A changed affinity timeout means delete+add of the set, which needs
		// every rule referring to it gone first: rewrite all chains then.
		timeoutChanged := false
		for name, t := range next.Affinity {
			if ot, ok := old.Affinity[name]; ok && ot != t {
				timeoutChanged = true
			}
		}
		for _, name := range sortedKeys(next.Chains) {
			q := qname{shard, name}
			newChains[q] = true
			oldRules, had := old.Chains[name]
			if had && !timeoutChanged && slices.Equal(oldRules, next.Chains[name]) {
				continue
			}
			w.addChain(q)
			if had || r.stale[q] != (time.Time{}) {
				w.flushChain(q)
			}
			delete(r.stale, q)
			rewrites = append(rewrites, rewrite{q, next.Chains[name]})
		}
		for _, name := range sortedKeys(old.Chains) {
			if _, keep := next.Chains[name]; !keep {
				r.retire(w, qname{shard, name}, now)
			}
		}
		for _, name := range sortedKeys(old.Affinity) {
			if t, keep := next.Affinity[name]; !keep || t != old.Affinity[name] {
				w.deleteSet(qname{shard, name})
			}
		}
		for _, name := range sortedKeys(next.Affinity) {
			if t, had := old.Affinity[name]; !had || t != next.Affinity[name] {
				w.addAffinitySet(qname{shard, name}, next.Affinity[name])
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
			elemDeletes = append(elemDeletes, tableElem{r.cfg.elementTable(k, e), e})
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
			elemAdds = append(elemAdds, tableElem{r.cfg.elementTable(k, e), e})
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
		w.deleteElement(e.table, e.element)
	}
	for _, e := range elemAdds {
		w.addElement(e.table, e.element)
	}
	r.deleteStale(w, now, newChains)
}

// Reconcile retires service chains and deletes affinity sets that the kernel has
// but the Ruleset does not know of (e.g. left by someone running nft by hand).
func (r *Ruleset) Reconcile(tx *Tx, existing Existing, now time.Time) {
	var w ops
	r.reconcile(&w, existing, now)
	w.toTransaction(r.cfg, tx)
}

func (r *Ruleset) reconcile(w *ops, existing Existing, now time.Time) {
	known := map[qname]bool{}
	sets := map[qname]bool{}
	for k, sr := range r.services {
		shard := r.cfg.shardOf(k)
		for c := range sr.Chains {
			known[qname{shard, c}] = true
		}
		for s := range sr.Affinity {
			sets[qname{shard, s}] = true
		}
	}
	for _, c := range existing.Chains {
		if isServiceChain(c.Name) && !known[c] {
			if _, stale := r.stale[c]; !stale {
				r.retire(w, c, now)
			}
		}
	}
	for _, s := range existing.Sets {
		if strings.HasPrefix(s.Name, affinityPrefix) && !sets[s] {
			w.deleteSet(s)
		}
	}
}

// StaleChains reports how many flushed chains still wait to be deleted; the
// proxier schedules another sync while there are any.
func (r *Ruleset) StaleChains() int { return len(r.stale) }

func (r *Ruleset) retire(w *ops, chain qname, now time.Time) {
	w.flushChain(chain)
	if _, ok := r.stale[chain]; !ok {
		r.stale[chain] = now
	}
}

func (r *Ruleset) deleteStale(w *ops, now time.Time, keep map[qname]bool) {
	stale := slices.SortedFunc(maps.Keys(r.stale), func(a, b qname) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.Name, b.Name))
	})
	for _, c := range stale {
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

// mainChains are the chains of the main table.
var mainChains = map[string]bool{
	"filter-input": true, "filter-forward": true, "filter-output": true, "nat-postrouting": true,
	chainMasquerading: true, chainEndpointCheck: true, chainReject: true,
}

type baseChain struct {
	name string
	typ  knftables.BaseChainType
	hook knftables.BaseChainHook
	prio knftables.BaseChainPriority
	rule string
}

// writeBase (re)creates the fixed part of every table: the main table's filter
// and masquerading chains and the shards' service dispatch.
func (r *Ruleset) writeBase(t *Tx) {
	ipX, addr := r.cfg.ipX(), r.cfg.addrType()
	main := t.Table(TableName)
	main.Add(&knftables.Table{Comment: knftables.PtrTo("edgenet service proxy")})
	for _, name := range []string{chainMasquerading, chainEndpointCheck, chainReject} {
		main.Add(&knftables.Chain{Name: name})
		main.Flush(&knftables.Chain{Name: name})
	}
	// Filter chains run before DNAT so they see the service address.
	addBases(main, []baseChain{
		{"filter-input", knftables.FilterType, knftables.InputHook, knftables.DNATPriority + "-10", "ct state new jump " + chainEndpointCheck},
		{"filter-forward", knftables.FilterType, knftables.ForwardHook, knftables.DNATPriority + "-10", "ct state new jump " + chainEndpointCheck},
		{"filter-output", knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "-10", "ct state new jump " + chainEndpointCheck},
		{"nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority, "jump " + chainMasquerading},
	})
	addMaps(main, []vmap{
		{mapNoEndpointSvcs, addr + " . inet_proto . inet_service : verdict", "reject or drop traffic to services without endpoints"},
		{mapNoEndpointNodePts, "inet_proto . inet_service : verdict", "reject or drop traffic to nodeports without endpoints"},
	})
	r.addNodePortIPs(main)
	for _, rule := range []knftables.Rule{
		{Chain: chainEndpointCheck, Rule: ipX + " daddr . meta l4proto . th dport vmap @" + mapNoEndpointSvcs},
		{Chain: chainEndpointCheck, Rule: ipX + " daddr @" + setNodePortIPs + " meta l4proto . th dport vmap @" + mapNoEndpointNodePts},
		{Chain: chainReject, Rule: "meta l4proto tcp reject with tcp reset"},
		{Chain: chainReject, Rule: "reject"},
		{Chain: chainMasquerading, Rule: "mark and " + masqMark + " == 0 return"},
		{Chain: chainMasquerading, Rule: "mark set mark xor " + masqMark},
		{Chain: chainMasquerading, Rule: "masquerade fully-random"},
	} {
		main.Add(&rule)
	}
	for i := range r.cfg.shards() {
		shard := t.Table(ShardTable(i))
		shard.Add(&knftables.Table{Comment: knftables.PtrTo(fmt.Sprintf("edgenet service proxy: services of shard %d of %d", i, r.cfg.shards()))})
		for _, name := range []string{chainServices, chainMarkMasq} {
			shard.Add(&knftables.Chain{Name: name})
			shard.Flush(&knftables.Chain{Name: name})
		}
		addBases(shard, []baseChain{
			{"nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority, "jump " + chainServices},
			{"nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority, "jump " + chainServices},
		})
		addMaps(shard, []vmap{
			{mapServiceIPs, addr + " . inet_proto . inet_service : verdict", "ClusterIP, externalIP and LoadBalancer IP traffic"},
			{mapServiceNodePorts, "inet_proto . inet_service : verdict", "NodePort traffic"},
		})
		r.addNodePortIPs(shard)
		for _, rule := range []knftables.Rule{
			{Chain: chainServices, Rule: ipX + " daddr . meta l4proto . th dport vmap @" + mapServiceIPs},
			{Chain: chainServices, Rule: ipX + " daddr @" + setNodePortIPs + " meta l4proto . th dport vmap @" + mapServiceNodePorts},
			{Chain: chainMarkMasq, Rule: "mark set mark or " + masqMark},
		} {
			shard.Add(&rule)
		}
	}
}

func addBases(tx *knftables.Transaction, bases []baseChain) {
	for _, b := range bases {
		c := &knftables.Chain{Name: b.name, Type: knftables.PtrTo(b.typ), Hook: knftables.PtrTo(b.hook), Priority: knftables.PtrTo(b.prio)}
		tx.Add(c)
		tx.Flush(c)
		tx.Add(&knftables.Rule{Chain: b.name, Rule: b.rule})
	}
}

type vmap struct{ name, typ, comment string }

func addMaps(tx *knftables.Transaction, maps []vmap) {
	for _, m := range maps {
		tx.Add(&knftables.Map{Name: m.name, Type: m.typ, Comment: knftables.PtrTo(m.comment)})
		tx.Flush(&knftables.Map{Name: m.name})
	}
}

func (r *Ruleset) addNodePortIPs(tx *knftables.Transaction) {
	tx.Add(&knftables.Set{Name: setNodePortIPs, Type: r.cfg.addrType(), Comment: knftables.PtrTo("node IPs accepting NodePort traffic")})
	tx.Flush(&knftables.Set{Name: setNodePortIPs})
	seen := map[string]bool{}
	for _, a := range r.cfg.NodeIPs {
		if r.cfg.inFamily(a) && !a.IsLoopback() && !seen[a.Unmap().String()] {
			seen[a.Unmap().String()] = true
			tx.Add(&knftables.Element{Set: setNodePortIPs, Key: []string{a.Unmap().String()}})
		}
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
