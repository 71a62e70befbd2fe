// Command edgenet is the whole edgenet network stack in one binary: the appliance
// (up, down, status), the per-node agent, and, called as edgenet-cni, the CNI plugin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/agent"
	"edgenet.io/edgenet/internal/appliance"
	"edgenet.io/edgenet/internal/cleanup"
	// Called as a CNI plugin (edgenet-cni, loopback), the binary is the plugin and exits in
	// this package's init, before the Kubernetes client packages initialize.
	_ "edgenet.io/edgenet/internal/cni/multicall"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/controller"
	"edgenet.io/edgenet/internal/dns"
	"edgenet.io/edgenet/internal/endpoints"
	lbcontroller "edgenet.io/edgenet/internal/lb/controller"
	"edgenet.io/edgenet/internal/proxy"
	"edgenet.io/edgenet/internal/routing"
	"edgenet.io/edgenet/internal/version"
	"edgenet.io/edgenet/internal/webhook"
	"edgenet.io/edgenet/internal/webui"
)

const usage = `usage: edgenet <command> [flags]

commands:
  up       bring up the appliance: a multi-node Kubernetes cluster in network namespaces (root)
  down     stop the appliance and remove everything up made (root)
  status   show the appliance's nodes, components and ranges
  agent    run the per-node agent (the DaemonSet)
  dns      run the cluster DNS server (the Deployment behind the DNS service IP)
  controller  run the cluster-wide controllers (EndpointSlices, LoadBalancer IPs, ComputeNetwork status) under
           leader election, and the ComputeNetwork admission webhook on every replica
  ui       serve the local web UI and its JSON API over HTTPS
  cleanup  remove what the agent put on this node (uninstall; see deploy/uninstall/)
  version  print the version

Run 'edgenet <command> -h' for a command's flags.
`

func main() {
	if err := run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "edgenet:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "up", "down", "status":
		return applianceCmd(ctx, cmd, rest)
	case "agent":
		return agentCmd(ctx, rest)
	case "dns":
		return dnsCmd(ctx, rest)
	case "controller":
		return controllerCmd(ctx, rest)
	case "ui":
		return uiCmd(ctx, rest)
	case "cleanup":
		return cleanupCmd(ctx, rest)
	case "version":
		fmt.Printf("edgenet %s (Kubernetes %s)\n", version.Version, version.Kubernetes)
		return nil
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func applianceCmd(ctx context.Context, cmd string, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	binDir := filepath.Dir(exe)
	cfg := appliance.Config{StateDir: "/var/lib/edgenet", RunDir: "/run/edgenet", Out: os.Stdout}
	fs := flag.NewFlagSet("edgenet "+cmd, flag.ContinueOnError)
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "appliance state, certificates and logs")
	fs.StringVar(&cfg.RunDir, "run-dir", cfg.RunDir, "runtime sockets")
	if cmd != "up" {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if cmd == "down" {
			return appliance.Down(ctx, cfg)
		}
		return appliance.Status(ctx, cfg, os.Stdout)
	}

	s := computenet.Defaults()
	configFile := fs.String("config", "", "settings file (YAML, ComputeNetwork field names); flags override it")
	fs.StringVar(&cfg.BinDir, "bin-dir", binDir, "directory with the edgenet, testapp and pause binaries")
	fs.StringVar(&cfg.KubeBinDir, "kube-bin-dir", filepath.Join(binDir, "kube"), "directory with the Kubernetes binaries and kubectl")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "give up (and roll back) after this long")
	nodes := fs.Int("nodes", 0, fmt.Sprintf("number of nodes (default %d)", s.Nodes))
	var f appliance.FileSettings
	fs.StringVar(&f.SiteSubnet, "site-subnet", "", fmt.Sprintf("the site network (default %s)", s.SiteSubnet))
	fs.StringVar(&f.Gateway, "gateway", "", fmt.Sprintf("the site gateway (default %s)", s.Gateway))
	fs.StringVar(&f.NodeIPRange, "node-ips", "", fmt.Sprintf("Kubernetes node IPs, a contiguous range of nodes+1 addresses (default %s)", s.NodeIPs))
	ext := fs.String("external-ips", "", fmt.Sprintf("Kubernetes external service IPs, comma-separated ranges (default %s)", s.ExternalIPs[0]))
	fs.StringVar(&f.PodCIDR, "pod-cidr", "", fmt.Sprintf("pod CIDR (default %s)", s.PodCIDR))
	fs.StringVar(&f.ServiceCIDR, "service-cidr", "", fmt.Sprintf("service CIDR (default %s)", s.ServiceCIDR))
	fs.StringVar(&f.ClusterDomain, "cluster-domain", "", fmt.Sprintf("cluster domain (default %s)", s.ClusterDomain))
	dns := fs.String("upstream-dns", "", "upstream DNS servers, comma-separated")
	fs.IntVar(&f.PodBlockSize, "pod-block-size", 0, fmt.Sprintf("prefix length of per-node pod IP blocks (default %d)", s.BlockSize))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configFile != "" {
		if s, err = appliance.LoadSettingsFile(*configFile, s); err != nil {
			return err
		}
	}
	f.Nodes = *nodes
	if *ext != "" {
		f.ExternalServiceIPRanges = strings.Split(*ext, ",")
	}
	if *dns != "" {
		f.UpstreamDNS = strings.Split(*dns, ",")
	}
	if s, err = f.Apply(s); err != nil {
		return fmt.Errorf("invalid flags:\n%w", err)
	}
	cfg.Settings = s
	return appliance.Up(ctx, cfg)
}

func agentCmd(ctx context.Context, args []string) error {
	d := computenet.Defaults()
	fs := flag.NewFlagSet("edgenet agent", flag.ContinueOnError)
	cfg := agent.Config{NodeName: os.Getenv("NODE_NAME")}
	fs.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "this node's name (default $NODE_NAME)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", ":9440", "address of /healthz and /readyz")
	fs.StringVar(&cfg.PodNet.CNIBinDir, "cni-bin-dir", "/opt/cni/bin", "where the container runtime looks for CNI plugins")
	fs.StringVar(&cfg.PodNet.CNIConfDir, "cni-conf-dir", "/etc/cni/net.d", "where the container runtime looks for CNI confs")
	fs.StringVar(&cfg.PodNet.StateDir, "state-dir", "/var/lib/edgenet-agent", "the node's durable state (pod IP allocations)")
	fs.IntVar(&cfg.PodNet.MTU, "mtu", 0, "pod interface MTU (default: the site interface's, less the VXLAN overhead when tunnelling)")
	podCIDR := fs.String("pod-cidr", envOr("EDGENET_POD_CIDR", d.PodCIDR.String()), "the cluster's pod CIDR")
	blockSize := fs.String("pod-block-size", envOr("EDGENET_POD_BLOCK_SIZE", fmt.Sprint(d.BlockSize)), "prefix length of per-node pod IP blocks")
	mode := fs.String("pod-routing", envOr("EDGENET_POD_ROUTING", "auto"), "direct (one L2 segment), vxlan, or auto (direct where possible)")
	balancing := fs.String("proxy-balancing", envOr("EDGENET_PROXY_BALANCING", string(proxy.BalanceCascade)), "nftables balancing form: cascade or vmap")
	shards := fs.String("proxy-shards", envOr("EDGENET_PROXY_SHARDS", fmt.Sprint(proxy.DefaultShards)), fmt.Sprintf("nftables tables the services are spread over (1 to %d): more make a change cheaper at many services and a new connection a little dearer", proxy.MaxShards))
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.PodNet.PodCIDR, err = netip.ParsePrefix(*podCIDR); err != nil {
		return fmt.Errorf("--pod-cidr: %w", err)
	}
	if _, err := fmt.Sscan(*blockSize, &cfg.BlockBits); err != nil {
		return fmt.Errorf("--pod-block-size %q: %w", *blockSize, err)
	}
	if cfg.Routing, err = routing.ParseMode(*mode); err != nil {
		return fmt.Errorf("--pod-routing: %w", err)
	}
	cfg.Balancing = proxy.Balancing(*balancing)
	if cfg.Shards, err = strconv.Atoi(*shards); err != nil || cfg.Shards < 1 || cfg.Shards > proxy.MaxShards {
		return fmt.Errorf("--proxy-shards %q: want 1 to %d", *shards, proxy.MaxShards)
	}
	cfg.MemberKey = []byte(os.Getenv("EDGENET_MEMBER_KEY"))
	setGCPercent(proxy.DefaultGCPercent) // the proxy's state dominates the agent's heap
	rc, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if cfg.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if cfg.Edgenet, err = v1alpha1.NewForConfig(rc); err != nil {
		return err
	}
	cfg.Log = newLogger("agent")
	return agent.Run(ctx, cfg)
}

// envOr is the value of the environment variable key, or def. Components take the
// cluster's settings from the edgenet-config ConfigMap as EDGENET_* variables.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newLogger(component string) *slog.Logger {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", component)
	klog.SetSlogLogger(log.With("source", "client-go"))
	return log
}

func dnsCmd(ctx context.Context, args []string) error {
	d := computenet.Defaults()
	fs := flag.NewFlagSet("edgenet dns", flag.ContinueOnError)
	var cfg dns.Config
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig (default: in-cluster)")
	fs.StringVar(&cfg.ClusterDomain, "cluster-domain", envOr("EDGENET_CLUSTER_DOMAIN", d.ClusterDomain), "cluster domain")
	listen := fs.String("listen", ":53", "comma-separated DNS listen addresses (UDP and TCP)")
	ups := fs.String("upstream", envOr("EDGENET_UPSTREAM_DNS", ""), "comma-separated upstream resolvers (default: the nameservers of --resolv-conf)")
	fs.StringVar(&cfg.ResolvConf, "resolv-conf", "/etc/resolv.conf", "where upstreams come from when --upstream is empty")
	fs.DurationVar(&cfg.TTL, "ttl", 5*time.Second, "TTL of cluster records")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":9153", "address of /metrics, /ready and /health (\"-\" disables)")
	fs.IntVar(&cfg.CacheSize, "cache-size", 10000, "answers kept by the forwarding cache")
	fs.BoolVar(&cfg.FollowComputeNetwork, "follow-compute-network", false, "forward to the ComputeNetwork's upstreamDNS as it changes (falling back to --upstream)")
	podCIDR := fs.String("pod-cidr", envOr("EDGENET_POD_CIDR", d.PodCIDR.String()), "pod CIDR (its reverse zone is answered locally)")
	svcCIDR := fs.String("service-cidr", envOr("EDGENET_SERVICE_CIDR", d.ServiceCIDR.String()), "service CIDR (its 10th address is the DNS service IP)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Listen = splitList(*listen)
	cfg.Upstreams = splitList(*ups)
	s := d
	s.PodCIDR, s.ServiceCIDR = netip.Prefix{}, netip.Prefix{}
	var err error
	if s.PodCIDR, err = netip.ParsePrefix(*podCIDR); err != nil {
		return fmt.Errorf("--pod-cidr: %w", err)
	}
	if s.ServiceCIDR, err = netip.ParsePrefix(*svcCIDR); err != nil {
		return fmt.Errorf("--service-cidr: %w", err)
	}
	// Memory matters on an edge box: collect at 50% heap growth rather than Go's 100%
	// unless GOGC or GOMEMLIMIT says otherwise (the zone is long-lived; answers allocate little).
	setGCPercent(50)
	cfg.NameserverAddrs = []netip.Addr{s.DNSServiceIP()}
	cfg.ReverseCIDRs = []netip.Prefix{s.PodCIDR, s.ServiceCIDR}
	cfg.Logger = newLogger("dns")
	return dns.Run(ctx, cfg)
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func controllerCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("edgenet controller", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig (default: in-cluster)")
	ns := fs.String("namespace", envOr("POD_NAMESPACE", "edgenet-system"), "namespace of the leader Lease and the webhook's Service and Secret")
	webhookAddr := fs.String("webhook-addr", webhook.DefaultAddr, "listen address of the ComputeNetwork admission webhook (HTTPS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	en, err := v1alpha1.NewForConfig(rc)
	if err != nil {
		return err
	}
	log := newLogger("controller")
	return controller.Run(ctx, controller.Config{
		Client: kube, Edgenet: en, Namespace: *ns, Log: log,
		Serve: []controller.Part{
			{Name: "webhook", Run: func(ctx context.Context) error {
				wlog := log.With("part", "webhook")
				return webhook.Run(ctx, webhook.Config{Client: kube, Namespace: *ns, Addr: *webhookAddr, Log: wlog,
					Handler: &webhook.Handler{Nodes: webhook.ClientNodes{Client: kube}, Log: wlog}})
			}},
		},
		Parts: []controller.Part{
			{Name: "computenetwork-status", Run: func(ctx context.Context) error {
				return controller.RunComputeNetworkStatus(ctx, kube, en, log.With("part", "computenetwork-status"))
			}},
			{Name: "endpointslices", Run: func(ctx context.Context) error {
				return endpoints.Run(ctx, endpoints.Config{Clientset: kube, Logger: log})
			}},
			{Name: "loadbalancer", Run: func(ctx context.Context) error {
				return lbcontroller.Run(ctx, lbcontroller.Config{Kube: kube, Client: en, Logger: log})
			}},
		},
	})
}

func uiCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("edgenet ui", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig (default: in-cluster)")
	var o webui.ServeOptions
	fs.StringVar(&o.Addr, "listen", ":8443", "HTTPS listen address")
	fs.StringVar(&o.CertFile, "tls-cert", "", "TLS certificate (PEM); with --tls-key. Default: a self-signed one")
	fs.StringVar(&o.KeyFile, "tls-key", "", "TLS private key (PEM)")
	hosts := fs.String("tls-hosts", os.Getenv("POD_IP"), "extra names and addresses of the self-signed certificate, comma-separated")
	fs.BoolVar(&o.ManagePool, "manage-pool", true, "keep AddressPool "+webui.PoolName+" on the cluster VIP (for the UI's LoadBalancer Service)")
	var cfg webui.Config
	fs.StringVar(&cfg.Namespace, "namespace", envOr("POD_NAMESPACE", "edgenet-system"), "namespace of the admin password Secret")
	fs.DurationVar(&cfg.IdleTimeout, "session-idle-timeout", 30*time.Minute, "end sessions unused this long")
	fs.DurationVar(&cfg.MaxSessionAge, "session-max-age", 12*time.Hour, "end sessions this old")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("ui: give both --tls-cert and --tls-key, or neither")
	}
	o.Hosts = splitList(*hosts)
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("ui: %w", err)
	}
	if cfg.Kube, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if cfg.Edgenet, err = v1alpha1.NewForConfig(rc); err != nil {
		return err
	}
	cfg.Log = newLogger("ui")
	s, err := webui.New(cfg)
	if err != nil {
		return err
	}
	return s.Serve(ctx, o)
}

func cleanupCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("edgenet cleanup", flag.ContinueOnError)
	var cfg cleanup.Config
	// Also from the environment: an exec readiness probe gets the container's
	// environment (where $(NODE_NAME) expands), not its args.
	fs.StringVar(&cfg.CNIBinDir, "cni-bin-dir", envOr("EDGENET_CNI_BIN_DIR", "/opt/cni/bin"), "the agent's --cni-bin-dir (default $EDGENET_CNI_BIN_DIR)")
	fs.StringVar(&cfg.CNIConfDir, "cni-conf-dir", envOr("EDGENET_CNI_CONF_DIR", "/etc/cni/net.d"), "the agent's --cni-conf-dir (default $EDGENET_CNI_CONF_DIR)")
	fs.StringVar(&cfg.StateDir, "state-dir", envOr("EDGENET_STATE_DIR", "/var/lib/edgenet-agent"), "the agent's --state-dir (default $EDGENET_STATE_DIR)")
	fs.StringVar(&cfg.VXLANDevice, "vxlan-device", routing.DefaultVXLANDevice, "the agent's VXLAN device")
	check := fs.Bool("check", false, "change nothing: list what is left and fail if anything is")
	hold := fs.Bool("hold", false, "then keep running until SIGTERM (a DaemonSet pod that shows the node is done)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Log = newLogger("cleanup")
	if *check {
		left, err := cleanup.Find(ctx, cfg)
		if err != nil {
			return err
		}
		for _, l := range left {
			fmt.Println("left:", l)
		}
		if len(left) > 0 {
			return fmt.Errorf("cleanup: %d things left on this node", len(left))
		}
	} else {
		removed, err := cleanup.Remove(ctx, cfg)
		if err != nil {
			return err
		}
		cfg.Log.Info("node clean", "removed", len(removed))
	}
	if *hold {
		<-ctx.Done()
	}
	return nil
}
