// Package zone is the pure core of the cluster DNS server: a stripped-down model of Services and their endpoints,
// the record builder implementing the Kubernetes DNS-Based Service Discovery specification 1.1.0 for one cluster
// domain, and the immutable snapshots that queries are answered from.
//
// It owns record construction, the NXDOMAIN/NODATA decisions and the wire fast path; it knows nothing of
// Kubernetes API types, sockets or upstream resolvers (see packages kube and server).
//
// Pod records (<a-b-c-d>.<ns>.pod.<zone>) are answered in CoreDNS's "pods insecure" mode: any well-formed dashed
// IPv4 or IPv6 address in an existing namespace gets an A/AAAA record for that address, without checking that such a
// pod exists. The spec (section 2.6) requires this deprecated behaviour.
package zone

import (
	"fmt"
	"net/netip"
	"strings"
)

// ServiceType selects which records a Service gets.
type ServiceType uint8

const (
	// ClusterIP services resolve to their cluster IPs.
	ClusterIP ServiceType = iota
	// Headless services (no cluster IP) resolve to their ready endpoints.
	Headless
	// ExternalName services are a CNAME to ExternalName.
	ExternalName
)

func (t ServiceType) String() string {
	switch t {
	case ClusterIP:
		return "ClusterIP"
	case Headless:
		return "Headless"
	case ExternalName:
		return "ExternalName"
	}
	return fmt.Sprintf("ServiceType(%d)", uint8(t))
}

// Port is a service or endpoint port. Only named ports get SRV records.
type Port struct {
	Name     string
	Protocol string // TCP, UDP or SCTP; empty means TCP
	Port     uint16
}

// Service is the part of a Kubernetes Service that DNS needs.
type Service struct {
	Namespace    string
	Name         string
	Type         ServiceType
	ClusterIPs   []netip.Addr // ClusterIP only; one per family
	ExternalName string       // ExternalName only
	Ports        []Port
}

// Endpoint is one backend of a service.
type Endpoint struct {
	Addresses []netip.Addr
	Hostname  string // empty: a name derived from the address is used (spec 2.1 "system-assigned identifier")
	Ready     bool
}

// EndpointGroup is a set of endpoints sharing the same ports (one EndpointSlice).
type EndpointGroup struct {
	Ports     []Port
	Endpoints []Endpoint
}

func (s *Service) key() string { return strings.ToLower(s.Namespace + "/" + s.Name) }

// validate reports why a service cannot be served; a service that fails is rejected as a whole.
func (s *Service) validate() error {
	if err := checkLabel(s.Namespace); err != nil {
		return fmt.Errorf("namespace %q: %w", s.Namespace, err)
	}
	if err := checkLabel(s.Name); err != nil {
		return fmt.Errorf("name %q: %w", s.Name, err)
	}
	switch s.Type {
	case ClusterIP:
		if len(s.ClusterIPs) == 0 {
			return fmt.Errorf("ClusterIP service without cluster IPs")
		}
		for _, ip := range s.ClusterIPs {
			if !ip.IsValid() || ip.Zone() != "" {
				return fmt.Errorf("invalid cluster IP %v", ip)
			}
		}
	case Headless:
	case ExternalName:
		if _, err := checkName(s.ExternalName); err != nil {
			return fmt.Errorf("externalName %q: %w", s.ExternalName, err)
		}
	default:
		return fmt.Errorf("unknown type %v", s.Type)
	}
	for _, p := range s.Ports {
		if err := p.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (p Port) validate() error {
	if p.Name != "" {
		if err := checkLabel(p.Name); err != nil {
			return fmt.Errorf("port name %q: %w", p.Name, err)
		}
	}
	switch strings.ToUpper(p.Protocol) {
	case "", "TCP", "UDP", "SCTP":
	default:
		return fmt.Errorf("port %q: unknown protocol %q", p.Name, p.Protocol)
	}
	return nil
}

func (p Port) protoLabel() string {
	if p.Protocol == "" {
		return "_tcp"
	}
	return "_" + strings.ToLower(p.Protocol)
}

// checkLabel accepts one DNS label made of letters, digits, '-' and '_' (what Kubernetes names allow, and more).
func checkLabel(l string) error {
	if l == "" {
		return fmt.Errorf("empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label longer than 63 bytes")
	}
	for i := 0; i < len(l); i++ {
		if !labelByte(l[i]) {
			return fmt.Errorf("invalid character %q", l[i])
		}
	}
	return nil
}

func labelByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// checkName validates a domain name made of checkLabel labels and returns it lowercased and fully qualified.
func checkName(n string) (string, error) {
	n = strings.TrimSuffix(n, ".")
	if n == "" {
		return "", fmt.Errorf("empty name")
	}
	if len(n) > 253 {
		return "", fmt.Errorf("name longer than 253 bytes")
	}
	for _, l := range strings.Split(n, ".") {
		if err := checkLabel(l); err != nil {
			return "", err
		}
	}
	return strings.ToLower(n) + ".", nil
}
