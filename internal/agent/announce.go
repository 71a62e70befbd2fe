package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"edgenet.io/edgenet/internal/lb/l2"
	"edgenet.io/edgenet/internal/lb/member"
)

// MemberPort is the UDP port of the agents' heartbeats on the site network.
const MemberPort = 7946

// announcer answers ARP/NDP on the site interface for the LoadBalancer IPs this node
// wins among the live, eligible nodes (see internal/lb/member), and records an Event on
// the Service when it takes an address over.
type announcer struct {
	client kubernetes.Interface
	node   string
	nodeIP netip.Addr
	key    []byte
	log    *slog.Logger
}

func (an *announcer) run(ctx context.Context) error {
	ifc, err := interfaceOf(an.nodeIP)
	if err != nil {
		return fmt.Errorf("agent: announcer: %w", err)
	}
	m, err := member.New(member.Config{Name: an.node, Key: an.key, Listen: netip.AddrPortFrom(an.nodeIP, MemberPort), Logger: an.log})
	if err != nil {
		return fmt.Errorf("agent: announcer: %w", err)
	}
	a, err := l2.New(l2.Config{Interface: ifc.Name, Logger: an.log})
	if err != nil {
		return fmt.Errorf("agent: announcer: %w", err)
	}
	f := informers.NewSharedInformerFactoryWithOptions(an.client, 0)
	svcs := f.Core().V1().Services().Informer()
	nodes := f.Core().V1().Nodes().Informer()
	slices := f.Discovery().V1().EndpointSlices().Informer()
	kick := make(chan struct{}, 1)
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { nudge(kick) },
		UpdateFunc: func(any, any) { nudge(kick) },
		DeleteFunc: func(any) { nudge(kick) },
	}
	for _, inf := range []cache.SharedIndexInformer{svcs, nodes, slices} {
		inf.AddEventHandler(h)
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcs.HasSynced, nodes.HasSynced, slices.HasSynced) {
		return nil
	}
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: an.client.CoreV1().Events("")})
	defer bc.Shutdown()
	rec := bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "edgenet-agent", Host: an.node})

	eligible := make(chan map[netip.Addr][]string, 1)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.Run(ctx) })
	g.Go(func() error { return a.Run(ctx) })
	g.Go(func() error { return l2.Follow(ctx, an.node, m, a, eligible) })
	g.Go(func() error {
		var last map[netip.Addr][]string
		held := map[netip.Addr]bool{}
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-kick:
			case <-m.Changed():
			case <-time.After(10 * time.Second):
			}
			if err := m.SetPeers(peersOf(nodes.GetStore().List())); err != nil {
				an.log.Warn("member peers", "err", err)
			}
			elig, owners := eligibleOf(svcs.GetStore().List(), nodes.GetStore().List(), slices.GetStore().List())
			if !maps.EqualFunc(elig, last, slicesEqual) {
				last = elig
				select {
				case <-eligible:
				default:
				}
				eligible <- elig
			}
			// Say on the Service which node announces its address, when that changes to us.
			now := member.Claims(an.node, m.Alive(), elig)
			for ip := range now {
				if !held[ip] {
					for _, svc := range owners[ip] {
						rec.Eventf(svc, corev1.EventTypeNormal, "Announcing", "node %s announces %s on %s (ARP/NDP)", an.node, ip, ifc.Name)
					}
				}
			}
			held = now
		}
	})
	return g.Wait()
}

func nudge(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func slicesEqual(a, b []string) bool { return slices.Equal(a, b) }

// peersOf is every node's heartbeat address: its InternalIP and MemberPort.
func peersOf(objs []any) map[string]netip.AddrPort {
	out := map[string]netip.AddrPort{}
	for _, o := range objs {
		n := o.(*corev1.Node)
		if ip, ok := internalIP(n); ok {
			out[n.Name] = netip.AddrPortFrom(ip, MemberPort)
		}
	}
	return out
}

// eligibleOf maps every LoadBalancer ingress IP to the nodes that may announce it:
// every Ready node, or with externalTrafficPolicy Local only the nodes with a ready
// endpoint of the Service. It also returns the Services behind each IP.
func eligibleOf(svcObjs, nodeObjs, sliceObjs []any) (map[netip.Addr][]string, map[netip.Addr][]*corev1.Service) {
	var ready []string
	for _, o := range nodeObjs {
		if n := o.(*corev1.Node); nodeIsReady(n) {
			ready = append(ready, n.Name)
		}
	}
	local := map[string]map[string]bool{} // namespace/service -> nodes with a ready endpoint
	for _, o := range sliceObjs {
		s := o.(*discoveryv1.EndpointSlice)
		key := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		for _, ep := range s.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				if local[key] == nil {
					local[key] = map[string]bool{}
				}
				local[key][*ep.NodeName] = true
			}
		}
	}
	elig := map[netip.Addr][]string{}
	owners := map[netip.Addr][]*corev1.Service{}
	for _, o := range svcObjs {
		svc := o.(*corev1.Service)
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		nodes := ready
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			nodes = nil
			for _, n := range ready {
				if local[svc.Namespace+"/"+svc.Name][n] {
					nodes = append(nodes, n)
				}
			}
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(ing.IP)
			if err != nil {
				continue
			}
			owners[ip] = append(owners[ip], svc)
			// A shared IP may be announced by a node eligible for any of its Services.
			elig[ip] = union(elig[ip], nodes)
		}
	}
	return elig, owners
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

func nodeIsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
