package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// node parses "name ip block,block".
func node(s string) Node {
	f := strings.Fields(s)
	n := Node{Name: f[0], IP: addr(f[1])}
	if len(f) > 2 {
		for _, b := range strings.Split(f[2], ",") {
			n.Blocks = append(n.Blocks, pfx(b))
		}
	}
	return n
}

// render is Desired as ip(8)-like lines, one object per line.
func render(d Desired) []string {
	var out []string
	if v := d.VXLAN; v != nil {
		out = append(out, fmt.Sprintf("vxlan %s id %d dstport %d local %s dev %s mac %s addr %s mtu %d",
			v.Name, v.VNI, v.Port, v.Local, v.Parent, v.MAC, v.Addr, v.MTU))
	}
	for _, r := range d.Routes {
		out = append(out, "route "+r.String())
	}
	for _, n := range d.Neighbors {
		out = append(out, "neigh "+n.String())
	}
	for _, f := range d.FDB {
		out = append(out, "fdb "+f.String())
	}
	var ips []string
	for _, a := range d.DirectNodeIPs {
		ips = append(ips, a.String())
	}
	out = append(out, "keep-source "+strings.Join(ips, " "))
	return out
}

var (
	n1 = node("n1 192.168.50.10 172.27.0.64/26")
	n2 = node("n2 192.168.50.11 172.27.0.128/26,172.27.1.0/26")
	n3 = node("n3 192.168.50.12 172.27.0.192/26")
	nf = node("far 10.9.0.5 172.27.2.0/26") // another subnet
	ne = node("empty 192.168.50.13")        // no block yet
	p  = Params{SiteInterface: "eth0", SiteSubnet: pfx("192.168.50.0/24"), SiteMTU: 1500, PodCIDR: pfx("172.27.0.0/16")}
)

func withMode(m Mode) Params { q := p; q.Mode = m; return q }

func TestCompute(t *testing.T) {
	tests := []struct {
		name  string
		local Node
		nodes []Node
		p     Params
		want  []string
		paths map[string]Mode
	}{
		{
			name: "direct: remote blocks via node IPs, local block blackholed", local: n1, nodes: []Node{n1, n2, n3, ne}, p: withMode(Direct),
			want: []string{
				"route blackhole 172.27.0.64/26",
				"route 172.27.0.128/26 via 192.168.50.11 dev eth0",
				"route 172.27.0.192/26 via 192.168.50.12 dev eth0",
				"route 172.27.1.0/26 via 192.168.50.11 dev eth0",
				"keep-source 192.168.50.10 192.168.50.11 192.168.50.12 192.168.50.13",
			},
			paths: map[string]Mode{"n2": Direct, "n3": Direct, "empty": Direct},
		},
		{
			name: "vxlan: one VTEP per remote node, routes onlink via the VTEP IP", local: n1, nodes: []Node{n2, n3, ne}, p: withMode(VXLAN),
			want: []string{
				"vxlan edgenet.vxlan id 4100 dstport 4789 local 192.168.50.10 dev eth0 mac 0e:ed:c0:a8:32:0a addr 172.27.0.64 mtu 1450",
				"route blackhole 172.27.0.64/26",
				"route 172.27.0.128/26 via 172.27.0.128 dev edgenet.vxlan onlink",
				"route 172.27.0.192/26 via 172.27.0.192 dev edgenet.vxlan onlink",
				"route 172.27.1.0/26 via 172.27.0.128 dev edgenet.vxlan onlink",
				"neigh 172.27.0.128 lladdr 0e:ed:c0:a8:32:0b dev edgenet.vxlan permanent",
				"neigh 172.27.0.192 lladdr 0e:ed:c0:a8:32:0c dev edgenet.vxlan permanent",
				"fdb 0e:ed:c0:a8:32:0b dst 192.168.50.11 dev edgenet.vxlan self permanent",
				"fdb 0e:ed:c0:a8:32:0c dst 192.168.50.12 dev edgenet.vxlan self permanent",
				"keep-source 192.168.50.10",
			},
			paths: map[string]Mode{"n2": VXLAN, "n3": VXLAN, "empty": VXLAN},
		},
		{
			name: "vxlan: alone and without blocks still gets the device, without address", local: ne, p: withMode(VXLAN),
			want: []string{
				"vxlan edgenet.vxlan id 4100 dstport 4789 local 192.168.50.13 dev eth0 mac 0e:ed:c0:a8:32:0d addr invalid IP mtu 1450",
				"keep-source 192.168.50.13",
			},
			paths: map[string]Mode{},
		},
		{
			name: "vxlan: custom device, VNI, port; unknown site MTU leaves the kernel's", local: n2, nodes: []Node{n1},
			p: func() Params {
				q := withMode(VXLAN)
				q.VXLAN = VXLANConfig{Device: "ovl0", VNI: 77, Port: 8472}
				q.SiteMTU = 0
				return q
			}(),
			want: []string{
				"vxlan ovl0 id 77 dstport 8472 local 192.168.50.11 dev eth0 mac 0e:ed:c0:a8:32:0b addr 172.27.0.128 mtu 0",
				"route 172.27.0.64/26 via 172.27.0.64 dev ovl0 onlink",
				"route blackhole 172.27.0.128/26",
				"route blackhole 172.27.1.0/26",
				"neigh 172.27.0.64 lladdr 0e:ed:c0:a8:32:0a dev ovl0 permanent",
				"fdb 0e:ed:c0:a8:32:0a dst 192.168.50.10 dev ovl0 self permanent",
				"keep-source 192.168.50.11",
			},
			paths: map[string]Mode{"n1": VXLAN},
		},
		{
			name: "auto: direct on the site subnet, vxlan beyond", local: n1, nodes: []Node{n2, nf}, p: withMode(Auto),
			want: []string{
				"vxlan edgenet.vxlan id 4100 dstport 4789 local 192.168.50.10 dev eth0 mac 0e:ed:c0:a8:32:0a addr 172.27.0.64 mtu 1450",
				"route blackhole 172.27.0.64/26",
				"route 172.27.0.128/26 via 192.168.50.11 dev eth0",
				"route 172.27.1.0/26 via 192.168.50.11 dev eth0",
				"route 172.27.2.0/26 via 172.27.2.0 dev edgenet.vxlan onlink",
				"neigh 172.27.2.0 lladdr 0e:ed:0a:09:00:05 dev edgenet.vxlan permanent",
				"fdb 0e:ed:0a:09:00:05 dst 10.9.0.5 dev edgenet.vxlan self permanent",
				"keep-source 192.168.50.10 192.168.50.11",
			},
			paths: map[string]Mode{"n2": Direct, "far": VXLAN},
		},
		{
			name: "auto: all on the subnet needs no overlay", local: n1, nodes: []Node{n2}, p: withMode(Auto),
			want: []string{
				"route blackhole 172.27.0.64/26",
				"route 172.27.0.128/26 via 192.168.50.11 dev eth0",
				"route 172.27.1.0/26 via 192.168.50.11 dev eth0",
				"keep-source 192.168.50.10 192.168.50.11",
			},
			paths: map[string]Mode{"n2": Direct},
		},
		{
			name: "VTEP is the lowest block whatever the listing order; duplicate blocks collapse", local: n1,
			nodes: []Node{node("n2 192.168.50.11 172.27.3.0/26,172.27.0.128/26,172.27.3.0/26")}, p: withMode(VXLAN),
			want: []string{
				"vxlan edgenet.vxlan id 4100 dstport 4789 local 192.168.50.10 dev eth0 mac 0e:ed:c0:a8:32:0a addr 172.27.0.64 mtu 1450",
				"route blackhole 172.27.0.64/26",
				"route 172.27.0.128/26 via 172.27.0.128 dev edgenet.vxlan onlink",
				"route 172.27.3.0/26 via 172.27.0.128 dev edgenet.vxlan onlink",
				"neigh 172.27.0.128 lladdr 0e:ed:c0:a8:32:0b dev edgenet.vxlan permanent",
				"fdb 0e:ed:c0:a8:32:0b dst 192.168.50.11 dev edgenet.vxlan self permanent",
				"keep-source 192.168.50.10",
			},
			paths: map[string]Mode{"n2": VXLAN},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Compute(tc.local, tc.nodes, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(d); !slices.Equal(got, tc.want) {
				t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.want, "\n\t"))
			}
			if fmt.Sprint(d.Paths) != fmt.Sprint(tc.paths) {
				t.Errorf("paths = %v, want %v", d.Paths, tc.paths)
			}
			// Same input in another order: same output.
			rev := slices.Clone(tc.nodes)
			slices.Reverse(rev)
			d2, _ := Compute(tc.local, rev, tc.p)
			if !slices.Equal(render(d2), render(d)) {
				t.Errorf("output depends on node order")
			}
		})
	}
}

func TestComputeErrors(t *testing.T) {
	noSubnet := withMode(Direct)
	noSubnet.SiteSubnet = netip.Prefix{}
	badVNI := withMode(VXLAN)
	badVNI.VXLAN.VNI = 1 << 24
	sameDev := withMode(VXLAN)
	sameDev.VXLAN.Device = "eth0"
	longDev := withMode(VXLAN)
	longDev.VXLAN.Device = "edgenet.vxlan.overlay"
	tests := []struct {
		name    string
		local   Node
		nodes   []Node
		p       Params
		wantErr string
	}{
		{"unknown mode", n1, nil, withMode("bgp"), `unknown mode "bgp"`},
		{"direct needs the subnet", n1, nil, noSubnet, "direct mode needs the site subnet"},
		{"direct with a node elsewhere", n1, []Node{n2, nf}, withMode(Direct), "not on it: far (10.9.0.5) (use vxlan or auto)"},
		{"direct with the local node elsewhere", nf, []Node{n1}, withMode(Direct), "local node far (10.9.0.5) is not on the site subnet"},
		{"VNI too big", n1, nil, badVNI, "VNI 16777216 does not fit 24 bits"},
		{"vxlan device is the site interface", n1, nil, sameDev, `vxlan device and site interface are both "eth0"`},
		{"vxlan device name too long", n1, nil, longDev, "longer than 15 bytes"},
		{"duplicate IP", n1, []Node{node("n9 192.168.50.10")}, withMode(Direct), "nodes n1 and n9 have the same IP 192.168.50.10"},
		{"duplicate name", n1, []Node{n2, node("n2 192.168.50.99")}, withMode(Direct), "node n2 is listed twice"},
		{"overlapping blocks", n1, []Node{node("n2 192.168.50.11 172.27.0.0/25")}, withMode(Direct),
			"block 172.27.0.0/25 of node n2 overlaps block 172.27.0.64/26 of node n1"},
		{"block outside the pod CIDR", n1, []Node{node("n2 192.168.50.11 10.0.0.0/26")}, withMode(Direct), "block 10.0.0.0/26 is outside the pod CIDR"},
		{"unmasked block", n1, []Node{node("n2 192.168.50.11 172.27.0.129/26")}, withMode(Direct), "not a masked IPv4 prefix"},
		{"single-address block", n1, []Node{node("n2 192.168.50.11 172.27.0.129/32")}, withMode(Direct), "is a single address"},
		{"IPv6 node", n1, []Node{node("n2 fd00::1")}, withMode(Direct), `IP "fd00::1" is not IPv4`},
		{"node IP in the pod CIDR", n1, []Node{node("n2 172.27.9.9")}, withMode(VXLAN), "inside the pod CIDR"},
		{"nameless node", n1, []Node{node("x 192.168.50.11")}, withMode(Direct), ""},
	}
	tests[len(tests)-1].nodes[0].Name = ""
	tests[len(tests)-1].wantErr = "node with IP 192.168.50.11 has no name"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Compute(tc.local, tc.nodes, tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "routing: ") {
				t.Errorf("error %q does not name the component", err)
			}
			if d.VXLAN != nil || d.Routes != nil {
				t.Errorf("error came with a desired state: %v", render(d))
			}
		})
	}
}

func TestPodMTU(t *testing.T) {
	for _, tc := range []struct {
		mode      Mode
		site, pod int
	}{
		{Direct, 1500, 1500}, {VXLAN, 1500, 1450}, {Auto, 1500, 1450}, {Direct, 9000, 9000}, {VXLAN, 9000, 8950},
	} {
		if got := PodMTU(tc.mode, tc.site); got != tc.pod {
			t.Errorf("PodMTU(%s, %d) = %d, want %d", tc.mode, tc.site, got, tc.pod)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"direct": Direct, "VXLAN": VXLAN, " auto ": Auto} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("ipip"); err == nil {
		t.Error("ParseMode(ipip) succeeded")
	}
}

func TestVTEPMACIsUnicastLocal(t *testing.T) {
	m := VTEPMAC(addr("255.255.255.255"))
	if m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("VTEP MAC %s must be locally administered unicast", m)
	}
	if VTEPMAC(addr("192.168.50.10")) == VTEPMAC(addr("192.168.50.11")) {
		t.Error("different nodes share a VTEP MAC")
	}
}
