// Package cni is the edgenet-cni plugin (CNI spec 1.1.0; accepts 0.3.0 to 1.1.0 configurations): it wires a
// pod's network namespace to its node and asks the node's edgenet agent for the pod IP (package ipam). It owns
// the host-side veths named HostVethName and their /32 routes, and nothing else on the node.
//
// Datapath: a routed veth per pod, no bridge, as Calico does. The pod's interface gets podIP/32 and a default
// route via 169.254.1.1 (onlink), with a permanent neighbour entry for 169.254.1.1 pointing at the host veth's
// MAC; the host veth has proxy_arp=1 and the node has the route podIP/32 dev <veth> scope link. Why not a bridge:
//   - no L2 domain between pods: no ARP/broadcast flooding, no MAC learning, no pod spoofing a neighbour's MAC;
//   - every pod packet, pod-to-pod on the same node included, crosses the node's IP routing path, so nftables
//     (service proxy, policy) sees it in the ordinary prerouting/forward hooks without br_netfilter, which is a
//     module this kernel lacks and a known source of surprises;
//   - the node needs no address in the pod CIDR and no gateway per node: routes are plain /32s, and moving
//     from direct routes to VXLAN between nodes changes nothing inside the pod.
//
// Pod IPs come from the agent over a unix socket ("ipamSocket", default the abstract "@edgenet-ipam"). Abstract
// sockets belong to a network namespace, and the plugin runs in its node's namespace (containerd does), so on an
// appliance whose nodes share one file system each node's plugin still reaches its own agent.
package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"edgenet.io/edgenet/internal/ipam"
	edgeversion "edgenet.io/edgenet/internal/version"
)

// PluginName and LoopbackName are the names (argv[0]) under which the edgenet binary is these plugins; see
// package multicall.
const (
	PluginName   = "edgenet-cni"
	LoopbackName = "loopback"
)

// ErrCodeExhausted is the plugin-specific CNI error code (spec: 100+) for "the pod CIDR has no free address".
const ErrCodeExhausted = 100

// opTimeout bounds one plugin invocation's talk with the agent (a block claim may need the API server).
const opTimeout = 40 * time.Second

// supported lists the spec versions whose configurations the plugin accepts; results are converted to them.
var supported = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Main runs the plugin: it reads the CNI environment and stdin, acts, prints the result or a spec error, and
// exits non-zero on error. cmd/edgenet calls it when invoked as edgenet-cni.
func Main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus},
		supported, "edgenet-cni "+edgeversion.Version+": routed-veth pod networking with IPs from the edgenet agent")
}

func client(conf *Conf) *ipam.Client { return &ipam.Client{Socket: conf.IPAMSocket} }

func handleOf(args *skel.CmdArgs) (ipam.Handle, *types.Error) {
	pa, err := parseArgs(args.Args)
	if err != nil {
		return ipam.Handle{}, types.NewError(types.ErrInvalidEnvironmentVariables, "edgenet-cni: invalid CNI_ARGS", err.Error())
	}
	return ipam.Handle{ContainerID: args.ContainerID, IfName: args.IfName, PodNamespace: pa.Namespace, PodName: pa.Name, Netns: args.Netns}, nil
}

// checkNetns refuses a CNI_NETNS that is missing, not a netns, or the plugin's own (host) namespace.
func checkNetns(path string) *types.Error {
	nsh, err := netns.GetFromPath(path)
	if err == nil {
		// The path must be a network namespace, not merely a file on nsfs/procfs.
		var kind int
		if kind, err = unix.IoctlRetInt(int(nsh), unix.NS_GET_NSTYPE); err == nil && kind != unix.CLONE_NEWNET {
			err = fmt.Errorf("namespace type %#x, not a network namespace", kind)
		}
		if err != nil {
			nsh.Close()
		}
	}
	if err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("edgenet-cni: CNI_NETNS=%q is not a network namespace", path), err.Error())
	}
	defer nsh.Close()
	self, err := netns.Get()
	if err != nil {
		return types.NewError(types.ErrInternal, "edgenet-cni: own netns", err.Error())
	}
	defer self.Close()
	if self.Equal(nsh) {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("edgenet-cni: CNI_NETNS=%q is the node's own network namespace", path), "")
	}
	return nil
}

// ipamError maps agent errors to spec codes: unreachable/not ready is transient (11), exhaustion has its own code.
func ipamError(op string, err error) *types.Error {
	switch {
	case ipam.IsExhausted(err):
		return types.NewError(ErrCodeExhausted, err.Error(), "")
	case ipam.IsUnavailable(err):
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("edgenet-cni: %s: %v", op, err), "the edgenet agent on this node is not serving IPAM; retry later")
	}
	return types.NewError(types.ErrInternal, fmt.Sprintf("edgenet-cni: %s: %v", op, err), "")
}

func cmdAdd(args *skel.CmdArgs) error {
	tm := newTiming()
	defer tm.done("ADD")
	conf, terr := parseConf(args.StdinData)
	if terr != nil {
		return terr
	}
	h, terr := handleOf(args)
	if terr != nil {
		return terr
	}
	if terr := checkNetns(args.Netns); terr != nil {
		return terr
	}
	tm.step("parse")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c := client(conf)
	resp, err := c.Do(ctx, ipam.Request{Op: ipam.OpAdd, Handle: h})
	if err != nil {
		return ipamError("allocate pod IP", err)
	}
	tm.step("ipam")
	if !resp.IP.Is4() {
		if resp.New {
			_, _ = c.Do(ctx, ipam.Request{Op: ipam.OpDel, Handle: h})
		}
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("edgenet-cni: agent gave %s; only IPv4 pod CIDRs are supported", resp.IP), "")
	}
	a := attachment{netns: args.Netns, ifName: args.IfName, hostVeth: HostVethName(args.ContainerID, args.IfName), ip: resp.IP, mtu: conf.MTU}
	b, err := setup(a, tm)
	if err != nil {
		// Roll back the allocation only if this call made it: an existing one belongs to an earlier ADD.
		if resp.New {
			if _, derr := c.Do(ctx, ipam.Request{Op: ipam.OpDel, Handle: h}); derr != nil {
				err = fmt.Errorf("%w (and releasing %s failed: %v)", err, resp.IP, derr)
			}
		}
		if errors.Is(err, errIfExists) {
			return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("edgenet-cni: CNI_IFNAME=%q: %v", args.IfName, err), "")
		}
		return types.NewError(types.ErrInternal, fmt.Sprintf("edgenet-cni: set up %s: %v", a.hostVeth, err), "")
	}
	err = types.PrintResult(result(conf, a, b), conf.CNIVersion)
	tm.step("print")
	return err
}

func result(conf *Conf, a attachment, b built) types.Result {
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	if conf.PrevResult != nil {
		if prev, err := types100.NewResultFromResult(conf.PrevResult); err == nil {
			res = prev
		}
	}
	base := len(res.Interfaces)
	res.Interfaces = append(res.Interfaces,
		&types100.Interface{Name: a.hostVeth, Mac: b.hostMAC.String(), Mtu: a.mtu},
		&types100.Interface{Name: a.ifName, Mac: b.podMAC.String(), Mtu: a.mtu, Sandbox: a.netns})
	podIdx := base + 1
	gw := GatewayIP.AsSlice()
	res.IPs = append(res.IPs, &types100.IPConfig{Interface: &podIdx, Address: *hostPrefix(a.ip), Gateway: gw})
	res.Routes = append(res.Routes, &types.Route{Dst: *defaultRoute(), GW: gw})
	return res
}

func cmdDel(args *skel.CmdArgs) error {
	tm := newTiming()
	defer tm.done("DEL")
	conf, terr := parseConf(args.StdinData)
	if terr != nil {
		return terr
	}
	h, terr := handleOf(args)
	if terr != nil {
		return terr
	}
	// The veth goes first so an IP is never free while still routed to an old pod.
	if err := teardown(HostVethName(args.ContainerID, args.IfName)); err != nil {
		return types.NewError(types.ErrInternal, "edgenet-cni: "+err.Error(), "")
	}
	tm.step("veth")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := client(conf).Do(ctx, ipam.Request{Op: ipam.OpDel, Handle: h}); err != nil {
		return ipamError("release pod IP", err)
	}
	tm.step("ipam")
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, terr := parseConf(args.StdinData)
	if terr != nil {
		return terr
	}
	h, terr := handleOf(args)
	if terr != nil {
		return terr
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "edgenet-cni: CHECK needs prevResult", "")
	}
	prev, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "edgenet-cni: convert prevResult", err.Error())
	}
	ip, terr := prevIP(prev, args.IfName, args.Netns)
	if terr != nil {
		return terr
	}
	if terr := checkNetns(args.Netns); terr != nil {
		return terr
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := client(conf).Do(ctx, ipam.Request{Op: ipam.OpCheck, Handle: h})
	if err != nil {
		return ipamError("check IP reservation", err)
	}
	if resp.IP != ip {
		return types.NewError(types.ErrInternal, fmt.Sprintf("edgenet-cni: agent has %s reserved for %s, prevResult says %s", resp.IP, h.Key(), ip), "")
	}
	a := attachment{netns: args.Netns, ifName: args.IfName, hostVeth: HostVethName(args.ContainerID, args.IfName), ip: ip, mtu: conf.MTU}
	if err := verify(a); err != nil {
		return types.NewError(types.ErrInternal, "edgenet-cni: check: "+err.Error(), "")
	}
	return nil
}

// prevIP finds the IPv4 address prevResult gives the pod interface ifName in netns.
func prevIP(prev *types100.Result, ifName, nsPath string) (netip.Addr, *types.Error) {
	for _, ipc := range prev.IPs {
		if ipc.Interface == nil || *ipc.Interface < 0 || *ipc.Interface >= len(prev.Interfaces) {
			continue
		}
		intf := prev.Interfaces[*ipc.Interface]
		if intf.Name != ifName || intf.Sandbox != nsPath {
			continue
		}
		if ip, ok := netip.AddrFromSlice(ipc.Address.IP); ok && ip.Unmap().Is4() {
			return ip.Unmap(), nil
		}
	}
	return netip.Addr{}, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("edgenet-cni: prevResult has no IPv4 address on %s in %s", ifName, nsPath), "")
}

func cmdGC(args *skel.CmdArgs) error {
	conf, terr := parseConf(args.StdinData)
	if terr != nil {
		return terr
	}
	valid := make([]ipam.Attachment, 0, len(conf.ValidAttachments))
	keep := map[string]bool{}
	for _, v := range conf.ValidAttachments {
		valid = append(valid, ipam.Attachment{ContainerID: v.ContainerID, IfName: v.IfName})
		keep[HostVethName(v.ContainerID, v.IfName)] = true
	}
	// Per spec GC runs exclusive of ADD/DEL, so nothing not in valid can be mid-setup.
	var errs []error
	stale, err := staleHostVeths(keep)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range stale {
		if err := teardown(l.Attrs().Name); err != nil {
			errs = append(errs, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := client(conf).Do(ctx, ipam.Request{Op: ipam.OpGC, Valid: valid}); err != nil {
		if len(errs) == 0 {
			return ipamError("garbage-collect pod IPs", err)
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrInternal, "edgenet-cni: gc: "+err.Error(), "")
	}
	return nil
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, terr := parseConf(args.StdinData)
	if terr != nil {
		return terr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client(conf).Do(ctx, ipam.Request{Op: ipam.OpStatus})
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("edgenet-cni: %v", err), "")
	}
	if !resp.Ready {
		return types.NewError(types.ErrPluginNotAvailable, "edgenet-cni: the edgenet agent is not ready to allocate pod IPs", "")
	}
	return nil
}
