package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ServiceKey names a Service (and the EndpointSlices that belong to it).
type ServiceKey struct {
	Namespace string
	Name      string
}

func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// Protocol is a lower-case L4 protocol as nft spells it: "tcp", "udp" or "sctp".
type Protocol string

const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// ServiceType mirrors core/v1 ServiceType; ExternalName services are not proxied.
type ServiceType string

const (
	ClusterIP    ServiceType = "ClusterIP"
	NodePort     ServiceType = "NodePort"
	LoadBalancer ServiceType = "LoadBalancer"
)

// ServicePort is one port of a Service. The target port is not here: it is resolved
// per endpoint from the EndpointSlice port with the same name and protocol.
type ServicePort struct {
	Name     string
	Protocol Protocol
	Port     uint16
	NodePort uint16 // 0 when none
}

// Service is a stripped-down core/v1 Service: only what the rules need.
type Service struct {
	Key             ServiceKey
	Type            ServiceType
	ClusterIPs      []netip.Addr // empty for headless services (nothing to proxy)
	Ports           []ServicePort
	ExternalIPs     []netip.Addr
	LoadBalancerIPs []netip.Addr // status.loadBalancer.ingress[].ip
	// AffinityTimeout > 0 means sessionAffinity ClientIP with that timeout.
	AffinityTimeout     time.Duration
	ExternalLocal       bool // externalTrafficPolicy: Local
	InternalLocal       bool // internalTrafficPolicy: Local
	HealthCheckNodePort uint16
}

// EndpointPort is a port of an EndpointSlice; Name matches the ServicePort name.
type EndpointPort struct {
	Name     string
	Protocol Protocol
	Port     uint16
}

// Endpoint is one endpoint of an EndpointSlice. Only Addresses[0] is used, as in
// Kubernetes.
type Endpoint struct {
	Addresses   []netip.Addr
	Ready       bool
	Serving     bool
	Terminating bool
	NodeName    string
}

// EndpointSlice is a stripped-down discovery/v1 EndpointSlice.
type EndpointSlice struct {
	Service   ServiceKey // from the kubernetes.io/service-name label
	Name      string
	Ports     []EndpointPort
	Endpoints []Endpoint
}

// Validate reports why a Service cannot be proxied. Invalid services are skipped
// (and logged) rather than failing a whole sync.
func (s *Service) Validate() error {
	if s.Key.Namespace == "" || s.Key.Name == "" {
		return errors.New("missing namespace or name")
	}
	seen := make(map[string]bool, len(s.Ports))
	for _, p := range s.Ports {
		switch p.Protocol {
		case TCP, UDP, SCTP:
		default:
			return fmt.Errorf("port %q: unsupported protocol %q", p.Name, p.Protocol)
		}
		if p.Port == 0 {
			return fmt.Errorf("port %q: port 0", p.Name)
		}
		// As the API server: names, port numbers and node ports are unique per
		// protocol, or two ports would claim the same map key.
		for _, id := range []string{
			"name " + p.Name + "/" + string(p.Protocol),
			fmt.Sprintf("port %d/%s", p.Port, p.Protocol),
			fmt.Sprintf("nodePort %d/%s", p.NodePort, p.Protocol),
		} {
			if seen[id] && id != fmt.Sprintf("nodePort 0/%s", p.Protocol) {
				return fmt.Errorf("port %q: duplicate %s", p.Name, id)
			}
			seen[id] = true
		}
		if !validNamePart(p.Name) {
			return fmt.Errorf("port name %q: not a DNS label", p.Name)
		}
	}
	if !validNamePart(s.Key.Namespace) || !validNamePart(s.Key.Name) {
		return fmt.Errorf("name %s: not DNS labels", s.Key)
	}
	for _, list := range [][]netip.Addr{s.ClusterIPs, s.ExternalIPs, s.LoadBalancerIPs} {
		for _, a := range list {
			if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() {
				return fmt.Errorf("address %v: not usable", a)
			}
		}
	}
	if s.AffinityTimeout < 0 {
		return errors.New("negative session affinity timeout")
	}
	return nil
}

// validNamePart accepts what Kubernetes accepts in namespace, service and port names
// (lower-case alphanumerics and '-'), which keeps chain names within nft's charset.
func validNamePart(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
