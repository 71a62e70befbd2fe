package webhook

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"edgenet.io/edgenet/internal/computenet"
)

// Node is what the checks need of a Node: its name and InternalIP addresses.
type Node struct {
	Name        string
	InternalIPs []netip.Addr
}

// NodeOf strips a Node to its name and parseable InternalIPs.
func NodeOf(n *corev1.Node) Node {
	out := Node{Name: n.Name}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out.InternalIPs = append(out.InternalIPs, ip.Unmap())
		}
	}
	return out
}

// CheckNodes refuses settings that would leave existing Nodes out: fewer nodes than
// there are Node objects, or a node IP range that does not hold a Node's InternalIP
// among its node IPs (every address but the last, the cluster VIP). InternalIPs of
// the other address family than the range are not checked. It returns nil or
// FieldErrors.
func CheckNodes(s computenet.Settings, nodes []Node) error {
	var errs computenet.FieldErrors
	if len(nodes) > 0 && len(nodes) > s.Nodes {
		errs = append(errs, computenet.FieldError{Field: computenet.FieldNodes, Value: fmt.Sprint(s.Nodes),
			Reason: fmt.Sprintf("must be at least the number of Nodes in the cluster, %d (%s)", len(nodes), names(nodes))})
	}
	if !s.NodeIPs.IsValid() {
		return errsOrNil(errs)
	}
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	for _, n := range sorted {
		for _, ip := range n.InternalIPs {
			if ip.BitLen() != s.NodeIPs.From.BitLen() || isNodeIP(s, ip) {
				continue
			}
			why := "is not inside"
			if ip == s.ClusterVIP() {
				why = "is the cluster VIP (the last address) of"
			}
			errs = append(errs, computenet.FieldError{Field: computenet.FieldNodeIPRange, Value: s.NodeIPs.String(),
				Reason: fmt.Sprintf("must hold the InternalIP of every Node: %s of Node %q %s the range", ip, n.Name, why)})
		}
	}
	return errsOrNil(errs)
}

func isNodeIP(s computenet.Settings, ip netip.Addr) bool {
	return s.NodeIPs.Contains(ip) && ip != s.ClusterVIP()
}

// NodeIPsUsed is the number of node IPs in use: the Nodes with an InternalIP among
// the node IPs, plus the cluster VIP. 0 if the range is invalid.
func NodeIPsUsed(s computenet.Settings, nodes []Node) int {
	if !s.NodeIPs.IsValid() {
		return 0
	}
	used := 1
	for _, n := range nodes {
		if slices.ContainsFunc(n.InternalIPs, func(ip netip.Addr) bool { return isNodeIP(s, ip) }) {
			used++
		}
	}
	return used
}

func names(nodes []Node) string {
	ns := make([]string, len(nodes))
	for i, n := range nodes {
		ns[i] = n.Name
	}
	slices.Sort(ns)
	if len(ns) > 5 {
		ns = append(ns[:5], "...")
	}
	return strings.Join(ns, ", ")
}

func errsOrNil(errs computenet.FieldErrors) error {
	if len(errs) == 0 {
		return nil
	}
	return errs
}
