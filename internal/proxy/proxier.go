package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/nftables"
	"sigs.k8s.io/knftables"
)

// maxNetlinkOps bounds the batches sent over netlink: the kernel acknowledges every
// message, and a large batch would overflow the socket's receive buffer. Larger
// ones (e.g. a resync retiring many chains) go through nft.
const maxNetlinkOps = 2000

// Options configures a Proxier for one IP family.
type Options struct {
	Node NodeConfig
	// NFT opens the knftables interface of one of our tables (TableName or a
	// shard's, see tables.go) in Node.Family. Transactions are always built
	// through it; they run through it only when NFTCommand is nil.
	NFT func(table string) knftables.Interface
	// Netlink, if set, carries incremental syncs as netlink batches in place of
	// `nft -f` runs, which load the whole table into nft's cache first (the larger
	// part of a one-service change at 10k services), and lists the table's chains
	// and sets for full syncs and resyncs (`nft --json list table` prints every
	// rule: ~10 s at 10k services). Full syncs, large batches and rules it cannot
	// express (BalanceVmap) still go through NFT.
	// It is called once per such sync; a fresh Conn never carries messages of a
	// batch that failed to queue.
	Netlink func() (*nftables.Conn, error)
	// NFTCommand, if set, runs every nft transaction: the text of all the tables
	// it touches goes into one nft reading stdin (e.g. DefaultNFTCommand), so that
	// it is one transaction. Full syncs stream their text into it chunk by chunk:
	// a first sync at 10k services then never holds its ~70 MB of objects and
	// text at once. Without it, each table's part runs through NFT on its own
	// (fakes in tests).
	NFTCommand func(ctx context.Context) *exec.Cmd
	// Conntrack clears stale UDP entries; nil skips that.
	Conntrack Conntrack
	// HealthListen opens the listener of a healthCheckNodePort; nil means no
	// health-check servers (e.g. the second family of a dual-stack node).
	HealthListen func(port uint16) (net.Listener, error)
	// MinSyncInterval is the least time between two syncs: events arriving within it
	// are batched into one transaction. Default 10ms.
	MinSyncInterval time.Duration
	// FullSyncPeriod is how often our tables are reconciled against the kernel's
	// listing even without events: chains and sets nobody wants are removed. Default
	// 5 minutes. (Everything is rewritten only on the first sync and after a failed
	// one.)
	FullSyncPeriod time.Duration
	Logger         *slog.Logger
}

// Proxier keeps the kernel's table in line with the Services and EndpointSlices it is
// told about. Event methods are cheap and safe for concurrent use; Run does the syncs.
type Proxier struct {
	opts   Options
	log    *slog.Logger
	nfts   map[string]knftables.Interface // by table, owned by the sync goroutine
	kick   chan struct{}
	health *healthServers

	mu       sync.Mutex
	synced   bool
	services map[ServiceKey]*Service
	slices   map[ServiceKey][]*EndpointSlice // unique names; not a map per service (4 MB at 10k)
	dirty    map[ServiceKey]time.Time        // first unsynced event per service

	// Owned by the sync goroutine.
	syncMu  sync.Mutex
	rs      *Ruleset // nil: next sync rewrites everything
	resync  bool     // next sync recomputes every service
	healthW map[ServiceKey]healthWant

	latency   Histogram
	syncTimes Histogram
}

// NewProxier validates opts and returns a Proxier that has not touched the kernel.
func NewProxier(opts Options) (*Proxier, error) {
	if err := opts.Node.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: node config: %w", err)
	}
	if opts.NFT == nil {
		return nil, errors.New("proxy: no nftables interface")
	}
	if opts.MinSyncInterval <= 0 {
		opts.MinSyncInterval = 10 * time.Millisecond
	}
	if opts.FullSyncPeriod <= 0 {
		opts.FullSyncPeriod = 5 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "proxy", "family", string(opts.Node.Family))
	p := &Proxier{
		opts:     opts,
		log:      log,
		kick:     make(chan struct{}, 1),
		services: map[ServiceKey]*Service{},
		slices:   map[ServiceKey][]*EndpointSlice{},
		dirty:    map[ServiceKey]time.Time{},
		healthW:  map[ServiceKey]healthWant{},
		nfts:     map[string]knftables.Interface{},
	}
	if opts.HealthListen != nil {
		p.health = &healthServers{listen: opts.HealthListen, log: log, servers: map[uint16]*healthServer{}}
	}
	return p, nil
}

// OnServiceUpdate records a created or changed Service. An invalid Service is logged
// and ignored: whatever was programmed for it stays.
func (p *Proxier) OnServiceUpdate(svc *Service) {
	if err := svc.Validate(); err != nil {
		p.log.Warn("ignoring invalid service", "service", svc.Key.String(), "err", err)
		return
	}
	p.mu.Lock()
	p.services[svc.Key] = svc
	p.markLocked(svc.Key)
	p.mu.Unlock()
}

// OnServiceDelete records that a Service is gone.
func (p *Proxier) OnServiceDelete(key ServiceKey) {
	p.mu.Lock()
	delete(p.services, key)
	p.markLocked(key)
	p.mu.Unlock()
}

// OnEndpointSliceUpdate records a created or changed EndpointSlice.
func (p *Proxier) OnEndpointSliceUpdate(s *EndpointSlice) {
	p.mu.Lock()
	list := p.slices[s.Service]
	if i := slices.IndexFunc(list, func(o *EndpointSlice) bool { return o.Name == s.Name }); i >= 0 {
		list[i] = s
	} else {
		p.slices[s.Service] = append(list, s)
	}
	p.markLocked(s.Service)
	p.mu.Unlock()
}

// OnEndpointSliceDelete records that an EndpointSlice of service svc is gone.
func (p *Proxier) OnEndpointSliceDelete(svc ServiceKey, name string) {
	p.mu.Lock()
	list := p.slices[svc]
	if i := slices.IndexFunc(list, func(o *EndpointSlice) bool { return o.Name == name }); i >= 0 {
		if len(list) == 1 {
			delete(p.slices, svc)
		} else {
			p.slices[svc] = slices.Delete(list, i, i+1)
		}
	}
	p.markLocked(svc)
	p.mu.Unlock()
}

// OnSynced tells the Proxier that the initial lists of Services and EndpointSlices
// have been delivered; no sync happens before, so a restart never programs a partial
// view.
func (p *Proxier) OnSynced() {
	p.mu.Lock()
	p.synced = true
	p.mu.Unlock()
	p.poke()
}

func (p *Proxier) markLocked(key ServiceKey) {
	if _, ok := p.dirty[key]; !ok {
		p.dirty[key] = time.Now()
	}
	if p.synced {
		p.poke()
	}
}

func (p *Proxier) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Latency returns the histogram of the time from a change event to its rules being
// committed to the kernel.
func (p *Proxier) Latency() HistogramSnapshot { return p.latency.Snapshot() }

// SyncDurations returns the histogram of sync (compute + transaction) durations.
func (p *Proxier) SyncDurations() HistogramSnapshot { return p.syncTimes.Snapshot() }

// Run syncs on events (at most one sync per MinSyncInterval), does a full sync every
// FullSyncPeriod, retries failures with backoff, and returns when ctx is done. It
// stops health-check servers on return; the nftables table stays, so traffic keeps
// flowing while the agent restarts.
func (p *Proxier) Run(ctx context.Context) error {
	if p.health != nil {
		defer p.health.close()
	}
	full := time.NewTicker(p.opts.FullSyncPeriod)
	defer full.Stop()
	var retry <-chan time.Time
	backoff := time.Second
	var last time.Time
	for {
		forceFull := false
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-full.C:
			forceFull = true
		case <-retry:
			retry = nil
		}
		if wait := p.opts.MinSyncInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		last = time.Now()
		if forceFull {
			p.syncMu.Lock()
			p.resync = true
			p.syncMu.Unlock()
		}
		if err := p.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Error("sync failed, retrying", "err", err, "in", backoff)
			retry = time.After(backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		p.syncMu.Lock()
		stale := p.rs != nil && p.rs.StaleChains() > 0
		p.syncMu.Unlock()
		if stale && retry == nil {
			retry = time.After(staleChainDelay + 10*time.Millisecond)
		}
	}
}

// Sync writes pending changes to the kernel in one transaction now (a full sync on
// the first call and after a failure). It does nothing before OnSynced.
func (p *Proxier) Sync(ctx context.Context) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	start := time.Now()

	p.mu.Lock()
	if !p.synced {
		p.mu.Unlock()
		return nil
	}
	full := p.rs == nil
	resync := p.resync && !full
	dirty := p.dirty
	p.dirty = map[ServiceKey]time.Time{}
	keys := make([]ServiceKey, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	switch {
	case full:
		for k := range p.services {
			if _, ok := dirty[k]; !ok {
				keys = append(keys, k)
			}
		}
	case resync:
		// Rules are a pure function of a service and its slices, and every
		// event marks its service dirty: recomputing the others would give the
		// same rules (and hold a second set of all of them: +50 MB at 10k
		// services). A resync reconciles the kernel's listing against what
		// the Ruleset knows, and drops services it should not have.
		for k := range p.rs.services {
			if _, ok := dirty[k]; !ok && p.services[k] == nil {
				keys = append(keys, k)
			}
		}
	}
	type input struct {
		svc *Service
		eps []*EndpointSlice
	}
	inputs := make(map[ServiceKey]input, len(keys))
	for _, k := range keys {
		// A copy: the event methods change the list in place.
		in := input{svc: p.services[k], eps: slices.Clone(p.slices[k])}
		inputs[k] = in
	}
	p.mu.Unlock()

	computed := make(map[ServiceKey]*ServiceRules, len(inputs))
	for k, in := range inputs {
		computed[k] = ComputeService(p.opts.Node, in.svc, in.eps) // nil when deleted
	}

	prev := p.rs
	tx := p.newTx()
	var next *Ruleset
	var nl *netlinkBatch
	streamed := false
	var fullRules map[ServiceKey]*ServiceRules
	var fullExisting Existing
	if full {
		existing, err := p.listExisting(ctx)
		if err != nil {
			p.requeue(dirty)
			return err
		}
		next, _ = NewRuleset(p.opts.Node) // config validated in NewProxier
		all := map[ServiceKey]*ServiceRules{}
		for k, r := range computed {
			if r != nil {
				all[k] = r
			}
		}
		if p.opts.NFTCommand != nil {
			streamed = true
		} else {
			next.WriteFull(tx, all, existing, start)
		}
		fullRules = all
		fullExisting = existing
	} else {
		next = prev
		prevCopy := map[ServiceKey]*ServiceRules{}
		for k := range computed {
			prevCopy[k] = prev.services[k]
		}
		prev = &Ruleset{services: prevCopy}
		var w ops
		if resync {
			existing, err := p.listExisting(ctx)
			if err != nil {
				p.requeue(dirty)
				return err
			}
			next.reconcile(&w, existing, start)
		}
		next.writeUpdate(&w, computed, start)
		if p.opts.Netlink != nil && len(w) <= maxNetlinkOps {
			var err error
			if nl, err = compileNetlink(p.opts.Node, w); err != nil {
				p.log.Debug("sync through nft", "reason", err)
			}
		}
		if nl == nil {
			w.toTransaction(p.opts.Node, tx)
		}
	}
	via := "nft"
	var err error
	if streamed {
		via = "nft stream"
		err = p.streamFull(ctx, next, fullRules, fullExisting, start)
	} else if nl != nil {
		via = "netlink"
		var c *nftables.Conn
		if c, err = p.opts.Netlink(); err == nil {
			if err = nl.queue(c); err == nil {
				err = c.Flush()
			}
		}
	} else {
		err = p.run(ctx, tx)
	}
	if err != nil {
		p.rs = nil // the Ruleset no longer matches the kernel
		p.requeue(dirty)
		return fmt.Errorf("proxy: sync %d services (full=%v, via %s): %w", len(computed), full, via, err)
	}
	p.rs = next
	p.resync = false
	done := time.Now()
	p.syncTimes.Observe(done.Sub(start))
	for _, t := range dirty {
		p.latency.Observe(done.Sub(t))
	}
	if next.Conflicts > 0 {
		p.log.Warn("services claim the same address and port; first one in name order wins", "conflicts", next.Conflicts)
	}
	p.log.Debug("synced", "services", len(computed), "full", full, "resync", resync, "via", via, "took", done.Sub(start))

	if p.opts.Conntrack != nil {
		var flows []StaleFlow
		for k, r := range computed {
			var old *ServiceRules
			if prev != nil {
				old = prev.services[k]
			}
			flows = append(flows, staleUDP(old, r)...)
		}
		if full && prev != nil { // services the rewrite dropped
			for k, old := range prev.services {
				if _, seen := computed[k]; !seen {
					flows = append(flows, staleUDP(old, nil)...)
				}
			}
		}
		if err := p.opts.Conntrack.DeleteUDP(flows); err != nil {
			p.log.Error("conntrack cleanup", "err", err)
		}
	}
	if p.health != nil {
		if full {
			p.healthW = map[ServiceKey]healthWant{}
		}
		for k, r := range computed {
			if r == nil || r.HealthCheckNodePort == 0 {
				delete(p.healthW, k)
			} else {
				p.healthW[k] = healthWant{key: k, count: r.LocalEndpoints}
			}
		}
		want := map[uint16]healthWant{}
		for k := range p.healthW {
			want[next.services[k].HealthCheckNodePort] = p.healthW[k]
		}
		p.health.sync(want)
	}
	if full || resync {
		// A first sync's computation and transaction text are garbage now and
		// several times the steady state, and so is a resync's second set of
		// every service's rules (the old set too, once the conntrack diff
		// above is done): give the memory back at once rather than keep it
		// resident until the scavenger does. At 10k services a resync left
		// the RSS ~60 MB higher; a forced GC every FullSyncPeriod is cheap.
		debug.FreeOSMemory()
	}
	return nil
}

func (p *Proxier) requeue(dirty map[ServiceKey]time.Time) {
	p.mu.Lock()
	for k, t := range dirty {
		if cur, ok := p.dirty[k]; !ok || t.Before(cur) {
			p.dirty[k] = t
		}
	}
	p.mu.Unlock()
}

func (p *Proxier) nft(table string) knftables.Interface {
	n := p.nfts[table]
	if n == nil {
		n = p.opts.NFT(table)
		p.nfts[table] = n
	}
	return n
}

func (p *Proxier) newTx() *Tx {
	return NewTx(func(table string) *knftables.Transaction { return p.nft(table).NewTransaction() })
}

// run applies tx as one nft transaction (or, without NFTCommand, table by table).
func (p *Proxier) run(ctx context.Context, tx *Tx) error {
	if p.opts.NFTCommand == nil {
		for _, t := range tx.Tables() {
			if err := p.nft(t).Run(ctx, tx.Table(t)); err != nil {
				return fmt.Errorf("table %s: %w", t, err)
			}
		}
		return nil
	}
	return runNFT(p.opts.NFTCommand(ctx), tx.String())
}

func (p *Proxier) listExisting(ctx context.Context) (Existing, error) {
	if p.opts.Netlink != nil {
		c, err := p.opts.Netlink()
		if err == nil {
			var ex Existing
			if ex, err = listNetlink(c, p.opts.Node); err == nil {
				return ex, nil
			}
		}
		return Existing{}, fmt.Errorf("proxy: list tables %s %s* over netlink: %w", p.opts.Node.Family, TableName, err)
	}
	var ex Existing
	for _, t := range p.opts.Node.tables() {
		all, err := p.nft(t).ListAll(ctx)
		if knftables.IsNotFound(err) {
			continue
		}
		if err != nil {
			return Existing{}, fmt.Errorf("proxy: list table %s %s: %w", p.opts.Node.Family, t, err)
		}
		ex.Tables = append(ex.Tables, t)
		for _, c := range all["chain"] {
			ex.Chains = append(ex.Chains, qname{t, c})
		}
		for _, s := range all["set"] {
			ex.Sets = append(ex.Sets, qname{t, s})
		}
	}
	return ex, nil
}

// DefaultHealthListen listens on all addresses of the current network namespace.
func DefaultHealthListen(port uint16) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(int(port))))
}
