// Package routing owns how pod traffic leaves a node: routes from this node to every other node's pod blocks
// (direct next hops on the site L2, or a kernel VXLAN overlay), a blackhole route for each local block, and the
// masquerade of pod traffic that leaves the cluster. `edgenet agent` runs it on every node.
//
// It owns, in the node's network namespace:
//   - every route in the main table whose protocol is RouteProtocol (0x7e, "edgenet"); routes of any other
//     protocol are never touched (the CNI plugin's podIP/32 routes are proto boot, connected routes proto kernel);
//   - the VXLAN device (default "edgenet.vxlan") with its address, neighbour and FDB entries;
//   - the nftables table "ip edgenet-nat";
//   - the sysctls net.ipv4.ip_forward (set to 1) and net.ipv4.conf.<vxlan>.rp_filter (set to 2, loose).
//
// It does not touch the pod veths or their /32 routes (package cni) nor decide which node owns which block
// (package ipam and the controller).
//
// Shape: Compute is pure (nodes + Params → Desired). Manager fetches the kernel state, diffs and applies only the
// difference, so re-applying an unchanged desired state changes nothing in the kernel.
//
// Paths between nodes (Mode):
//   - Direct: "<block> via <node IP> dev <site>" per remote block. Needs every node on the site subnet.
//   - VXLAN: a kernel vxlan device (learning off, local = node IP, dev = site interface, UDP 4789). Each node's
//     VTEP is derived from what every node already publishes (its IP and its blocks), so nothing extra is
//     exchanged: VTEP MAC = 0e:ed:<node IPv4>, VTEP IP = first address of the node's lowest block, assigned /32 to
//     the vxlan device. Per remote node: "<block> via <VTEP IP> dev edgenet.vxlan onlink", a permanent neighbour
//     VTEP IP → VTEP MAC and an FDB entry VTEP MAC → node IP.
//   - Auto: Direct for nodes on the site subnet, VXLAN for the others.
//
// The VTEP IP is an address of the pod CIDR, so replies from remote pods to node-originated traffic come back
// through the overlay by the block routes alone. IPAM must never hand that address to a pod (VTEPAddr tells
// which it is); Manager refuses to assign it while a pod route for it exists.
//
// Masquerade (table ip edgenet-nat, postrouting, priority srcnat): pod-sourced packets to anything outside
// the no-masquerade set are masqueraded to the node's address (fully-random ports). The set is the pod CIDR,
// the IPs of this node and of the nodes it reaches directly, and Config.NoMasquerade. So pod → pod and pod →
// directly reached node keep the pod IP (that node routes the reply back by the block routes), while pod →
// outside (site hosts, the internet) and pod → nodes reached over VXLAN are masqueraded: a pod-sourced packet
// to a VXLAN peer would travel the underlay unencapsulated, where routers and the peer's reverse-path filter
// (whose route back to the pod is the overlay) rightly drop it. The site subnet is not in the set by default:
// site hosts do not know the pod routes.
package routing
