package cni

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	edgeversion "edgenet.io/edgenet/internal/version"
)

// LoopbackMain is the `loopback` plugin that containerd's CRI runs for every pod
// besides the network's own: it brings up lo in the pod. The agent installs it (as the
// edgenet binary called loopback) only where the node has none.
func LoopbackMain() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: loopbackAdd, Del: loopbackDel, Check: loopbackCheck},
		supported, "loopback (edgenet "+edgeversion.Version+")")
}

func loopbackAdd(args *skel.CmdArgs) error {
	conf, err := parseLoopbackConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := ns.WithNetNSPath(args.Netns, func(ns.NetNS) error { return setLoUp(true) }); err != nil {
		return types.NewError(types.ErrIOFailure, "loopback: bring lo up", err.Error())
	}
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: "lo", Sandbox: args.Netns}},
		IPs: []*current.IPConfig{{
			Interface: current.Int(0),
			Address:   net.IPNet{IP: net.IPv4(127, 0, 0, 1), Mask: net.CIDRMask(8, 32)},
		}},
	}
	return types.PrintResult(res, conf.CNIVersion)
}

// loopbackDel succeeds for gone namespaces: DEL must be idempotent.
func loopbackDel(args *skel.CmdArgs) error {
	if args.Netns == "" {
		return nil
	}
	_ = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error { return setLoUp(false) })
	return nil
}

func loopbackCheck(args *skel.CmdArgs) error {
	if _, err := parseLoopbackConf(args.StdinData); err != nil {
		return err
	}
	return ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("loopback: lo is down")
		}
		return nil
	})
}

func parseLoopbackConf(data []byte) (*types.PluginConf, error) {
	conf := &types.PluginConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "loopback: decode network configuration", err.Error())
	}
	return conf, nil
}

func setLoUp(up bool) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if up {
		return netlink.LinkSetUp(lo)
	}
	return netlink.LinkSetDown(lo)
}
