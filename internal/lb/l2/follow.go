package l2

import (
	"context"
	"net/netip"
	"slices"

	"edgenet.io/edgenet/internal/lb/member"
)

// Membership is what Follow needs of a *member.Member.
type Membership interface {
	Alive() []string
	Changed() <-chan struct{}
}

// Follow keeps a's set equal to the addresses self wins (member.Claims) as
// the alive set and the eligible nodes per address change, until ctx ends.
// eligible delivers the whole current map (address → nodes allowed to
// announce it) whenever it changes; the latest value wins. Addresses that
// cannot be announced are logged and skipped rather than stopping the rest. When a node comes
// back, Follow re-announces what self still holds, since the returning node
// may have announced it while it could not hear us.
func Follow(ctx context.Context, self string, m Membership, a *Announcer, eligible <-chan map[netip.Addr][]string) error {
	var elig map[netip.Addr][]string
	var alive []string
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-eligible:
			if !ok {
				eligible = nil
				continue
			}
			elig = e
		case <-m.Changed():
		}
		now := m.Alive()
		gained := slices.ContainsFunc(now, func(n string) bool { return n != self && !slices.Contains(alive, n) })
		alive = now
		claims := member.Claims(self, alive, elig)
		for ip := range claims {
			if !announceable(ip.Unmap()) {
				a.log.Error("not announcing an address that cannot be", "ip", ip)
				delete(claims, ip)
			}
		}
		if err := a.SetIPs(claims); err != nil {
			return err // cannot happen: claims are filtered
		}
		if gained {
			a.Reannounce()
		}
	}
}
