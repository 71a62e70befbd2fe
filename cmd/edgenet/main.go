package main

import "edgenet.io/edgenet/internal/version"
import _ "k8s.io/client-go/kubernetes"
import _ "github.com/google/go-containerregistry/pkg/v1/tarball"
import _ "github.com/miekg/dns"
import _ "sigs.k8s.io/knftables"
import _ "github.com/vishvananda/netlink"
import _ "github.com/containernetworking/cni/pkg/skel"
import _ "github.com/containernetworking/plugins/pkg/ns"
import _ "go4.org/netipx"
import _ "golang.org/x/sync/errgroup"

func main() { println(version.Version) }
