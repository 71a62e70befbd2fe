package cleanup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"sigs.k8s.io/knftables"

	"edgenet.io/edgenet/internal/proxy"
	"edgenet.io/edgenet/internal/routing"
)

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNode makes a scratch node: netns edgenet-t-install-<rand> with eth0 on
// 192.168.77.10/24 (a veth whose peer stays in the namespace), removed at test end.
func newNode(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "edgenet-t-install-" + hex.EncodeToString(b)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	run(t, "ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "site")
	run(t, "ip", "-n", name, "addr", "add", "192.168.77.10/24", "dev", "eth0")
	run(t, "ip", "-n", name, "link", "set", "eth0", "up")
	run(t, "ip", "-n", name, "link", "set", "site", "up")
	return name
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// agentArtefacts puts on node what a running agent puts there, with the agent's own
// code where it is reachable: routing.Manager in VXLAN mode (vxlan device, proto 126
// routes, ip edgenet-nat) and the service proxy's real ruleset (ip edgenet).
func agentArtefacts(t *testing.T, node string) {
	t.Helper()
	ctx := context.Background()
	podCIDR := netip.MustParsePrefix("172.27.0.0/16")
	m, err := routing.NewManager(routing.Config{Mode: routing.VXLAN, PodCIDR: podCIDR, NetNS: "/run/netns/" + node})
	if err != nil {
		t.Fatal(err)
	}
	local := routing.Node{Name: "a", IP: netip.MustParseAddr("192.168.77.10"), Blocks: []netip.Prefix{netip.MustParsePrefix("172.27.0.0/26")}}
	other := routing.Node{Name: "b", IP: netip.MustParseAddr("192.168.77.11"), Blocks: []netip.Prefix{netip.MustParsePrefix("172.27.0.64/26")}}
	if _, err := m.Apply(ctx, local, []routing.Node{local, other}); err != nil {
		t.Fatal(err)
	}
	inNS(t, node, func() error {
		tx := proxy.NewTx(func(table string) *knftables.Transaction {
			return knftables.NewFake(knftables.IPv4Family, table).NewTransaction()
		})
		cfg := proxy.NodeConfig{Family: knftables.IPv4Family, NodeName: "a", NodeIPs: []netip.Addr{local.IP}, PodCIDR: podCIDR, Balancing: proxy.BalanceCascade}
		svc := &proxy.Service{Key: proxy.ServiceKey{Namespace: "default", Name: "web"}, Type: "ClusterIP",
			ClusterIPs: []netip.Addr{netip.MustParseAddr("172.28.0.20")}, Ports: []proxy.ServicePort{{Name: "http", Protocol: proxy.TCP, Port: 80}}}
		if err := proxy.WriteRuleset(tx, cfg, []*proxy.Service{svc}, nil); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(tx.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %w: %s", err, out)
		}
		nft6, err := knftables.New(knftables.IPv6Family, proxy.TableName)
		if err != nil {
			return err
		}
		tx6 := nft6.NewTransaction()
		tx6.Add(&knftables.Table{})
		return nft6.Run(ctx, tx6)
	})
	// An IPv6 route and one outside the main table: ours by protocol wherever they are.
	run(t, "ip", "-n", node, "-6", "route", "add", "blackhole", "fd00:27::/64", "proto", "126")
	run(t, "ip", "-n", node, "route", "add", "172.27.9.0/24", "dev", "eth0", "table", "100", "proto", "126")
}

// foreign puts on node what is not ours and must survive: another table, a static
// route, a route of ours-looking prefix with another protocol.
func foreign(t *testing.T, node string) {
	run(t, "ip", "netns", "exec", node, "nft", "add", "table", "ip", "other")
	run(t, "ip", "-n", node, "route", "add", "10.99.0.0/24", "dev", "eth0", "proto", "static")
	run(t, "ip", "-n", node, "route", "add", "blackhole", "172.27.8.0/24")
}

func inNS(t *testing.T, node string, f func() error) {
	t.Helper()
	n, err := ns.GetNS("/run/netns/" + node)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Do(func(ns.NetNS) error { return f() }); err != nil {
		t.Fatal(err)
	}
}

func names(ls []Leftover) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.String())
	}
	return out
}

func TestRemoveFromNode(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A Go binary of another module stands for the reference loopback plugin, when
	// Debian's plugins are installed; a script otherwise.
	refLoopback := "/usr/lib/cni/loopback"
	if _, err := os.Stat(refLoopback); err != nil {
		refLoopback = ""
	}

	for _, tc := range []struct {
		name string
		// ourLoopback: the agent installed its own loopback (the node had none).
		ourLoopback bool
		// strangerInState: a file in the state dir the agent did not write.
		strangerInState bool
		want            []string // files and dirs expected, relative to the test dir
	}{
		{
			name: "agent installed loopback", ourLoopback: true,
			want: []string{
				"file conf/10-edgenet.conflist", "file conf/10-edgenet.conflist.tmp", "file bin/edgenet-cni",
				"file bin/loopback", "dir state/ipam", "dir state",
			},
		},
		{
			name: "reference loopback and a stranger in the state dir", strangerInState: true,
			want: []string{"file conf/10-edgenet.conflist", "file bin/edgenet-cni", "dir state/ipam"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := newNode(t)
			dir := t.TempDir()
			cfg := Config{
				CNIBinDir: filepath.Join(dir, "bin"), CNIConfDir: filepath.Join(dir, "conf"),
				StateDir: filepath.Join(dir, "state"), NetNS: "/run/netns/" + node,
			}
			copyFile(t, self, filepath.Join(cfg.CNIBinDir, PluginName))
			writeFile(t, filepath.Join(cfg.CNIConfDir, ConfName), `{"cniVersion":"1.0.0","name":"edgenet"}`)
			writeFile(t, filepath.Join(cfg.CNIConfDir, "05-other.conflist"), `{}`)
			writeFile(t, filepath.Join(cfg.CNIBinDir, "bridge"), "#!/bin/sh\n")
			writeFile(t, filepath.Join(cfg.StateDir, "ipam", "blocks.json"), `{}`)
			keep := []string{filepath.Join(cfg.CNIConfDir, "05-other.conflist"), filepath.Join(cfg.CNIBinDir, "bridge")}
			if tc.ourLoopback {
				copyFile(t, self, filepath.Join(cfg.CNIBinDir, "loopback"))
				writeFile(t, filepath.Join(cfg.CNIConfDir, ConfName+".tmp"), `{`)
			} else {
				if refLoopback != "" {
					copyFile(t, refLoopback, filepath.Join(cfg.CNIBinDir, "loopback"))
				} else {
					writeFile(t, filepath.Join(cfg.CNIBinDir, "loopback"), "#!/bin/sh\n")
				}
				keep = append(keep, filepath.Join(cfg.CNIBinDir, "loopback"))
			}
			if tc.strangerInState {
				writeFile(t, filepath.Join(cfg.StateDir, "notes"), "mine")
				keep = append(keep, filepath.Join(cfg.StateDir, "notes"))
			}
			agentArtefacts(t, node)
			foreign(t, node)
			routesBefore := run(t, "ip", "-n", node, "route", "show", "table", "all")

			want := []string{}
			for _, w := range tc.want {
				kind, rel, _ := strings.Cut(w, " ")
				want = append(want, kind+" "+filepath.Join(dir, rel))
			}
			want = append(want, "nftables ip edgenet", "nftables ip edgenet-nat")
			for i := range proxy.DefaultShards {
				want = append(want, "nftables ip "+proxy.ShardTable(i))
			}
			want = append(want, "nftables ip6 edgenet")
			ctx := context.Background()
			found, err := Find(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := names(found)
			var routes []string
			for _, g := range got {
				if strings.HasPrefix(g, "route ") {
					routes = append(routes, g)
				}
			}
			got = slices.DeleteFunc(got, func(s string) bool { return strings.HasPrefix(s, "route ") || s == "link edgenet.vxlan" })
			if !slices.Equal(got, want) {
				t.Errorf("Find (routes and link aside):\n got %q\nwant %q", got, want)
			}
			if !slices.Contains(names(found), "link edgenet.vxlan") {
				t.Errorf("Find did not list the vxlan device: %q", names(found))
			}
			// The routing manager's routes (a blackhole for the local block, the remote
			// block over the overlay) and the two added by hand.
			for _, r := range []string{
				"route blackhole 172.27.0.0/26 proto 126", "route 172.27.0.64/26 via 172.27.0.64 dev edgenet.vxlan proto 126",
				"route blackhole fd00:27::/64 proto 126", "route 172.27.9.0/24 dev eth0 table 100 proto 126",
			} {
				if !slices.Contains(routes, r) {
					t.Errorf("Find did not list %q; routes found: %q", r, routes)
				}
			}

			removed, err := Remove(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(removed), names(found)) {
				t.Errorf("Remove removed %q, want what Find listed: %q", names(removed), names(found))
			}
			if left, err := Find(ctx, cfg); err != nil || len(left) != 0 {
				t.Errorf("Find after Remove: %q, %v", names(left), err)
			}
			// The kernel agrees, as ip and nft show it.
			if out := run(t, "ip", "-n", node, "route", "show", "table", "all", "proto", "126"); out != "" {
				t.Errorf("routes proto 126 after Remove:\n%s", out)
			}
			if out := run(t, "ip", "-n", node, "-6", "route", "show", "table", "all", "proto", "126"); out != "" {
				t.Errorf("IPv6 routes proto 126 after Remove:\n%s", out)
			}
			if out := run(t, "ip", "-n", node, "link", "show"); strings.Contains(out, "edgenet") {
				t.Errorf("links after Remove:\n%s", out)
			}
			if out := run(t, "ip", "netns", "exec", node, "nft", "list", "tables"); out != "table ip other\n" {
				t.Errorf("nft tables after Remove: %q, want only table ip other", out)
			}
			// What is not ours is all still there.
			routesAfter := run(t, "ip", "-n", node, "route", "show", "table", "all")
			for _, r := range []string{"10.99.0.0/24 dev eth0 proto static", "blackhole 172.27.8.0/24 "} {
				if !strings.Contains(routesBefore, r) || !strings.Contains(routesAfter, r) {
					t.Errorf("route %q gone:\nbefore:\n%s\nafter:\n%s", r, routesBefore, routesAfter)
				}
			}
			for _, p := range keep {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s, not ours, gone: %v", p, err)
				}
			}

			// Twice is fine.
			again, err := Remove(ctx, cfg)
			if err != nil || len(again) != 0 {
				t.Errorf("second Remove: removed %q, %v", names(again), err)
			}
		})
	}
}

func TestBadConfigChangesNothing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "conf", ConfName), "{}")
	for _, cfg := range []Config{
		{CNIConfDir: filepath.Join(dir, "conf"), CNIBinDir: dir, StateDir: "/"},
		{CNIConfDir: filepath.Join(dir, "conf"), CNIBinDir: "relative/bin", StateDir: dir},
		{CNIConfDir: filepath.Join(dir, "conf"), CNIBinDir: dir, StateDir: dir, NetNS: "/run/netns/edgenet-t-install-absent"},
	} {
		if _, err := Remove(context.Background(), cfg); err == nil {
			t.Errorf("Remove(%+v) succeeded, want an error", cfg)
		}
		if _, err := os.Stat(filepath.Join(dir, "conf", ConfName)); err != nil {
			t.Fatalf("Remove(%+v) with a bad config removed the conflist: %v", cfg, err)
		}
	}
}

func TestParseTables(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{name: "none", in: `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}`},
		{
			name: "ours and others",
			in: `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "edgenet", "handle": 3}},
				{"table": {"family": "ip6", "name": "edgenet", "handle": 4}}, {"table": {"family": "inet", "name": "filter", "handle": 5}}]}`,
			want: []string{"inet filter", "ip edgenet", "ip6 edgenet"},
		},
		{name: "not json", in: `table ip edgenet`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTables([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			var keys []string
			for k := range got {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tc.want) {
				t.Errorf("got %q, want %q", keys, tc.want)
			}
		})
	}
}

func FuzzParseTables(f *testing.F) {
	f.Add([]byte(`{"nftables": [{"table": {"family": "ip", "name": "edgenet", "handle": 3}}]}`))
	f.Add([]byte(`{"nftables": [{"table": null}, {"chain": {}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		have, err := parseTables(b)
		if err == nil && have == nil {
			t.Fatal("nil set without an error")
		}
	})
}

func TestIsEdgenetBinary(t *testing.T) {
	self, _ := os.Executable()
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	writeFile(t, script, "#!/bin/sh\n")
	if !IsEdgenetBinary(self) {
		t.Errorf("the test binary, built from %s, is not recognised", module)
	}
	for _, p := range []string{script, filepath.Join(dir, "absent"), "/usr/lib/cni/loopback"} {
		if IsEdgenetBinary(p) {
			t.Errorf("%s taken for an edgenet binary", p)
		}
	}
}
