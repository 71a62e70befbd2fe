// Package controller is edgenet's LoadBalancer IP controller: it gives Services of type LoadBalancer (with no
// spec.loadBalancerClass, or "edgenet.io/lb") external addresses from address pools and writes them to
// status.loadBalancer.ingress, with a status condition and Events that say why a Service is pending.
//
// The pools are the AddressPool objects plus the default pool, named "default", derived from the
// ComputeNetwork "default"'s spec.externalServiceIPRanges. The default pool always wins its name: an
// AddressPool called "default" (which the CRD refuses) is ignored and marked not Ready. Pools may not overlap;
// a pool overlapping an older one (the default pool counts as oldest) is left out and marked not Ready.
//
// The choice of addresses is internal/lb/allocator's; this package only translates API objects into the
// allocator's terms, replays existing assignments on start (status.loadBalancer.ingress is the record, so a
// restart moves nothing), and writes results back. Pool edits never move an address: an address left outside
// every pool stays with its Service, which is flagged (condition reason IPOutsidePool, a Warning Event) until
// the admin moves it, by naming another address (edgenet.io/load-balancer-ips, spec.loadBalancerIP) or pool
// (edgenet.io/address-pool), or by recreating the Service.
//
// It does not announce addresses (internal/lb/l2, bgp do) nor program the datapath (internal/proxy).
package controller
