#!/usr/bin/env bash
# Proves the README's two commands work on a fresh machine: a clean Debian root filesystem made
# with debootstrap (minbase: no compiler, no Python, no certificates), this host's Rust toolchain
# copied in and nothing else, imported into docker (no registry involved). In a throwaway
# container it checks, for the committed tree (HEAD, via `git archive`):
#   1. as a user who may not install (not root, no sudo): scripts/test refuses, exit status 1,
#      and prints the apt-get command naming every missing package;
#   2. as root, in a new container: scripts/run installs what building needs, builds, and the
#      node it starts stores and returns a value over the memcache port;
#   3. as root, in a new container: scripts/test installs everything itself and the suite passes.
# Then it prints how long step 3 took and the test counts (log in $KAI_FRESH_DIR/test.log).
# Docker-in-docker is not set up, so the docker demo test skips itself (as it says, on its
# stderr, which cargo shows only for failing tests).
#
#   scripts/fresh-machine-check.sh                 # the whole suite
#   scripts/fresh-machine-check.sh --test admin    # arguments go to scripts/test (cargo test)
#
# Step 3 runs `scripts/test --no-fail-fast`, so one failing test binary does not hide the rest.
#
# Needs root (debootstrap), debootstrap and docker. Environment:
#   KAI_FRESH_DIR      work directory (default ~/.cache/kai-fresh): rootfs and target dir while
#                      running; the test log and the tests' files (target-tmp/) stay
#   KAI_FRESH_RELEASE  Debian release (default: this host's VERSION_CODENAME)
#   KAI_FRESH_REBUILD=1  debootstrap again even if the image exists
#   KAI_FRESH_CCACHE=0   do not mount this host's CCACHE_DIR (RocksDB then builds cold, ~30 min)
#   KAI_FRESH_NETNS=0  without NET_ADMIN and SYS_ADMIN (the network-namespace test then skips itself)
#   CARGO_PROFILE_DEV_DEBUG=0  passed on: test binaries without debug info (far less disk)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="${KAI_FRESH_DIR:-$HOME/.cache/kai-fresh}"
release="${KAI_FRESH_RELEASE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}"
image="kai-fresh:$release"
mirror=http://deb.debian.org/debian

die() { echo "fresh-machine-check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap)"
[ -n "$release" ] || die "cannot tell this host's Debian release; set KAI_FRESH_RELEASE"
command -v debootstrap >/dev/null || die "needs debootstrap (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || die "needs a working docker"
command -v rustup >/dev/null || die "needs rustup (its toolchain is copied in)"
mkdir -p "$work"

# The image: debootstrap minbase plus the active Rust toolchain under /root, as rustup installs it.
if [ "${KAI_FRESH_REBUILD:-0}" = 1 ] || ! docker image inspect "$image" >/dev/null 2>&1; then
  rootfs="$work/rootfs"
  rm -rf "$rootfs"
  echo "fresh-machine-check: debootstrap $release (minbase) into $rootfs"
  debootstrap --variant=minbase "$release" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $work/debootstrap.log"
  toolchain=$(rustup show active-toolchain | cut -d' ' -f1)
  echo "fresh-machine-check: copying Rust toolchain $toolchain"
  cargo_home="${CARGO_HOME:-$HOME/.cargo}"
  mkdir -p "$rootfs/root/.rustup/toolchains" "$rootfs/root/.cargo"
  cp -a "$(rustc --print sysroot)" "$rootfs/root/.rustup/toolchains/$toolchain"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "default"\n' "$toolchain" \
    >"$rootfs/root/.rustup/settings.toml"
  cp -a "$cargo_home/bin" "$cargo_home/env" "$rootfs/root/.cargo/"
  echo "fresh-machine-check: importing $image"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/root' - "$image" >/dev/null
  rm -rf "$rootfs"
fi

commit=$(git -C "$root" rev-parse --short HEAD)
git -C "$root" diff --quiet HEAD || echo "fresh-machine-check: note: uncommitted changes are not checked (HEAD $commit is)"
source_tar="$work/source.tar"
git -C "$root" archive --format=tar -o "$source_tar" HEAD

# 1. A user who may not install: the exact apt-get command, exit status 1.
echo "fresh-machine-check: 1. scripts/test as a user without root or sudo"
set +e
refusal=$(docker run --rm -i "$image" bash -c '
  set -e
  useradd --create-home kai
  chmod 755 /root   # the toolchain under /root is readable, as a shared one would be
  mkdir /kai && tar -x -C /kai && chown -R kai /kai
  exec su kai -c "PATH=$PATH /kai/scripts/test"' <"$source_tar" 2>&1)
status=$?
set -e
echo "$refusal" | sed 's/^/    /'
[ "$status" -eq 1 ] || die "expected exit status 1 from scripts/test without permission, got $status"
source "$root/scripts/prereqs.sh"
for p in "${KAI_BUILD_PACKAGES[@]}" "${KAI_TEST_PACKAGES[@]}"; do
  echo "$refusal" | grep -q "sudo apt-get install -y .*\\b$p\\b" || die "the refusal does not name $p"
done

# Steps 2 and 3 run as root in containers of their own, niced (the host is shared), each with a
# new, empty target directory on the host's disk (faster than the container's overlay), removed
# afterwards but for the tests' files (the dashboard's screenshots): $work/target-tmp.
as_root=(docker run --rm -i --shm-size=1g -v "$work/target:/root/.cache/kai-target")
# The capabilities network namespaces and iptables need (root on a real machine has them).
[ "${KAI_FRESH_NETNS:-1}" = 1 ] && as_root+=(--cap-add NET_ADMIN --cap-add SYS_ADMIN)
if [ "${KAI_FRESH_CCACHE:-1}" = 1 ]; then
  ccache_dir="${CCACHE_DIR:-$HOME/.cache/ccache}"
  mkdir -p "$ccache_dir"
  as_root+=(-v "$ccache_dir:/root/.cache/ccache")
  echo "fresh-machine-check: mounting this host's ccache ($ccache_dir): RocksDB's C++ may come from it"
fi
# Certificate authorities this host added locally (Debian's place for them; e.g. a proxy that
# intercepts TLS) are trusted in the container too, once scripts/* install ca-certificates:
# without them crates.io and PyPI are unreachable from such a network.
local_cas=/usr/local/share/ca-certificates
if compgen -G "$local_cas/*.crt" >/dev/null; then
  as_root+=(-v "$local_cas:$local_cas:ro")
  echo "fresh-machine-check: the containers trust this host's local CAs ($local_cas)"
fi
# Debug info is most of a test build's disk: CARGO_PROFILE_DEV_DEBUG=0 where disk is short.
if [ -n "${CARGO_PROFILE_DEV_DEBUG:-}" ]; then
  as_root+=(-e "CARGO_PROFILE_DEV_DEBUG=$CARGO_PROFILE_DEV_DEBUG")
  echo "fresh-machine-check: CARGO_PROFILE_DEV_DEBUG=$CARGO_PROFILE_DEV_DEBUG"
fi
new_target() { rm -rf "$work/target"; mkdir -p "$work/target"; }
trap 'rm -rf "$work/target"' EXIT

# 2. scripts/run: build, start, one set and get, stop.
echo "fresh-machine-check: 2. scripts/run as root"
new_target
start=$(date +%s)
"${as_root[@]}" --name "kai-fresh-run-$$" "$image" bash -c '
  set -eu
  mkdir /kai && tar -x -C /kai && cd /tmp
  nice -n 10 /kai/scripts/run --data-dir /tmp/kai-data >/tmp/run.out 2>/tmp/run.err &
  node=$!
  until grep -qs "^kai ready" /tmp/run.out; do
    kill -0 $node 2>/dev/null || { tail -20 /tmp/run.err; echo "scripts/run exited"; exit 1; }
    sleep 5
  done
  cat /tmp/run.out
  exec 3<>/dev/tcp/127.0.0.1/11211
  cr=$(printf "\r")
  printf "set greeting 0 0 5\r\nhello\r\nget greeting\r\n" >&3
  for expected in STORED "VALUE greeting 0 5" hello END; do
    IFS= read -r -t 10 line <&3
    [ "${line%"$cr"}" = "$expected" ] || { echo "expected $expected, got $line"; exit 1; }
    echo "memcache: $expected"
  done
  kill -TERM $node && wait $node' <"$source_tar" || die "scripts/run did not serve; see above"
echo "fresh-machine-check: scripts/run built and served in $(($(date +%s) - start))s"

# 3. scripts/test: installs the test prerequisites and runs the suite.
echo "fresh-machine-check: 3. scripts/test as root ($commit; arguments: ${*:-none})"
new_target
log="$work/test.log"
start=$(date +%s)
set +e
"${as_root[@]}" --name "kai-fresh-test-$$" "$image" \
  bash -c 'mkdir /kai && tar -x -C /kai && exec nice -n 10 /kai/scripts/test "$@"' \
  scripts/test --no-fail-fast "$@" <"$source_tar" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))
rm -rf "$work/target-tmp"
[ -d "$work/target/tmp" ] && mv "$work/target/tmp" "$work/target-tmp"
counts=$(awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed", p, f }' "$log")
echo "fresh-machine-check: debian $release minbase, $(rustc --version | cut -d' ' -f1-2), HEAD $commit"
echo "fresh-machine-check: scripts/test exit status $status in $((elapsed / 60))m$((elapsed % 60))s: tests $counts (log: $log)"
exit "$status"
