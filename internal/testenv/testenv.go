// Package testenv starts a real etcd and kube-apiserver for integration tests and
// benchmarks, from the pinned binaries (bin/kube, or $EDGENET_KUBE_BIN) and Debian's
// etcd, on free loopback ports. Start ties them to a test; Launch serves programs (the
// benchmarks), which stop them themselves. Tests that need it fail, not skip, when the
// binaries are missing: `make unit` builds them.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"edgenet.io/edgenet/internal/pki"
	"edgenet.io/edgenet/internal/subproc"
)

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	Client *kubernetes.Clientset
	// KubeBin is the directory of the Kubernetes binaries (kubectl among them).
	KubeBin string
	// Kubeconfig is an admin kubeconfig file for other processes.
	Kubeconfig string
	dir        string
	opts       Options
	procs      []*proc

	apiserverArgs []string // without --secure-port
	apiserver     *proc    // the one Config points at
}

// Options tune Launch; zero values take the defaults.
type Options struct {
	ServiceCIDR string  // default 172.28.0.0/16
	QPS         float32 // client rate limit of Config, default 200 (burst twice that)
	EtcdQuota   int64   // etcd backend quota in bytes, default etcd's
}

type proc struct {
	*subproc.Process
	stopped bool // stopped on purpose: its exit is not a failure
}

// KubeBin finds the directory of the pinned Kubernetes binaries.
func KubeBin() (string, error) {
	if d := os.Getenv("EDGENET_KUBE_BIN"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "bin/kube/kube-apiserver")); err == nil {
			return filepath.Join(d, "bin/kube"), nil
		}
	}
	return "", fmt.Errorf("no bin/kube/kube-apiserver above %s and EDGENET_KUBE_BIN unset: run `make kube`", wd)
}

// Start starts etcd and kube-apiserver for a test, waits until the apiserver is ready,
// and stops them when the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	bin, err := KubeBin()
	if err != nil {
		t.Fatal(err)
	}
	e, err := Launch(t.TempDir(), bin, Options{})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(e.Stop)
	return e
}

// Launch starts etcd and kube-apiserver with their state and logs in dir and waits
// until the apiserver is ready; the caller calls Stop. On error nothing runs.
func Launch(dir, kubeBin string, opts Options) (*Env, error) {
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "172.28.0.0/16"
	}
	if opts.QPS == 0 {
		opts.QPS = 200
	}
	e := &Env{KubeBin: kubeBin, dir: dir, opts: opts}
	if err := e.start(); err != nil {
		e.Stop()
		return nil, fmt.Errorf("testenv: %w", err)
	}
	return e, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (e *Env) start() error {
	ca, err := pki.NewCA(filepath.Join(e.dir, "pki"))
	if err != nil {
		return err
	}
	lo := netip.MustParseAddr("127.0.0.1")
	for _, s := range []pki.Spec{
		{Name: "apiserver", CN: "kube-apiserver", Server: true, IPs: []netip.Addr{lo}, DNS: []string{"localhost"}},
		{Name: "admin", CN: "testenv-admin", Orgs: []string{"system:masters"}, Client: true},
	} {
		if err := ca.Issue(s); err != nil {
			return err
		}
	}
	if err := ca.ServiceAccountKey(); err != nil {
		return err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdArgs := []string{"etcd", "--data-dir=" + filepath.Join(e.dir, "etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-cluster=default=http://127.0.0.1:%d", ports[1]),
		"--logger=zap", "--log-level=error", "--unsafe-no-fsync"}
	if e.opts.EtcdQuota > 0 {
		etcdArgs = append(etcdArgs, fmt.Sprintf("--quota-backend-bytes=%d", e.opts.EtcdQuota))
	}
	if err := e.run("etcd", etcdArgs...); err != nil {
		return err
	}
	e.apiserverArgs = []string{filepath.Join(e.KubeBin, "kube-apiserver"),
		"--etcd-servers=" + etcdURL, "--bind-address=127.0.0.1",
		"--service-cluster-ip-range=" + e.opts.ServiceCIDR,
		"--tls-cert-file=" + ca.Path("apiserver.crt"), "--tls-private-key-file=" + ca.Path("apiserver.key"),
		"--client-ca-file=" + ca.Path("ca.crt"),
		"--service-account-key-file=" + ca.Path("sa.pub"), "--service-account-signing-key-file=" + ca.Path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		// As on every real cluster (kubeadm, the appliance): the CNI agent is privileged.
		"--authorization-mode=RBAC", "--profiling=false", "--allow-privileged=true",
		// Service-backed webhooks and aggregated APIs are called at their endpoints, never
		// at a ClusterIP: this apiserver runs in the host's namespace, where no proxy and
		// no guard route keep the service CIDR from leaving the machine. Tests have no
		// endpoints for them, so such calls fail here, locally.
		"--enable-aggregator-routing=true"}
	if e.apiserver, err = e.runAPIServer(ports[2]); err != nil {
		return err
	}
	e.Config = &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", ports[2]),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: ca.Path("ca.crt"), CertFile: ca.Path("admin.crt"), KeyFile: ca.Path("admin.key"),
		},
		QPS: e.opts.QPS, Burst: int(2 * e.opts.QPS),
	}
	if e.Client, err = kubernetes.NewForConfig(e.Config); err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["testenv"] = &clientcmdapi.Cluster{Server: e.Config.Host, CertificateAuthority: ca.Path("ca.crt")}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: ca.Path("admin.crt"), ClientKey: ca.Path("admin.key")}
	kc.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "admin"}
	kc.CurrentContext = "testenv"
	if err := clientcmd.WriteToFile(*kc, e.Kubeconfig); err != nil {
		return err
	}
	return e.waitReady(e.Client)
}

// waitReady waits until the apiserver behind client answers /readyz.
func (e *Env) waitReady(client *kubernetes.Clientset) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		for _, p := range e.procs {
			if p.Exited() && !p.stopped {
				return fmt.Errorf("%s exited: see the logs in %s", p.Cmd.Path, e.dir)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready: %v (logs in %s)", err, e.dir)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runAPIServer starts a kube-apiserver on port (on etcd's data, with the same certificates).
func (e *Env) runAPIServer(port int) (*proc, error) {
	argv := append(slices.Clone(e.apiserverArgs), fmt.Sprintf("--secure-port=%d", port))
	return e.runLog(fmt.Sprintf("kube-apiserver-%d", port), argv...)
}

func (e *Env) run(name string, argv ...string) error {
	_, err := e.runLog(name, argv...)
	return err
}

func (e *Env) runLog(name string, argv ...string) (*proc, error) {
	sp, err := subproc.Start(name, filepath.Join(e.dir, name+".log"), argv...)
	if err != nil {
		return nil, err
	}
	p := &proc{Process: sp}
	e.procs = append(e.procs, p)
	return p, nil
}

// StopAPIServer stops the apiserver of Config (etcd keeps running), e.g. to test that a
// component keeps working while the apiserver is away; StartAPIServer brings it back.
func (e *Env) StopAPIServer() {
	if e.apiserver != nil {
		e.apiserver.stop()
	}
}

// StartAPIServer starts the apiserver of Config again after StopAPIServer, on the same
// address, and waits until it is ready.
func (e *Env) StartAPIServer() error {
	if e.apiserver != nil && !e.apiserver.Exited() {
		return nil
	}
	port := e.Config.Host[strings.LastIndexByte(e.Config.Host, ':')+1:]
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("testenv: apiserver port %q: %w", port, err)
	}
	if e.apiserver, err = e.runAPIServer(n); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return e.waitReady(e.Client)
}

// ExtraAPIServer starts a second apiserver on the same etcd, and returns a client of it:
// the cluster can change while components watching Config's apiserver are cut off.
func (e *Env) ExtraAPIServer() (*kubernetes.Clientset, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	if _, err := e.runAPIServer(port); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	cfg := rest.CopyConfig(e.Config)
	cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	return client, e.waitReady(client)
}

func (p *proc) stop() {
	p.stopped = true
	p.Stop(5 * time.Second)
}

// Stop ends etcd and the apiserver; calling it again does nothing.
func (e *Env) Stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].Cmd.Process.Signal(syscall.SIGTERM) // all at once, then wait for each
	}
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].stop()
	}
	e.procs = nil
}
