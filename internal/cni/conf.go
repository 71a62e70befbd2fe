package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"edgenet.io/edgenet/internal/ipam"
)

// DefaultMTU is the pod interface MTU unless the conf says otherwise.
const DefaultMTU = 1500

// Conf is the plugin's network configuration (one entry of a conflist's "plugins").
type Conf struct {
	types.PluginConf
	// IPAMSocket is the agent's IPAM socket: "@name" (abstract, per network namespace) or an absolute path.
	IPAMSocket string `json:"ipamSocket,omitempty"`
	// MTU of the pod's interface and the host-side veth.
	MTU int `json:"mtu,omitempty"`
}

// parseConf decodes and validates stdin data, applying defaults. Errors are *types.Error with spec codes:
// 6 when the JSON does not decode, 2 for a field this plugin refuses, 7 for invalid values.
func parseConf(data []byte) (*Conf, *types.Error) {
	conf := &Conf{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "edgenet-cni: decode network configuration", err.Error())
	}
	if dec.More() {
		return nil, types.NewError(types.ErrDecodingFailure, "edgenet-cni: decode network configuration", "trailing data after the JSON object")
	}
	if conf.Name == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "edgenet-cni: network configuration has no name", "")
	}
	if conf.IPAM.Type != "" {
		return nil, types.NewError(types.ErrUnsupportedField,
			fmt.Sprintf("edgenet-cni: unsupported field ipam.type=%q", conf.IPAM.Type),
			"edgenet-cni allocates pod IPs through the edgenet agent; remove the ipam section")
	}
	if conf.MTU == 0 {
		conf.MTU = DefaultMTU
	}
	if conf.MTU < 576 || conf.MTU > 65535 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("edgenet-cni: invalid mtu %d", conf.MTU), "mtu must be between 576 and 65535")
	}
	if conf.IPAMSocket == "" {
		conf.IPAMSocket = ipam.DefaultSocket
	}
	if err := validSocket(conf.IPAMSocket); err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("edgenet-cni: invalid ipamSocket %q", conf.IPAMSocket), err.Error())
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "edgenet-cni: decode prevResult", err.Error())
		}
	}
	return conf, nil
}

func validSocket(s string) error {
	const sunPath = 108 // sizeof(sockaddr_un.sun_path), including the NUL (or the leading NUL of an abstract name)
	switch {
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("contains a NUL byte")
	case len(s) >= sunPath:
		return fmt.Errorf("longer than %d bytes", sunPath-1)
	case strings.HasPrefix(s, "@"):
		if len(s) == 1 {
			return fmt.Errorf("abstract socket name is empty")
		}
		return nil
	case !strings.HasPrefix(s, "/"):
		return fmt.Errorf(`must be "@name" (abstract) or an absolute path`)
	}
	return nil
}

// podArgs are the Kubernetes fields of CNI_ARGS (kubelet/containerd pass K8S_POD_NAMESPACE and K8S_POD_NAME).
type podArgs struct {
	Namespace, Name string
}

// parseArgs reads CNI_ARGS ("K=V;K=V"); unknown keys are ignored as runtimes add their own.
func parseArgs(s string) (podArgs, error) {
	var pa podArgs
	if s == "" {
		return pa, nil
	}
	for kv := range strings.SplitSeq(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return pa, fmt.Errorf("CNI_ARGS: %q is not KEY=VALUE", kv)
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			pa.Namespace = v
		case "K8S_POD_NAME":
			pa.Name = v
		}
	}
	return pa, nil
}
