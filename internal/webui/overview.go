package webui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	lbcontroller "edgenet.io/edgenet/internal/lb/controller"
)

// Overview is the live status page: what runs where and which addresses it has.
type Overview struct {
	Nodes      []NodeInfo    `json:"nodes"`
	Services   []ServiceInfo `json:"services"`
	Pools      []PoolInfo    `json:"pools"`
	PodsByNode []NodePods    `json:"podsByNode"`
}

// NodeInfo is one node.
type NodeInfo struct {
	Name  string   `json:"name"`
	IPs   []string `json:"ips"`
	Ready bool     `json:"ready"`
}

// ServiceInfo is one Service; AnnouncedBy maps each external IP to the node announcing it (from the agent's
// Announcing events), when known.
type ServiceInfo struct {
	Namespace      string            `json:"namespace"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	ClusterIP      string            `json:"clusterIP"`
	ExternalIPs    []string          `json:"externalIPs"`
	Ports          []string          `json:"ports"`
	ReadyEndpoints int               `json:"readyEndpoints"`
	Pending        string            `json:"pending,omitempty"`
	AnnouncedBy    map[string]string `json:"announcedBy,omitempty"`
}

// PoolInfo is one address pool, the default one (the ComputeNetwork's external ranges) first.
type PoolInfo struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	Used      int64    `json:"used"`
	Free      string   `json:"free"`
	Ready     bool     `json:"ready"`
	Message   string   `json:"message,omitempty"`
}

// NodePods lists the pods scheduled to one node ("" for unscheduled ones).
type NodePods struct {
	Node string    `json:"node"`
	Pods []PodInfo `json:"pods"`
}

// PodInfo is one pod.
type PodInfo struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	IP        string `json:"ip"`
	Phase     string `json:"phase"`
}

// ClusterState is the API objects an Overview is built from.
type ClusterState struct {
	Nodes          []corev1.Node
	Services       []corev1.Service
	EndpointSlices []discoveryv1.EndpointSlice
	Pods           []corev1.Pod
	Events         []corev1.Event // reason Announcing
	ComputeNetwork *v1.ComputeNetwork
	Pools          []v1.AddressPool
}

// BuildOverview derives the page's data from the API objects; it is pure.
func BuildOverview(st ClusterState) Overview {
	o := Overview{Nodes: []NodeInfo{}, Services: []ServiceInfo{}, Pools: []PoolInfo{}, PodsByNode: []NodePods{}}
	for _, n := range st.Nodes {
		ni := NodeInfo{Name: n.Name, IPs: []string{}}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				ni.IPs = append(ni.IPs, a.Address)
			}
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ni.Ready = c.Status == corev1.ConditionTrue
			}
		}
		o.Nodes = append(o.Nodes, ni)
	}
	slices.SortFunc(o.Nodes, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })

	ready := map[string]int{} // namespace/service → ready endpoints
	for _, es := range st.EndpointSlices {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				ready[es.Namespace+"/"+svc]++
			}
		}
	}
	announced := announcements(st.Events)
	for _, s := range st.Services {
		si := ServiceInfo{Namespace: s.Namespace, Name: s.Name, Type: string(s.Spec.Type), ClusterIP: s.Spec.ClusterIP,
			ExternalIPs: []string{}, Ports: []string{}, ReadyEndpoints: ready[s.Namespace+"/"+s.Name]}
		for _, p := range s.Spec.Ports {
			port := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
			if p.NodePort != 0 {
				port += fmt.Sprintf(" (node %d)", p.NodePort)
			}
			si.Ports = append(si.Ports, port)
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP == "" {
				continue
			}
			si.ExternalIPs = append(si.ExternalIPs, in.IP)
			if node, ok := announced[s.Namespace+"/"+s.Name+"/"+in.IP]; ok {
				if si.AnnouncedBy == nil {
					si.AnnouncedBy = map[string]string{}
				}
				si.AnnouncedBy[in.IP] = node
			}
		}
		si.ExternalIPs = append(si.ExternalIPs, s.Spec.ExternalIPs...)
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer && len(s.Status.LoadBalancer.Ingress) == 0 {
			si.Pending = "pending"
			if c := meta.FindStatusCondition(s.Status.Conditions, lbcontroller.ConditionIPAllocated); c != nil && c.Status != "True" {
				si.Pending = c.Reason + ": " + c.Message
			}
		}
		o.Services = append(o.Services, si)
	}
	slices.SortFunc(o.Services, func(a, b ServiceInfo) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})

	if cn := st.ComputeNetwork; cn != nil {
		pi := PoolInfo{Name: v1.DefaultAddressPoolName, Addresses: []string{}, Used: cn.Status.ExternalIPsUsed,
			Free: fmt.Sprint(cn.Status.ExternalIPsFree)}
		for _, r := range cn.Spec.ExternalServiceIPRanges {
			pi.Addresses = append(pi.Addresses, string(r))
		}
		// The allocator uses the default pool whenever the ComputeNetwork exists; a missing Ready condition
		// means nobody reports on the settings yet, not that the pool is out of use.
		pi.Ready = true
		if c := meta.FindStatusCondition(cn.Status.Conditions, v1.ConditionReady); c != nil {
			pi.Ready, pi.Message = c.Status == "True", c.Message
		}
		o.Pools = append(o.Pools, pi)
	}
	pools := slices.Clone(st.Pools)
	slices.SortFunc(pools, func(a, b v1.AddressPool) int { return strings.Compare(a.Name, b.Name) })
	for _, ap := range pools {
		pi := PoolInfo{Name: ap.Name, Addresses: []string{}, Used: ap.Status.Used, Free: ap.Status.Free}
		for _, r := range ap.Spec.Addresses {
			pi.Addresses = append(pi.Addresses, string(r))
		}
		if c := meta.FindStatusCondition(ap.Status.Conditions, v1.AddressPoolReady); c != nil {
			pi.Ready, pi.Message = c.Status == "True", c.Message
		}
		o.Pools = append(o.Pools, pi)
	}

	byNode := map[string][]PodInfo{}
	for _, p := range st.Pods {
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], PodInfo{Namespace: p.Namespace, Name: p.Name, IP: p.Status.PodIP, Phase: string(p.Status.Phase)})
	}
	for node, pods := range byNode {
		slices.SortFunc(pods, func(a, b PodInfo) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
		o.PodsByNode = append(o.PodsByNode, NodePods{Node: node, Pods: pods})
	}
	slices.SortFunc(o.PodsByNode, func(a, b NodePods) int { return strings.Compare(a.Node, b.Node) })
	return o
}

// announcements maps namespace/service/IP to the node of the latest Announcing event. The agent's message is
// "node <node> announces <ip> on <interface> (...)".
func announcements(evs []corev1.Event) map[string]string {
	type latest struct {
		node string
		at   time.Time
	}
	out := map[string]latest{}
	for _, ev := range evs {
		if ev.Reason != "Announcing" || ev.InvolvedObject.Kind != "" && ev.InvolvedObject.Kind != "Service" {
			continue
		}
		f := strings.Fields(ev.Message)
		if len(f) < 4 || f[0] != "node" || f[2] != "announces" {
			continue
		}
		at := ev.LastTimestamp.Time
		if ev.EventTime.After(at) {
			at = ev.EventTime.Time
		}
		if at.IsZero() {
			at = ev.CreationTimestamp.Time
		}
		key := ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name + "/" + f[3]
		if cur, ok := out[key]; !ok || !at.Before(cur.at) {
			out[key] = latest{f[1], at}
		}
	}
	m := make(map[string]string, len(out))
	for k, v := range out {
		m[k] = v.node
	}
	return m
}
