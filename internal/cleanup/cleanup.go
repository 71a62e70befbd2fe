// Package cleanup removes from a node what `edgenet agent` put there, for uninstalling
// edgenet (`edgenet cleanup`, run on every node by deploy/uninstall/ once the agents are
// gone). It owns, for that moment only, exactly what the agent owns on a node:
//
//   - the CNI conflist 10-edgenet.conflist and the plugin binary edgenet-cni, and the
//     loopback plugin only when it is an edgenet binary (the agent installs its own
//     loopback only where the node had none; a reference plugin is never touched);
//   - the IPAM state directory <state-dir>/ipam, and <state-dir> itself once empty;
//   - the nftables tables "ip edgenet" and "ip6 edgenet" with their shard tables
//     "edgenet-svc-NN" (service proxy), and "ip edgenet-nat"
//     (masquerade);
//   - every route of protocol routing.RouteProtocol (126), IPv4 and IPv6, in any table;
//   - the VXLAN device (default "edgenet.vxlan"), if it is a vxlan device.
//
// It must not run while an agent runs on the node: the agent would put them back.
// ARP/NDP answers and heartbeats end with the agent process, and the IPAM socket is an
// abstract socket that dies with it. Pod veths and their /32 routes belong to pods and
// go with them. net.ipv4.ip_forward is left on: every Kubernetes node needs it.
package cleanup

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"edgenet.io/edgenet/internal/proxy"
	"edgenet.io/edgenet/internal/routing"
)

// Names of what the agent installs (internal/agent), kept in one place here.
const (
	ConfName   = "10-edgenet.conflist"
	PluginName = "edgenet-cni"
	loopback   = "loopback"
	ipamDir    = "ipam"
	// module is the main module of every edgenet binary, as its build info records it.
	module = "edgenet.io/edgenet"
)

// Config says where the agent kept its files on this node; the defaults are the agent's.
type Config struct {
	CNIBinDir   string // default /opt/cni/bin
	CNIConfDir  string // default /etc/cni/net.d
	StateDir    string // default /var/lib/edgenet-agent
	VXLANDevice string // default routing.DefaultVXLANDevice
	// NetNS is the path of the node's network namespace; empty means the calling thread's.
	NetNS string
	Log   *slog.Logger // with the component attribute; default slog's with component=cleanup
}

func (c Config) withDefaults() Config {
	if c.CNIBinDir == "" {
		c.CNIBinDir = "/opt/cni/bin"
	}
	if c.CNIConfDir == "" {
		c.CNIConfDir = "/etc/cni/net.d"
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/edgenet-agent"
	}
	if c.VXLANDevice == "" {
		c.VXLANDevice = routing.DefaultVXLANDevice
	}
	if c.Log == nil {
		c.Log = slog.Default().With("component", "cleanup")
	}
	return c
}

func (c Config) validate() error {
	for _, d := range []struct{ flag, path string }{
		{"cni-bin-dir", c.CNIBinDir}, {"cni-conf-dir", c.CNIConfDir}, {"state-dir", c.StateDir},
	} {
		if !filepath.IsAbs(d.path) || filepath.Clean(d.path) == "/" {
			return fmt.Errorf("cleanup: --%s %q: want an absolute path other than /", d.flag, d.path)
		}
	}
	return nil
}

// Kind is the sort of a Leftover.
type Kind string

const (
	File    Kind = "file"
	Dir     Kind = "dir"
	NFTable Kind = "nftables"
	Route   Kind = "route"
	Link    Kind = "link"
)

// Leftover is one thing the agent left on the node.
type Leftover struct {
	Kind Kind
	Name string // a path, "ip edgenet", a route as `ip route` shows it, a link name

	route *netlink.Route
}

func (l Leftover) String() string { return string(l.Kind) + " " + l.Name }

// Find lists what the agent left on the node, in removal order; none means the node is
// clean. It changes nothing.
func Find(ctx context.Context, cfg Config) ([]Leftover, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var out []Leftover
	err := inNetNS(cfg.NetNS, func() error {
		var err error
		out, err = find(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	return out, nil
}

// Remove removes everything Find lists and returns what it removed. It carries on past
// a failure and returns every failure joined; running it again is harmless.
func Remove(ctx context.Context, cfg Config) ([]Leftover, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var removed []Leftover
	err := inNetNS(cfg.NetNS, func() error {
		found, err := find(ctx, cfg)
		if err != nil {
			return err
		}
		var errs []error
		for _, l := range found {
			if err := remove(ctx, l); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", l, err))
				continue
			}
			cfg.Log.Info("removed", "kind", string(l.Kind), "name", l.Name)
			removed = append(removed, l)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return removed, fmt.Errorf("cleanup: %w", err)
	}
	return removed, nil
}

func inNetNS(path string, f func() error) error {
	if path == "" {
		return f()
	}
	n, err := ns.GetNS(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer n.Close()
	return n.Do(func(ns.NetNS) error { return f() })
}

// find runs in the node's network namespace. The order is the removal order: the CNI
// conf first, so the container runtime stops using the plugin before it goes.
func find(ctx context.Context, cfg Config) ([]Leftover, error) {
	var out []Leftover
	files, err := findFiles(cfg)
	if err != nil {
		return nil, err
	}
	out = append(out, files...)
	tables, err := findTables(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, tables...)
	routes, err := findRoutes()
	if err != nil {
		return nil, err
	}
	out = append(out, routes...)
	link, err := findLink(cfg.VXLANDevice)
	if err != nil {
		return nil, err
	}
	return append(out, link...), nil
}

func findFiles(cfg Config) ([]Leftover, error) {
	var out []Leftover
	exists := func(p string) (bool, error) {
		_, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return err == nil, err
	}
	// The agent writes each file through name.tmp and a rename: a crash can leave those.
	conf := filepath.Join(cfg.CNIConfDir, ConfName)
	for _, p := range []string{conf, conf + ".tmp", filepath.Join(cfg.CNIBinDir, PluginName), filepath.Join(cfg.CNIBinDir, PluginName+".tmp")} {
		ok, err := exists(p)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Leftover{Kind: File, Name: p})
		}
	}
	for _, p := range []string{filepath.Join(cfg.CNIBinDir, loopback), filepath.Join(cfg.CNIBinDir, loopback+".tmp")} {
		if IsEdgenetBinary(p) {
			out = append(out, Leftover{Kind: File, Name: p})
		}
	}
	ipam := filepath.Join(cfg.StateDir, ipamDir)
	ok, err := exists(ipam)
	if err != nil {
		return nil, err
	}
	if ok {
		out = append(out, Leftover{Kind: Dir, Name: ipam})
	}
	// The state dir goes too when nothing but our IPAM state is in it.
	entries, err := os.ReadDir(cfg.StateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err == nil && (len(entries) == 0 || len(entries) == 1 && entries[0].Name() == ipamDir) {
		out = append(out, Leftover{Kind: Dir, Name: cfg.StateDir})
	}
	return out, nil
}

// IsEdgenetBinary reports whether path is an executable built from the edgenet module,
// whatever its version: the agent's copy of itself, not a reference plugin.
func IsEdgenetBinary(path string) bool {
	bi, err := buildinfo.ReadFile(path)
	return err == nil && bi.Main.Path == module
}

// ours tells whether "<family> <name>" is a table the agent creates: the proxy's
// main and shard tables in ip and ip6, routing's NAT table in ip.
func ours(table string) bool {
	fam, name, _ := strings.Cut(table, " ")
	switch fam {
	case "ip":
		return name == routing.NATTable || proxy.IsOurTable(name)
	case "ip6":
		return proxy.IsOurTable(name)
	}
	return false
}

func findTables(ctx context.Context) ([]Leftover, error) {
	out, err := exec.CommandContext(ctx, "nft", "--json", "list", "tables").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("nft list tables: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("nft list tables: %w", err)
	}
	have, err := parseTables(out)
	if err != nil {
		return nil, err
	}
	var found []Leftover
	for _, t := range slices.Sorted(maps.Keys(have)) {
		if ours(t) {
			found = append(found, Leftover{Kind: NFTable, Name: t})
		}
	}
	return found, nil
}

// parseTables reads `nft --json list tables` into a set of "<family> <name>".
func parseTables(b []byte) (map[string]bool, error) {
	var doc struct {
		Nftables []struct {
			Table *struct {
				Family string `json:"family"`
				Name   string `json:"name"`
			} `json:"table"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("nft list tables: %w", err)
	}
	have := map[string]bool{}
	for _, o := range doc.Nftables {
		if o.Table != nil {
			have[o.Table.Family+" "+o.Table.Name] = true
		}
	}
	return have, nil
}

func findRoutes() ([]Leftover, error) {
	var out []Leftover
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		// Table unspecified with the table filter on: every table, not only main.
		rs, err := netlinksafe.RouteListFiltered(fam, &netlink.Route{Protocol: routing.RouteProtocol, Table: unix.RT_TABLE_UNSPEC},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for i := range rs {
			r := rs[i]
			out = append(out, Leftover{Kind: Route, Name: routeString(r), route: &r})
		}
	}
	return out, nil
}

func routeString(r netlink.Route) string {
	var b strings.Builder
	if r.Type == unix.RTN_BLACKHOLE {
		b.WriteString("blackhole ")
	}
	if r.Dst != nil {
		b.WriteString(r.Dst.String())
	} else {
		b.WriteString("default")
	}
	if r.Gw != nil {
		fmt.Fprintf(&b, " via %s", r.Gw)
	}
	// The kernel puts IPv6 blackholes on lo: say nothing of it, as ip does.
	if r.LinkIndex > 0 && r.Type != unix.RTN_BLACKHOLE {
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			fmt.Fprintf(&b, " dev %s", l.Attrs().Name)
		}
	}
	if r.Table != unix.RT_TABLE_MAIN {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	fmt.Fprintf(&b, " proto %d", int(r.Protocol))
	return b.String()
}

func findLink(name string) ([]Leftover, error) {
	l, err := netlinksafe.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	if l.Type() != "vxlan" {
		// Someone else's device under our name: routing refuses to touch it, so do we.
		return nil, nil
	}
	return []Leftover{{Kind: Link, Name: name}}, nil
}

func remove(ctx context.Context, l Leftover) error {
	switch l.Kind {
	case File:
		return ignoreNotExist(os.Remove(l.Name))
	case Dir:
		return ignoreNotExist(os.RemoveAll(l.Name))
	case NFTable:
		out, err := exec.CommandContext(ctx, "nft", "delete", "table", l.Name).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such file or directory") {
			return fmt.Errorf("nft delete table %s: %w: %s", l.Name, err, strings.TrimSpace(string(out)))
		}
		return nil
	case Route:
		if err := netlink.RouteDel(l.route); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
		return nil
	case Link:
		link, err := netlinksafe.LinkByName(l.Name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		if err != nil {
			return err
		}
		return netlink.LinkDel(link)
	}
	return fmt.Errorf("unknown kind %q", l.Kind)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
