package proxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// Incremental syncs go to the kernel as netlink batches (google/nftables) instead of
// `nft -f`: nft loads a cache of every chain and set of the table before applying
// even a one-line transaction, which at 10k services (60k chains) costs more than the
// change itself. Full syncs stay with knftables. The ops below are what a Ruleset
// writes; they are recorded first so that a sync whose rules the netlink compiler
// does not know (the anonymous vmaps of BalanceVmap) can be replayed into an nft
// transaction instead, with the same effect.

type opKind uint8

const (
	opAddChain opKind = iota
	opFlushChain
	opDeleteChain
	opAddRule
	opAddAffinitySet
	opDeleteSet
	opAddElement
	opDeleteElement
)

// op is one change to one of our tables.
type op struct {
	kind    opKind
	table   string
	name    string // chain or set
	rule    string
	timeout time.Duration
	elem    element
}

// ops is an ordered list of changes, applied as one transaction.
type ops []op

func (o *ops) add(kind opKind, q qname) {
	*o = append(*o, op{kind: kind, table: q.Table, name: q.Name})
}
func (o *ops) addChain(q qname)    { o.add(opAddChain, q) }
func (o *ops) flushChain(q qname)  { o.add(opFlushChain, q) }
func (o *ops) deleteChain(q qname) { o.add(opDeleteChain, q) }
func (o *ops) deleteSet(q qname)   { o.add(opDeleteSet, q) }
func (o *ops) addRule(chain qname, rule string) {
	*o = append(*o, op{kind: opAddRule, table: chain.Table, name: chain.Name, rule: rule})
}
func (o *ops) addAffinitySet(q qname, timeout time.Duration) {
	*o = append(*o, op{kind: opAddAffinitySet, table: q.Table, name: q.Name, timeout: timeout})
}
func (o *ops) addElement(table string, e element) {
	*o = append(*o, op{kind: opAddElement, table: table, elem: e})
}
func (o *ops) deleteElement(table string, e element) {
	*o = append(*o, op{kind: opDeleteElement, table: table, elem: e})
}
func (o ops) Len() int { return len(o) }

// toTransaction writes the ops into an nft transaction.
func (o ops) toTransaction(cfg NodeConfig, t *Tx) {
	for _, x := range o {
		tx := t.Table(x.table)
		switch x.kind {
		case opAddChain:
			tx.Add(&knftables.Chain{Name: x.name})
		case opFlushChain:
			tx.Flush(&knftables.Chain{Name: x.name})
		case opDeleteChain:
			tx.Delete(&knftables.Chain{Name: x.name})
		case opAddRule:
			tx.Add(&knftables.Rule{Chain: x.name, Rule: x.rule})
		case opAddAffinitySet:
			tx.Add(affinitySet(cfg, x.name, x.timeout))
		case opDeleteSet:
			tx.Delete(&knftables.Set{Name: x.name})
		case opAddElement:
			tx.Add(toElement(x.elem))
		case opDeleteElement:
			tx.Delete(&knftables.Element{Map: x.elem.Map, Key: strings.Split(x.elem.Key, " . ")})
		}
	}
}

// netlinkBatch is ops compiled to netlink messages, ready to be queued on a Conn.
type netlinkBatch struct {
	apply []func(c *nftables.Conn) error
}

// compileNetlink translates ops for the table of cfg's family. It fails, without
// side effects, on any rule or element it cannot express; the caller then uses nft.
func compileNetlink(cfg NodeConfig, o ops) (*netlinkBatch, error) {
	fam := nftables.TableFamilyIPv4
	if cfg.Family == knftables.IPv6Family {
		fam = nftables.TableFamilyIPv6
	}
	tables := map[string]*nftables.Table{}
	b := &netlinkBatch{}
	add := func(f func(c *nftables.Conn) error) { b.apply = append(b.apply, f) }
	for _, x := range o {
		table := tables[x.table]
		if table == nil {
			table = &nftables.Table{Name: x.table, Family: fam}
			tables[x.table] = table
		}
		chain := func(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: table} }
		switch x.kind {
		case opAddChain:
			ch := chain(x.name)
			add(func(c *nftables.Conn) error { c.AddChain(ch); return nil })
		case opFlushChain:
			ch := chain(x.name)
			add(func(c *nftables.Conn) error { c.FlushChain(ch); return nil })
		case opDeleteChain:
			ch := chain(x.name)
			add(func(c *nftables.Conn) error { c.DelChain(ch); return nil })
		case opAddRule:
			exprs, err := ruleExprs(cfg, x.rule)
			if err != nil {
				return nil, fmt.Errorf("chain %s: %w", x.name, err)
			}
			r := &nftables.Rule{Table: table, Chain: chain(x.name), Exprs: exprs}
			add(func(c *nftables.Conn) error { c.AddRule(r); return nil })
		case opAddAffinitySet:
			s := &nftables.Set{Table: table, Name: x.name, KeyType: nftables.TypeIPAddr,
				Dynamic: true, HasTimeout: true, Timeout: x.timeout}
			if cfg.Family == knftables.IPv6Family {
				s.KeyType = nftables.TypeIP6Addr
			}
			add(func(c *nftables.Conn) error { return c.AddSet(s, nil) })
		case opDeleteSet:
			s := &nftables.Set{Table: table, Name: x.name}
			add(func(c *nftables.Conn) error { c.DelSet(s); return nil })
		case opAddElement, opDeleteElement:
			key, err := elementKey(cfg, x.elem.Key)
			if err != nil {
				return nil, fmt.Errorf("map %s: %w", x.elem.Map, err)
			}
			s := &nftables.Set{Table: table, Name: x.elem.Map, IsMap: true, KeyType: nftables.TypeVerdict}
			el := nftables.SetElement{Key: key}
			if x.kind == opDeleteElement {
				add(func(c *nftables.Conn) error { return c.SetDeleteElements(s, []nftables.SetElement{el}) })
				continue
			}
			v, err := verdict(x.elem.Value)
			if err != nil {
				return nil, fmt.Errorf("map %s: %w", x.elem.Map, err)
			}
			el.VerdictData = v
			el.Comment = x.elem.Comment
			add(func(c *nftables.Conn) error { return c.SetAddElements(s, []nftables.SetElement{el}) })
		}
	}
	return b, nil
}

// queue puts the batch's messages on c; c.Flush sends them as one transaction.
func (b *netlinkBatch) queue(c *nftables.Conn) error {
	for _, f := range b.apply {
		if err := f(c); err != nil {
			return err
		}
	}
	return nil
}

// elementKey encodes "addr . proto . port" or "proto . port" as the kernel stores a
// concatenation: each field padded to a multiple of 4 bytes.
func elementKey(cfg NodeConfig, key string) ([]byte, error) {
	var out []byte
	for _, f := range strings.Split(key, " . ") {
		var field []byte
		if a, err := netip.ParseAddr(f); err == nil {
			if !cfg.inFamily(a) {
				return nil, fmt.Errorf("key %q: address of the other family", key)
			}
			field = a.Unmap().AsSlice()
		} else if p, ok := protoNumber(f); ok {
			field = []byte{p}
		} else if n, err := strconv.ParseUint(f, 10, 16); err == nil {
			field = binary.BigEndian.AppendUint16(nil, uint16(n))
		} else {
			return nil, fmt.Errorf("key %q: field %q", key, f)
		}
		for len(field)%4 != 0 {
			field = append(field, 0)
		}
		out = append(out, field...)
	}
	return out, nil
}

func protoNumber(p string) (byte, bool) {
	switch Protocol(p) {
	case TCP:
		return unix.IPPROTO_TCP, true
	case UDP:
		return unix.IPPROTO_UDP, true
	case SCTP:
		return unix.IPPROTO_SCTP, true
	}
	return 0, false
}

func verdict(v string) (*expr.Verdict, error) {
	f := strings.Fields(v)
	switch {
	case len(f) == 1 && f[0] == "drop":
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	case len(f) == 1 && f[0] == "accept":
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	case len(f) == 2 && f[0] == "goto":
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: f[1]}, nil
	case len(f) == 2 && f[0] == "jump":
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: f[1]}, nil
	}
	return nil, fmt.Errorf("verdict %q: not supported over netlink", v)
}

// ruleExprs compiles one rule of the forms ComputeService writes into the
// expressions nft would generate for it (so that `nft list` shows the same text).
// Other forms, notably anonymous vmaps, are an error.
func ruleExprs(cfg NodeConfig, rule string) ([]expr.Any, error) {
	ipX := cfg.ipX()
	t := strings.Fields(rule)
	var out []expr.Any
	bad := func() ([]expr.Any, error) { return nil, fmt.Errorf("rule %q: not supported over netlink", rule) }
	for len(t) > 0 {
		switch {
		case len(t) >= 3 && t[0] == ipX && (t[1] == "saddr" || t[1] == "daddr"):
			saddr := t[1] == "saddr"
			arg, neg := t[2], false
			if arg == "!=" && len(t) >= 4 {
				arg, neg = t[3], true
				t = t[1:]
			}
			t = t[3:]
			if set, ok := strings.CutPrefix(arg, "@"); ok {
				if neg {
					return bad()
				}
				out = append(out, addrPayload(cfg, saddr, 0), &expr.Lookup{SourceRegister: 1, SetName: set})
				continue
			}
			m, err := matchAddr(cfg, saddr, arg, neg)
			if err != nil {
				return nil, fmt.Errorf("rule %q: %w", rule, err)
			}
			out = append(out, m...)
		case len(t) >= 3 && t[1] == "dport":
			proto, ok := protoNumber(t[0])
			port, err := strconv.ParseUint(t[2], 10, 16)
			if !ok || err != nil {
				return bad()
			}
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, uint16(port))})
			t = t[3:]
		case len(t) >= 6 && t[0] == "numgen" && t[1] == "random" && t[2] == "mod" && t[4] == "==":
			mod, err1 := strconv.ParseUint(t[3], 10, 32)
			val, err2 := strconv.ParseUint(t[5], 10, 32)
			if err1 != nil || err2 != nil || mod == 0 {
				return bad()
			}
			out = append(out,
				&expr.Numgen{Register: 1, Modulus: uint32(mod), Type: unix.NFT_NG_RANDOM},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uint32(val))})
			t = t[6:]
		case len(t) >= 4 && t[0] == "fib" && t[1] == "saddr" && t[2] == "type" && t[3] == "local":
			out = append(out,
				&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)})
			t = t[4:]
		case len(t) == 2 && (t[0] == "jump" || t[0] == "goto"):
			v, err := verdict(t[0] + " " + t[1])
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			t = nil
		case len(t) == 6 && t[0] == "update" && strings.HasPrefix(t[1], "@") && t[2] == "{" && t[3] == ipX && t[4] == "saddr" && t[5] == "}":
			out = append(out, addrPayload(cfg, true, 0),
				&expr.Dynset{SrcRegKey: 1, SetName: t[1][1:], Operation: unix.NFT_DYNSET_OP_UPDATE})
			t = nil
		case len(t) == 6 && t[0] == "meta" && t[1] == "l4proto" && t[3] == "dnat" && t[4] == "to":
			proto, ok := protoNumber(t[2])
			dst, err := netip.ParseAddrPort(t[5])
			if !ok || err != nil || !cfg.inFamily(dst.Addr()) {
				return bad()
			}
			natFam := uint32(unix.NFPROTO_IPV4)
			if cfg.Family == knftables.IPv6Family {
				natFam = unix.NFPROTO_IPV6
			}
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Immediate{Register: 1, Data: dst.Addr().Unmap().AsSlice()},
				&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, dst.Port())},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: natFam, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
			t = nil
		default:
			return bad()
		}
	}
	if len(out) == 0 {
		return bad()
	}
	return out, nil
}

// addrPayload loads n bytes (all when 0) of the source or destination address.
func addrPayload(cfg NodeConfig, saddr bool, n uint32) *expr.Payload {
	off, size := uint32(16), uint32(4)
	if saddr {
		off = 12
	}
	if cfg.Family == knftables.IPv6Family {
		size = 16
		off = 24
		if saddr {
			off = 8
		}
	}
	if n == 0 {
		n = size
	}
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

// matchAddr compares an address or prefix as nft does: a byte-aligned prefix loads
// only the bytes it covers, any other one the whole address through a mask.
func matchAddr(cfg NodeConfig, saddr bool, arg string, neg bool) ([]expr.Any, error) {
	var pfx netip.Prefix
	if strings.Contains(arg, "/") {
		p, err := netip.ParsePrefix(arg)
		if err != nil {
			return nil, err
		}
		pfx = p.Masked()
	} else {
		a, err := netip.ParseAddr(arg)
		if err != nil {
			return nil, err
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if !cfg.inFamily(pfx.Addr()) || pfx.Bits() == 0 {
		return nil, fmt.Errorf("address %s: not usable here", arg)
	}
	bits := pfx.Bits()
	full := pfx.Addr().AsSlice()
	op := expr.CmpOpEq
	if neg {
		op = expr.CmpOpNeq
	}
	if bits%8 == 0 {
		n := bits / 8
		return []expr.Any{addrPayload(cfg, saddr, uint32(n)), &expr.Cmp{Op: op, Register: 1, Data: full[:n]}}, nil
	}
	mask := make([]byte, len(full))
	for i := range mask {
		switch {
		case (i+1)*8 <= bits:
			mask[i] = 0xff
		case i*8 < bits:
			mask[i] = byte(0xff << (8 - bits%8))
		}
	}
	out := []expr.Any{
		addrPayload(cfg, saddr, 0),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(full)), Mask: mask, Xor: make([]byte, len(full))},
	}
	data := full
	return append(out, &expr.Cmp{Op: op, Register: 1, Data: data}), nil
}

// listNetlink lists our tables' chains and sets over netlink: names only, where
// `nft --json list table` prints every rule too (~10 s at 10k services, holding up
// every sync behind a periodic resync or an agent restart). Missing tables are an
// empty listing.
func listNetlink(c *nftables.Conn, cfg NodeConfig) (Existing, error) {
	fam := nftables.TableFamilyIPv4
	if cfg.Family == knftables.IPv6Family {
		fam = nftables.TableFamilyIPv6
	}
	var ex Existing
	tables, err := c.ListTablesOfFamily(fam)
	if err != nil {
		return Existing{}, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if IsOurTable(t.Name) {
			ex.Tables = append(ex.Tables, t.Name)
		}
	}
	if len(ex.Tables) == 0 {
		return ex, nil
	}
	slices.Sort(ex.Tables)
	chains, err := c.ListChainsOfTableFamily(fam)
	if err != nil {
		return Existing{}, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table != nil && IsOurTable(ch.Table.Name) {
			ex.Chains = append(ex.Chains, qname{ch.Table.Name, ch.Name})
		}
	}
	for _, t := range ex.Tables {
		sets, err := c.GetSets(&nftables.Table{Name: t, Family: fam})
		if err != nil {
			return Existing{}, fmt.Errorf("list sets of %s: %w", t, err)
		}
		for _, s := range sets {
			if !s.IsMap && !s.Anonymous && !strings.HasPrefix(s.Name, "__") { // as knftables' "set" entries
				ex.Sets = append(ex.Sets, qname{t, s.Name})
			}
		}
	}
	return ex, nil
}

// socketBuffer is the send and receive buffer of our nftables netlink sockets: a
// batch is one sendmsg (the default 208 KiB holds ~100 services' changes) and the
// kernel queues an acknowledgement per message before we read any.
const socketBuffer = 16 << 20

// bigBuffers sizes c's buffers to socketBuffer, beyond the sysctl limits when we
// have CAP_NET_ADMIN (which programming nftables needs anyway).
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[0], socketBuffer); e != nil {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[1], socketBuffer); e != nil {
					serr = e
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}
