#!/usr/bin/env bash
# Installs the Debian packages edgenet needs to build, run and test, when missing
# (redis-server goes into the demo's image; curl is what the printed demo commands use).
set -euo pipefail
pkgs=(
	etcd-server containerd runc nftables iproute2 conntrack util-linux procps
	ca-certificates dnsmasq-base
	redis-server curl
	chromium # the e2e browser test of the web UI (test/e2e/ui_test.go, driven by chromedp)
)
# `install-deps.sh bench`: what the side-by-side benchmarks run against.
if [ "${1:-}" = bench ]; then
	pkgs=(containernetworking-plugins dnsperf)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
