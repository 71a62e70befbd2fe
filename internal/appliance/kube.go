package appliance

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The images every node's containerd gets. Full names, as the CRI resolves them.
const (
	imageTag     = "dev"
	edgenetImage = "docker.io/edgenet/edgenet:" + imageTag
	testappImage = "docker.io/edgenet/testapp:" + imageTag
	pauseImage   = "docker.io/edgenet/pause:" + imageTag
	apiPort      = 6443
)

// layout names the appliance's files; every per-node path is distinct because all
// nodes share the host's filesystem.
type layout struct {
	state string // /var/lib/edgenet
	run   string // /run/edgenet
}

func (l layout) pki(name string) string       { return filepath.Join(l.state, "pki", name) }
func (l layout) logs(name string) string      { return filepath.Join(l.state, "logs", name+".log") }
func (l layout) node(n, sub string) string    { return filepath.Join(l.state, "nodes", n, sub) }
func (l layout) nodeRun(n, sub string) string { return filepath.Join(l.run, n, sub) }
func (l layout) kubeconfig(who string) string {
	if who == "admin" {
		return filepath.Join(l.state, "admin.kubeconfig")
	}
	return filepath.Join(l.state, "kubeconfig", who+".kubeconfig")
}
func (l layout) containerdSock(n string) string { return l.nodeRun(n, "containerd.sock") }
func (l layout) stateFile() string              { return filepath.Join(l.state, "state.json") }

func writeKubeconfig(path, server, caFile, certFile, keyFile string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["edgenet"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	cfg.Contexts["edgenet"] = &clientcmdapi.Context{Cluster: "edgenet", AuthInfo: "user"}
	cfg.CurrentContext = "edgenet"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*cfg, path)
}

func etcdArgs(l layout) []string {
	return []string{
		"etcd", "--name=edgenet", "--data-dir=" + filepath.Join(l.state, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=edgenet=http://127.0.0.1:2380", "--listen-metrics-urls=http://127.0.0.1:2381",
		"--quota-backend-bytes=2147483648", "--logger=zap", "--log-level=warn",
	}
}

func apiserverArgs(l layout, bin string, ip netip.Addr, serviceCIDR netip.Prefix, domain string) []string {
	return []string{
		filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=" + ip.String(), "--advertise-address=" + ip.String(),
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--service-cluster-ip-range=" + serviceCIDR.String(),
		"--tls-cert-file=" + l.pki("apiserver.crt"), "--tls-private-key-file=" + l.pki("apiserver.key"),
		"--client-ca-file=" + l.pki("ca.crt"),
		"--service-account-key-file=" + l.pki("sa.pub"),
		"--service-account-signing-key-file=" + l.pki("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc." + domain,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--kubelet-client-certificate=" + l.pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + l.pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + l.pki("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
		"--v=1",
	}
}

func controllerManagerArgs(l layout, bin string, controllers string) []string {
	kc := l.kubeconfig("controller-manager")
	return []string{
		filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", "--leader-elect=false",
		"--service-account-private-key-file=" + l.pki("sa.key"),
		"--root-ca-file=" + l.pki("ca.crt"),
		"--use-service-account-credentials=true",
		// edgenet owns pod IPAM and routes: no node CIDRs, no cloud routes.
		"--allocate-node-cidrs=false", "--configure-cloud-routes=false",
		"--controllers=" + controllers,
		"--profiling=false", "--v=1",
	}
}

func schedulerArgs(l layout, bin string) []string {
	kc := l.kubeconfig("scheduler")
	return []string{
		filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false", "--v=1",
	}
}

func writeContainerdConfig(l layout, node string) (string, error) {
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.grpc.v1.introspection.service"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # runc cannot raise oom_score_adj here (no CAP_SYS_RESOURCE for root).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, l.node(node, "containerd"), l.nodeRun(node, "containerd"), l.containerdSock(node),
		l.node(node, "opt"), pauseImage, l.node(node, "cni/bin"), l.node(node, "cni/net.d"))
	path := l.node(node, "containerd.toml")
	for _, d := range []string{l.node(node, "cni/bin"), l.node(node, "cni/net.d"), l.nodeRun(node, "")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// writeKubeletConfig renders the kubelet's configuration. The cgroup settings follow
// what this machine needs (cgroup v1 via cgroupfs, a cgroupRoot per node); eviction
// thresholds are low because the appliance shares the host's disk.
func writeKubeletConfig(l layout, node string, ip netip.Addr, dnsIP netip.Addr, domain string, siteDNS netip.Addr) (string, error) {
	resolv := l.node(node, "resolv.conf")
	// The node's resolver is the site's DNS server (not the host's): pods with
	// dnsPolicy Default, the cluster DNS among them, forward there.
	if err := os.WriteFile(resolv, []byte("nameserver "+siteDNS.String()+"\n"), 0o644); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
tlsCertFile: %q
tlsPrivateKeyFile: %q
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: /%s/%s
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
clusterDomain: %s
clusterDNS: [%s]
resolvConf: %q
podLogsDir: %q
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%"}
maxPods: 110
`, ip, l.pki("ca.crt"), l.pki("kubelet-"+node+".crt"), l.pki("kubelet-"+node+".key"),
		l.containerdSock(node), cgroupTop, node, domain, dnsIP, resolv, l.node(node, "pod-logs"))
	path := l.node(node, "kubelet.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

func kubeletArgs(l layout, bin, node string, ip netip.Addr, config string) []string {
	return []string{
		filepath.Join(bin, "kubelet"),
		"--config=" + config,
		"--kubeconfig=" + l.kubeconfig("kubelet-"+node),
		"--root-dir=" + l.node(node, "kubelet"),
		"--hostname-override=" + node,
		"--node-ip=" + ip.String(),
		"--v=1",
	}
}

// kubeletSysctls are the host-wide sysctls a kubelet sets (kubelet/cm setupKernelTunables);
// up records them first and down restores them.
var kubeletSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
}

func sysctlPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(key, val string) error {
	return os.WriteFile(sysctlPath(key), []byte(val), 0o644)
}
