package l2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Config configures an Announcer. Interface is required.
type Config struct {
	// Interface is the site interface (eth0 on an appliance node). Nothing is
	// ever sent anywhere else.
	Interface string
	// Gratuitous is how many gratuitous ARPs / unsolicited NAs announce an
	// added address. Default 3.
	Gratuitous int
	// GratuitousInterval separates them. Default 500ms: three over 1 s.
	GratuitousInterval time.Duration
	Logger             *slog.Logger
}

// Announcer answers ARP and NDP for a set of addresses on one interface, and
// announces each address when it joins the set. Create it with New, start it
// with Run; SetIPs and IPs are safe for concurrent use at any time.
type Announcer struct {
	cfg Config
	log *slog.Logger
	ifi *net.Interface
	arp *os.File // AF_PACKET SOCK_DGRAM ETH_P_ARP, bound to ifi
	ndp *os.File // AF_PACKET SOCK_DGRAM ETH_P_IPV6, bound to ifi, filtered to NS
	mld int      // AF_INET6 UDP socket used only to join groups (MLD reports); -1 if none
	// kick wakes the gratuitous sender.
	kick chan struct{}

	// mu is held for reading while a reply or announcement is built and
	// sent, so once SetIPs returns nothing more is sent for a removed address.
	mu      sync.RWMutex
	ips     map[netip.Addr]bool
	groups  map[netip.Addr]int // solicited-node group → addresses in it
	pending map[netip.Addr]announcement
}

type announcement struct {
	left int
	next time.Time
}

// New opens the sockets on cfg.Interface. It needs CAP_NET_RAW.
func New(cfg Config) (*Announcer, error) {
	if cfg.Gratuitous == 0 {
		cfg.Gratuitous = 3
	}
	if cfg.GratuitousInterval == 0 {
		cfg.GratuitousInterval = 500 * time.Millisecond
	}
	if cfg.Gratuitous < 0 || cfg.GratuitousInterval < 0 {
		return nil, fmt.Errorf("l2: negative gratuitous count or interval")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("l2: interface %q: %w", cfg.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("l2: interface %s has no Ethernet address", ifi.Name)
	}
	a := &Announcer{
		cfg: cfg, ifi: ifi, mld: -1,
		log:     cfg.Logger.With("component", "l2", "interface", ifi.Name),
		kick:    make(chan struct{}, 1),
		ips:     map[netip.Addr]bool{},
		groups:  map[netip.Addr]int{},
		pending: map[netip.Addr]announcement{},
	}
	if a.arp, err = packetSocket(ifi, unix.ETH_P_ARP, nil); err != nil {
		return nil, fmt.Errorf("l2: ARP socket on %s: %w", ifi.Name, err)
	}
	if a.ndp, err = packetSocket(ifi, unix.ETH_P_IPV6, nsFilter); err != nil {
		a.arp.Close()
		return nil, fmt.Errorf("l2: NDP socket on %s: %w", ifi.Name, err)
	}
	// Joining solicited-node groups through the IPv6 stack makes the kernel
	// send MLD reports, so MLD-snooping switches forward the NSs to us. It
	// fails when the interface has IPv6 off; NDP answers still work where
	// multicast is flooded.
	if fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP); err == nil {
		a.mld = fd
	} else {
		a.log.Warn("no IPv6 socket for MLD joins", "err", err)
	}
	return a, nil
}

// nsFilter passes ICMPv6 neighbor solicitations only (offsets from the IPv6
// header; an NS carries no extension headers), so other IPv6 traffic never
// wakes us.
var nsFilter = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 6, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
	bpf.LoadAbsolute{Off: ip6HeaderLen, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpNS, SkipTrue: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
}

func packetSocket(ifi *net.Interface, proto uint16, filter []bpf.Instruction) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(proto)))
	if err != nil {
		return nil, err
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if filter != nil { // before bind, so nothing unfiltered is queued
		raw, err := bpf.Assemble(filter)
		if err != nil {
			return fail("assemble filter", err)
		}
		prog := make([]unix.SockFilter, len(raw))
		for i, r := range raw {
			prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
			return fail("attach filter", err)
		}
	}
	// Our own announcements must not come back as requests.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("ignore outgoing", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("packet:%s:%#x", ifi.Name, proto)), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// SetIPs replaces the set of addresses this node answers for: the keys whose
// value is true. Added addresses are announced at once (then Gratuitous-1
// more times); removed ones get no answer from the moment SetIPs returns.
// An address that cannot be announced (invalid, unspecified, multicast,
// loopback, link-local, limited broadcast) is an error and nothing changes.
func (a *Announcer) SetIPs(ips map[netip.Addr]bool) error {
	want := make(map[netip.Addr]bool, len(ips))
	for ip, on := range ips {
		if !on {
			continue
		}
		ip = ip.Unmap()
		if !announceable(ip) {
			return fmt.Errorf("l2: cannot announce %v", ip)
		}
		want[ip] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for ip := range a.ips {
		if !want[ip] {
			delete(a.ips, ip)
			delete(a.pending, ip)
			if ip.Is6() {
				a.leaveLocked(solicitedNode(ip))
			}
			a.log.Info("stop announcing", "ip", ip)
		}
	}
	added := false
	for ip := range want {
		if a.ips[ip] {
			continue
		}
		a.ips[ip] = true
		if ip.Is6() {
			a.joinLocked(solicitedNode(ip))
		}
		if a.cfg.Gratuitous > 0 {
			a.pending[ip] = announcement{left: a.cfg.Gratuitous, next: now}
			added = true
		}
		a.log.Info("announce", "ip", ip)
	}
	if added {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Reannounce sends the gratuitous ARPs / unsolicited NAs again for every
// address in the set, as if each had just been added. Call it when a peer
// reappears after a partition: it may have claimed our addresses meanwhile,
// and clients would keep its MAC until their entries time out.
func (a *Announcer) Reannounce() {
	a.mu.Lock()
	now := time.Now()
	for ip := range a.ips {
		if a.cfg.Gratuitous > 0 {
			a.pending[ip] = announcement{left: a.cfg.Gratuitous, next: now}
		}
	}
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func announceable(ip netip.Addr) bool {
	return ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast() && !ip.IsLoopback() &&
		!ip.IsLinkLocalUnicast() && ip != netip.AddrFrom4([4]byte{255, 255, 255, 255}) && ip.Zone() == ""
}

// IPs returns the addresses answered for now, sorted.
func (a *Announcer) IPs() []netip.Addr {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return slices.SortedFunc(maps.Keys(a.ips), netip.Addr.Compare)
}

func (a *Announcer) joinLocked(g netip.Addr) {
	a.groups[g]++
	if a.groups[g] > 1 {
		return
	}
	if err := a.membership(g, true); err != nil {
		a.log.Warn("join solicited-node group", "group", g, "err", err)
	}
}

func (a *Announcer) leaveLocked(g netip.Addr) {
	a.groups[g]--
	if a.groups[g] > 0 {
		return
	}
	delete(a.groups, g)
	if err := a.membership(g, false); err != nil {
		a.log.Debug("leave solicited-node group", "group", g, "err", err)
	}
}

// membership joins or leaves group on the NIC's multicast filter (through
// the packet socket) and, when possible, in the IPv6 stack (MLD).
func (a *Announcer) membership(group netip.Addr, join bool) error {
	mreq := &unix.PacketMreq{Ifindex: int32(a.ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
	copy(mreq.Address[:], multicastMAC(group))
	pOpt, mOpt := unix.PACKET_ADD_MEMBERSHIP, unix.IPV6_JOIN_GROUP
	if !join {
		pOpt, mOpt = unix.PACKET_DROP_MEMBERSHIP, unix.IPV6_LEAVE_GROUP
	}
	var errs []error
	if err := control(a.ndp, func(fd int) error { return unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, pOpt, mreq) }); err != nil {
		errs = append(errs, fmt.Errorf("packet membership: %w", err))
	}
	if a.mld >= 0 {
		m := &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(a.ifi.Index)}
		if err := unix.SetsockoptIPv6Mreq(a.mld, unix.IPPROTO_IPV6, mOpt, m); err != nil {
			errs = append(errs, fmt.Errorf("MLD: %w", err))
		}
	}
	return errors.Join(errs...)
}

func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Run answers and announces until ctx ends, then closes the sockets: from
// then on the node no longer answers for any address.
func (a *Announcer) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.serve(ctx, a.arp, a.handleARP) })
	g.Go(func() error { return a.serve(ctx, a.ndp, a.handleNS) })
	g.Go(func() error { a.announceLoop(ctx); return nil })
	g.Go(func() error {
		<-ctx.Done()
		a.arp.Close()
		a.ndp.Close()
		return nil
	})
	err := g.Wait()
	a.mu.Lock()
	if a.mld >= 0 {
		unix.Close(a.mld)
		a.mld = -1
	}
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("l2: %s: %w", a.ifi.Name, err)
	}
	return nil
}

func (a *Announcer) serve(ctx context.Context, f *os.File, handle func([]byte, *unix.SockaddrLinklayer)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil && ctx.Err() != nil {
			return nil // Run closed the socket
		}
		if errors.Is(err, unix.ENETDOWN) {
			// The interface went down; the socket stays bound and works
			// again when it comes back.
			a.log.Warn("interface down")
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Name(), err)
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		handle(buf[:n], ll)
	}
}

func (a *Announcer) handleARP(b []byte, _ *unix.SockaddrLinklayer) {
	p, err := parseARP(b)
	if err != nil || p.Op != arpRequest || slices.Equal(p.SenderHW, a.ifi.HardwareAddr) {
		return
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if !a.ips[p.TargetIP] {
		return
	}
	if p.SenderIP == p.TargetIP {
		// Someone else announces our address: nobody asked, so no answer;
		// during a hand-over this is the previous announcer's last word.
		a.log.Debug("another host announces our address", "ip", p.TargetIP, "mac", p.SenderHW)
		return
	}
	a.send(a.arp, unix.ETH_P_ARP, p.SenderHW, p.replyTo(a.ifi.HardwareAddr).marshal())
}

func (a *Announcer) handleNS(b []byte, from *unix.SockaddrLinklayer) {
	ns, err := parseNS(b)
	if err != nil {
		return
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if !a.ips[ns.Target] {
		return
	}
	if ns.Src.IsUnspecified() {
		// Duplicate address detection for our address: defend it (RFC 4861
		// §7.2.4: to all nodes, not solicited).
		a.send(a.ndp, unix.ETH_P_IPV6, allNodesMAC, neighborAdvertisement(a.ifi.HardwareAddr, ns.Target, allNodes, false))
		return
	}
	dstMAC := ns.SourceLL
	if dstMAC == nil {
		dstMAC = net.HardwareAddr(from.Addr[:from.Halen])
	}
	a.send(a.ndp, unix.ETH_P_IPV6, dstMAC, neighborAdvertisement(a.ifi.HardwareAddr, ns.Target, ns.Src, true))
}

// send writes one frame on our interface; callers hold mu for reading and
// have checked the address is ours.
func (a *Announcer) send(f *os.File, proto uint16, dst net.HardwareAddr, payload []byte) {
	sa := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: a.ifi.Index, Halen: 6}
	copy(sa.Addr[:], dst)
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), payload, 0, sa)
		return serr != unix.EAGAIN
	}); err != nil {
		serr = err
	}
	if serr != nil {
		a.log.Debug("send", "to", dst, "err", serr)
	}
}

// announceLoop sends the gratuitous ARPs / unsolicited NAs that are due.
func (a *Announcer) announceLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := a.announceDue(time.Now())
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-timer.C:
		}
	}
}

// announceDue sends what is due at now and returns when the next is due
// (zero if nothing is pending).
func (a *Announcer) announceDue(now time.Time) time.Time {
	a.mu.Lock()
	var due []netip.Addr
	var next time.Time
	for ip, p := range a.pending {
		if !p.next.After(now) {
			due = append(due, ip)
			p.left--
			p.next = now.Add(a.cfg.GratuitousInterval)
			if p.left <= 0 {
				delete(a.pending, ip)
				continue
			}
			a.pending[ip] = p
		}
		if p := a.pending[ip]; p.left > 0 && (next.IsZero() || p.next.Before(next)) {
			next = p.next
		}
	}
	a.mu.Unlock()

	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, ip := range due {
		if !a.ips[ip] { // removed in between
			continue
		}
		if ip.Is4() {
			a.send(a.arp, unix.ETH_P_ARP, broadcast, gratuitousARP(a.ifi.HardwareAddr, ip).marshal())
		} else {
			a.send(a.ndp, unix.ETH_P_IPV6, allNodesMAC, neighborAdvertisement(a.ifi.HardwareAddr, ip, allNodes, false))
		}
	}
	return next
}
