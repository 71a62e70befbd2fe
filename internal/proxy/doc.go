// Package proxy is edgenet's Service proxy: it turns Services and EndpointSlices into
// nftables rules in tables of its own (`ip edgenet` and its shards `ip edgenet-svc-00`
// … `-15`, the same in ip6 for IPv6), replacing kube-proxy on every node. It owns
// those tables and nothing else: no iptables, no IPVS, no routes, no other tables.
//
// Shape (pure core, thin edges):
//
//   - model.go: stripped-down Service and EndpointSlice types (only what rules need).
//   - compute.go: pure computation of one Service's chains, map elements and affinity
//     sets for a node (ComputeService) and the endpoint selection behind it.
//   - tables.go: which table holds what (the main table; the shard of a service) and
//     Tx, one transaction over several tables.
//   - ruleset.go: the Ruleset, which remembers what is in the kernel and writes the
//     difference to a Tx: a full reconcile on start (against the chains and sets
//     listed from the kernel, never flushing a table, so established connections and
//     affinity entries survive a restart) and per-Service incremental updates
//     afterwards. Every sync is one transaction.
//   - proxier.go: change events → coalesced syncs (min interval; a periodic resync
//     reconciles the kernel's listing against what was written and removes what nobody
//     wants), event-to-kernel latency histogram, UDP conntrack cleanup,
//     health-check servers. Stale chains are flushed at once and deleted a second
//     later (older kernels see dropped references late).
//   - source.go: informers on Services and EndpointSlices whose caches hold only
//     names and the models (shared with the proxiers), and Run, the entry used by
//     `edgenet agent`.
//
// Datapath (per family; modelled on KEP-3866's nftables kube-proxy). Shard tables,
// each with the services whose name hashes to it:
//
//	nat-prerouting / nat-output (dstnat)  → services:
//	    daddr . l4proto . dport vmap @service-ips        (ClusterIP, externalIPs, LB IPs)
//	    daddr @nodeport-ips l4proto . dport vmap @service-nodeports
//	svc-<ns>/<name>/<proto>/<port>   masquerade non-pod sources, affinity, numgen random mod N vmap → ep-…
//	local-…                          the same over node-local endpoints (traffic policy Local)
//	ext-…                            external destinations: masquerade (Cluster) or short-circuit
//	                                 pod/host traffic and keep client IPs (Local)
//	ep-…__<ip>/<port>                hairpin masquerade, affinity update, dnat
//
// The main table:
//
//	filter-input/forward/output (dstnat-10), ct state new → service-endpoints-check:
//	    @no-endpoint-services / @no-endpoint-nodeports → reject (tcp reset / icmp
//	    port-unreachable) for services without endpoints, drop for Local policies
//	    without local endpoints
//	nat-postrouting → masquerading: masquerade packets marked 0x4000.
//
// Transport: the rules are nft text throughout (golden files, the knftables fake and
// operators read them). Full syncs run as one `nft -f` transaction over all tables.
// Incremental syncs are compiled from that text to netlink expressions
// (netlink.go, google/nftables) and sent as one netlink batch: nft loads a cache of
// every chain and set of the table before applying even a one-line transaction,
// ~130 ms at 10k services with 5 endpoints each, more than the change itself. The
// compiler knows exactly the forms ComputeService writes with the cascade; anything
// else (BalanceVmap's anonymous vmaps) makes that sync go through nft, with the same
// result (TestNetlinkSyncMatchesNft compares `nft list table` of both paths).
// Table listings (full syncs, resyncs) also use netlink: names only.
//
// Why shards: any rule or element with a jump, goto, dnat or fib makes the commit
// re-validate every chain reachable from the base chains of the table it is in. That
// walk is linear in the table: ~100 ms at 10k services × 5 endpoints in one table on
// this 2-core machine, the floor of a change's latency. The kernel walks only the
// tables a transaction touched, so with 16 shards a one-service change pays for
// ~1/16th of the services (~5 ms kernel time per batch at 10k, measured with strace).
// Shards hold only nat chains, which only the first packet of a connection sees; a new
// connection walks the shards' nat chains (two map lookups each) until one DNATs it.
//
// Balancing: NodeConfig.Balancing picks "numgen random mod N vmap {…}" (default, as
// kube-proxy) or an equivalent cascade of "numgen random mod (N-i) == 0 goto" rules.
// Every anonymous vmap is a set and the kernel handles tables with many sets slowly:
// a first sync of 10k services takes 15-35 s of kernel time with vmaps and ~2 s with
// the cascade (BenchmarkKernelSync). Large installations should use the cascade.
package proxy
