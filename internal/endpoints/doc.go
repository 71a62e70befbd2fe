// Package endpoints is edgenet's EndpointSlice controller: it replaces
// kube-controller-manager's endpointslice controller and owns the
// discovery.k8s.io/v1 EndpointSlices labelled
// endpointslice.kubernetes.io/managed-by=endpointslice.edgenet.io.
//
// The package has a pure core and a thin edge:
//
//   - model.go turns API objects into the few fields the computation needs
//     (Service, Pod, node zones) and strips informer objects to those fields.
//   - desired.go computes, per address type and distinct port set, the endpoints a
//     Service should have (conditions, hostname, zone, targetRef, hints) as upstream.
//   - plan.go diffs those against the existing slices and returns the writes, keeping
//     unchanged endpoints where they are, updating slices in place, reusing slices
//     that would be deleted for ones that would be created, and compacting only when
//     slices are clearly fragmented.
//   - controller.go runs it: informers, a batching workqueue keyed by Service, writes.
//
// It never touches slices managed by anyone else, nor Services without a selector
// (their slices are user-managed), nor ExternalName Services.
package endpoints
