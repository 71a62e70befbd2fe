package routing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"

	"go4.org/netipx"
	"sigs.k8s.io/knftables"
)

const (
	// NATTable is our nftables table (family ip).
	NATTable   = "edgenet-nat"
	masqChain  = "postrouting"
	noMasqSet  = "no-masquerade"
	commentTag = "edgenet masquerade "
)

// noMasquerade merges the pod CIDR, the directly reached node IPs and the configured extras into the minimal list
// of disjoint prefixes: an interval set without auto-merge rejects overlapping elements.
func noMasquerade(podCIDR netip.Prefix, nodeIPs []netip.Addr, extra []netip.Prefix) []netip.Prefix {
	var b netipx.IPSetBuilder
	b.AddPrefix(podCIDR)
	for _, a := range nodeIPs {
		b.Add(a)
	}
	for _, p := range extra {
		b.AddPrefix(p.Masked())
	}
	s, _ := b.IPSet() // the builder only errors on invalid input, which validation rules out
	return s.Prefixes()
}

// masqRule is the one rule of the postrouting chain.
func masqRule(podCIDR netip.Prefix) string {
	return fmt.Sprintf("ip saddr %s ip daddr != @%s masquerade fully-random", podCIDR, noMasqSet)
}

// fingerprint names a masquerade state; it goes in the rule's comment, so Apply (in this or a new Manager) can
// tell that the kernel already holds exactly this state and leave it alone.
func fingerprint(podCIDR netip.Prefix, keep []netip.Prefix) string {
	h := sha256.New()
	fmt.Fprintln(h, masqRule(podCIDR))
	for _, p := range keep {
		fmt.Fprintln(h, p)
	}
	return commentTag + hex.EncodeToString(h.Sum(nil))[:16]
}

// masqTransaction fills tx with the whole masquerade state. Run as one nft transaction it is atomic: the chain
// and set are flushed and refilled with no moment in between where a packet sees them empty, and conntrack
// entries of existing flows keep their mapping. The table itself is never deleted.
func masqTransaction(tx *knftables.Transaction, podCIDR netip.Prefix, keep []netip.Prefix) {
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("edgenet: masquerade of pod traffic leaving the cluster")})
	tx.Add(&knftables.Set{Name: noMasqSet, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag},
		Comment: knftables.PtrTo("destinations that see the pod IP")})
	tx.Flush(&knftables.Set{Name: noMasqSet})
	for _, p := range keep {
		tx.Add(&knftables.Element{Set: noMasqSet, Key: []string{p.String()}})
	}
	tx.Add(&knftables.Chain{Name: masqChain, Type: knftables.PtrTo(knftables.NATType),
		Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)})
	tx.Flush(&knftables.Chain{Name: masqChain})
	tx.Add(&knftables.Rule{Chain: masqChain, Rule: masqRule(podCIDR), Comment: knftables.PtrTo(fingerprint(podCIDR, keep))})
}

// masqUpToDate reports whether the kernel already holds exactly this masquerade state.
func masqUpToDate(ctx context.Context, nft knftables.Interface, podCIDR netip.Prefix, keep []netip.Prefix) (bool, error) {
	rules, err := nft.ListRules(ctx, masqChain)
	if knftables.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(rules) != 1 || rules[0].Comment == nil || *rules[0].Comment != fingerprint(podCIDR, keep) {
		return false, nil
	}
	elems, err := nft.ListElements(ctx, "set", noMasqSet)
	if knftables.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var got []netip.Prefix
	for _, e := range elems {
		if len(e.Key) != 1 {
			return false, nil
		}
		p, err := parsePrefixOrAddr(e.Key[0])
		if err != nil {
			return false, nil
		}
		got = append(got, p)
	}
	slices.SortFunc(got, comparePrefix)
	return slices.Equal(got, keep), nil
}

// parsePrefixOrAddr reads an element as nft prints it: "a.b.c.d/n", or "a.b.c.d" for a /32.
func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
