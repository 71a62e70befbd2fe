#!/usr/bin/env bash
# Generates the deepcopy functions (api/v1alpha1/zz_generated.deepcopy.go) and the CRD manifests (deploy/crds/)
# from the kubebuilder markers of api/v1alpha1, with controller-gen from the Go module proxy.
#
#   hack/generate.sh            regenerate in place (idempotent)
#   hack/generate.sh --verify   generate into a temporary directory and fail if the committed files differ
set -euo pipefail
cd "$(dirname "$0")/.."

CONTROLLER_GEN=(go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.19.0)

generate() { # object dir, crd dir
	"${CONTROLLER_GEN[@]}" object paths=./api/... "output:object:dir=$1"
	"${CONTROLLER_GEN[@]}" crd paths=./api/... "output:crd:dir=$2"
}

case "${1:-}" in
"")
	# CRDs of removed types must not linger: regenerate the directory from scratch.
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# A stale deepcopy file may no longer compile against the types and stop controller-gen from loading them.
	rm -f api/v1alpha1/zz_generated.deepcopy.go
	generate api/v1alpha1 "$tmp"
	mkdir -p deploy/crds
	rm -f deploy/crds/edgenet.io_*.yaml
	cp "$tmp"/*.yaml deploy/crds/
	;;
--verify)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	generate "$tmp/obj" "$tmp/crds"
	rc=0
	diff -u api/v1alpha1/zz_generated.deepcopy.go "$tmp/obj/zz_generated.deepcopy.go" || rc=1
	diff -ru -x kustomization.yaml deploy/crds "$tmp/crds" || rc=1
	if [ "$rc" != 0 ]; then
		echo "generate: generated files are out of date: run hack/generate.sh" >&2
		exit 1
	fi
	;;
*)
	echo "usage: $0 [--verify]" >&2
	exit 2
	;;
esac
