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
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"edgenet.io/edgenet/internal/pki"
)

// controlPlane is etcd + kube-apiserver on loopback, started the way internal/testenv starts them (which needs a
// testing.TB; a main program has none, and its errors should reach the user).
type controlPlane struct {
	dir        string
	config     *rest.Config
	client     *kubernetes.Clientset
	kubeconfig string // admin kubeconfig file, given to both DNS servers
	procs      []*process
}

func startControlPlane(ctx context.Context, dir, kubeBin string, serviceCIDR netip.Prefix) (*controlPlane, error) {
	cp := &controlPlane{dir: dir}
	ca, err := pki.NewCA(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	for _, s := range []pki.Spec{
		{Name: "apiserver", CN: "kube-apiserver", Server: true, IPs: []netip.Addr{lo}, DNS: []string{"localhost"}},
		{Name: "admin", CN: "dnsbench-admin", Orgs: []string{"system:masters"}, Client: true},
	} {
		if err := ca.Issue(s); err != nil {
			return nil, fmt.Errorf("control plane: %w", err)
		}
	}
	if err := ca.ServiceAccountKey(); err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, fmt.Errorf("control plane: %w", err)
		}
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcd, err := startProcess(dir, "etcd", "etcd", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-cluster=default=http://127.0.0.1:%d", ports[1]),
		"--logger=zap", "--log-level=error", "--unsafe-no-fsync",
		"--quota-backend-bytes=8589934592")
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	cp.procs = append(cp.procs, etcd)
	api, err := startProcess(dir, "kube-apiserver", filepath.Join(kubeBin, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[2]),
		"--service-cluster-ip-range="+serviceCIDR.String(),
		"--tls-cert-file="+ca.Path("apiserver.crt"), "--tls-private-key-file="+ca.Path("apiserver.key"),
		"--client-ca-file="+ca.Path("ca.crt"),
		"--service-account-key-file="+ca.Path("sa.pub"), "--service-account-signing-key-file="+ca.Path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC", "--profiling=false")
	if err != nil {
		cp.stop()
		return nil, fmt.Errorf("control plane: %w", err)
	}
	cp.procs = append(cp.procs, api)

	host := fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	cp.config = &rest.Config{
		Host:            host,
		TLSClientConfig: rest.TLSClientConfig{CAFile: ca.Path("ca.crt"), CertFile: ca.Path("admin.crt"), KeyFile: ca.Path("admin.key")},
		// Object creation is the slow part of a run; the apiserver, not the client, should be the limit.
		QPS: 2000, Burst: 4000,
	}
	if cp.client, err = kubernetes.NewForConfig(cp.config); err != nil {
		cp.stop()
		return nil, fmt.Errorf("control plane: %w", err)
	}
	cp.kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: host, CertificateAuthority: ca.Path("ca.crt")}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: ca.Path("admin.crt"), ClientKey: ca.Path("admin.key")}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "admin"}
	kc.CurrentContext = "bench"
	if err := clientcmd.WriteToFile(*kc, cp.kubeconfig); err != nil {
		cp.stop()
		return nil, fmt.Errorf("control plane: kubeconfig: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		body, err := cp.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return cp, nil
		}
		for _, p := range cp.procs {
			if p.exited() {
				cp.stop()
				return nil, fmt.Errorf("control plane: %s exited: see %s", p.name, p.logPath)
			}
		}
		select {
		case <-ctx.Done():
			cp.stop()
			return nil, fmt.Errorf("control plane: kube-apiserver not ready: %v (logs in %s)", err, dir)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (cp *controlPlane) stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		cp.procs[i].stop()
	}
	cp.procs = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freeUDPTCPPort is a loopback port free for both UDP and TCP, for a DNS server.
func freeUDPTCPPort() (int, error) {
	for range 20 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		u.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no loopback port free for both UDP and TCP")
}

// process is a child process whose output goes to <dir>/<name>.log.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
}

func startProcess(dir, name string, argv ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	// Die with the benchmark even if it is killed before it can stop its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); log.Close(); close(p.done) }()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}
