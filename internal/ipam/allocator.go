package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Durable state, one directory per node:
//
//	<dir>/lock          flock'ed for the Allocator's lifetime: one process owns the state at a time
//	<dir>/addrs/<ip>    one file per allocated IP, holding the owner Handle as JSON
//
// An IP file is created with O_EXCL under its final name and written with one write(2) before Allocate returns.
// O_EXCL fails if the name exists, so the file system itself guarantees that an IP has at most one owner. The
// file I/O runs outside the Allocator's lock with the IP reserved in memory.
//
// What the state must survive is the agent dying (SIGKILL, OOM kill, panic, upgrade) while pods live on: then
// the page cache holds every file written, so a restarted agent sees every IP it handed out. A SIGKILL at any
// point leaves no file, or a complete one, or an empty one for an IP the caller never saw (kept reserved with an
// unknown owner until GC frees it). The state is not fsync'ed by default: what loses the page cache (a kernel
// crash, a power cut) also ends every pod on the node, so no IP it could forget is live, and losing a release
// only leaks the IP until GC. Config.Sync fsyncs each allocation and its directory entry for those who want the
// records to survive power cuts too, at a journal commit per ADD. Temporary files of the earlier
// write-then-link(2) scheme are removed when the state is opened.

// ErrExhausted is wrapped by BlockSource.Claim when no block of the pod CIDR is left to claim, and by Allocate
// when the pod CIDR is exhausted. Test with errors.Is or IsExhausted.
var ErrExhausted = errors.New("pod CIDR exhausted")

// IsExhausted reports whether err says the pod CIDR has no address left, locally or across the wire.
func IsExhausted(err error) bool {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Kind == KindExhausted
	}
	return errors.Is(err, ErrExhausted)
}

// BlockSource tells the Allocator which blocks its node holds and claims another when they are full.
// Implementations must be safe for concurrent use; the Allocator calls Claim only while holding its own lock.
type BlockSource interface {
	// Blocks returns the blocks this node holds now.
	Blocks(ctx context.Context) ([]netip.Prefix, error)
	// Claim takes one more block for this node and returns it; an error wrapping ErrExhausted means none is left.
	Claim(ctx context.Context) (netip.Prefix, error)
}

// Handle identifies the owner of an IP. Identity is the attachment (ContainerID, IfName), as in the CNI spec;
// the pod fields are for humans and for GC decisions by the agent.
type Handle struct {
	ContainerID  string `json:"containerID"`
	IfName       string `json:"ifName"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	Netns        string `json:"netns,omitempty"`
}

// Key is the identity of the attachment.
func (h Handle) Key() string { return h.ContainerID + "/" + h.IfName }

func (h Handle) String() string {
	if h.PodName != "" {
		return fmt.Sprintf("%s (pod %s/%s)", h.Key(), h.PodNamespace, h.PodName)
	}
	return h.Key()
}

func (h Handle) validate() error {
	if h.ContainerID == "" || h.IfName == "" {
		return fmt.Errorf("ipam: handle needs a container ID and an interface name, got %q", h.Key())
	}
	return nil
}

// Allocation is one allocated IP and its owner.
type Allocation struct {
	Addr   netip.Addr `json:"addr"`
	Handle Handle     `json:"handle"`
	// Since is when the IP was allocated (the file's content; zero if unreadable).
	Since time.Time `json:"since,omitzero"`
}

// Config configures an Allocator.
type Config struct {
	// Dir holds the durable state; it is created if missing. One directory per node.
	Dir string
	// PodCIDR is the cluster's pod CIDR; its first address is never handed out, blocks outside it are ignored.
	PodCIDR netip.Prefix
	// Source lists and claims this node's blocks.
	Source BlockSource
	Logger *slog.Logger
	// Sync makes each allocation durable against power cuts (fsync of the file and the directory) before
	// Allocate returns. Without it allocations survive the agent's crash, which is what keeps IPs unique; see
	// the package's notes on durable state.
	Sync bool
}

// Allocator hands out pod IPs from the node's blocks, durably. Safe for concurrent use; one per state directory.
type Allocator struct {
	cfg  Config
	log  *slog.Logger
	lock *os.File
	dir  string // <Dir>/addrs

	mu     sync.Mutex
	byAddr map[netip.Addr]Allocation
	byKey  map[string]netip.Addr
	last   netip.Addr // next-fit cursor: freed IPs are reused last, which keeps stale conntrack/ARP away
	// pending holds the allocations whose file is being written, by handle key; done closes when the write
	// ends. Their IPs are in byAddr and byKey already, so nobody else picks them.
	pending map[string]chan struct{}
}

// New opens (or creates) the state in cfg.Dir, takes its lock and loads the allocations.
func New(cfg Config) (*Allocator, error) {
	if cfg.Dir == "" || cfg.Source == nil {
		return nil, fmt.Errorf("ipam: config needs Dir and Source")
	}
	if !cfg.PodCIDR.IsValid() || cfg.PodCIDR.Masked() != cfg.PodCIDR {
		return nil, fmt.Errorf("ipam: pod CIDR %q must be a valid masked prefix", cfg.PodCIDR)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Allocator{cfg: cfg, log: log.With("component", "ipam"), dir: filepath.Join(cfg.Dir, "addrs"),
		byAddr: map[netip.Addr]Allocation{}, byKey: map[string]netip.Addr{}, pending: map[string]chan struct{}{}}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return nil, fmt.Errorf("ipam: state dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ipam: state lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("ipam: state %s is locked by another process: %w", cfg.Dir, err)
	}
	a.lock = lock
	if err := a.load(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Close releases the state lock. The state stays on disk.
func (a *Allocator) Close() error {
	if a.lock == nil {
		return nil
	}
	err := a.lock.Close() // closing drops the flock
	a.lock = nil
	return err
}

func (a *Allocator) load() error {
	ents, err := os.ReadDir(a.dir)
	if err != nil {
		return fmt.Errorf("ipam: read state: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			// An Allocate that died before link(2): never handed out.
			_ = os.Remove(filepath.Join(a.dir, name))
			continue
		}
		addr, err := netip.ParseAddr(name)
		if err != nil {
			a.log.Warn("ignoring unknown file in state dir", "file", name)
			continue
		}
		al := Allocation{Addr: addr}
		data, err := os.ReadFile(filepath.Join(a.dir, name))
		if err == nil {
			err = json.Unmarshal(data, &al)
		}
		if err != nil || al.Addr != addr {
			// A write cut short by a crash (its caller never saw the IP) or disk damage: keep the IP reserved,
			// owner unknown, so GC frees it.
			a.log.Warn("unreadable allocation kept reserved until GC", "addr", addr, "err", err)
			al = Allocation{Addr: addr}
		}
		a.byAddr[addr] = al
		if al.Handle.validate() == nil {
			if prev, dup := a.byKey[al.Handle.Key()]; !dup || addr.Less(prev) {
				a.byKey[al.Handle.Key()] = addr
			}
		}
		if a.last.Less(addr) {
			a.last = addr
		}
	}
	a.log.Info("state loaded", "dir", a.cfg.Dir, "allocations", len(a.byAddr))
	return nil
}

// Allocate returns the IP of h, allocating one if h holds none. It is idempotent per h.Key(); new reports
// whether this call allocated it. When the node's blocks are full it claims one more from the Source.
func (a *Allocator) Allocate(ctx context.Context, h Handle) (addr netip.Addr, isNew bool, err error) {
	if err := h.validate(); err != nil {
		return netip.Addr{}, false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		addr, ok := a.byKey[h.Key()]
		if !ok {
			break
		}
		done, busy := a.pending[h.Key()]
		if !busy {
			return addr, false, nil
		}
		// A concurrent call is recording this attachment's IP: answer once it is written (or, if that
		// failed, try again here).
		a.mu.Unlock()
		<-done
		a.mu.Lock()
	}
	blocks, err := a.cfg.Source.Blocks(ctx)
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("ipam: list node blocks: %w", err)
	}
	blocks = a.usable(blocks)
	for range 16 { // a Claim per round; more rounds only if a source returns blocks that are already full
		addr, ok := a.pick(blocks)
		if ok {
			if err := a.record(Allocation{Addr: addr, Handle: h, Since: time.Now().UTC()}); err != nil {
				return netip.Addr{}, false, err
			}
			a.log.Debug("allocated", "addr", addr, "handle", h.String())
			return addr, true, nil
		}
		blk, err := a.cfg.Source.Claim(ctx)
		if err != nil {
			if errors.Is(err, ErrExhausted) {
				return netip.Addr{}, false, fmt.Errorf("ipam: no IP for %s: pod CIDR %s is exhausted (this node's %d blocks are full and no block is left to claim): %w",
					h, a.cfg.PodCIDR, len(blocks), err)
			}
			return netip.Addr{}, false, fmt.Errorf("ipam: claim a block: %w", err)
		}
		a.log.Info("claimed block", "block", blk)
		blocks = a.usable(append(blocks, blk))
	}
	return netip.Addr{}, false, fmt.Errorf("ipam: no IP for %s: claimed blocks are full", h)
}

func (a *Allocator) usable(blocks []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(blocks))
	for _, b := range blocks {
		b = b.Masked()
		if !a.cfg.PodCIDR.Contains(b.Addr()) || b.Bits() < a.cfg.PodCIDR.Bits() {
			a.log.Warn("ignoring block outside the pod CIDR", "block", b, "podCIDR", a.cfg.PodCIDR)
			continue
		}
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return out
}

// pick finds a free address, next-fit after the last allocated one, wrapping once.
// The first address of every block is never a pod's: it is the node's tunnel (VTEP)
// address in VXLAN mode (see routing.VTEPAddr), and for the first block the pod CIDR's
// network address.
func (a *Allocator) pick(blocks []netip.Prefix) (netip.Addr, bool) {
	free := func(b netip.Prefix, x netip.Addr) bool {
		_, used := a.byAddr[x]
		return !used && x != b.Addr()
	}
	for _, wrapped := range []bool{false, true} {
		for _, b := range blocks {
			for x := range Addrs(b) {
				if !wrapped && !a.last.Less(x) {
					continue
				}
				if free(b, x) {
					return x, true
				}
			}
		}
	}
	return netip.Addr{}, false
}

// record reserves al in memory, writes its file with a.mu released, and keeps it if the write succeeded.
// The caller holds a.mu.
func (a *Allocator) record(al Allocation) error {
	key := al.Handle.Key()
	done := make(chan struct{})
	a.byAddr[al.Addr] = al
	a.byKey[key] = al.Addr
	a.pending[key] = done
	a.last = al.Addr
	a.mu.Unlock()
	err := a.write(al)
	a.mu.Lock()
	delete(a.pending, key)
	close(done)
	if err != nil {
		delete(a.byKey, key)
		delete(a.byAddr, al.Addr)
		if errors.Is(err, fs.ErrExist) {
			// The disk knows an owner the index does not: never hand it out again in this process.
			a.byAddr[al.Addr] = Allocation{Addr: al.Addr}
		}
	}
	return err
}

// write creates the file of al (O_EXCL: at most one owner per IP), fsync'ed with Config.Sync.
func (a *Allocator) write(al Allocation) error {
	data, err := json.Marshal(al)
	if err != nil {
		return fmt.Errorf("ipam: encode allocation: %w", err)
	}
	name := filepath.Join(a.dir, al.Addr.String())
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("ipam: record allocation %s: %w", al.Addr, err)
	}
	_, err = f.Write(data)
	if err == nil && a.cfg.Sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && a.cfg.Sync {
		err = syncDir(a.dir)
	}
	if err != nil {
		// Not handed out: remove it (if the removal is lost too, the file reserves the IP until GC).
		_ = os.Remove(name)
		return fmt.Errorf("ipam: record allocation %s: %w", al.Addr, err)
	}
	return nil
}

// Lookup returns the IP held by the attachment of h.
func (a *Allocator) Lookup(h Handle) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr, ok := a.byKey[h.Key()]
	return addr, ok
}

// Release frees every IP held by the attachment of h and returns them; none held is not an error.
func (a *Allocator) Release(h Handle) ([]netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.free(func(al Allocation) bool { return al.Handle.Key() == h.Key() && al.Handle.validate() == nil })
}

// GC frees every IP whose owner keep rejects (allocations with an unreadable owner are offered as a zero
// Handle) and returns them. The caller must not run Allocate for a handle keep rejects concurrently.
func (a *Allocator) GC(keep func(Handle) bool) ([]netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.free(func(al Allocation) bool { return !keep(al.Handle) })
}

// free removes the allocations match accepts. The caller holds a.mu; free waits for allocations being written
// so that it never races their files.
func (a *Allocator) free(match func(Allocation) bool) ([]netip.Addr, error) {
	for len(a.pending) > 0 {
		var done chan struct{}
		for _, done = range a.pending {
			break
		}
		a.mu.Unlock()
		<-done
		a.mu.Lock()
	}
	var freed []netip.Addr
	var errs []error
	for addr, al := range a.byAddr {
		if !match(al) {
			continue
		}
		if err := os.Remove(filepath.Join(a.dir, addr.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		delete(a.byAddr, addr)
		if a.byKey[al.Handle.Key()] == addr {
			delete(a.byKey, al.Handle.Key())
		}
		freed = append(freed, addr)
	}
	slices.SortFunc(freed, netip.Addr.Compare)
	if err := errors.Join(errs...); err != nil {
		return freed, fmt.Errorf("ipam: release: %w", err)
	}
	for _, x := range freed {
		a.log.Debug("released", "addr", x)
	}
	return freed, nil
}

// Allocations returns all allocations in address order.
func (a *Allocator) Allocations() []Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Allocation, 0, len(a.byAddr))
	for _, al := range a.byAddr {
		out = append(out, al)
	}
	slices.SortFunc(out, func(x, y Allocation) int { return x.Addr.Compare(y.Addr) })
	return out
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// StaticBlocks is an in-process BlockSource for tests and single-node use: it hands out the blocks of one pod
// CIDR in address order, up to Max (0: all). Claims are not persisted; after a restart the node claims the same
// blocks again, which is harmless because the Allocator's state still records every allocated IP.
type StaticBlocks struct {
	mu    sync.Mutex
	b     Blocking
	max   int
	owned []netip.Prefix
}

// NewStaticBlocks returns a source over b that allows at most max blocks (0: every block of the pod CIDR).
func NewStaticBlocks(b Blocking, max int) *StaticBlocks {
	if max <= 0 || max > b.Count() {
		max = b.Count()
	}
	return &StaticBlocks{b: b, max: max}
}

func (s *StaticBlocks) Blocks(context.Context) ([]netip.Prefix, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.owned), nil
}

func (s *StaticBlocks) Claim(context.Context) (netip.Prefix, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.owned) >= s.max {
		return netip.Prefix{}, fmt.Errorf("static blocks: all %d blocks of %s claimed: %w", s.max, s.b.CIDR, ErrExhausted)
	}
	p, _ := s.b.At(len(s.owned))
	s.owned = append(s.owned, p)
	return p, nil
}
