// Package v1alpha1 owns edgenet's Kubernetes API, group edgenet.io version v1alpha1: the Go types of the
// custom resources (IPAMBlock, ComputeNetwork), their scheme registration and a small typed REST client with
// list-watch helpers for informers.
//
// The CRD manifests under deploy/crds/ and zz_generated.deepcopy.go are generated from the kubebuilder markers
// here by hack/generate.sh; edit the types, never the generated files. What the apiserver can check on its own
// (formats, the singleton name, immutable fields, a block's name matching its CIDR) is written as CEL rules on
// the types; checks that need the whole settings model live in internal/computenet.
//
// The package holds no state: schemes are built per caller by NewScheme/AddToScheme.
//
// +kubebuilder:object:generate=true
// +groupName=edgenet.io
package v1alpha1
