package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"edgenet.io/edgenet/internal/pki"
	"edgenet.io/edgenet/internal/subproc"
)

// Namespaces and addresses: the control plane lives in apiNS; each proxy gets a node
// namespace joined to apiNS by a veth /30. Loopback is per namespace, so etcd and
// the apiserver sit on fixed ports without colliding with anything on the host.
const (
	nsPrefix = "edgenet-t-proxybench-"
	apiPort  = 6443
)

// node is one proxy's network namespace.
type node struct {
	name   string // also the Node object's name
	netns  string // /run/netns name
	ip     netip.Addr
	apiIP  netip.Addr // the apiserver's address on this node's veth
	handle ns.NetNS
}

func (n *node) path() string { return "/run/netns/" + n.netns }

func (n *node) apiURL() string {
	return "https://" + net.JoinHostPort(n.apiIP.String(), fmt.Sprint(apiPort))
}

// lab is the set of namespaces and control-plane processes of one run.
type lab struct {
	dir   string
	api   ns.NetNS
	nodes []*node
	ca    *pki.CA
	procs []*proc
	undo  []func()
}

// proc is a process started in a namespace.
type proc = subproc.Process

func newNetns(name string) (ns.NetNS, func(), error) {
	exec.Command("ip", "netns", "del", name).Run() // left over from a killed run
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	h, err := ns.GetNS("/run/netns/" + name)
	if err != nil {
		return nil, nil, err
	}
	return h, func() { h.Close(); exec.Command("ip", "netns", "del", name).Run() }, nil
}

func ipIn(netns string, args ...string) error {
	argv := append([]string{"-n", netns}, args...)
	if out, err := exec.Command("ip", argv...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// setup creates the namespaces and veths, and starts etcd and kube-apiserver.
func setup(dir string, proxies []string) (*lab, error) {
	l := &lab{dir: dir}
	ok := false
	defer func() {
		if !ok {
			l.close()
		}
	}()
	apiName := nsPrefix + "api"
	h, undo, err := newNetns(apiName)
	if err != nil {
		return nil, err
	}
	l.api = h
	l.undo = append(l.undo, undo)
	if err := ipIn(apiName, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	for i, name := range proxies {
		n := &node{
			name:  "node-" + name,
			netns: nsPrefix + name,
			apiIP: netip.AddrFrom4([4]byte{10, 250, byte(i), 1}),
			ip:    netip.AddrFrom4([4]byte{10, 250, byte(i), 2}),
		}
		if n.handle, undo, err = newNetns(n.netns); err != nil {
			return nil, err
		}
		l.undo = append(l.undo, undo)
		l.nodes = append(l.nodes, n)
		peer := fmt.Sprintf("pb%d-api", i)
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", apiName},
			{"addr", "add", n.ip.String() + "/30", "dev", "eth0"},
			{"link", "set", "eth0", "up"},
		} {
			if err := ipIn(n.netns, args...); err != nil {
				return nil, err
			}
		}
		for _, args := range [][]string{
			{"addr", "add", n.apiIP.String() + "/30", "dev", peer},
			{"link", "set", peer, "up"},
		} {
			if err := ipIn(apiName, args...); err != nil {
				return nil, err
			}
		}
	}
	if err := l.startControlPlane(); err != nil {
		return nil, err
	}
	ok = true
	return l, nil
}

func (l *lab) startControlPlane() error {
	ca, err := pki.NewCA(filepath.Join(l.dir, "pki"))
	if err != nil {
		return err
	}
	l.ca = ca
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for _, n := range l.nodes {
		ips = append(ips, n.apiIP)
	}
	for _, s := range []pki.Spec{
		{Name: "apiserver", CN: "kube-apiserver", Server: true, IPs: ips, DNS: []string{"localhost"}},
		{Name: "admin", CN: "proxybench-admin", Orgs: []string{"system:masters"}, Client: true},
	} {
		if err := ca.Issue(s); err != nil {
			return err
		}
	}
	if err := ca.ServiceAccountKey(); err != nil {
		return err
	}
	apiNS := nsPrefix + "api"
	if _, err := l.start(apiNS, "etcd", "etcd", "--data-dir="+filepath.Join(l.dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=default=http://127.0.0.1:2380",
		"--logger=zap", "--log-level=error", "--unsafe-no-fsync", "--quota-backend-bytes=8589934592"); err != nil {
		return err
	}
	if _, err := l.start(apiNS, "kube-apiserver", filepath.Join(kubeBin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379", "--bind-address=0.0.0.0", "--advertise-address="+l.nodes[0].apiIP.String(), fmt.Sprintf("--secure-port=%d", apiPort),
		"--service-cluster-ip-range="+serviceCIDR,
		"--tls-cert-file="+ca.Path("apiserver.crt"), "--tls-private-key-file="+ca.Path("apiserver.key"),
		"--client-ca-file="+ca.Path("ca.crt"),
		"--service-account-key-file="+ca.Path("sa.pub"), "--service-account-signing-key-file="+ca.Path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC", "--profiling=false",
		// The bench itself is the heaviest client; don't let APF queue it.
		"--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000"); err != nil {
		return err
	}
	return nil
}

// start runs argv inside the named namespace; nsenter execs it, so the PID is the
// program's own (RSS is read from it). Output goes to <dir>/<name>.log.
func (l *lab) start(netns, name string, argv ...string) (*proc, error) {
	p, err := subproc.Start(name, filepath.Join(l.dir, name+".log"), append([]string{"nsenter", "--net=/run/netns/" + netns, "--"}, argv...)...)
	if err != nil {
		return nil, err
	}
	l.procs = append(l.procs, p)
	return p, nil
}

// stop ends one process started by start: SIGTERM, then SIGKILL after 10 s.
func (l *lab) stop(p *proc) {
	p.Stop(10 * time.Second)
	for i, c := range l.procs {
		if c == p {
			l.procs = append(l.procs[:i], l.procs[i+1:]...)
			break
		}
	}
}

func (l *lab) close() {
	for i := len(l.procs) - 1; i >= 0; i-- {
		l.stop(l.procs[i])
	}
	for i := len(l.undo) - 1; i >= 0; i-- {
		l.undo[i]()
	}
}

// kubeconfig writes an admin kubeconfig that reaches the apiserver from node n.
func (l *lab) kubeconfig(n *node) (string, error) {
	p := filepath.Join(l.dir, n.name+".kubeconfig")
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {server: %q, certificate-authority: %q}
users:
- name: admin
  user: {client-certificate: %q, client-key: %q}
contexts:
- name: bench
  context: {cluster: bench, user: admin}
current-context: bench
`, n.apiURL(), l.ca.Path("ca.crt"), l.ca.Path("admin.crt"), l.ca.Path("admin.key"))
	return p, os.WriteFile(p, []byte(body), 0o600)
}

// client returns a clientset for the bench itself: it stays in the root namespace
// and opens its sockets inside apiNS, where the apiserver listens on loopback.
func (l *lab) client(ctx context.Context) (*kubernetes.Clientset, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	cfg := &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", apiPort),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: l.ca.Path("ca.crt"), CertFile: l.ca.Path("admin.crt"), KeyFile: l.ca.Path("admin.key"),
		},
		QPS: 1000, Burst: 2000,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := l.api.Do(func(ns.NetNS) error {
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return c, nil
		}
		for _, p := range l.procs {
			if p.Exited() {
				return nil, fmt.Errorf("%s exited: see %s/%s.log", p.Name, l.dir, p.Name)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kube-apiserver not ready: %v (logs in %s)", err, l.dir)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
