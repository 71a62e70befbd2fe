// Command edgenet is the whole edgenet network stack in one binary: the appliance
// (up, down, status), the per-node agent, and, called as edgenet-cni, the CNI plugin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"edgenet.io/edgenet/internal/agent"
	"edgenet.io/edgenet/internal/appliance"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/version"
)

const usage = `usage: edgenet <command> [flags]

commands:
  up       bring up the appliance: a multi-node Kubernetes cluster in network namespaces (root)
  down     stop the appliance and remove everything up made (root)
  status   show the appliance's nodes, components and ranges
  agent    run the per-node agent (the DaemonSet)
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
	fs := flag.NewFlagSet("edgenet agent", flag.ContinueOnError)
	cfg := agent.Config{NodeName: os.Getenv("NODE_NAME")}
	fs.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "this node's name (default $NODE_NAME)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", ":9440", "address of /healthz and /readyz")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if cfg.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "agent")
	return agent.Run(ctx, cfg)
}
