package routing

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// parseNodes reads "name ip block,block" lines leniently: unparsable addresses stay zero, so Compute's
// validation sees them.
func parseNodes(s string) []Node {
	var out []Node
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		n := Node{Name: f[0]}
		if len(f) > 1 {
			n.IP, _ = netip.ParseAddr(f[1])
		}
		if len(f) > 2 {
			for _, b := range strings.Split(f[2], ",") {
				p, _ := netip.ParsePrefix(b)
				n.Blocks = append(n.Blocks, p)
			}
		}
		out = append(out, n)
	}
	return out
}

// FuzzCompute feeds arbitrary node sets (the first line is the local node) and checks that Compute either
// refuses them or returns a state the kernel accepts: one route per destination, every block covered,
// overlay entries only for overlay peers.
func FuzzCompute(f *testing.F) {
	f.Add("direct", "192.168.50.0/24", "n1 192.168.50.10 172.27.0.64/26\nn2 192.168.50.11 172.27.0.128/26,172.27.1.0/26")
	f.Add("vxlan", "192.168.50.0/24", "n1 192.168.50.10 172.27.0.64/26\nn2 192.168.50.11\nn3 10.0.0.3 172.27.3.0/24")
	f.Add("auto", "192.168.50.0/24", "n1 192.168.50.10\nn2 192.168.50.11 172.27.0.0/16\nfar 10.9.0.5 172.27.2.0/26")
	f.Add("auto", "192.168.50.0/24", "n1 192.168.50.10 172.27.0.0/25\nn2 192.168.50.10 172.27.0.64/26")
	f.Add("direct", "", "n1 fd00::1 172.27.0.0/26\n n2 1.2.3.4 ::/0")
	f.Fuzz(func(t *testing.T, mode, subnet, nodes string) {
		ns := parseNodes(nodes)
		if len(ns) == 0 {
			return
		}
		site, _ := netip.ParsePrefix(subnet)
		p := Params{Mode: Mode(mode), SiteInterface: "eth0", SiteSubnet: site, SiteMTU: 1500, PodCIDR: pfx("172.27.0.0/16")}
		d, err := Compute(ns[0], ns[1:], p)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "routing: ") {
				t.Errorf("error without component: %v", err)
			}
			return
		}
		seen := map[netip.Prefix]bool{}
		for _, r := range d.Routes {
			if seen[r.Dst] {
				t.Fatalf("two routes to %s", r.Dst)
			}
			seen[r.Dst] = true
			if !p.PodCIDR.Contains(r.Dst.Addr()) {
				t.Fatalf("route outside the pod CIDR: %s", r)
			}
			if r.Dev == DefaultVXLANDevice && d.VXLAN == nil {
				t.Fatalf("overlay route without overlay device: %s", r)
			}
		}
		for _, b := range ns[0].Blocks {
			if !seen[b] {
				t.Fatalf("local block %s has no blackhole", b)
			}
		}
		for _, n := range ns[1:] {
			if n.Name == ns[0].Name {
				continue // the local node's own entry in the list is ignored
			}
			path, ok := d.Paths[n.Name]
			if !ok {
				t.Fatalf("node %s has no path", n.Name)
			}
			if path == VXLAN && len(n.Blocks) > 0 && d.VXLAN == nil {
				t.Fatalf("node %s over VXLAN without a device", n.Name)
			}
			for _, b := range n.Blocks {
				if !seen[b] {
					t.Fatalf("block %s of %s has no route", b, n.Name)
				}
			}
		}
		for _, nb := range d.Neighbors {
			if !p.PodCIDR.Contains(nb.IP) {
				t.Fatalf("VTEP outside the pod CIDR: %s", nb)
			}
		}
		if len(d.Neighbors) != len(d.FDB) {
			t.Fatalf("%d neighbours for %d FDB entries", len(d.Neighbors), len(d.FDB))
		}
		d2, _ := Compute(ns[0], reversed(ns[1:]), p)
		if !slices.Equal(render(d), render(d2)) {
			t.Fatal("result depends on node order")
		}
	})
}

func reversed(ns []Node) []Node {
	out := slices.Clone(ns)
	slices.Reverse(out)
	return out
}
