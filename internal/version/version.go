// Package version holds the build's version, stamped by the Makefile with -ldflags.
package version

// Version is overwritten at link time: -X edgenet.io/edgenet/internal/version.Version=...
var Version = "dev"

// Kubernetes is the Kubernetes release the appliance runs (hack/kube pins it).
const Kubernetes = "v1.34.4"
