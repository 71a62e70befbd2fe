#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries from hack/kube (Go module proxy only) into
# .cache/kube/<version>-<hash of the pin>/bin, linked as bin/kube. A binary is built only
# when missing there, so nothing is rebuilt until hack/kube/go.mod or go.sum change.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/hack/kube"
version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$mod/go.mod")
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
out="$root/.cache/kube/$version-$key/bin"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

mkdir -p "$out" "$root/bin"
ln -sfn "$out" "$root/bin/kube"
minor=${version#v}; major=${minor%%.*}; minor=${minor#*.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version"
cd "$mod"
for c in "${cmds[@]}"; do
	[ -x "$out/$c" ] && continue
	echo "build-kube: $c $version" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c"
	mv "$out/$c.tmp" "$out/$c"
done
echo "$out"
