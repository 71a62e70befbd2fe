// Package kubeblocks is the ipam.BlockSource of one node backed by the Kubernetes API: each pod IP block the
// node owns is an IPAMBlock object (edgenet.io/v1alpha1) named after its CIDR. Claiming a block is creating
// its object; the apiserver's name uniqueness decides races between nodes, so no block is ever owned by two
// nodes, without locks or leader election. Blocks are read from an informer cache that keeps only each
// block's name, UID, resourceVersion, CIDR and node.
//
// Every block carries an ownerReference to its Node object. When a Node is deleted, Kubernetes' garbage
// collector (kube-controller-manager's garbagecollector controller, which the appliance runs) deletes the
// node's IPAMBlocks and so frees their addresses; nothing here has to notice. A node that is only down keeps
// its blocks: its pods' IPs stay reserved until it comes back or its Node is deleted.
//
// The package talks to the apiserver only; it knows nothing of pods, the allocator's state or routes.
package kubeblocks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/ipam"
)

// NodeGetter reads Node objects; the CoreV1().Nodes() of a clientset is one.
type NodeGetter interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Node, error)
}

// Config configures a Source.
type Config struct {
	// Client reaches the edgenet.io API.
	Client *v1.Client
	// NodeName is the node whose blocks this Source serves and claims.
	NodeName string
	// NodeUID is the Node object's UID, used in the blocks' ownerReference. When empty, New reads it with Nodes.
	NodeUID types.UID
	// Nodes, when set, reads the Node's UID again before every Claim, so that a Node deleted and registered
	// again (new UID) gets blocks the garbage collector leaves alone. Required when NodeUID is empty.
	Nodes NodeGetter
	// PodCIDR is the cluster's pod CIDR and BlockBits the prefix length of its blocks (ComputeNetwork
	// spec.podCIDR and spec.podBlockSize).
	PodCIDR   netip.Prefix
	BlockBits int
	Logger    *slog.Logger
}

// Source is the BlockSource of one node. Call Run to fill its cache; Blocks, Claim and Release wait until the
// cache has synced (or their context ends). Safe for concurrent use.
type Source struct {
	client *v1.Client
	node   string
	nodes  NodeGetter // nil: nodeUID never changes
	blocks ipam.Blocking
	log    *slog.Logger
	inf    cache.SharedIndexInformer

	mu       sync.Mutex
	nodeUID  types.UID        // of the Node object blocks are claimed for
	changed  chan struct{}    // closed and replaced on every cache change
	inflight map[int]struct{} // block indexes a Claim of this Source is creating right now
	started  bool
}

const byNode = "node"

// New checks cfg, looks up the Node's UID if needed and prepares the informer; it does not start it.
func New(ctx context.Context, cfg Config) (*Source, error) {
	if cfg.Client == nil || cfg.NodeName == "" {
		return nil, fmt.Errorf("kubeblocks: config needs Client and NodeName")
	}
	b, err := ipam.NewBlocking(cfg.PodCIDR, cfg.BlockBits)
	if err != nil {
		return nil, fmt.Errorf("kubeblocks: %w", err)
	}
	first, _ := b.At(0)
	if _, err := v1.BlockName(first); err != nil {
		return nil, fmt.Errorf("kubeblocks: pod CIDR %s cannot be cut into named blocks: %w", cfg.PodCIDR, err)
	}
	uid := cfg.NodeUID
	if uid == "" {
		if cfg.Nodes == nil {
			return nil, fmt.Errorf("kubeblocks: config needs NodeUID or Nodes to look it up")
		}
		n, err := cfg.Nodes.Get(ctx, cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("kubeblocks: look up node %s: %w", cfg.NodeName, err)
		}
		uid = n.UID
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Source{
		client: cfg.Client, node: cfg.NodeName, nodes: cfg.Nodes, nodeUID: uid, blocks: b,
		log:      log.With("component", "kubeblocks", "node", cfg.NodeName),
		changed:  make(chan struct{}),
		inflight: map[int]struct{}{},
	}
	// Every node's blocks are cached, not only ours: Claim needs to know which are taken. That is one small
	// object per block (1024 for a /16 in /26 blocks).
	s.inf = cfg.Client.IPAMBlocks().NewInformer(nil, 0)
	if err := s.inf.SetTransform(strip); err != nil {
		return nil, fmt.Errorf("kubeblocks: %w", err)
	}
	if err := s.inf.AddIndexers(cache.Indexers{byNode: func(obj any) ([]string, error) {
		if blk, ok := obj.(*v1.IPAMBlock); ok {
			return []string{blk.Spec.Node}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("kubeblocks: %w", err)
	}
	notify := func(any) { s.notify() }
	if _, err := s.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify, DeleteFunc: notify, UpdateFunc: func(_, o any) { s.notify() },
	}); err != nil {
		return nil, fmt.Errorf("kubeblocks: %w", err)
	}
	return s, nil
}

// strip keeps what Blocks, Claim and Release read: identity, version, CIDR, node and the Node owner's UID.
func strip(obj any) (any, error) {
	blk, ok := obj.(*v1.IPAMBlock)
	if !ok {
		return obj, nil
	}
	out := &v1.IPAMBlock{
		ObjectMeta: metav1.ObjectMeta{Name: blk.Name, UID: blk.UID, ResourceVersion: blk.ResourceVersion},
		Spec:       blk.Spec,
	}
	for _, o := range blk.OwnerReferences {
		if o.Kind == "Node" && o.APIVersion == "v1" {
			out.OwnerReferences = []metav1.OwnerReference{{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID}}
			break
		}
	}
	return out, nil
}

// nodeOwner is the UID of the Node a cached block points at, or "".
func nodeOwner(blk *v1.IPAMBlock) types.UID {
	if len(blk.OwnerReferences) == 0 {
		return ""
	}
	return blk.OwnerReferences[0].UID
}

func (s *Source) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Run keeps the cache in step with the API until ctx ends. Call it once.
func (s *Source) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return fmt.Errorf("kubeblocks: Run called twice")
	}
	s.started = true
	s.mu.Unlock()
	s.log.Info("watching IPAM blocks", "podCIDR", s.blocks.CIDR, "blockBits", s.blocks.Bits)
	s.inf.RunWithContext(ctx)
	return nil
}

// HasSynced reports whether the cache holds a full list.
func (s *Source) HasSynced() bool { return s.inf.HasSynced() }

// waitSynced waits for the first full list, polling: an empty list fires no event.
func (s *Source) waitSynced(ctx context.Context) error {
	for !s.inf.HasSynced() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubeblocks: node %s: IPAM block cache not synced: %w", s.node, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// waitFor waits until cond holds on the cache, or ctx ends.
func (s *Source) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ch:
		}
	}
}

// cached returns the cached block called name.
func (s *Source) cached(name string) (*v1.IPAMBlock, bool) {
	obj, ok, _ := s.inf.GetIndexer().GetByKey(name)
	if !ok {
		return nil, false
	}
	blk, ok := obj.(*v1.IPAMBlock)
	return blk, ok
}

// Blocks returns the blocks of the pod CIDR this node owns, in address order, from the cache. Blocks that name
// this node but belong to an earlier incarnation of its Node object (another owner UID) are left out: the
// garbage collector is about to delete them.
func (s *Source) Blocks(ctx context.Context) ([]netip.Prefix, error) {
	if err := s.waitSynced(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	uid := s.nodeUID
	s.mu.Unlock()
	objs, err := s.inf.GetIndexer().ByIndex(byNode, s.node)
	if err != nil {
		return nil, fmt.Errorf("kubeblocks: node %s: %w", s.node, err)
	}
	out := make([]netip.Prefix, 0, len(objs))
	for _, o := range objs {
		blk := o.(*v1.IPAMBlock)
		if owner := nodeOwner(blk); owner != "" && owner != uid {
			continue
		}
		p, err := netip.ParsePrefix(blk.Spec.CIDR)
		if err != nil || !s.blocks.IsBlock(p) {
			s.log.Warn("ignoring a block that is not one of the pod CIDR's", "block", blk.Name, "cidr", blk.Spec.CIDR,
				"podCIDR", s.blocks.CIDR, "blockBits", s.blocks.Bits)
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out, nil
}

// taken returns the indexes of blocks the cache says exist (for any node) or this Source is creating now.
// Cached blocks of another size (which an immutable podBlockSize rules out) count for every block they overlap.
func (s *Source) taken() map[int]struct{} {
	t := map[int]struct{}{}
	for _, o := range s.inf.GetIndexer().List() {
		p, err := netip.ParsePrefix(o.(*v1.IPAMBlock).Spec.CIDR)
		if err != nil || !p.Overlaps(s.blocks.CIDR) {
			continue
		}
		if p.Bits() >= s.blocks.Bits {
			if i, ok := s.blocks.Index(p.Addr()); ok {
				t[i] = struct{}{}
			}
			continue
		}
		for i, b := range s.blocks.All() {
			if p.Overlaps(b) {
				t[i] = struct{}{}
			}
		}
	}
	s.mu.Lock()
	for i := range s.inflight {
		t[i] = struct{}{}
	}
	s.mu.Unlock()
	return t
}

// settleTimeout bounds how long Claim and Release wait for the cache to show their own change.
const settleTimeout = 10 * time.Second

// Claim takes the lowest block of the pod CIDR that no node owns, by creating its IPAMBlock. Losing a block
// to another node (AlreadyExists) moves on to the next; when every block exists the error wraps
// ipam.ErrExhausted. On success the block is in the cache (so in Blocks) before Claim returns, unless the
// watch lags by more than settleTimeout.
func (s *Source) Claim(ctx context.Context) (netip.Prefix, error) {
	if err := s.waitSynced(ctx); err != nil {
		return netip.Prefix{}, err
	}
	uid, err := s.refreshNodeUID(ctx)
	if err != nil {
		return netip.Prefix{}, err
	}
	lost := map[int]struct{}{} // blocks found taken by this call that the cache does not show yet
	for {
		taken := s.taken()
		i := -1
		for j := range s.blocks.Count() {
			_, t := taken[j]
			_, l := lost[j]
			if !t && !l {
				i = j
				break
			}
		}
		if i < 0 {
			return netip.Prefix{}, fmt.Errorf("kubeblocks: node %s: pod CIDR %s is exhausted: all %d blocks of /%d are owned: %w",
				s.node, s.blocks.CIDR, s.blocks.Count(), s.blocks.Bits, ipam.ErrExhausted)
		}
		p, _ := s.blocks.At(i)
		name, err := v1.BlockName(p)
		if err != nil {
			s.log.Warn("skipping a block with no object name", "block", p, "err", err)
			lost[i] = struct{}{}
			continue
		}
		s.mu.Lock()
		if _, busy := s.inflight[i]; busy { // a sibling Claim got there since taken()
			s.mu.Unlock()
			continue
		}
		s.inflight[i] = struct{}{}
		s.mu.Unlock()
		created, err := s.create(ctx, name, p, uid)
		s.mu.Lock()
		delete(s.inflight, i)
		s.mu.Unlock()
		switch {
		case apierrors.IsAlreadyExists(err):
			s.log.Debug("block taken meanwhile, trying the next", "block", p)
			lost[i] = struct{}{}
			continue
		case err != nil:
			return netip.Prefix{}, fmt.Errorf("kubeblocks: node %s: claim block %s: %w", s.node, p, err)
		}
		s.log.Info("claimed block", "block", p)
		s.settle(ctx, "claimed", p, func() bool {
			blk, ok := s.cached(name)
			return ok && blk.UID == created.UID
		})
		return p, nil
	}
}

// refreshNodeUID reads the Node's UID again when it can; a Node registered again has a new one.
func (s *Source) refreshNodeUID(ctx context.Context) (types.UID, error) {
	s.mu.Lock()
	uid := s.nodeUID
	s.mu.Unlock()
	if s.nodes == nil {
		return uid, nil
	}
	n, err := s.nodes.Get(ctx, s.node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("kubeblocks: node %s: look up the Node before claiming: %w", s.node, err)
	}
	if n.UID != uid {
		s.log.Info("Node object was registered again; new blocks point at the new one", "oldUID", uid, "uid", n.UID)
		s.mu.Lock()
		s.nodeUID = n.UID
		s.mu.Unlock()
	}
	return n.UID, nil
}

func (s *Source) create(ctx context.Context, name string, p netip.Prefix, nodeUID types.UID) (*v1.IPAMBlock, error) {
	blk := &v1.IPAMBlock{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			// No blockOwnerDeletion: that needs update rights on Node finalizers, and nothing has to wait.
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: s.node, UID: nodeUID}},
		},
		Spec: v1.IPAMBlockSpec{CIDR: p.String(), Node: s.node},
	}
	return s.client.IPAMBlocks().Create(ctx, blk, metav1.CreateOptions{})
}

// settle waits, bounded, until the cache shows this Source's own change, so that Blocks agrees with what
// Claim or Release just returned. A slow watch costs only a log line: the API object is what counts.
func (s *Source) settle(ctx context.Context, what string, p netip.Prefix, cond func() bool) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if err := s.waitFor(ctx, cond); err != nil {
		s.log.Warn("block cache lags behind the API", "block", p, "change", what, "err", err)
	}
}

// ErrNotOwned is wrapped by Release when the block belongs to another node.
var ErrNotOwned = errors.New("block is owned by another node")

// Release returns block p, which this node owns and no longer uses, by deleting its IPAMBlock, conditional on
// the UID and resourceVersion last seen, so that a block deleted and claimed again by another node in between
// is never deleted. A block that does not exist is already released. A block of another node is refused with
// an error wrapping ErrNotOwned. The caller must make sure no pod uses an address of p.
func (s *Source) Release(ctx context.Context, p netip.Prefix) error {
	if !s.blocks.IsBlock(p) {
		return fmt.Errorf("kubeblocks: node %s: release %s: not a /%d block of pod CIDR %s", s.node, p, s.blocks.Bits, s.blocks.CIDR)
	}
	if err := s.waitSynced(ctx); err != nil {
		return err
	}
	name, err := v1.BlockName(p)
	if err != nil {
		return fmt.Errorf("kubeblocks: node %s: release %s: %w", s.node, p, err)
	}
	blk, ok := s.cached(name)
	for attempt := 0; ; attempt++ {
		if !ok { // not in the cache: it may be newer than the cache, ask the API
			live, err := s.client.IPAMBlocks().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("kubeblocks: node %s: release %s: %w", s.node, p, err)
			}
			blk = live
		}
		if blk.Spec.Node != s.node {
			return fmt.Errorf("kubeblocks: node %s: release %s: owned by node %s: %w", s.node, p, blk.Spec.Node, ErrNotOwned)
		}
		uid, rv := blk.UID, blk.ResourceVersion
		err := s.client.IPAMBlocks().Delete(ctx, name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv},
		})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			s.log.Info("released block", "block", p)
			s.settle(ctx, "released", p, func() bool {
				cur, ok := s.cached(name)
				return !ok || cur.UID != uid
			})
			return nil
		case apierrors.IsConflict(err) && attempt == 0:
			// The cached version is stale: read the live object and decide again, once.
			ok = false
			continue
		default:
			return fmt.Errorf("kubeblocks: node %s: release %s: %w", s.node, p, err)
		}
	}
}

var _ ipam.BlockSource = (*Source)(nil)

// NodeBlocks returns every node's blocks from the cache (routing needs them all).
func (s *Source) NodeBlocks() map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, o := range s.inf.GetStore().List() {
		blk := o.(*v1.IPAMBlock)
		if p, err := netip.ParsePrefix(blk.Spec.CIDR); err == nil && s.blocks.IsBlock(p) {
			out[blk.Spec.Node] = append(out[blk.Spec.Node], p)
		}
	}
	return out
}

// Changed is closed at the next change of the cache.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}
