// Package ipam owns pod IP address management: cutting the pod CIDR into blocks, the node-local durable
// Allocator that hands pod IPs out of the blocks its node holds, and the small JSON protocol over a unix socket
// through which the edgenet-cni plugin reaches the agent's Allocator.
//
// It does not know Kubernetes: which blocks a node owns comes from a BlockSource that the agent wires to the API
// (StaticBlocks serves tests and single-node use). It touches nothing outside its state directory and socket.
package ipam

import (
	"fmt"
	"iter"
	"math/big"
	"net/netip"
)

// DefaultBlockBits is the prefix length of a block when none is configured: 64 addresses per block, as Calico.
const DefaultBlockBits = 26

// maxBlockSplit bounds the number of blocks (2^maxBlockSplit) so counts and indexes fit an int everywhere.
const maxBlockSplit = 24

// Blocking is a pod CIDR cut into equal blocks of prefix length Bits. The zero value is not valid; use NewBlocking.
type Blocking struct {
	CIDR netip.Prefix
	Bits int
}

// NewBlocking validates that cidr is a masked prefix and bits is a block length inside it.
func NewBlocking(cidr netip.Prefix, bits int) (Blocking, error) {
	switch {
	case !cidr.IsValid():
		return Blocking{}, fmt.Errorf("ipam: pod CIDR is not a valid prefix")
	case cidr.Addr().Is4In6() || cidr.Addr().Zone() != "":
		return Blocking{}, fmt.Errorf("ipam: pod CIDR %s must be plain IPv4 or IPv6", cidr)
	case cidr.Masked() != cidr:
		return Blocking{}, fmt.Errorf("ipam: pod CIDR %s has host bits set (did you mean %s?)", cidr, cidr.Masked())
	case bits < cidr.Bits() || bits > cidr.Addr().BitLen():
		return Blocking{}, fmt.Errorf("ipam: block length /%d must be between /%d and /%d for pod CIDR %s",
			bits, cidr.Bits(), cidr.Addr().BitLen(), cidr)
	case bits-cidr.Bits() > maxBlockSplit:
		return Blocking{}, fmt.Errorf("ipam: pod CIDR %s in /%d blocks gives more than 2^%d blocks", cidr, bits, maxBlockSplit)
	}
	return Blocking{CIDR: cidr, Bits: bits}, nil
}

// Count is the number of blocks.
func (b Blocking) Count() int { return 1 << (b.Bits - b.CIDR.Bits()) }

// BlockSize is the number of addresses in one block (saturated for IPv6 blocks larger than 2^62).
func (b Blocking) BlockSize() uint64 {
	host := b.CIDR.Addr().BitLen() - b.Bits
	if host > 62 {
		return 1 << 62
	}
	return 1 << host
}

// At returns block i (0-based), or false when i is out of range.
func (b Blocking) At(i int) (netip.Prefix, bool) {
	if i < 0 || i >= b.Count() {
		return netip.Prefix{}, false
	}
	off := new(big.Int).Lsh(big.NewInt(int64(i)), uint(b.CIDR.Addr().BitLen()-b.Bits))
	return netip.PrefixFrom(addAddr(b.CIDR.Addr(), off), b.Bits), true
}

// Index returns the index of the block holding addr, or false when addr is outside the pod CIDR.
func (b Blocking) Index(addr netip.Addr) (int, bool) {
	if !b.CIDR.Contains(addr) {
		return 0, false
	}
	d := new(big.Int).Sub(addrInt(addr), addrInt(b.CIDR.Addr()))
	d.Rsh(d, uint(addr.BitLen()-b.Bits))
	return int(d.Int64()), true
}

// BlockOf returns the block holding addr, or false when addr is outside the pod CIDR.
func (b Blocking) BlockOf(addr netip.Addr) (netip.Prefix, bool) {
	i, ok := b.Index(addr)
	if !ok {
		return netip.Prefix{}, false
	}
	return b.At(i)
}

// IsBlock reports whether p is exactly one of the blocks.
func (b Blocking) IsBlock(p netip.Prefix) bool {
	return p.IsValid() && p.Bits() == b.Bits && p.Masked() == p && b.CIDR.Contains(p.Addr())
}

// All yields the blocks in address order.
func (b Blocking) All() iter.Seq2[int, netip.Prefix] {
	return func(yield func(int, netip.Prefix) bool) {
		for i := range b.Count() {
			p, _ := b.At(i)
			if !yield(i, p) {
				return
			}
		}
	}
}

// Addrs yields the addresses of block p in order.
func Addrs(p netip.Prefix) iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		p = p.Masked()
		for a := p.Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
			if !yield(a) {
				return
			}
		}
	}
}

func addrInt(a netip.Addr) *big.Int {
	s := a.AsSlice()
	return new(big.Int).SetBytes(s)
}

func addAddr(a netip.Addr, off *big.Int) netip.Addr {
	n := new(big.Int).Add(addrInt(a), off)
	buf := make([]byte, a.BitLen()/8)
	n.FillBytes(buf)
	r, _ := netip.AddrFromSlice(buf)
	return r
}
