// Package webui is `edgenet ui`: the appliance's local web UI and its JSON API under /api/v1. It owns the
// admin login (a bcrypt hash in Secret edgenet-system/edgenet-ui-admin, in-memory sessions with CSRF tokens,
// per-client login rate limiting), the Compute network page (edit, validate, preview and apply the
// ComputeNetwork spec through internal/computenet's rules), the live Overview, and the AddressPool that puts
// the UI on the cluster VIP. It reads cluster state and writes only the ComputeNetwork spec, its own Secret
// and its own AddressPool; it never touches the datapath.
package webui
