#!/usr/bin/env bash
# Measures memcached and Kai under the same load, in one run on this machine, and prints the ratio.
#
#   scripts/bench-compare.sh [single|cluster] [duration]
#
# single  (default): memcached -t 2 versus one Kai node on RocksDB.
# cluster          : memcached -t 2 versus a 3-node Kai cluster (N:R:W = 3:2:2), clients spread
#                    over the three nodes. Three nodes share two cores here, so each runs one
#                    worker thread (worker_threads=1) instead of one per core.
# Then both are measured at a fixed offered load of half Kai's 32-connection throughput, for
# latency percentiles away from saturation. Extra node flags: BENCH_KAI_ARGS="--set key=value".
# Load: 90% get / 10% set, 100-byte values, 10,000 keys, 16/32/64 connections (closed loop).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-single}"
duration="${2:-10s}"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kai-target}"
# Same compiler settings as .ci/run, so the shared target directory's RocksDB build is reused.
if command -v ccache >/dev/null && [ -z "${CC:-}" ]; then
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CC="ccache gcc" CXX="ccache g++"
fi
cargo build --release -p kai-node --quiet
kai="$CARGO_TARGET_DIR/release/kai"
command -v memcached >/dev/null || { echo "memcached is needed: apt-get install memcached" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a kai node; prints its memcache address once it is ready.
start_kai() {
  local name="$1"; shift
  "$kai" start --data-dir "$work/$name" --set admin_listen=127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=("$!")
  for _ in $(seq 1 600); do
    if grep -q "kai ready" "$work/$name.out" 2>/dev/null; then
      sed -n 's/.*memcache=\([^ ]*\).*/\1/p' "$work/$name.out"; return 0
    fi
    sleep 0.1
  done
  echo "kai $name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}

mc_port="$(free_port)"
memcached -t 2 -p "$mc_port" -U 0 -m 1024 -u "$(id -un)" &
pids+=("$!")
memcached_target="127.0.0.1:$mc_port"

case "$mode" in
  single)
    kai_target="$(start_kai kai1 --listen 127.0.0.1:0 --peer-listen "127.0.0.1:$(free_port)")"
    ;;
  cluster)
    p1="$(free_port)"; p2="$(free_port)"; p3="$(free_port)"
    seeds="127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3"
    targets=()
    for i in 1 2 3; do
      port_var="p$i"
      targets+=("$(start_kai "kai$i" --listen 127.0.0.1:0 --peer-listen "127.0.0.1:${!port_var}" \
        --set "seeds=$seeds" --set n=3 --set r=2 --set w=2 --set worker_threads=1 ${BENCH_KAI_ARGS:-})")
    done
    kai_target="$(IFS=,; echo "${targets[*]}")"
    ;;
  *) echo "usage: $0 [single|cluster] [duration]" >&2; exit 2 ;;
esac

sleep 1
report() {
  python3 - "$@" <<'PY'
import json, sys
load, mc, ka, mode = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
for name, r in (("memcached", mc), ("kai-" + mode, ka)):
    ratio = r["ops_per_sec"] / mc["ops_per_sec"]
    print(f'{name:<13} {load:<14} {r["ops_per_sec"]:>9.0f} {r["p50_us"]:>8} {r["p99_us"]:>8} {r["p999_us"]:>9} {ratio:>6.2f}')
PY
}
printf '%-13s %-14s %9s %8s %8s %9s %6s\n' server load ops/s p50_us p99_us p99.9_us ratio
kai32=0
for conns in 16 32 64; do
  mc="$("$kai" bench --target "$memcached_target" --connections "$conns" --duration "$duration" --json)"
  ka="$("$kai" bench --target "$kai_target" --connections "$conns" --duration "$duration" --json)"
  report "$conns conns" "$mc" "$ka" "$mode"
  [ "$conns" = 32 ] && kai32="$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["ops_per_sec"]))' "$ka")"
done
half=$((kai32 / 2))
mc="$("$kai" bench --target "$memcached_target" --connections 32 --rate "$half" --duration "$duration" --json)"
ka="$("$kai" bench --target "$kai_target" --connections 32 --rate "$half" --duration "$duration" --json)"
report "$half/s offered" "$mc" "$ka" "$mode"
