#!/usr/bin/env bash
# Stages the iptables part of the weft/proxy image from Debian packages:
#   iptables-rootfs.sh <pins-file> <deb-cache-dir> <out-dir>
# Downloads the pinned .debs (apt-get download, cached in <deb-cache-dir>), extracts
# them (dpkg-deb -x), and copies into <out-dir> only what `weft-proxy init` needs:
# xtables-nft-multi and xtables-legacy-multi, the ip(6)tables-{nft,legacy}{,-save,-restore}
# symlinks the iptables package ships, the xtables extensions, the ELF interpreter and the
# closure of shared libraries `ldd` reports, and each package's copyright file.
# Nothing here is a shell or a package manager. Idempotent: <out-dir> is rebuilt.
set -euo pipefail
pins=${1:?pins file}; debs=${2:?deb cache dir}; out=${3:?out dir}
mkdir -p "$debs"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ext="$work/extract"; mkdir -p "$ext"

deb_for() { # <pkg> <version>: the cached .deb of exactly that version, if any
  local f
  for f in "$debs/$1"_*.deb; do
    [ -f "$f" ] && [ "$(dpkg-deb -f "$f" Package)" = "$1" ] && [ "$(dpkg-deb -f "$f" Version)" = "$2" ] \
      && { echo "$f"; return 0; }
  done
  return 1
}

updated=0
while read -r pkg ver _; do
  case "$pkg" in ''|'#'*) continue;; esac
  if ! f=$(deb_for "$pkg" "$ver"); then
    echo "images: downloading $pkg=$ver into $debs"
    if ! (cd "$debs" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1); then
      if [ "$updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; updated=1; fi
      (cd "$debs" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1) || {
        served=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2}')
        echo "images: $pkg=$ver cannot be downloaded (Debian serves ${served:-nothing}); update $pins" >&2
        exit 1; }
    fi
    f=$(deb_for "$pkg" "$ver") || { echo "images: downloaded $pkg is not version $ver" >&2; exit 1; }
  fi
  dpkg-deb -x "$f" "$ext"
  mkdir -p "$work/copyright/$pkg"
  cp "$ext/usr/share/doc/$pkg/copyright" "$work/copyright/$pkg/copyright"
done < "$pins"

# Resolves a path inside the extracted tree, following symlinks (absolute ones too)
# without ever leaving it.
resolve() {
  local p=$1 t n=0
  while [ -L "$ext/$p" ]; do
    t=$(readlink "$ext/$p")
    case "$t" in /*) p=${t#/};; *) p=$(dirname "$p")/$t;; esac
    n=$((n + 1)); [ "$n" -lt 40 ] || { echo "images: symlink loop at $1" >&2; exit 1; }
  done
  [ -f "$ext/$p" ] || { echo "images: $1 is not in the extracted packages" >&2; exit 1; }
  echo "$p"
}

rm -rf "$out.tmp"; mkdir -p "$out.tmp"
copy() { # <path in image>: the file's content at that path (symlinks resolved in-tree)
  local src; src=$(resolve "$1")
  mkdir -p "$out.tmp/$(dirname "$1")"
  cp "$ext/$src" "$out.tmp/$1"
}

libdirs=(lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu)
find_lib() { # <soname>: its path in the extracted tree
  local d
  for d in "${libdirs[@]}"; do
    if [ -e "$ext/$d/$1" ] || [ -L "$ext/$d/$1" ]; then echo "$d/$1"; return 0; fi
  done
  echo "images: no package in $pins provides $1 (add it)" >&2; exit 1
}

copy usr/sbin/xtables-nft-multi
copy usr/sbin/xtables-legacy-multi
for f in "$ext"/usr/lib/x86_64-linux-gnu/xtables/*.so; do
  copy "usr/lib/x86_64-linux-gnu/xtables/$(basename "$f")"
done
for v in iptables ip6tables; do
  for b in nft legacy; do
    for s in "" -save -restore; do
      l="usr/sbin/$v-$b$s"
      [ -L "$ext/$l" ] || { echo "images: iptables package has no $l symlink" >&2; exit 1; }
      ln -s "$(readlink "$ext/$l")" "$out.tmp/$l"
    done
  done
done

# Shared-library closure: ldd every staged ELF file until nothing new appears.
declare -A have=()
changed=1
while [ "$changed" = 1 ]; do
  changed=0
  while IFS= read -r -d '' f; do
    while read -r first arrow _; do
      case "$first" in
        linux-vdso.so.*|'') continue;;
        /*) lib=${first#/}; lib=${lib%% *};;            # the ELF interpreter
        *) [ "$arrow" = "=>" ] || continue; lib=$(find_lib "$first");;
      esac
      [ -n "${have[$lib]:-}" ] && continue
      have[$lib]=1; changed=1
      [ -e "$out.tmp/$lib" ] || copy "$lib"
    done < <(ldd "$f" 2>/dev/null || true)
  done < <(find "$out.tmp" -type f -print0)
done
[ -e "$out.tmp/lib64/ld-linux-x86-64.so.2" ] || { echo "images: ELF interpreter not staged" >&2; exit 1; }

mkdir -p "$out.tmp/usr/share/doc"
cp -r "$work/copyright/." "$out.tmp/usr/share/doc/"
chmod -R u+w,go-w "$out.tmp"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "images: staged iptables rootfs in $out ($(find "$out" -type f | wc -l) files, $(du -sh "$out" | cut -f1))"
