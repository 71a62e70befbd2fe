package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"edgenet.io/edgenet/internal/routing"
)

// blockLister tells which pod blocks every node holds, and when that changes.
type blockLister interface {
	NodeBlocks() map[string][]netip.Prefix
	Changed() <-chan struct{}
	HasSynced() bool
}

// router keeps the node's routes to every other node's pod blocks in step with the
// Nodes and IPAM blocks in the API.
type router struct {
	mgr     *routing.Manager
	client  kubernetes.Interface
	blocks  blockLister
	local   string
	log     *slog.Logger
	applied *atomic.Bool
}

// routeResync re-applies the desired routes even without a change, repairing what
// someone else changed in the kernel.
const routeResync = 30 * time.Second

func (r *router) run(ctx context.Context) error {
	kick := make(chan struct{}, 1)
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	f := informers.NewSharedInformerFactoryWithOptions(r.client, 0, informers.WithTransform(stripNode))
	inf := f.Core().V1().Nodes().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { signal() }, DeleteFunc: func(any) { signal() }, UpdateFunc: func(o, n any) {
			if ipOf(o) != ipOf(n) {
				signal()
			}
		},
	})
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil
	}
	// The kernel drops routes when their link goes down; re-apply as soon as a link
	// changes or one of our routes disappears, not only at the next resync.
	links := make(chan netlink.LinkUpdate, 16)
	routes := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribe(links, done); err != nil {
		r.log.Warn("link events", "err", err)
	}
	if err := netlink.RouteSubscribe(routes, done); err != nil {
		r.log.Warn("route events", "err", err)
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case _, ok := <-links:
				if !ok {
					links = nil
					continue
				}
				signal()
			case u, ok := <-routes:
				if !ok {
					routes = nil
					continue
				}
				if u.Type == unix.RTM_DELROUTE && u.Protocol == routing.RouteProtocol {
					signal()
				}
			}
		}
	}()
	t := time.NewTicker(routeResync)
	defer t.Stop()
	changed := r.blocks.Changed()
	signal()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-changed:
		case <-t.C:
		}
		// Coalesce a burst of changes into one Apply.
		time.Sleep(20 * time.Millisecond)
		// Take the notification channel before reading the blocks, so that a change
		// made while this Apply runs wakes the next one.
		changed = r.blocks.Changed()
		if !r.blocks.HasSynced() {
			time.AfterFunc(100*time.Millisecond, signal)
			continue
		}
		r.apply(ctx, inf.GetStore().List())
	}
}

func (r *router) apply(ctx context.Context, objs []any) {
	blocks := r.blocks.NodeBlocks()
	var local routing.Node
	var nodes []routing.Node
	for _, o := range objs {
		n := o.(*corev1.Node)
		ip, ok := internalIP(n)
		if !ok {
			continue
		}
		rn := routing.Node{Name: n.Name, IP: ip, Blocks: blocks[n.Name]}
		sort.Slice(rn.Blocks, func(i, j int) bool { return rn.Blocks[i].Addr().Less(rn.Blocks[j].Addr()) })
		if n.Name == r.local {
			local = rn
		}
		nodes = append(nodes, rn)
	}
	if local.Name == "" {
		return
	}
	ch, err := r.mgr.Apply(ctx, local, nodes)
	if err != nil {
		r.log.Error("apply routes", "err", err)
		return
	}
	if !ch.Zero() {
		r.log.Info("routes applied", "nodes", len(nodes), "changes", ch)
	}
	r.applied.Store(true)
}

func ipOf(o any) string {
	if n, ok := o.(*corev1.Node); ok {
		if ip, ok := internalIP(n); ok {
			return ip.String()
		}
	}
	return ""
}

// stripNode keeps the name and addresses: all routing reads of a Node.
func stripNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion},
		Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}
