#!/usr/bin/env bash
# Builds what the upstream Gateway API conformance suite needs to run against weft
# (docs/conformance.md) into ~/.cache/weft/conformance/<versions-key>/ (idempotent; a
# complete entry is reused):
#   conformance.test   the suite's own test binary: `go test -c sigs.k8s.io/gateway-api/conformance`
#                      from the wrapper module ./suite (sigs.k8s.io/gateway-api{,/conformance} v1.6.3)
#   echo/{server,client}  Istio's echo app from the wrapper module ./echo (istio.io/istio,
#                      a pseudo-version: Istio publishes no tagged module versions)
#   echo-advanced.tar  the image the suite's mesh manifests run, packed with weft-image under
#                      the exact reference they name (registry.k8s.io/gateway-api/echo-advanced:v1.5.1)
#                      so the unmodified manifests find it in the node's containerd (it is built
#                      here from source and preloaded, as on an air-gapped node; never pulled)
#   cert.crt, cert.key a self-signed certificate for the echo server's TLS port (openssl)
#   echo-basic/echo-basic  the Gateway API's own echo server (sigs.k8s.io/gateway-api/conformance/echo-basic,
#                      from the same wrapper module ./suite), packed once per reference the gateway
#                      manifests name (echo-basic-<tag>.tar; same binary, upstream tags it per release)
#   coredns/coredns    CoreDNS at the version the base manifests run (wrapper module ./coredns),
#                      packed as registry.k8s.io/coredns/coredns:<v> (coredns.tar)
#   env                WEFT_CONFORMANCE_* facts for make and the Rust test
# Needs: go, openssl, and WEFT_IMAGE_TOOL (the weft-image binary; mk/conformance.mk builds it).
# `build.sh --print-dir` prints the cache entry; `--binaries-only` stops before packing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:?GATEWAY_API_VERSION must be set (mk/gateway.mk pins it)}
ISTIO_ECHO_VERSION=${ISTIO_ECHO_VERSION:?ISTIO_ECHO_VERSION must be set (mk/conformance.mk pins it)}
ECHO_IMAGE_REF=${ECHO_IMAGE_REF:?ECHO_IMAGE_REF must be set (mk/conformance.mk pins it)}
# The echo-basic references the v1.6.3 gateway manifests name (base/manifests.yaml, tests/*.yaml).
ECHO_BASIC_REFS=${ECHO_BASIC_REFS:?ECHO_BASIC_REFS must be set (mk/conformance.mk pins them)}
CONFORMANCE_COREDNS_VERSION=${CONFORMANCE_COREDNS_VERSION:?CONFORMANCE_COREDNS_VERSION must be set (mk/conformance.mk pins it)}
cache=${WEFT_CACHE:-$HOME/.cache/weft}
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

grep -q "sigs.k8s.io/gateway-api/conformance $GATEWAY_API_VERSION" "$here/suite/go.mod" || {
  echo "conformance: e2e/conformance/suite/go.mod does not pin the suite at $GATEWAY_API_VERSION" >&2; exit 1; }
grep -q "sigs.k8s.io/gateway-api $GATEWAY_API_VERSION" "$here/suite/go.mod" || {
  echo "conformance: e2e/conformance/suite/go.mod does not pin sigs.k8s.io/gateway-api $GATEWAY_API_VERSION" >&2; exit 1; }
grep -q "github.com/coredns/coredns $CONFORMANCE_COREDNS_VERSION" "$here/coredns/go.mod" || {
  echo "conformance: e2e/conformance/coredns/go.mod does not pin CoreDNS $CONFORMANCE_COREDNS_VERSION" >&2; exit 1; }
grep -q "istio.io/istio $ISTIO_ECHO_VERSION" "$here/echo/go.mod" || {
  echo "conformance: e2e/conformance/echo/go.mod does not pin istio.io/istio $ISTIO_ECHO_VERSION" >&2; exit 1; }

# The key: both versions plus a short hash of the wrapper modules. How the image is packed
# is not in the key: its recipe is kept next to the archive and a different one repacks it.
hash=$(cd "$here" && cat suite/go.mod suite/go.sum echo/go.mod echo/go.sum coredns/go.mod coredns/go.sum | sha256sum | cut -c1-12)
key="gateway-api-$GATEWAY_API_VERSION-istio-${ISTIO_ECHO_VERSION##*-}-$hash"
out="$cache/conformance/$key"
if [ "${1:-}" = "--print-dir" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/conformance"
exec 9>"$cache/conformance/.$key.lock"
flock 9
command -v go >/dev/null || { echo "conformance: go is required" >&2; exit 1; }
command -v openssl >/dev/null || { echo "conformance: openssl is required (make deps)" >&2; exit 1; }
mkdir -p "$out/echo"

# Each binary is moved into place only when complete, so an interrupted run resumes.
if [ -x "$out/conformance.test" ]; then echo "conformance: suite binary cached"; else
  start=$(date +%s)
  echo "conformance: building the suite binary (sigs.k8s.io/gateway-api/conformance $GATEWAY_API_VERSION)"
  (cd "$here/suite" && go test -c -trimpath -o "$out/conformance.test.tmp" sigs.k8s.io/gateway-api/conformance)
  mv "$out/conformance.test.tmp" "$out/conformance.test"
  echo "conformance: suite built in $(( $(date +%s) - start ))s"
fi
if [ -x "$out/echo/server" ] && [ -x "$out/echo/client" ]; then echo "conformance: echo binaries cached"; else
  start=$(date +%s)
  echo "conformance: building Istio's echo server and client (istio.io/istio $ISTIO_ECHO_VERSION)"
  rm -rf "$out/echo.tmp" && mkdir -p "$out/echo.tmp"
  (cd "$here/echo" && go build -trimpath -o "$out/echo.tmp/" \
    istio.io/istio/pkg/test/echo/cmd/server istio.io/istio/pkg/test/echo/cmd/client)
  rm -rf "$out/echo" && mv "$out/echo.tmp" "$out/echo"
  echo "conformance: echo built in $(( $(date +%s) - start ))s"
fi
if [ -x "$out/echo-basic/echo-basic" ]; then echo "conformance: echo-basic cached"; else
  echo "conformance: building the Gateway API echo-basic server"
  rm -rf "$out/echo-basic.tmp" && mkdir -p "$out/echo-basic.tmp"
  (cd "$here/suite" && go build -trimpath -o "$out/echo-basic.tmp/echo-basic" sigs.k8s.io/gateway-api/conformance/echo-basic)
  rm -rf "$out/echo-basic" && mv "$out/echo-basic.tmp" "$out/echo-basic"
fi
if [ -x "$out/coredns/coredns" ]; then echo "conformance: coredns cached"; else
  start=$(date +%s)
  echo "conformance: building CoreDNS $CONFORMANCE_COREDNS_VERSION (the base manifests' UDP backend)"
  rm -rf "$out/coredns.tmp" && mkdir -p "$out/coredns.tmp"
  (cd "$here/coredns" && go build -trimpath \
      -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$CONFORMANCE_COREDNS_VERSION" \
      -o "$out/coredns.tmp/coredns" github.com/coredns/coredns)
  rm -rf "$out/coredns" && mv "$out/coredns.tmp" "$out/coredns"
  echo "conformance: coredns built in $(( $(date +%s) - start ))s"
fi
if [ "${1:-}" = "--binaries-only" ]; then exit 0; fi

# What Istio's pkg/test/echo/docker/Dockerfile.app puts in the image: the two binaries in
# /usr/local/bin, /cert.crt + /cert.key, user `application` (uid 1338), entrypoint server.
# Its base image's passwd/group and a writable /tmp come along here as files.
if [ ! -f "$out/cert.key" ] || [ ! -f "$out/cert.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=echo" \
    -addext "subjectAltName=DNS:echo,DNS:*.gateway-conformance-mesh.svc.cluster.local" \
    -keyout "$out/cert.key.tmp" -out "$out/cert.crt" 2>/dev/null
  mv "$out/cert.key.tmp" "$out/cert.key"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\napplication:x:1338:1338::/home/application:/sbin/nologin\n' > "$out/passwd"
printf 'root:x:0:\napplication:x:1338:\n' > "$out/group"
cat > "$out/echo-advanced.recipe.tmp" <<RECIPE
--ref $ECHO_IMAGE_REF
--add $out/echo/server=/usr/local/bin/server:0755
--add $out/echo/client=/usr/local/bin/client:0755
--add $out/cert.crt=/cert.crt:0644
--add $out/cert.key=/cert.key:0644
--add $out/passwd=/etc/passwd:0644
--add $out/group=/etc/group:0644
--dir /tmp:1777
--dir /home/application:0755:1338:1338
--entrypoint /usr/local/bin/server
--user 1338:1338
--label org.opencontainers.image.source=istio.io/istio@$ISTIO_ECHO_VERSION/pkg/test/echo
--label dev.weft.built-from-source=true
RECIPE
if [ -f "$out/echo-advanced.tar" ] && cmp -s "$out/echo-advanced.recipe.tmp" "$out/echo-advanced.recipe"; then
  rm "$out/echo-advanced.recipe.tmp"; echo "conformance: echo image cached"
else
  WEFT_IMAGE_TOOL=${WEFT_IMAGE_TOOL:?WEFT_IMAGE_TOOL must name the weft-image binary}
  "$WEFT_IMAGE_TOOL" pack --recipe "$out/echo-advanced.recipe.tmp" --out "$out/echo-advanced.tar.tmp"
  mv "$out/echo-advanced.tar.tmp" "$out/echo-advanced.tar"
  mv "$out/echo-advanced.recipe.tmp" "$out/echo-advanced.recipe"
fi

# pack <name> <recipe text>: packs $out/<name>.tar unless its recipe is unchanged.
pack() {
  printf '%s\n' "$2" > "$out/$1.recipe.tmp"
  if [ -f "$out/$1.tar" ] && cmp -s "$out/$1.recipe.tmp" "$out/$1.recipe"; then
    rm "$out/$1.recipe.tmp"; echo "conformance: $1 image cached"; return
  fi
  "${WEFT_IMAGE_TOOL:?WEFT_IMAGE_TOOL must name the weft-image binary}" pack --recipe "$out/$1.recipe.tmp" --out "$out/$1.tar.tmp"
  mv "$out/$1.tar.tmp" "$out/$1.tar"
  mv "$out/$1.recipe.tmp" "$out/$1.recipe"
}
# What the gateway-api Dockerfile puts in echo-basic: the static binary as the entrypoint.
gateway_images=""
for ref in $ECHO_BASIC_REFS; do
  name="echo-basic-${ref##*:}"
  pack "$name" "--ref $ref
--add $out/echo-basic/echo-basic=/echo-basic:0755
--entrypoint /echo-basic
--label org.opencontainers.image.source=sigs.k8s.io/gateway-api/conformance@$GATEWAY_API_VERSION/echo-basic
--label dev.weft.built-from-source=true"
  gateway_images="$gateway_images $out/$name.tar"
done
pack coredns "--ref registry.k8s.io/coredns/coredns:$CONFORMANCE_COREDNS_VERSION
--add $out/coredns/coredns=/coredns:0755
--file-cap /coredns=cap_net_bind_service
--entrypoint /coredns
--user 65532:65532
--label org.opencontainers.image.source=github.com/coredns/coredns@$CONFORMANCE_COREDNS_VERSION
--label dev.weft.built-from-source=true"
gateway_images="${gateway_images# } $out/coredns.tar"

cat > "$out/env.tmp" <<ENV
WEFT_CONFORMANCE_SUITE=$out/conformance.test
WEFT_CONFORMANCE_ECHO_IMAGE=$out/echo-advanced.tar
WEFT_CONFORMANCE_ECHO_REF=$ECHO_IMAGE_REF
WEFT_CONFORMANCE_GATEWAY_API_VERSION=$GATEWAY_API_VERSION
WEFT_CONFORMANCE_GATEWAY_IMAGES=$gateway_images
ENV
mv "$out/env.tmp" "$out/env"
echo "conformance: tools in $out"
