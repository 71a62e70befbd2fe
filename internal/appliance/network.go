package appliance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"syscall"

	"go4.org/netipx"
)

const (
	bridgeName = "edgenet0"
	// routeProto tags every route the appliance adds in the root namespace, so that
	// down finds them even without a state file. 177 has no name in rt_protos, so
	// iproute2 prints it as a number.
	routeProto = "177"
	guardTable = "edgenet-guard"
	netnsDir   = "/run/netns"
	linkPrefix = "edg-"
)

// host is one network namespace on the site network: a node or the site's client.
type host struct {
	Name  string     `json:"name"`
	Netns string     `json:"netns"`
	IP    netip.Addr `json:"ip"`
	Link  string     `json:"link"` // the veth end on the bridge, in the root namespace
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(ee.Stderr))
		}
		return "", err
	}
	return string(out), nil
}

// hostRoutes returns the destinations of the root namespace's routes (IPv4 and IPv6,
// main table), except the appliance's own; the settings must not overlap them.
func hostRoutes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, fam := range []string{"-4", "-6"} {
		s, err := output("ip", fam, "route", "show", "table", "main")
		if err != nil {
			return nil, err
		}
		ours, err := output("ip", fam, "route", "show", "table", "main", "proto", routeProto)
		if err != nil {
			return nil, err
		}
		skip := map[string]bool{}
		for _, l := range strings.Split(ours, "\n") {
			skip[strings.TrimSpace(l)] = true
		}
		sc := bufio.NewScanner(strings.NewReader(s))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 || f[0] == "default" || skip[strings.TrimSpace(sc.Text())] ||
				strings.Contains(sc.Text(), "dev "+bridgeName) {
				continue
			}
			dst := f[0]
			if dst == "unreachable" || dst == "blackhole" || dst == "prohibit" {
				if len(f) < 2 {
					continue
				}
				dst = f[1]
			}
			if !strings.Contains(dst, "/") {
				if a, err := netip.ParseAddr(dst); err == nil {
					out = append(out, netip.PrefixFrom(a, a.BitLen()))
				}
				continue
			}
			if p, err := netip.ParsePrefix(dst); err == nil {
				out = append(out, p.Masked())
			}
		}
	}
	return out, nil
}

// guardPrefixes are the cluster ranges that get an unreachable route in the root
// namespace: pod CIDR, service CIDR and the external service ranges. The site subnet is
// on the bridge (the root namespace is the site's gateway) and needs none.
func guardPrefixes(pod, svc netip.Prefix, external []netipx.IPRange) []netip.Prefix {
	out := []netip.Prefix{pod.Masked(), svc.Masked()}
	for _, r := range external {
		out = append(out, r.Prefixes()...)
	}
	return out
}

func addGuardRoute(p netip.Prefix) error {
	return run("ip", "route", "replace", "unreachable", p.String(), "proto", routeProto)
}

// ourRoutes lists routes tagged with routeProto in the root namespace.
func ourRoutes() []string {
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		s, err := output("ip", fam, "route", "show", "table", "all", "proto", routeProto)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			if l != "" {
				out = append(out, fam+" "+l)
			}
		}
	}
	return out
}

func deleteOurRoutes() error {
	var errs []error
	for _, r := range ourRoutes() {
		f := strings.Fields(r)
		if err := run("ip", append([]string{f[0], "route", "del"}, f[1:]...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// addGuardTable stops the root namespace from forwarding anything between the site
// bridge and the machine's own links: cluster addresses never leave the machine.
func addGuardTable() error {
	rules := fmt.Sprintf(`table inet %[1]s {
	chain forward {
		type filter hook forward priority -10; policy accept;
		iifname "%[2]s" oifname != "%[2]s" drop
		oifname "%[2]s" iifname != "%[2]s" drop
	}
}
`, guardTable, bridgeName)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft guard table: %w: %s", err, out)
	}
	return nil
}

func deleteGuardTable() error {
	if err := run("nft", "list", "table", "inet", guardTable); err != nil {
		return nil // not there
	}
	return run("nft", "delete", "table", "inet", guardTable)
}

func addBridge(gw netip.Prefix) error {
	if err := run("ip", "link", "add", bridgeName, "type", "bridge"); err != nil {
		return err
	}
	// No IPv6 autoconfiguration on the site bridge: nothing of ours speaks it yet, and
	// router solicitations would only be noise.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+bridgeName+"/disable_ipv6", []byte("1"), 0o644)
	if err := run("ip", "addr", "add", gw.String(), "dev", bridgeName); err != nil {
		return err
	}
	return run("ip", "link", "set", bridgeName, "up")
}

// addHost makes a namespace with one veth on the site bridge, addressed ip/bits, with
// a default route to the gateway.
func addHost(h host, bits int, gw netip.Addr, forward bool) error {
	if err := run("ip", "netns", "add", h.Netns); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "add", h.Link, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
		{"link", "set", h.Link, "master", bridgeName, "up"},
		{"-n", h.Netns, "link", "set", "lo", "up"},
		{"-n", h.Netns, "addr", "add", netip.PrefixFrom(h.IP, bits).String(), "dev", "eth0"},
		{"-n", h.Netns, "link", "set", "eth0", "up"},
		{"-n", h.Netns, "route", "add", "default", "via", gw.String(), "dev", "eth0"},
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return err
		}
	}
	if forward {
		return run("nsenter", "--net="+netnsDir+"/"+h.Netns, "--", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	return nil
}

// ourNetns lists the appliance's namespaces: edgenet-*, except edgenet-t-*, which
// belong to tests that make namespaces of their own.
func ourNetns() []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "edgenet-") && !strings.HasPrefix(e.Name(), "edgenet-t-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// podNetns lists the namespaces a CRI runtime made for pods (cni-*).
func podNetns() []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "cni-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// deletePodNetns deletes the pod namespaces that were not there before up.
func deletePodNetns(before []string) error {
	var errs []error
	for _, ns := range podNetns() {
		if !slices.Contains(before, ns) {
			if err := run("ip", "netns", "delete", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ourLinks lists the appliance's links in the root namespace.
func ourLinks() []string {
	s, err := output("ip", "-o", "link", "show")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name == bridgeName || strings.HasPrefix(name, linkPrefix) {
			out = append(out, name)
		}
	}
	return out
}

func deleteNetworks() error {
	var errs []error
	for _, ns := range ourNetns() {
		if err := run("ip", "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range ourLinks() {
		if err := run("ip", "link", "delete", l); err != nil && len(ourLinksNamed(l)) > 0 {
			errs = append(errs, err)
		}
	}
	errs = append(errs, deleteOurRoutes(), deleteGuardTable())
	return errors.Join(errs...)
}

func ourLinksNamed(name string) []string {
	var out []string
	for _, l := range ourLinks() {
		if l == name {
			out = append(out, l)
		}
	}
	return out
}

// ourMounts lists mount points below the given directories, deepest first.
func ourMounts(dirs ...string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func unmountAll(dirs ...string) error {
	var errs []error
	for i := 0; i < 5; i++ {
		ms := ourMounts(dirs...)
		if len(ms) == 0 {
			return nil
		}
		for _, m := range ms {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	if ms := ourMounts(dirs...); len(ms) > 0 {
		return errors.Join(append(errs, fmt.Errorf("mounts left: %v", ms))...)
	}
	return nil
}
