package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"edgenet.io/edgenet/internal/cleanup"
	"edgenet.io/edgenet/internal/ipam"
)

// PodNetConfig configures the node's pod network: the CNI plugin and conf the agent
// installs, and the IPAM it serves to the plugin.
type PodNetConfig struct {
	CNIBinDir  string // where containerd looks for plugins, e.g. /opt/cni/bin
	CNIConfDir string // where containerd looks for network confs, e.g. /etc/cni/net.d
	StateDir   string // durable IPAM state of this node
	PodCIDR    netip.Prefix
	MTU        int
	// Socket is the IPAM socket; the default is abstract, so it is private to the
	// node's network namespace (the agent is hostNetwork, like containerd).
	Socket string
}

const (
	// hostRoot is the host's root directory, seen through init's /proc entry.
	hostRoot = "/proc/1/root"
	// The names `edgenet cleanup` removes on uninstall.
	confName   = cleanup.ConfName
	pluginName = cleanup.PluginName
	// gcGrace is how long an IP stays allocated before the GC may consider it: a pod's
	// ADD can come before the API shows the pod with its IP.
	gcGrace = 2 * time.Minute
)

// podNet runs IPAM for the node and installs the CNI plugin once IPAM serves.
type podNet struct {
	cfg    PodNetConfig
	node   string
	client kubernetes.Interface
	alloc  *ipam.Allocator
	log    *slog.Logger
}

func (p *podNet) run(ctx context.Context, ready func() bool, installed *atomic.Bool) error {
	sock := p.cfg.Socket
	if sock == "" {
		sock = ipam.DefaultSocket
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("agent: ipam socket %s: %w", sock, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- ipam.Serve(ctx, l, p.alloc, ready) }()
	if err := p.install(sock); err != nil {
		return err
	}
	installed.Store(true)
	p.log.Info("CNI installed", "bin", p.cfg.CNIBinDir, "conf", filepath.Join(p.cfg.CNIConfDir, confName))
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case err := <-errc:
			return err
		case <-t.C:
			if err := p.gc(ctx); err != nil {
				p.log.Warn("ipam gc", "err", err)
			}
		}
	}
}

// install copies this binary as the CNI plugin and writes the conflist, each by
// rename so that containerd never reads half a file.
func (p *podNet) install(sock string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := copyFileAtomic(self, filepath.Join(p.cfg.CNIBinDir, pluginName), 0o755); err != nil {
		return fmt.Errorf("agent: install CNI plugin: %w", err)
	}
	// containerd runs the loopback plugin for every pod; a node without the reference
	// plugins gets ours (the same binary), a node with them keeps its own.
	lo := filepath.Join(p.cfg.CNIBinDir, "loopback")
	if _, err := os.Stat(lo); errors.Is(err, os.ErrNotExist) {
		if err := copyFileAtomic(self, lo, 0o755); err != nil {
			return fmt.Errorf("agent: install loopback plugin: %w", err)
		}
	}
	conf := map[string]any{
		// 1.0.0: the newest version containerd 1.6's libcni speaks; the plugin takes 0.3.0-1.1.0.
		"cniVersion": "1.0.0",
		"name":       "edgenet",
		"plugins": []map[string]any{{
			"type":       pluginName,
			"mtu":        p.cfg.MTU,
			"ipamSocket": sock,
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(p.cfg.CNIConfDir, confName), b, 0o644)
}

// gc frees IPs whose pod is gone. An IP is kept when its pod exists on this node, when
// its network namespace still exists (the sandbox lives even if the API says
// otherwise), or when it is younger than gcGrace: never an IP of a live pod.
func (p *podNet) gc(ctx context.Context) error {
	pods, err := p.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", p.node).String(),
	})
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, pod := range pods.Items {
		if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
			live[pod.Namespace+"/"+pod.Name] = true
		}
	}
	young := map[string]bool{}
	for _, al := range p.alloc.Allocations() {
		if al.Since.IsZero() || time.Since(al.Since) < gcGrace {
			young[al.Handle.Key()] = true
		}
	}
	freed, err := p.alloc.GC(func(h ipam.Handle) bool {
		if young[h.Key()] || live[h.PodNamespace+"/"+h.PodName] {
			return true
		}
		if h.Netns != "" {
			// The host's view of the path: the agent runs with hostPID in a mount
			// namespace of its own.
			if _, err := os.Stat(filepath.Join(hostRoot, h.Netns)); err == nil {
				return true
			}
		}
		return false
	})
	if len(freed) > 0 {
		p.log.Info("ipam gc freed leaked IPs", "ips", freed)
	}
	return err
}

func copyFileAtomic(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
