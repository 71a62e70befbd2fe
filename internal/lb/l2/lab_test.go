package l2

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// lab is a site network in namespaces edgenet-t-l2-<tag>-*: a bridge, nodes
// with eth0 on it, and a client.
type lab struct {
	t      *testing.T
	br     string
	client *host
	nodes  []*host
}

type host struct {
	name string // a, b, ... or client
	ns   string
	port string // its veth in the bridge namespace
	ip   netip.Addr
	ip6  netip.Addr
	mac  net.HardwareAddr
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newLab(t *testing.T, tag string, nodes int) *lab {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	prefix := "edgenet-t-l2-" + tag + "-"
	l := &lab{t: t, br: prefix + "br"}
	hosts := []*host{{name: "client", ns: prefix + "client", port: "vclient", ip: netip.MustParseAddr("192.168.50.2"), ip6: netip.MustParseAddr("fd00:50::2"), mac: net.HardwareAddr{2, 0, 0, 0, 0, 0xc}}}
	for i := range nodes {
		n := string(rune('a' + i))
		hosts = append(hosts, &host{name: n, ns: prefix + n, port: "v" + n,
			ip:  netip.AddrFrom4([4]byte{192, 168, 50, byte(11 + i)}),
			ip6: netip.MustParseAddr(fmt.Sprintf("fd00:50::%x", 0x11+i)),
			mac: net.HardwareAddr{2, 0, 0, 0, 0, byte(0xa + i)}})
	}
	l.client, l.nodes = hosts[0], hosts[1:]
	all := []string{l.br}
	for _, h := range hosts {
		all = append(all, h.ns)
	}
	del := func() {
		for _, ns := range all {
			exec.Command("ip", "netns", "del", ns).Run() // absent is fine
		}
	}
	del() // leftovers of a killed run
	t.Cleanup(del)
	for _, ns := range all {
		run(t, "ip", "netns", "add", ns)
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", l.br, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.br, "link", "set", "br0", "up")
	for _, h := range hosts {
		run(t, "ip", "-n", l.br, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		run(t, "ip", "-n", l.br, "link", "set", h.port, "master", "br0", "up")
		run(t, "ip", "-n", h.ns, "link", "set", "eth0", "address", h.mac.String(), "up")
		run(t, "ip", "-n", h.ns, "addr", "add", netip.PrefixFrom(h.ip, 24).String(), "dev", "eth0")
		run(t, "ip", "-n", h.ns, "addr", "add", netip.PrefixFrom(h.ip6, 64).String(), "dev", "eth0", "nodad")
	}
	return l
}

// in runs fn on a thread in namespace ns; sockets fn opens stay there.
func in(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	fn()
	if err := netns.Set(orig); err != nil {
		t.Fatalf("restore namespace: %v", err) // the thread stays locked and dies with the goroutine
	}
	runtime.UnlockOSThread()
}

func (l *lab) announcer(h *host) *Announcer {
	var a *Announcer
	var err error
	in(l.t, h.ns, func() { a, err = New(Config{Interface: "eth0"}) })
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			l.t.Errorf("%s: %v", h.name, err)
		}
	}()
	l.t.Cleanup(func() { cancel(); <-done })
	return a
}

// neigh returns the client's neighbour entry for ip: its MAC and state.
func (l *lab) neigh(ip netip.Addr) (net.HardwareAddr, int) {
	h, err := netns.GetFromName(l.client.ns)
	if err != nil {
		l.t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		l.t.Fatal(err)
	}
	defer nl.Close()
	link, err := nl.LinkByName("eth0")
	if err != nil {
		l.t.Fatal(err)
	}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := nl.NeighList(link.Attrs().Index, fam)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
			return n.HardwareAddr, n.State
		}
	}
	return nil, 0
}

// waitNeigh waits until the client's entry for ip has mac, and returns how long it took.
func (l *lab) waitNeigh(ip netip.Addr, mac net.HardwareAddr, within time.Duration) time.Duration {
	l.t.Helper()
	start := time.Now()
	for {
		got, state := l.neigh(ip)
		if slices.Equal(got, mac) && state&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			l.t.Fatalf("client's neighbour entry for %s is %v (state %#x) after %v, want %v", ip, got, state, within, mac)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *lab) flushNeigh(ip netip.Addr) {
	exec.Command("ip", "-n", l.client.ns, "neigh", "del", ip.String(), "dev", "eth0").Run() // may be absent
}

// poke sends one UDP datagram from the client to ip, which makes its kernel
// resolve ip if it has no entry.
func (l *lab) poke(ip netip.Addr) {
	l.t.Helper()
	in(l.t, l.client.ns, func() {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 9)))
		if err != nil {
			l.t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
	})
}

// frame is one ARP packet or NS/NA seen on the client's eth0.
type frame struct {
	at       time.Time
	outgoing bool   // sent by the client
	kind     string // "arp-request", "arp-reply", "ns", "na"
	srcMAC   net.HardwareAddr
	target   netip.Addr // the address asked about or announced
}

type capture struct {
	mu     sync.Mutex
	frames []frame
}

// capture records ARP and NDP on the client's eth0, both directions.
func (l *lab) capture() *capture {
	c := &capture{}
	var f *os.File
	in(l.t, l.client.ns, func() {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			l.t.Fatal(err)
		}
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			l.t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			l.t.Fatal(err)
		}
		f = os.NewFile(uintptr(fd), "capture")
	})
	done := make(chan struct{})
	l.t.Cleanup(func() { f.Close(); <-done })
	go func() {
		defer close(done)
		rc, _ := f.SyscallConn()
		buf := make([]byte, 2000)
		for {
			var n int
			var from unix.Sockaddr
			var rerr error
			if err := rc.Read(func(fd uintptr) bool {
				n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
				return rerr != unix.EAGAIN
			}); err != nil || rerr != nil {
				return
			}
			ll := from.(*unix.SockaddrLinklayer)
			fr := frame{at: time.Now(), outgoing: ll.Pkttype == unix.PACKET_OUTGOING, srcMAC: slices.Clone(net.HardwareAddr(ll.Addr[:ll.Halen]))}
			b := buf[:n]
			switch htons(ll.Protocol) {
			case unix.ETH_P_ARP:
				p, err := parseARP(b)
				if err != nil {
					continue
				}
				fr.kind, fr.target = "arp-request", p.TargetIP
				if p.Op == arpReply {
					fr.kind, fr.target = "arp-reply", p.SenderIP
				}
			case unix.ETH_P_IPV6:
				if len(b) < ip6HeaderLen+nsLen || b[6] != protoICMPv6 {
					continue
				}
				switch b[ip6HeaderLen] {
				case icmpNS:
					fr.kind = "ns"
				case icmpNA:
					fr.kind = "na"
				default:
					continue
				}
				fr.target = netip.AddrFrom16([16]byte(b[ip6HeaderLen+8 : ip6HeaderLen+24]))
			default:
				continue
			}
			c.mu.Lock()
			c.frames = append(c.frames, fr)
			c.mu.Unlock()
		}
	}()
	return c
}

// since returns the frames about ip after t.
func (c *capture) since(t time.Time, ip netip.Addr) []frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []frame
	for _, f := range c.frames {
		if !f.at.Before(t) && f.target == ip {
			out = append(out, f)
		}
	}
	return out
}
