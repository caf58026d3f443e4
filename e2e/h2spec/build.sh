#!/usr/bin/env bash
# Builds h2spec (HTTP/2 conformance suite) from its published Go module (wrapper module
# in this directory) into ~/.cache/weft/h2spec/<version>/h2spec. Idempotent: a cached
# binary skips the build. proxy/tests/h2_conformance.rs runs it against the sidecar.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
H2SPEC_VERSION=${H2SPEC_VERSION:?H2SPEC_VERSION must be set (Makefile pins it)}
cache=${WEFT_CACHE:-$HOME/.cache/weft}
out="$cache/h2spec/$H2SPEC_VERSION"
if [ -x "$out/h2spec" ]; then echo "h2spec: cached in $out"; exit 0; fi
command -v go >/dev/null || { echo "h2spec: Go is required to build h2spec from its Go module" >&2; exit 1; }
grep -q "github.com/summerwind/h2spec $H2SPEC_VERSION+incompatible" "$here/go.mod" || {
  echo "h2spec: e2e/h2spec/go.mod does not pin h2spec $H2SPEC_VERSION; update it" >&2; exit 1; }
mkdir -p "$out"
start=$(date +%s)
(cd "$here" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -w -X main.VERSION=${H2SPEC_VERSION#v}" -o "$out/h2spec.tmp" github.com/summerwind/h2spec/cmd/h2spec)
mv "$out/h2spec.tmp" "$out/h2spec"
echo "h2spec: built $H2SPEC_VERSION in $(( $(date +%s) - start ))s into $out"
