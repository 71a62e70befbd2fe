package member

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
)

// Elect picks the node that announces ip among eligible, by rendezvous
// (highest random weight) hashing: every node scores SHA-256(ip, name) and the
// highest score wins, ties broken by the larger name. Every agent that sees
// the same eligible set computes the same winner, and removing a node moves
// only the addresses it had won. Elect returns "" when eligible is empty.
func Elect(ip netip.Addr, eligible []string) string {
	var best string
	var bestScore uint64
	for _, name := range eligible {
		s := score(ip, name)
		if best == "" || s > bestScore || (s == bestScore && name > best) {
			best, bestScore = name, s
		}
	}
	return best
}

func score(ip netip.Addr, name string) uint64 {
	a := ip.Unmap().As16()
	h := sha256.New()
	h.Write(a[:])
	h.Write([]byte{0})
	h.Write([]byte(name))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// Claims returns the addresses self should announce: those whose winner among
// their eligible nodes that are also alive is self. eligible maps each
// address to the nodes allowed to announce it (for example, with
// externalTrafficPolicy: Local, the nodes that have a ready endpoint); alive
// is [Member.Alive]. The result is in the form l2.Announcer.SetIPs takes.
func Claims(self string, alive []string, eligible map[netip.Addr][]string) map[netip.Addr]bool {
	up := make(map[string]bool, len(alive))
	for _, n := range alive {
		up[n] = true
	}
	out := make(map[netip.Addr]bool)
	var cand []string
	for ip, nodes := range eligible {
		cand = cand[:0]
		for _, n := range nodes {
			if up[n] {
				cand = append(cand, n)
			}
		}
		if Elect(ip, cand) == self {
			out[ip] = true
		}
	}
	return out
}
