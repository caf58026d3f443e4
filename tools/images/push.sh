#!/usr/bin/env bash
# `make push REGISTRY=host[:port] [TAG=…] [PUSH_FLAGS=…]`: copies the archives of
# `make images` (target/images/<name>.tar) to $REGISTRY/weft/<name>:$TAG with skopeo,
# blobs and manifest byte for byte (--preserve-digests), so the pushed digest is the
# archive's manifest digest. For a plain-HTTP registry: PUSH_FLAGS=--dest-tls-verify=false.
set -euo pipefail
cd "$(dirname "$0")/../.."
REGISTRY=${REGISTRY:?usage: make push REGISTRY=host[:port] [TAG=tag] [PUSH_FLAGS=--dest-tls-verify=false]}
REGISTRY=${REGISTRY%/}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
TAG=${TAG:-$version}
read -r -a flags <<<"${PUSH_FLAGS:-}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for n in controller proxy demo-app; do
  archive="target/images/$n.tar"
  [ -e "$archive" ] || { echo "push: $archive missing; run make images" >&2; exit 1; }
  dest="$REGISTRY/weft/$n:$TAG"
  skopeo copy --quiet --preserve-digests "${flags[@]}" --digestfile "$tmp/$n.digest" \
    "oci-archive:$archive" "docker://$dest"
  echo "push: $dest@$(cat "$tmp/$n.digest")"
done
