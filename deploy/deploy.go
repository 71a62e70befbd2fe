// Package deploy embeds the manifests that install edgenet on a cluster, so that
// `edgenet up` applies exactly what `kubectl apply -k deploy/` applies elsewhere, and
// the demo application of deploy/demo/ that up deploys after it.
package deploy

import "embed"

// FS holds the kustomization and its resources.
//
//go:embed kustomization.yaml base appliance crds demo
var FS embed.FS
