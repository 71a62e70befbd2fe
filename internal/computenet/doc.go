// Package computenet owns the appliance's Compute network settings: the model the
// admin fills in (site subnet and gateway, the contiguous Kubernetes node IP range
// with one address per node plus the cluster VIP, the external service IP ranges,
// pod and service CIDRs, cluster domain, upstream DNS) and the one validator that
// `edgenet up` flags, the ComputeNetwork admission webhook and the web UI share.
//
// Validation reports every problem at once as FieldErrors whose field paths are
// the CRD's JSON names ("spec.nodeIPRange", "spec.externalServiceIPRanges[1]").
// Everything derived from the settings (node IPs, cluster VIP, the kubernetes and
// DNS service IPs) is computed here too, so no other package does address math on
// the settings.
//
// The package is pure: it must not import Kubernetes packages, touch the network
// or read the host. Callers pass the host's routes to CheckHostRoutes.
package computenet
