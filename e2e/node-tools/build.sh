#!/usr/bin/env bash
# Builds the upstream programs the test node needs besides Kubernetes itself into
# ~/.cache/weft/node-tools/<versions>/ (idempotent; cached binaries skip the build):
#   pause    the pod sandbox process, compiled from build/pause/linux/pause.c of the
#            pinned k8s.io/kubernetes module (as upstream's Makefile does: gcc -Os -static)
#   coredns  CoreDNS, the cluster DNS, from its Go module (wrapper module ./coredns)
#   crictl   the CRI client (cri-tools), from its Go module (wrapper module ./crictl)
# The images (pause, coredns) are packed from these by `make node-images` (weft-image).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=${KUBE_VERSION:?KUBE_VERSION must be set (Makefile pins it)}
PAUSE_VERSION=${PAUSE_VERSION:?PAUSE_VERSION must be set}
COREDNS_VERSION=${COREDNS_VERSION:?COREDNS_VERSION must be set}
CRICTL_VERSION=${CRICTL_VERSION:?CRICTL_VERSION must be set}
cache=${WEFT_CACHE:-$HOME/.cache/weft}
out="$cache/node-tools/pause-$PAUSE_VERSION-coredns-$COREDNS_VERSION-crictl-$CRICTL_VERSION"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

grep -q "github.com/coredns/coredns $COREDNS_VERSION" "$here/coredns/go.mod" || {
  echo "node-tools: e2e/node-tools/coredns/go.mod does not pin CoreDNS $COREDNS_VERSION" >&2; exit 1; }
grep -q "sigs.k8s.io/cri-tools $CRICTL_VERSION" "$here/crictl/go.mod" || {
  echo "node-tools: e2e/node-tools/crictl/go.mod does not pin cri-tools $CRICTL_VERSION" >&2; exit 1; }

mkdir -p "$out"
if [ -x "$out/pause" ]; then echo "node-tools: pause cached"; else
  command -v go >/dev/null || { echo "node-tools: Go is required" >&2; exit 1; }
  command -v gcc >/dev/null || { echo "node-tools: gcc is required to build pause" >&2; exit 1; }
  # The k8s.io/kubernetes module zip carries build/pause/linux/pause.c.
  src=$(cd "$here/../kube" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -f "$src/build/pause/linux/pause.c" ] || { echo "node-tools: pause.c not found in $src" >&2; exit 1; }
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-weft" -o "$out/pause.tmp" "$src/build/pause/linux/pause.c"
  strip "$out/pause.tmp" && mv "$out/pause.tmp" "$out/pause"
  echo "node-tools: built pause $("$out/pause" -v)"
fi
if [ -x "$out/coredns" ]; then echo "node-tools: coredns cached"; else
  start=$(date +%s)
  (cd "$here/coredns" && go build -trimpath \
      -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
      -o "$out/coredns.tmp" github.com/coredns/coredns)
  mv "$out/coredns.tmp" "$out/coredns"
  echo "node-tools: built coredns in $(( $(date +%s) - start ))s"
fi
if [ -x "$out/crictl" ]; then echo "node-tools: crictl cached"; else
  start=$(date +%s)
  (cd "$here/crictl" && go build -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
      -o "$out/crictl.tmp" sigs.k8s.io/cri-tools/cmd/crictl)
  mv "$out/crictl.tmp" "$out/crictl"
  echo "node-tools: built crictl in $(( $(date +%s) - start ))s"
fi
v=$("$out/coredns" -version); echo "${v%%$'\n'*}"
v=$("$out/crictl" --version); echo "$v"
echo "node-tools: $out"
