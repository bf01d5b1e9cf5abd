#!/usr/bin/env bash
# Builds the kai Docker image FROM scratch: the kai binary plus exactly the shared libraries and
# dynamic loader `ldd` says it needs. No registry is involved.
#
#   deploy/build-image.sh [--binary PATH] [--tag TAG]
#
# Without --binary, builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=""
tag="kai:latest"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--tag TAG]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kai-target}"
  if command -v ccache >/dev/null && [ -z "${CC:-}" ]; then
    export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CC="ccache gcc" CXX="ccache g++"
  fi
  cargo build --release -p kai-node --quiet
  binary="$CARGO_TARGET_DIR/release/kai"
fi
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs"
cp "$binary" "$context/rootfs/kai"
# Every library ldd resolves (`name => /path`) and the loader itself (`/lib64/ld-linux…`).
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    mkdir -p "$context/rootfs$(dirname "$lib")"
    cp -L "$lib" "$context/rootfs$lib"
  done
cp deploy/Dockerfile "$context/Dockerfile"
docker build --quiet --tag "$tag" "$context" >/dev/null
echo "built image $tag ($(du -sh "$context/rootfs" | cut -f1) root filesystem)"
