package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"sigs.k8s.io/knftables"
)

// The kernel tests build, in network namespaces of their own:
//
//	client 192.168.77.2 ──veth── node 192.168.77.1 ──veth (no IP, proxy_arp)── ep1 172.27.1.10/32
//	                                                 └─veth────────────────────── ep2 172.27.2.10/32
//
// Pods are routed /32 as with Calico; the node runs the proxy's table. Test traffic
// only ever goes to addresses inside these namespaces.

// testNS is a named network namespace that the test created.
type testNS struct {
	name string
	h    netns.NsHandle
}

func newTestNS(t testing.TB, suffix string) *testNS {
	t.Helper()
	name := fmt.Sprintf("edgenet-t-proxy-%d-%s", os.Getpid()%100000, suffix)
	sh(t, "", "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	sh(t, name, "ip", "link", "set", "lo", "up")
	return &testNS{name: name, h: h}
}

// sh runs a command, inside netns ns unless ns is "".
func sh(t testing.TB, ns string, args ...string) string {
	t.Helper()
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// in runs f on an OS thread that is inside ns; sockets created by f stay in ns.
func (ns *testNS) in(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: it ends with the goroutine, so it can
		// never carry the namespace into other code.
		if err := netns.Set(ns.h); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// nsNFT runs every knftables call (an exec of nft) from a thread inside ns.
type nsNFT struct {
	ns    *testNS
	inner knftables.Interface
	mu    sync.Mutex
	txs   []string
}

// nsTables opens nsNFTs for our tables, one per table, in one family.
type nsTables struct {
	t      testing.TB
	ns     *testNS
	family knftables.Family
	mu     sync.Mutex
	m      map[string]*nsNFT
}

func newNSNFT(t testing.TB, ns *testNS) *nsTables { return newNSNFTFamily(t, ns, knftables.IPv4Family) }

func newNSNFTFamily(t testing.TB, ns *testNS, fam knftables.Family) *nsTables {
	return &nsTables{t: t, ns: ns, family: fam, m: map[string]*nsNFT{}}
}

// open is an Options.NFT.
func (n *nsTables) open(table string) knftables.Interface {
	n.mu.Lock()
	defer n.mu.Unlock()
	if x := n.m[table]; x != nil {
		return x
	}
	x := &nsNFT{ns: n.ns}
	err := n.ns.in(func() (err error) {
		x.inner, err = knftables.New(n.family, table)
		return err
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.m[table] = x
	return x
}

func (n *nsNFT) NewTransaction() *knftables.Transaction { return n.inner.NewTransaction() }
func (n *nsNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	n.mu.Lock()
	n.txs = append(n.txs, tx.String())
	n.mu.Unlock()
	return n.ns.in(func() error { return n.inner.Run(ctx, tx) })
}
func (n *nsNFT) Check(ctx context.Context, tx *knftables.Transaction) error {
	return n.ns.in(func() error { return n.inner.Check(ctx, tx) })
}
func (n *nsNFT) ListAll(ctx context.Context) (m map[string][]string, err error) {
	err = n.ns.in(func() error { m, err = n.inner.ListAll(ctx); return err })
	return m, err
}
func (n *nsNFT) List(ctx context.Context, typ string) (l []string, err error) {
	err = n.ns.in(func() error { l, err = n.inner.List(ctx, typ); return err })
	return l, err
}
func (n *nsNFT) ListRules(ctx context.Context, chain string) (r []*knftables.Rule, err error) {
	err = n.ns.in(func() error { r, err = n.inner.ListRules(ctx, chain); return err })
	return r, err
}
func (n *nsNFT) ListElements(ctx context.Context, typ, name string) (e []*knftables.Element, err error) {
	err = n.ns.in(func() error { e, err = n.inner.ListElements(ctx, typ, name); return err })
	return e, err
}
func (n *nsNFT) ListCounters(ctx context.Context) (c []*knftables.Counter, err error) {
	err = n.ns.in(func() error { c, err = n.inner.ListCounters(ctx); return err })
	return c, err
}

// echo servers answer each TCP connection with "<id>\n" and then echo lines, and each
// UDP datagram with "<id>".
func startEcho(t testing.TB, ns *testNS, id string) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := ns.in(func() (err error) {
		if ln, err = net.Listen("tcp4", ":8080"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", ":5353")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s %s\n", id, c.RemoteAddr())
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s:%s", id, line)
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(id), from)
		}
	}()
}

func dialIn(ns *testNS, network, addr string, timeout time.Duration) (c net.Conn, err error) {
	err = ns.in(func() error { c, err = net.DialTimeout(network, addr, timeout); return err })
	return c, err
}

// hello connects, reads the endpoint's id and closes.
func hello(ns *testNS, addr string) (string, error) {
	id, _, err := helloFrom(ns, addr)
	return id, err
}

// helloFrom also returns the source IP the endpoint saw.
func helloFrom(ns *testNS, addr string) (id, src string, err error) {
	c, err := dialIn(ns, "tcp4", addr, 2*time.Second)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	id, remote, _ := strings.Cut(strings.TrimSpace(line), " ")
	host, _, _ := net.SplitHostPort(remote)
	return id, host, err
}

type kernelEnv struct {
	client, node, ep1, ep2 *testNS
	cfg                    NodeConfig
}

func setupKernelEnv(t testing.TB) *kernelEnv {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	e := &kernelEnv{client: newTestNS(t, "cli"), node: newTestNS(t, "node"), ep1: newTestNS(t, "ep1"), ep2: newTestNS(t, "ep2")}
	pid := os.Getpid() % 100000
	veth := func(a, b string, nsA, nsB *testNS) {
		sh(t, "", "ip", "link", "add", a, "netns", nsA.name, "type", "veth", "peer", "name", b, "netns", nsB.name)
		sh(t, nsA.name, "ip", "link", "set", a, "up")
		sh(t, nsB.name, "ip", "link", "set", b, "up")
	}
	veth("eth0", fmt.Sprintf("ec%d", pid), e.client, e.node)
	sh(t, e.client.name, "ip", "addr", "add", "192.168.77.2/24", "dev", "eth0")
	sh(t, e.client.name, "ip", "route", "add", "default", "via", "192.168.77.1")
	site := fmt.Sprintf("ec%d", pid)
	sh(t, e.node.name, "ip", "addr", "add", "192.168.77.1/24", "dev", site)
	// Like a node's default route to the site gateway: packets to service IPs
	// without endpoints are routed (and so reach the forward hook and get rejected).
	sh(t, e.node.name, "ip", "route", "add", "default", "via", "192.168.77.2")
	sh(t, e.node.name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for i, ep := range []*testNS{e.ep1, e.ep2} {
		hostSide := fmt.Sprintf("e%d%d", i+1, pid)
		podIP := fmt.Sprintf("172.27.%d.10", i+1)
		veth("eth0", hostSide, ep, e.node)
		sh(t, ep.name, "ip", "addr", "add", podIP+"/32", "dev", "eth0")
		sh(t, ep.name, "ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
		sh(t, ep.name, "ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
		sh(t, e.node.name, "sysctl", "-qw", "net.ipv4.conf."+hostSide+".proxy_arp=1")
		sh(t, e.node.name, "sysctl", "-qw", "net.ipv4.neigh."+hostSide+".proxy_delay=0")
		sh(t, e.node.name, "ip", "route", "add", podIP+"/32", "dev", hostSide)
		startEcho(t, ep, fmt.Sprintf("ep%d", i+1))
	}
	e.cfg = NodeConfig{Family: knftables.IPv4Family, NodeName: "node-a", NodeIPs: addrs("192.168.77.1"), PodCIDR: netipPrefix("172.27.0.0/16")}
	return e
}

func (e *kernelEnv) proxier(t testing.TB) (*Proxier, *nsNFT) {
	t.Helper()
	nft := newNSNFT(t, e.node).open(TableName).(*nsNFT)
	h, err := netlink.NewHandleAt(e.node.h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	var opened atomic.Int32
	p, err := NewProxier(Options{Node: e.cfg, NFT: newNSNFT(t, e.node).open, Conntrack: NetlinkConntrack{Handle: h}, Netlink: netlinkIn(e.node, &opened), NFTCommand: nftIn(e.node)})
	if err != nil {
		t.Fatal(err)
	}
	return p, nft
}

// TestKernelDatapath runs with both balancing forms; incremental syncs go over
// netlink as in production (the cascade's always, the vmap's when no vmap rule
// changes) and full syncs through nft.
func TestKernelDatapath(t *testing.T) {
	for _, bal := range []Balancing{BalanceVmap, BalanceCascade} {
		t.Run(string(bal), func(t *testing.T) { testKernelDatapath(t, bal) })
	}
}

func testKernelDatapath(t *testing.T, bal Balancing) {
	e := setupKernelEnv(t)
	e.cfg.Balancing = bal
	ctx := context.Background()

	webSvc := web("shop", "web", "172.28.0.20")
	webSvc.Type = NodePort
	webSvc.Ports[0].NodePort = 30080
	both := slice(webSvc, "web-1", http8080, ep("172.27.1.10", "node-a", "ready"), ep("172.27.2.10", "node-a", "ready"))
	empty := web("shop", "empty", "172.28.0.21")
	dns := &Service{Key: ServiceKey{"shop", "dns"}, Type: ClusterIP, ClusterIPs: addrs("172.28.0.30"),
		Ports: []ServicePort{{Name: "dns", Protocol: UDP, Port: 53}}}
	dnsPorts := []EndpointPort{{Name: "dns", Protocol: UDP, Port: 5353}}
	dnsBoth := slice(dns, "dns-1", dnsPorts, ep("172.27.1.10", "node-a", "ready"), ep("172.27.2.10", "node-a", "ready"))

	sticky := web("shop", "sticky", "172.28.0.40")
	sticky.AffinityTimeout = time.Minute
	stickyEps := slice(sticky, "sticky-1", http8080, ep("172.27.1.10", "node-a", "ready"), ep("172.27.2.10", "node-a", "ready"))
	// LB with externalTrafficPolicy Local: only ep2 is on this node.
	lb := web("shop", "lb", "172.28.0.50")
	lb.Type = LoadBalancer
	lb.Ports[0].NodePort = 30050
	lb.LoadBalancerIPs = addrs("192.168.78.100")
	lb.ExternalLocal = true
	lbEps := slice(lb, "lb-1", http8080, ep("172.27.1.10", "node-b", "ready"), ep("172.27.2.10", "node-a", "ready"))
	// The client reaches the LB IP through the node (the announcer's job in real life).
	sh(t, e.client.name, "ip", "route", "add", "192.168.78.100/32", "via", "192.168.77.1")

	p, nft := e.proxier(t)
	for _, s := range []*Service{webSvc, empty, dns, sticky, lb} {
		p.OnServiceUpdate(s)
	}
	for _, s := range []*EndpointSlice{both, dnsBoth, stickyEps, lbEps} {
		p.OnEndpointSliceUpdate(s)
	}
	p.OnSynced()
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("clusterIP spreads over both endpoints", func(t *testing.T) {
		seen := map[string]int{}
		for range 40 {
			id, err := hello(e.client, "172.28.0.20:80")
			if err != nil {
				t.Fatal(err)
			}
			seen[id]++
		}
		if seen["ep1"] == 0 || seen["ep2"] == 0 {
			t.Errorf("connections per endpoint = %v, want both used", seen)
		}
	})
	t.Run("nodePort on the node IP, masqueraded", func(t *testing.T) {
		id, src, err := helloFrom(e.client, "192.168.77.1:30080")
		if err != nil || (id != "ep1" && id != "ep2") {
			t.Fatalf("nodeport: id %q err %v", id, err)
		}
		if src == "192.168.77.2" {
			t.Errorf("externalTrafficPolicy Cluster kept the client source %s; want masquerade", src)
		}
	})
	t.Run("clusterIP from a pod keeps the source", func(t *testing.T) {
		for range 10 {
			id, src, err := helloFrom(e.ep1, "172.28.0.20:80")
			if err != nil {
				t.Fatal(err)
			}
			if id == "ep2" && src != "172.27.1.10" {
				t.Errorf("pod→service source seen as %s, want the pod IP", src)
			}
		}
	})
	t.Run("session affinity sticks", func(t *testing.T) {
		first, err := hello(e.client, "172.28.0.40:80")
		if err != nil {
			t.Fatal(err)
		}
		for range 15 {
			if id, err := hello(e.client, "172.28.0.40:80"); err != nil || id != first {
				t.Fatalf("affinity broken: %q then %q (%v)", first, id, err)
			}
		}
	})
	t.Run("LB with externalTrafficPolicy Local", func(t *testing.T) {
		for range 10 {
			id, src, err := helloFrom(e.client, "192.168.78.100:80")
			if err != nil {
				t.Fatal(err)
			}
			if id != "ep2" || src != "192.168.77.2" {
				t.Fatalf("got %s from source %s, want only the local ep2 and the client's own IP", id, src)
			}
		}
	})
	t.Run("hairpin to own service", func(t *testing.T) {
		self := 0
		for range 20 {
			id, err := hello(e.ep1, "172.28.0.20:80")
			if err != nil {
				t.Fatalf("pod to its own service: %v", err)
			}
			if id == "ep1" {
				self++
			}
		}
		if self == 0 { // p = 2^-20 with working balancing
			t.Error("never balanced back to itself; hairpin path not exercised")
		}
	})
	t.Run("no endpoints rejects fast", func(t *testing.T) {
		start := time.Now()
		_, err := dialIn(e.client, "tcp4", "172.28.0.21:80", 3*time.Second)
		took := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial service without endpoints: %v, want connection refused", err)
		}
		if took > time.Second {
			t.Errorf("refusal took %v, want < 1s", took)
		}
	})
	t.Run("UDP conntrack flushed when the endpoint goes", func(t *testing.T) {
		var c net.Conn
		err := e.client.in(func() (err error) { c, err = net.Dial("udp4", "172.28.0.30:53"); return err })
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ask := func() string {
			buf := make([]byte, 64)
			for range 5 {
				_, _ = c.Write([]byte("q"))
				_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if n, err := c.Read(buf); err == nil {
					return string(buf[:n])
				}
			}
			t.Fatal("no UDP answer")
			return ""
		}
		first := ask()
		if again := ask(); again != first {
			t.Fatalf("same flow answered by %s then %s", first, again)
		}
		// Remove the endpoint that answered; the server itself keeps running, so
		// only a conntrack flush moves the flow to the other endpoint.
		keep := "172.27.2.10"
		if first == "ep2" {
			keep = "172.27.1.10"
		}
		p.OnEndpointSliceUpdate(slice(dns, "dns-1", dnsPorts, ep(keep, "node-a", "ready")))
		if err := p.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ask(); got == first {
			t.Errorf("flow still answered by removed endpoint %s", got)
		}
	})
	t.Run("restart keeps established connections and does not flush", func(t *testing.T) {
		c, err := dialIn(e.client, "tcp4", "172.28.0.20:80", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		greeting, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		id, _, _ := strings.Cut(greeting, " ")

		// A new proxier, as after an agent restart, with one service gone.
		p2, nft2 := e.proxier(t)
		p2.OnServiceUpdate(webSvc)
		p2.OnServiceUpdate(dns)
		p2.OnEndpointSliceUpdate(both)
		p2.OnEndpointSliceUpdate(dnsBoth)
		p2.OnSynced()
		if err := p2.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		for _, tx := range nft2.txs {
			if strings.Contains(tx, "flush table") || strings.Contains(tx, "delete table") {
				t.Fatalf("restart flushed or deleted the table:\n%s", tx)
			}
		}
		fmt.Fprintf(c, "still there\n")
		line, err := r.ReadString('\n')
		if err != nil || line != id+":still there\n" {
			t.Fatalf("established connection after restart: %q, %v", line, err)
		}
		chains, err := nft2.List(ctx, "chains")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chains {
			if strings.Contains(c, "shop/empty") {
				t.Errorf("chain %s of the removed service survived", c)
			}
		}
		_ = nft
	})
}
