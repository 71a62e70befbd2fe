package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// StaleFlow selects UDP conntrack entries that would keep sending a client's packets
// to an endpoint that is gone (UDP has no connection end to clear them). Dest set:
// entries to that service address and port; NodePort set: entries to that port on
// any address. Endpoint set: only those NATed to that endpoint; unset: all of them
// (a service port that had no endpoints may have cached un-NATed entries).
type StaleFlow struct {
	Dest     netip.AddrPort
	NodePort uint16
	Endpoint netip.Addr
}

// Conntrack deletes conntrack entries.
type Conntrack interface {
	DeleteUDP(flows []StaleFlow) error
}

// staleUDP compares a service's UDP ports between two computations.
func staleUDP(old, next *ServiceRules) []StaleFlow {
	var out []StaleFlow
	prev := map[string]udpPort{}
	if old != nil {
		for _, u := range old.UDP {
			prev[u.ID] = u
		}
	}
	if next != nil {
		for _, u := range next.UDP {
			o, had := prev[u.ID]
			if !had || len(o.Endpoints) == 0 {
				if len(u.Endpoints) > 0 {
					for _, d := range u.Dests {
						out = append(out, StaleFlow{Dest: d})
					}
					if u.NodePort != 0 {
						out = append(out, StaleFlow{NodePort: u.NodePort})
					}
				}
				delete(prev, u.ID)
				continue
			}
			for _, e := range o.Endpoints {
				if !slices.Contains(u.Endpoints, e) {
					out = append(out, goneEndpoint(o, e)...)
				}
			}
			delete(prev, u.ID)
		}
	}
	for _, o := range prev { // ports (or the whole service) that went away
		for _, e := range o.Endpoints {
			out = append(out, goneEndpoint(o, e)...)
		}
	}
	return out
}

func goneEndpoint(u udpPort, e netip.Addr) []StaleFlow {
	var out []StaleFlow
	for _, d := range u.Dests {
		out = append(out, StaleFlow{Dest: d, Endpoint: e})
	}
	if u.NodePort != 0 {
		out = append(out, StaleFlow{NodePort: u.NodePort, Endpoint: e})
	}
	return out
}

// NetlinkConntrack deletes entries through netlink in the network namespace of its
// handle (netlink.NewHandleAt for another namespace; the zero handle means the
// current one).
type NetlinkConntrack struct {
	Handle *netlink.Handle
}

// DeleteUDP implements Conntrack.
func (c NetlinkConntrack) DeleteUDP(flows []StaleFlow) error {
	if len(flows) == 0 {
		return nil
	}
	byFamily := map[netlink.InetFamily][]netlink.CustomConntrackFilter{}
	for _, f := range flows {
		if !f.Dest.IsValid() && f.NodePort != 0 && !f.Endpoint.IsValid() {
			// A node port with nothing to tell the family: clear it in both.
			v4, v6 := f, f
			v4.Endpoint, v6.Endpoint = netip.IPv4Unspecified(), netip.IPv6Unspecified()
			if err := c.DeleteUDP([]StaleFlow{v4, v6}); err != nil {
				return err
			}
			continue
		}
		filter := &netlink.ConntrackFilter{}
		if err := filter.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return fmt.Errorf("proxy: conntrack filter: %w", err)
		}
		fam := netlink.InetFamily(unix.AF_INET)
		switch {
		case f.Dest.IsValid():
			if err := filter.AddIP(netlink.ConntrackOrigDstIP, net.IP(f.Dest.Addr().AsSlice())); err != nil {
				return fmt.Errorf("proxy: conntrack filter: %w", err)
			}
			if err := filter.AddPort(netlink.ConntrackOrigDstPort, f.Dest.Port()); err != nil {
				return fmt.Errorf("proxy: conntrack filter: %w", err)
			}
			if f.Dest.Addr().Is6() {
				fam = unix.AF_INET6
			}
		case f.NodePort != 0:
			if err := filter.AddPort(netlink.ConntrackOrigDstPort, f.NodePort); err != nil {
				return fmt.Errorf("proxy: conntrack filter: %w", err)
			}
			if f.Endpoint.Is6() {
				fam = unix.AF_INET6
			}
		default:
			continue
		}
		if f.Endpoint.IsValid() && !f.Endpoint.IsUnspecified() {
			if err := filter.AddIP(netlink.ConntrackReplySrcIP, net.IP(f.Endpoint.AsSlice())); err != nil {
				return fmt.Errorf("proxy: conntrack filter: %w", err)
			}
		}
		byFamily[fam] = append(byFamily[fam], filter)
	}
	h := c.Handle
	if h == nil {
		h = &netlink.Handle{}
	}
	for fam, filters := range byFamily {
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...); err != nil {
			return fmt.Errorf("proxy: delete stale UDP conntrack entries: %w", err)
		}
	}
	return nil
}
