package endpoints

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ManagedBy is the endpointslice.kubernetes.io/managed-by value of our slices.
const ManagedBy = "endpointslice.edgenet.io"

// Service is what the computation needs of a Service with a selector.
type Service struct {
	Namespace, Name string
	UID             types.UID
	// Labels are copied onto the slices (reserved slice labels excepted).
	Labels map[string]string
	// Headless: no cluster IP; slices carry service.kubernetes.io/headless.
	Headless bool
	// AddressTypes in the Service's family order, the primary first.
	AddressTypes             []discoveryv1.AddressType
	Ports                    []ServicePort
	PublishNotReadyAddresses bool
	// TrafficDistribution as in spec.trafficDistribution ("" = none): PreferClose and
	// PreferSameZone give same-zone hints, PreferSameNode same-zone and same-node hints.
	TrafficDistribution string
	// Deleting: the Service has a deletionTimestamp; no slices are created then.
	Deleting bool
}

// ServicePort is one spec.ports entry.
type ServicePort struct {
	Name        string
	Protocol    corev1.Protocol
	TargetPort  intstr.IntOrString // number, or a container port name resolved per pod
	AppProtocol *string
}

// Pod is what the computation needs of a selected pod.
type Pod struct {
	Name     string
	UID      types.UID
	IPs      []netip.Addr
	NodeName string
	// Hostname and Subdomain from the pod spec: the endpoint gets the hostname when
	// the subdomain is the Service's name.
	Hostname, Subdomain string
	Ready               bool // the Ready condition is True
	Terminating         bool // deletionTimestamp set
	// Ports are the named ports of the containers and of sidecars (restartable init
	// containers), in spec order.
	Ports []ContainerPort
	// ReadyChanged is the Ready condition's lastTransitionTime, for the
	// last-change-trigger-time annotation (zero if unknown).
	ReadyChanged time.Time
}

// ContainerPort is a named container port.
type ContainerPort struct {
	Name     string
	Protocol corev1.Protocol
	Port     int32
}

// ServiceFromAPI returns the model of s, or ok=false if the controller must leave s
// alone: ExternalName, or no selector (its slices are user-managed).
func ServiceFromAPI(s *corev1.Service) (svc Service, ok bool) {
	if s.Spec.Type == corev1.ServiceTypeExternalName || len(s.Spec.Selector) == 0 {
		return Service{}, false
	}
	svc = Service{
		Namespace:                s.Namespace,
		Name:                     s.Name,
		UID:                      s.UID,
		Labels:                   s.Labels,
		Headless:                 s.Spec.ClusterIP == corev1.ClusterIPNone || s.Spec.ClusterIP == "",
		PublishNotReadyAddresses: s.Spec.PublishNotReadyAddresses,
		Deleting:                 s.DeletionTimestamp != nil,
		AddressTypes:             addressTypes(s),
	}
	if s.Spec.TrafficDistribution != nil {
		svc.TrafficDistribution = *s.Spec.TrafficDistribution
	}
	svc.Ports = make([]ServicePort, len(s.Spec.Ports))
	for i, p := range s.Spec.Ports {
		svc.Ports[i] = ServicePort{Name: p.Name, Protocol: p.Protocol, TargetPort: p.TargetPort, AppProtocol: p.AppProtocol}
		if svc.Ports[i].Protocol == "" {
			svc.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	return svc, true
}

// addressTypes follows upstream: spec.ipFamilies; without them (an apiserver that
// never defaulted the field) the cluster IP's family, or both for headless Services.
func addressTypes(s *corev1.Service) []discoveryv1.AddressType {
	var out []discoveryv1.AddressType
	add := func(t discoveryv1.AddressType) {
		for _, have := range out {
			if have == t {
				return
			}
		}
		out = append(out, t)
	}
	for _, f := range s.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			add(discoveryv1.AddressTypeIPv4)
		case corev1.IPv6Protocol:
			add(discoveryv1.AddressTypeIPv6)
		}
	}
	if len(out) > 0 {
		return out
	}
	if ip, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil {
		if ip.Unmap().Is4() {
			return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4}
		}
		return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv6}
	}
	return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}
}

// PodFromAPI returns the model of p, or ok=false if p can have no endpoint: it has
// finished (Succeeded or Failed) or has no IP yet. Unparsable IPs are dropped.
func PodFromAPI(p *corev1.Pod) (pod Pod, ok bool) {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return Pod{}, false
	}
	pod = Pod{
		Name:        p.Name,
		UID:         p.UID,
		NodeName:    p.Spec.NodeName,
		Hostname:    p.Spec.Hostname,
		Subdomain:   p.Spec.Subdomain,
		Terminating: p.DeletionTimestamp != nil,
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	if len(ips) == 0 {
		return Pod{}, false
	}
	pod.IPs = make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			pod.IPs = append(pod.IPs, a.Unmap())
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			pod.Ready = c.Status == corev1.ConditionTrue
			pod.ReadyChanged = c.LastTransitionTime.Time
		}
	}
	for _, c := range p.Spec.Containers {
		pod.Ports = appendNamedPorts(pod.Ports, c.Ports)
	}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			pod.Ports = appendNamedPorts(pod.Ports, c.Ports)
		}
	}
	return pod, true
}

func appendNamedPorts(out []ContainerPort, ports []corev1.ContainerPort) []ContainerPort {
	for _, p := range ports {
		if p.Name == "" {
			continue
		}
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		out = append(out, ContainerPort{Name: p.Name, Protocol: proto, Port: p.ContainerPort})
	}
	return out
}

// stripPod keeps only what selection, PodFromAPI and change detection need, so that
// the informer cache of a big cluster stays small.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			Labels:            p.Labels,
			DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{
			NodeName:  p.Spec.NodeName,
			Hostname:  p.Spec.Hostname,
			Subdomain: p.Spec.Subdomain,
		},
		Status: corev1.PodStatus{
			Phase:  p.Status.Phase,
			PodIP:  p.Status.PodIP,
			PodIPs: p.Status.PodIPs,
		},
	}
	for _, c := range p.Spec.Containers {
		if hasNamedPort(c.Ports) {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways && hasNamedPort(c.Ports) {
			out.Spec.InitContainers = append(out.Spec.InitContainers,
				corev1.Container{Name: c.Name, Ports: c.Ports, RestartPolicy: c.RestartPolicy})
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			out.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
		}
	}
	return out, nil
}

func hasNamedPort(ports []corev1.ContainerPort) bool {
	for _, p := range ports {
		if p.Name != "" {
			return true
		}
	}
	return false
}

// stripNode keeps the name and the zone label.
func stripNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion}}
	if z, ok := n.Labels[corev1.LabelTopologyZone]; ok {
		out.Labels = map[string]string{corev1.LabelTopologyZone: z}
	}
	return out, nil
}

// stripManagedFields drops what no one here reads from Services and slices.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
