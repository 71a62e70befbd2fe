// Package appliance brings up and takes down a real multi-node Kubernetes appliance on
// one Linux machine: a site bridge with a network namespace per node and one for a
// client on the site LAN, etcd and the control plane in the first node's namespace,
// containerd and a kubelet per node, certificates of its own, the edgenet images, and
// the manifests of deploy/. It owns everything below /var/lib/edgenet and /run/edgenet,
// the cgroup tree "edgenet", namespaces named edgenet-*, links edgenet0 and edg-*, root
// routes tagged proto 187 and the nftables table inet edgenet-guard. It touches nothing
// else on the host, except the sysctls a kubelet changes, which down restores.
package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go4.org/netipx"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/deploy"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/image"
	"edgenet.io/edgenet/internal/pki"
	"edgenet.io/edgenet/internal/webhook"
)

// Config is what up needs; cmd/edgenet fills it from flags and a config file.
type Config struct {
	Settings   computenet.Settings
	StateDir   string // default /var/lib/edgenet
	RunDir     string // default /run/edgenet
	BinDir     string // edgenet, testapp and pause binaries (images are built from them)
	KubeBinDir string // the pinned Kubernetes binaries and kubectl
	Timeout    time.Duration
	Out        io.Writer
}

const (
	SystemNamespace = "edgenet-system"
	// APIEndpointConfigMap tells hostNetwork components where the apiserver is before
	// the service proxy (edgenet itself) can route the kubernetes Service.
	APIEndpointConfigMap = "edgenet-apiserver-endpoint"
)

func (c Config) layout() layout { return layout{state: c.StateDir, run: c.RunDir} }

// NodeName is the Kubernetes name of node i (0-based); its namespace is edgenet-<name>.
func NodeName(i int) string { return fmt.Sprintf("node%d", i+1) }

// kubeletSharedDir is the one host path kubelets use whatever their root dir.
const kubeletSharedDir = "/var/lib/kubelet"

// ClientNetns is the namespace of the site LAN's client (a laptop on the site network).
const ClientNetns = "edgenet-client"

// SiteDNSNetns holds the site's own DNS server (dnsmasq with a local zone, no
// upstream): the cluster DNS forwards other names there, and nothing leaves the machine.
const SiteDNSNetns = "edgenet-sitedns"

// SiteDomain is the site DNS server's local zone.
const SiteDomain = "site.example"

// Up brings the appliance up. On a running appliance it reports so and changes nothing;
// leftovers of a crashed run are cleared first; a failure midway rolls back.
func Up(ctx context.Context, cfg Config) (err error) {
	s := cfg.Settings
	if err := s.Validate(); err != nil {
		return fmt.Errorf("invalid settings:\n%w", err)
	}
	if err := checkPrereqs(cfg); err != nil {
		return err
	}
	l := cfg.layout()
	old, err := loadState(l.stateFile())
	if err != nil {
		fmt.Fprintf(cfg.Out, "unreadable state (%v): clearing leftovers\n", err)
	}
	if old.running() {
		fmt.Fprintln(cfg.Out, "edgenet appliance is already running; nothing changed.")
		return Status(ctx, cfg, cfg.Out)
	}
	if old != nil || leftovers() {
		fmt.Fprintln(cfg.Out, "clearing leftovers of an earlier run")
		if err := Down(ctx, cfg); err != nil {
			return fmt.Errorf("clear leftovers: %w", err)
		}
	}
	routes, err := hostRoutes()
	if err != nil {
		return err
	}
	if err := s.CheckHostRoutes(routes); err != nil {
		return fmt.Errorf("settings overlap this host's networks:\n%w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	st := &state{Settings: s, Sysctls: map[string]string{}, Started: start, PodNetnsBefore: podNetns()}
	for _, k := range kubeletSysctls {
		if v, err := readSysctl(k); err == nil {
			st.Sysctls[k] = v
		}
	}
	for _, d := range []string{l.state, l.run, filepath.Join(l.state, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := st.save(l.stateFile()); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(cfg.Out, "up failed: %v\nrolling back\n", err)
			if derr := Down(context.Background(), cfg); derr != nil {
				err = errors.Join(err, fmt.Errorf("rollback: %w", derr))
			}
		}
	}()
	step := func(msg string) { fmt.Fprintf(cfg.Out, "[%5.1fs] %s\n", time.Since(start).Seconds(), msg) }

	// Images are built while the network and control plane come up.
	imgs := errgroup.Group{}
	imgDir := filepath.Join(l.state, "images")
	imgs.Go(func() error {
		if err := os.MkdirAll(imgDir, 0o755); err != nil {
			return err
		}
		specs, err := appImages(cfg.BinDir)
		if err != nil {
			return err
		}
		for _, spec := range specs {
			if err := image.WriteDockerArchive(spec, filepath.Join(imgDir, imageFile(spec.Ref))); err != nil {
				return err
			}
		}
		return nil
	})

	step("site network")
	if err := makeNetwork(s, st); err != nil {
		return err
	}
	if err := st.save(l.stateFile()); err != nil {
		return err
	}
	cp := st.Nodes[0]
	server := fmt.Sprintf("https://%s", netip.AddrPortFrom(cp.IP, apiPort))

	step("certificates")
	if err := makePKI(l, s, st, server); err != nil {
		return err
	}

	step("control plane on " + cp.Name)
	bin := cfg.KubeBinDir
	startProc := func(name, node, netns string, argv []string) error {
		p, err := launch(name, netns, l.logs(name), nil, argv)
		p.Node = node
		if err == nil {
			st.Procs = append(st.Procs, p)
			err = st.save(l.stateFile())
		}
		return err
	}
	if err := startProc("dnsmasq", "", st.SiteDNS.Netns, siteDNSArgs(st)); err != nil {
		return err
	}
	if err := startProc("etcd", cp.Name, cp.Netns, etcdArgs(l)); err != nil {
		return err
	}
	if err := startProc("kube-apiserver", cp.Name, cp.Netns, apiserverArgs(l, bin, cp.IP, s.ServiceCIDR, s.ClusterDomain)); err != nil {
		return err
	}
	client, err := adminClient(l)
	if err != nil {
		return err
	}
	if err := st.waitFor(ctx, "kube-apiserver ready", func() (bool, error) {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && strings.TrimSpace(string(body)) == "ok", nil
	}); err != nil {
		return err
	}
	// edgenet controller maintains the EndpointSlices; the Endpoints controller goes too
	// (the v1 Endpoints API is deprecated and nothing of ours reads it).
	if err := startProc("kube-controller-manager", cp.Name, cp.Netns, controllerManagerArgs(l, bin, "*,-endpointslice,-endpoint")); err != nil {
		return err
	}
	if err := startProc("kube-scheduler", cp.Name, cp.Netns, schedulerArgs(l, bin)); err != nil {
		return err
	}

	step("containerd on every node")
	for _, n := range st.Nodes {
		conf, err := writeContainerdConfig(l, n.Name)
		if err != nil {
			return err
		}
		if err := startProc("containerd-"+n.Name, n.Name, n.Netns, []string{"containerd", "--config", conf}); err != nil {
			return err
		}
	}
	if err := imgs.Wait(); err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	step("images into every node's containerd")
	var g errgroup.Group
	for _, n := range st.Nodes {
		g.Go(func() error { return importImages(ctx, l, n.Name, imgDir) })
	}
	if err := g.Wait(); err != nil {
		return err
	}

	step("kubelets")
	// Every kubelet binds /var/lib/kubelet/device-plugins/kubelet.sock whatever its
	// root dir, clearing stale sockets there first: started together they race for it,
	// started one after the other each takes it over. Nothing of ours uses device plugins.
	if _, err := os.Stat(kubeletSharedDir); errors.Is(err, os.ErrNotExist) {
		st.Created = append(st.Created, kubeletSharedDir)
	}
	for _, n := range st.Nodes {
		// The kubelet's cgroupRoot must exist in every hierarchy before it starts.
		if _, err := makeCgroup(cgroupTop + "/" + n.Name); err != nil {
			return err
		}
		conf, err := writeKubeletConfig(l, n.Name, n.IP, s.DNSServiceIP(), s.ClusterDomain, st.SiteDNS.IP)
		if err != nil {
			return err
		}
		if err := startProc("kubelet-"+n.Name, n.Name, n.Netns, kubeletArgs(l, bin, n.Name, n.IP, conf)); err != nil {
			return err
		}
		if err := st.waitFor(ctx, n.Name+" registered", func() (bool, error) {
			_, err := client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			return err == nil, nil
		}); err != nil {
			return err
		}
	}
	step(fmt.Sprintf("%d nodes registered", len(st.Nodes)))

	if err := labelControlPlane(ctx, client, cp.Name); err != nil {
		return err
	}
	step("deploy/ (edgenet)")
	if err := bootstrapObjects(ctx, client, server, s); err != nil {
		return err
	}
	uiPassword := filepath.Join(l.state, UIPasswordFile)
	if _, err := bootstrapUIPassword(ctx, client, uiPassword); err != nil {
		return err
	}
	if err := applyDeploy(ctx, l, bin, s); err != nil {
		return err
	}
	if err := st.waitFor(ctx, "edgenet agent running on every node", func() (bool, error) {
		return agentsReady(ctx, client, len(st.Nodes))
	}); err != nil {
		return err
	}
	if err := st.waitFor(ctx, "every node Ready (pod network up)", func() (bool, error) {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, n := range nodes.Items {
			if !nodeReady(&n) {
				return false, nil
			}
		}
		return len(nodes.Items) == len(st.Nodes), nil
	}); err != nil {
		return err
	}
	st.Ready = true
	if err := st.save(l.stateFile()); err != nil {
		return err
	}
	for _, d := range []string{"edgenet-controller", "edgenet-dns", "edgenet-ui"} {
		if err := st.waitFor(ctx, d+" available", func() (bool, error) {
			d, err := client.AppsV1().Deployments(SystemNamespace).Get(ctx, d, metav1.GetOptions{})
			return err == nil && d.Status.AvailableReplicas > 0 && d.Status.AvailableReplicas == d.Status.Replicas, nil
		}); err != nil {
			return err
		}
	}
	// The ComputeNetwork's admission webhook (failurePolicy Fail) is served by the
	// edgenet controller, reached through its ClusterIP by the apiserver in node1's
	// namespace: the object can be created only once the controller runs, the agents
	// proxy, and its EndpointSlice exists. Nothing before needs the object.
	var lastErr error
	if err := st.waitFor(ctx, "the ComputeNetwork object (through its admission webhook)", func() (bool, error) {
		lastErr = createComputeNetwork(ctx, l, s)
		if apierrors.IsInvalid(lastErr) {
			return false, lastErr // the webhook's verdict, not a webhook that is not up yet
		}
		return lastErr == nil, nil
	}); err != nil {
		if lastErr != nil && !apierrors.IsInvalid(lastErr) {
			err = fmt.Errorf("%w (last attempt: %v)", err, lastErr)
		}
		return err
	}
	step("demo app")
	demo, err := deployDemo(ctx, cfg, client, st)
	if err != nil {
		return err
	}
	step("ready")
	fmt.Fprintf(cfg.Out, "\nThe edgenet appliance is up: %d nodes on %s.\n  export KUBECONFIG=%s\n  kubectl get nodes -o wide\n",
		len(st.Nodes), s.SiteSubnet, l.kubeconfig("admin"))
	demo.print(cfg.Out)
	fmt.Fprintf(cfg.Out, "The local UI's admin password is in %s.\n", uiPassword)
	return nil
}

func checkPrereqs(cfg Config) error {
	if os.Geteuid() != 0 {
		return errors.New("edgenet up must run as root")
	}
	var missing []string
	for _, c := range []string{"ip", "nft", "nsenter", "etcd", "containerd", "containerd-shim-runc-v2", "runc", "ctr"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	for _, f := range append([]string{
		filepath.Join(cfg.KubeBinDir, "kube-apiserver"), filepath.Join(cfg.KubeBinDir, "kube-controller-manager"),
		filepath.Join(cfg.KubeBinDir, "kube-scheduler"), filepath.Join(cfg.KubeBinDir, "kubelet"),
		filepath.Join(cfg.KubeBinDir, "kubectl"),
		filepath.Join(cfg.BinDir, "edgenet"), filepath.Join(cfg.BinDir, "testapp"), filepath.Join(cfg.BinDir, "pause"),
	}, demoPrereqs(cfg.BinDir)...) {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing (run `make build kube deps`): %s", strings.Join(missing, ", "))
	}
	return nil
}

// leftovers reports whether anything of an earlier appliance is still on the host.
func leftovers() bool {
	return len(ourNetns()) > 0 || len(ourLinks()) > 0 || len(ourRoutes()) > 0 || len(cgroupPIDs()) > 0 ||
		run("nft", "list", "table", "inet", guardTable) == nil
}

func makeNetwork(s computenet.Settings, st *state) error {
	bits := s.SiteSubnet.Bits()
	for i := 0; i < s.Nodes; i++ {
		ip, err := s.NodeIP(i)
		if err != nil {
			return err
		}
		name := NodeName(i)
		st.Nodes = append(st.Nodes, host{Name: name, Netns: "edgenet-" + name, IP: ip, Link: linkPrefix + name})
	}
	free, err := freeSiteIPs(s, 2)
	if err != nil {
		return err
	}
	st.Client = host{Name: "client", Netns: ClientNetns, IP: free[0], Link: linkPrefix + "client"}
	st.SiteDNS = host{Name: "sitedns", Netns: SiteDNSNetns, IP: free[1], Link: linkPrefix + "sitedns"}
	if err := addBridge(netip.PrefixFrom(s.Gateway, bits)); err != nil {
		return err
	}
	for _, h := range st.Nodes {
		if err := addHost(h, bits, s.Gateway, true); err != nil {
			return err
		}
	}
	for _, h := range []host{st.Client, st.SiteDNS} {
		if err := addHost(h, bits, s.Gateway, false); err != nil {
			return err
		}
	}
	var ext []netipx.IPRange
	for _, r := range s.ExternalIPs {
		ext = append(ext, netipx.IPRangeFrom(r.From, r.To))
	}
	for _, p := range guardPrefixes(s.PodCIDR, s.ServiceCIDR, ext) {
		if err := addGuardRoute(p); err != nil {
			return err
		}
	}
	return addGuardTable()
}

// freeSiteIPs picks the n highest addresses of the site subnet that no range uses:
// the site LAN's client, then its DNS server.
func freeSiteIPs(s computenet.Settings, n int) ([]netip.Addr, error) {
	var out []netip.Addr
	last := netipx.PrefixLastIP(s.SiteSubnet)
	for a := last.Prev(); a.IsValid() && s.SiteSubnet.Contains(a) && len(out) < n; a = a.Prev() {
		if a == s.Gateway || s.NodeIPs.Contains(a) || a == s.SiteSubnet.Addr() {
			continue
		}
		used := false
		for _, r := range s.ExternalIPs {
			used = used || r.Contains(a)
		}
		if !used {
			out = append(out, a)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("the site subnet %s has no %d free addresses for the site's client and DNS server", s.SiteSubnet, n)
	}
	return out, nil
}

func makePKI(l layout, s computenet.Settings, st *state, server string) error {
	ca, err := pki.NewCA(filepath.Join(l.state, "pki"))
	if err != nil {
		return err
	}
	cp := st.Nodes[0]
	d := s.ClusterDomain
	specs := []pki.Spec{
		{Name: "apiserver", CN: "kube-apiserver", Server: true,
			IPs: []netip.Addr{cp.IP, s.APIServiceIP(), netip.MustParseAddr("127.0.0.1")},
			DNS: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + d, "localhost"}},
		{Name: "apiserver-kubelet-client", CN: "kube-apiserver-kubelet-client", Orgs: []string{"system:masters"}, Client: true},
		{Name: "admin", CN: "edgenet-admin", Orgs: []string{"system:masters"}, Client: true},
		{Name: "controller-manager", CN: "system:kube-controller-manager", Client: true},
		{Name: "scheduler", CN: "system:kube-scheduler", Client: true},
	}
	for _, n := range st.Nodes {
		specs = append(specs, pki.Spec{Name: "kubelet-" + n.Name, CN: "system:node:" + n.Name,
			Orgs: []string{"system:nodes"}, Client: true, Server: true, IPs: []netip.Addr{n.IP}, DNS: []string{n.Name}})
	}
	for _, sp := range specs {
		if err := ca.Issue(sp); err != nil {
			return err
		}
	}
	if err := ca.ServiceAccountKey(); err != nil {
		return err
	}
	for _, who := range []string{"admin", "controller-manager", "scheduler"} {
		if err := writeKubeconfig(l.kubeconfig(who), server, ca.Path("ca.crt"), ca.Path(who+".crt"), ca.Path(who+".key")); err != nil {
			return err
		}
	}
	for _, n := range st.Nodes {
		who := "kubelet-" + n.Name
		if err := writeKubeconfig(l.kubeconfig(who), server, ca.Path("ca.crt"), ca.Path(who+".crt"), ca.Path(who+".key")); err != nil {
			return err
		}
	}
	return nil
}

func adminClient(l layout) (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", l.kubeconfig("admin"))
	if err != nil {
		return nil, err
	}
	rc.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(rc)
}

func imageFile(ref string) string {
	return strings.NewReplacer("/", "_", ":", "_").Replace(ref) + ".tar"
}

func importImages(ctx context.Context, l layout, node, dir string) error {
	sock := l.containerdSock(node)
	if err := waitFor(ctx, "containerd on "+node, func() (bool, error) {
		return exec.CommandContext(ctx, "ctr", "--address", sock, "version").Run() == nil, nil
	}); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "-n", "k8s.io", "images", "import", "--no-unpack", f).CombinedOutput(); err != nil {
			return fmt.Errorf("import %s into %s: %w: %s", filepath.Base(f), node, err, out)
		}
	}
	return nil
}

func labelControlPlane(ctx context.Context, c kubernetes.Interface, node string) error {
	patch := []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`)
	_, err := c.CoreV1().Nodes().Patch(ctx, node, "application/merge-patch+json", patch, metav1.PatchOptions{})
	return err
}

// bootstrapObjects creates what deploy/ expects of a cluster before edgenet's own
// service proxy runs: the namespace and the apiserver endpoint for hostNetwork pods.
func bootstrapObjects(ctx context.Context, c kubernetes.Interface, server string, s computenet.Settings) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	ap, err := netip.ParseAddrPort(strings.TrimPrefix(server, "https://"))
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: APIEndpointConfigMap, Namespace: SystemNamespace},
		Data: map[string]string{
			"KUBERNETES_SERVICE_HOST": ap.Addr().String(),
			"KUBERNETES_SERVICE_PORT": fmt.Sprint(ap.Port()),
		},
	}
	if _, err := c.CoreV1().ConfigMaps(SystemNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "edgenet-member-key", Namespace: SystemNamespace},
		Data:       map[string][]byte{"key": []byte(hex.EncodeToString(key))},
	}
	if _, err := c.CoreV1().Secrets(SystemNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	settings := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigConfigMap, Namespace: SystemNamespace},
		Data:       ConfigEnv(s),
	}
	if _, err := c.CoreV1().ConfigMaps(SystemNamespace).Create(ctx, settings, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// ConfigConfigMap holds the cluster's network settings as EDGENET_* variables for the
// agent and the other components.
const ConfigConfigMap = "edgenet-config"

// ConfigEnv renders settings as the variables of ConfigConfigMap.
func ConfigEnv(s computenet.Settings) map[string]string {
	env := map[string]string{
		"EDGENET_POD_CIDR":       s.PodCIDR.String(),
		"EDGENET_POD_BLOCK_SIZE": fmt.Sprint(s.BlockSize),
		"EDGENET_SERVICE_CIDR":   s.ServiceCIDR.String(),
		"EDGENET_CLUSTER_DOMAIN": s.ClusterDomain,
		"EDGENET_SITE_SUBNET":    s.SiteSubnet.String(),
		"EDGENET_NODE_IPS":       s.NodeIPs.String(),
	}
	if len(s.UpstreamDNS) > 0 {
		var ups []string
		for _, a := range s.UpstreamDNS {
			ups = append(ups, a.String())
		}
		env["EDGENET_UPSTREAM_DNS"] = strings.Join(ups, ",")
	}
	return env
}

// applyDeploy applies the embedded deploy/ kustomization with kubectl, exactly as an
// admin of a real cluster would.
func applyDeploy(ctx context.Context, l layout, kubeBin string, s computenet.Settings) error {
	dir, err := os.MkdirTemp("", "edgenet-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.CopyFS(dir, deploy.FS); err != nil {
		return err
	}
	// The DNS service IP follows the service CIDR.
	patch := fmt.Sprintf(`
  - target: {kind: Service, name: edgenet-dns}
    patch: |-
      - op: replace
        path: /spec/clusterIP
        value: %s
`, s.DNSServiceIP())
	kpath := filepath.Join(dir, "appliance", "kustomization.yaml")
	k, err := os.ReadFile(kpath)
	if err != nil {
		return err
	}
	k = []byte(strings.Replace(string(k), "patches:\n", "patches:"+patch, 1))
	if err := os.WriteFile(kpath, k, 0o644); err != nil {
		return err
	}
	// deploy/appliance is deploy/ with per-node host paths: the nodes share one filesystem.
	cmd := exec.CommandContext(ctx, filepath.Join(kubeBin, "kubectl"), "--kubeconfig", l.kubeconfig("admin"), "apply", "--server-side", "-k", filepath.Join(dir, "appliance"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply -k deploy: %w: %s", err, out)
	}
	return nil
}

func agentsReady(ctx context.Context, c kubernetes.Interface, nodes int) (bool, error) {
	pods, err := c.CoreV1().Pods(SystemNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=edgenet-agent"})
	if err != nil {
		return false, nil
	}
	ready := 0
	for _, p := range pods.Items {
		// A crashing agent will not get better by waiting: say why at once.
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && time.Since(p.CreationTimestamp.Time) > 30*time.Second {
				switch w.Reason {
				case "CreateContainerError", "CreateContainerConfigError", "ErrImageNeverPull", "ImagePullBackOff", "InvalidImageName":
					return false, fmt.Errorf("agent %s on %s: %s: %s", p.Name, p.Spec.NodeName, w.Reason, w.Message)
				}
			}
			if cs.RestartCount >= 3 {
				why := ""
				if t := cs.LastTerminationState.Terminated; t != nil {
					why = fmt.Sprintf(": exit %d %s %s", t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
				}
				return false, fmt.Errorf("agent %s on %s restarted %d times%s", p.Name, p.Spec.NodeName, cs.RestartCount, why)
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return ready == nodes, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitFor is waitFor that also fails as soon as a component up started has exited.
func (st *state) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	return waitFor(ctx, what, func() (bool, error) {
		for _, p := range st.Procs {
			if !p.alive() {
				return false, fmt.Errorf("%s exited; its log %s ends:\n%s", p.Name, p.Log, logTail(p.Log, 10))
			}
		}
		return cond()
	})
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it holds, fails, or ctx ends.
func waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// siteDNSArgs runs dnsmasq as the site's DNS server: authoritative for SiteDomain,
// with no upstream at all.
func siteDNSArgs(st *state) []string {
	return []string{
		"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
		"--pid-file=", "--log-facility=-", "--bind-interfaces", "--listen-address=" + st.SiteDNS.IP.String(),
		"--local=/" + SiteDomain + "/", "--domain=" + SiteDomain,
		"--host-record=gateway." + SiteDomain + "," + st.Settings.Gateway.String(),
		"--host-record=dns." + SiteDomain + "," + st.SiteDNS.IP.String(),
		"--host-record=laptop." + SiteDomain + "," + st.Client.IP.String(),
		"--txt-record=motd." + SiteDomain + ",edgenet site DNS",
	}
}

// createComputeNetwork records the appliance's settings as the cluster's ComputeNetwork
// "default" (the LoadBalancer controller's default pool comes from it). It fails until
// the CRD is served.
func createComputeNetwork(ctx context.Context, l layout, s computenet.Settings) error {
	rc, err := clientcmd.BuildConfigFromFlags("", l.kubeconfig("admin"))
	if err != nil {
		return err
	}
	c, err := v1alpha1.NewForConfig(rc)
	if err != nil {
		return err
	}
	cn := &v1alpha1.ComputeNetwork{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ComputeNetworkName}, Spec: webhook.SpecOf(s)}
	_, err = c.ComputeNetworks().Create(ctx, cn, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
