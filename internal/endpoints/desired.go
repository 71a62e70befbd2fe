package endpoints

import (
	"cmp"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Group is the desired endpoints of one address type and one distinct set of
// resolved ports; it becomes one or more slices.
type Group struct {
	AddressType discoveryv1.AddressType
	Ports       []discoveryv1.EndpointPort
	// Endpoints sorted by pod name, one per pod.
	Endpoints []discoveryv1.Endpoint
	key       string // portKey(Ports)
}

// Desired computes the endpoints svc should have from the pods it selects and the
// zones of the known nodes (node name → topology.kubernetes.io/zone, "" if the node
// has none). As upstream:
//   - ready = publishNotReadyAddresses || (pod ready && !terminating); serving = pod
//     ready; terminating = deletionTimestamp set;
//   - a named targetPort is resolved per pod (same name and protocol); a port a pod
//     does not have is left out of its port set, and pods with different port sets
//     go to different groups;
//   - a pod on a node that is not known is skipped (returned in missingNodes, for a
//     retry) unless publishNotReadyAddresses is set.
//
// Groups come in svc.AddressTypes order, then by port key; pods without an address
// of a family have no endpoint of that address type.
func Desired(svc *Service, pods []Pod, zones map[string]string) (groups []Group, missingNodes []string) {
	sorted := make([]*Pod, 0, len(pods))
	for i := range pods {
		sorted = append(sorted, &pods[i])
	}
	slices.SortFunc(sorted, func(a, b *Pod) int { return strings.Compare(a.Name, b.Name) })

	named := false
	for _, p := range svc.Ports {
		named = named || p.TargetPort.Type == intstr.String
	}
	var fixed []int32 // the port numbers when no targetPort is named
	if !named {
		fixed = make([]int32, len(svc.Ports))
		resolvePorts(fixed, svc, nil)
	}

	type acc struct {
		ports []int32
		eps   map[discoveryv1.AddressType][]discoveryv1.Endpoint
	}
	byPorts := map[string]*acc{}
	var order []string
	nums := make([]int32, len(svc.Ports))
	var key []byte
	missing := map[string]bool{}
	// The endpoints of one computation share these read-only values.
	sh := shared{bools: [2]*bool{ptrTo(false), ptrTo(true)}, nodes: map[string]*nodeRef{}}
	for _, pod := range sorted {
		zone, known := zones[pod.NodeName]
		if !known && !svc.PublishNotReadyAddresses {
			if pod.NodeName != "" {
				missing[pod.NodeName] = true
			}
			continue
		}
		if named {
			resolvePorts(nums, svc, pod)
		} else {
			copy(nums, fixed)
		}
		key = appendNumsKey(key[:0], nums)
		a := byPorts[string(key)]
		if a == nil {
			a = &acc{ports: slices.Clone(nums), eps: map[discoveryv1.AddressType][]discoveryv1.Endpoint{}}
			byPorts[string(key)] = a
			order = append(order, string(key))
		}
		for _, t := range svc.AddressTypes {
			addrs := podAddresses(pod, t)
			if addrs == nil {
				continue
			}
			a.eps[t] = append(a.eps[t], sh.endpoint(svc, pod, addrs, zone, known))
		}
	}

	for _, t := range svc.AddressTypes {
		start := len(groups)
		for _, k := range order {
			a := byPorts[k]
			if len(a.eps[t]) == 0 {
				continue
			}
			ports := endpointPorts(svc, a.ports)
			groups = append(groups, Group{AddressType: t, Ports: ports, Endpoints: a.eps[t], key: portKey(ports)})
		}
		slices.SortFunc(groups[start:], func(a, b Group) int { return strings.Compare(a.key, b.key) })
	}
	for n := range missing {
		missingNodes = append(missingNodes, n)
	}
	slices.Sort(missingNodes)
	return groups, missingNodes
}

// resolvePorts sets out[i] to the container port of Service port i for pod, -1
// where a named target port is not found (pod may be nil when none is named).
func resolvePorts(out []int32, svc *Service, pod *Pod) {
	for i, sp := range svc.Ports {
		out[i] = -1
		if sp.TargetPort.Type == intstr.Int {
			out[i] = sp.TargetPort.IntVal
			continue
		}
		for _, cp := range pod.Ports {
			if cp.Name == sp.TargetPort.StrVal && cp.Protocol == sp.Protocol {
				out[i] = cp.Port
				break
			}
		}
	}
}

func appendNumsKey(b []byte, nums []int32) []byte {
	for _, n := range nums {
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
	}
	return b
}

func endpointPorts(svc *Service, nums []int32) []discoveryv1.EndpointPort {
	out := []discoveryv1.EndpointPort{}
	for i, sp := range svc.Ports {
		if nums[i] < 0 {
			continue
		}
		out = append(out, discoveryv1.EndpointPort{
			Name:        ptrTo(sp.Name),
			Protocol:    ptrTo(sp.Protocol),
			Port:        ptrTo(nums[i]),
			AppProtocol: sp.AppProtocol,
		})
	}
	return out
}

func podAddresses(pod *Pod, t discoveryv1.AddressType) []string {
	var out []string
	for _, ip := range pod.IPs {
		if ip.Is4() == (t == discoveryv1.AddressTypeIPv4) {
			out = append(out, ip.String())
		}
	}
	return out
}

type shared struct {
	bools [2]*bool
	nodes map[string]*nodeRef
}

type nodeRef struct{ name, zone *string }

func (sh *shared) bool(v bool) *bool {
	if v {
		return sh.bools[1]
	}
	return sh.bools[0]
}

func (sh *shared) endpoint(svc *Service, pod *Pod, addrs []string, zone string, nodeKnown bool) discoveryv1.Endpoint {
	ready := svc.PublishNotReadyAddresses || (pod.Ready && !pod.Terminating)
	ep := discoveryv1.Endpoint{
		Addresses: addrs,
		Conditions: discoveryv1.EndpointConditions{
			Ready:       sh.bool(ready),
			Serving:     sh.bool(pod.Ready),
			Terminating: sh.bool(pod.Terminating),
		},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: svc.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.NodeName != "" {
		n := sh.nodes[pod.NodeName]
		if n == nil {
			n = &nodeRef{name: ptrTo(pod.NodeName)}
			if nodeKnown && zone != "" {
				n.zone = ptrTo(zone)
			}
			sh.nodes[pod.NodeName] = n
		}
		ep.NodeName, ep.Zone = n.name, n.zone
	}
	if pod.Hostname != "" && pod.Subdomain == svc.Name {
		ep.Hostname = ptrTo(pod.Hostname)
	}
	if ready {
		ep.Hints = hints(svc.TrafficDistribution, ep.Zone, ep.NodeName)
	}
	return ep
}

// hints follows upstream's trafficDistribution heuristic: a ready endpoint is
// hinted for its own zone (and, for PreferSameNode, its own node).
func hints(dist string, zone, node *string) *discoveryv1.EndpointHints {
	var h discoveryv1.EndpointHints
	switch dist {
	case corev1.ServiceTrafficDistributionPreferClose, corev1.ServiceTrafficDistributionPreferSameZone:
	case corev1.ServiceTrafficDistributionPreferSameNode:
		if node != nil {
			h.ForNodes = []discoveryv1.ForNode{{Name: *node}}
		}
	default:
		return nil
	}
	if zone != nil {
		h.ForZones = []discoveryv1.ForZone{{Name: *zone}}
	}
	if h.ForZones == nil && h.ForNodes == nil {
		return nil
	}
	return &h
}

// portKey identifies a set of endpoint ports, whatever their order.
func portKey(ports []discoveryv1.EndpointPort) string {
	if len(ports) == 0 {
		return ""
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		var b strings.Builder
		b.WriteString(deref(p.Name))
		b.WriteByte(0)
		b.WriteString(string(deref(p.Protocol)))
		b.WriteByte(0)
		if p.Port != nil {
			b.WriteString(strconv.Itoa(int(*p.Port)))
		}
		b.WriteByte(0)
		b.WriteString(deref(p.AppProtocol))
		parts[i] = b.String()
	}
	slices.SortFunc(parts, cmp.Compare)
	return strings.Join(parts, "\x01")
}

func ptrTo[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
