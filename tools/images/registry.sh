#!/usr/bin/env bash
# Builds the CNCF Distribution registry from its published Go module (wrapper module in
# tools/registry) into $WEFT_CACHE/registry/<version>/registry. The image tests push to
# it on 127.0.0.1 to prove `make push`. Idempotent: a cached binary skips the build.
set -euo pipefail
mod=$(cd "$(dirname "$0")/../registry" && pwd)
cache=${WEFT_CACHE:-$HOME/.cache/weft}
version=$(awk '$1 == "require" && $2 == "github.com/distribution/distribution/v3" {print $3}' "$mod/go.mod")
[ -n "$version" ] || { echo "registry: tools/registry/go.mod pins no distribution/v3 version" >&2; exit 1; }
out="$cache/registry/$version"
if [ -x "$out/registry" ]; then
  echo "registry: cached in $out"
else
  command -v go >/dev/null || { echo "registry: Go toolchain not found (needed to build the registry from its Go module)" >&2; exit 1; }
  echo "registry: building github.com/distribution/distribution/v3/cmd/registry $version into $out"
  start=$(date +%s)
  mkdir -p "$out.tmp"
  (cd "$mod" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
      -o "$out.tmp/registry" github.com/distribution/distribution/v3/cmd/registry)
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "registry: built in $(( $(date +%s) - start ))s"
fi
