#!/usr/bin/env bash
# Instruction profile of the replicated path: a 3-node cluster (N:R:W = 3:2:2) on loopback with
# one node under valgrind's callgrind. Instruction counts do not depend on the machine's load,
# so before/after comparisons are meaningful on a busy machine.
#
#   scripts/profile-cluster.sh [coordinator|replica] [seconds] [out-dir]
#
# coordinator (default): clients talk only to the profiled node, which coordinates every
#                        request and is one of the replicas.
# replica              : clients talk to the two other nodes; the profiled node only serves their
#                        replica requests.
# Load: `kai bench`, closed loop, 8 connections, 90% get / 10% set, 100-byte values, 10,000
# keys, for the given time (default 20 s). Prints the instructions per client operation and the
# top functions (inclusive and self); leaves callgrind.out in out-dir. Anti-entropy is slowed to
# once an hour: its cost is per second, not per request, and valgrind's slowness (a few hundred
# requests per second) would inflate its share a hundredfold.
set -euo pipefail
cd "$(dirname "$0")/.."
role="${1:-coordinator}"
seconds="${2:-20}"
out="${3:-$(mktemp -d)}"
mkdir -p "$out"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kai-target}"
if command -v ccache >/dev/null && [ -z "${CC:-}" ]; then
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CC="ccache gcc" CXX="ccache g++"
fi
# KAI=path/to/kai profiles that binary instead (e.g. a copy of an earlier build, for before/after).
if [ -z "${KAI:-}" ]; then
  cargo build --release -p kai-node --quiet
fi
kai="${KAI:-$CARGO_TARGET_DIR/release/kai}"
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

p=(); c=()
for i in 0 1 2; do p+=("$(free_port)"); c+=("$(free_port)"); done
seeds="127.0.0.1:${p[0]},127.0.0.1:${p[1]},127.0.0.1:${p[2]}"
for i in 0 1 2; do
  launcher=()
  if [ "$i" = 0 ]; then
    launcher=(valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" --dump-instr=no)
  fi
  "${launcher[@]}" "$kai" start --data-dir "$work/n$i" --listen "127.0.0.1:${c[$i]}" \
    --peer-listen "127.0.0.1:${p[$i]}" --set "seeds=$seeds" --set n=3 --set r=2 --set w=2 \
    --set worker_threads=1 --set request_timeout=10s --set down_after=10m --set anti_entropy_interval=1h \
    --set admin_listen=127.0.0.1:0 \
    >"$work/n$i.out" 2>"$work/n$i.log" &
  pids+=("$!")
done
stat() { python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(b"stats\r\n"); data = b""
while not data.endswith(b"END\r\n"):
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
for line in data.decode().splitlines():
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[1] == sys.argv[2]: print(parts[2])
PY
}
for i in 0 1 2; do
  for _ in $(seq 1 1200); do
    [ "$(stat "${c[$i]}" kai_rings_active 2>/dev/null)" = 1 ] && break
    sleep 0.1
  done
done
if [ "$role" = coordinator ]; then targets="127.0.0.1:${c[0]}"; else targets="127.0.0.1:${c[1]},127.0.0.1:${c[2]}"; fi
# Store the keys, then count only the measured operations.
"$kai" bench --target "$targets" --connections 8 --duration 1s --warmup 0s --quiet >/dev/null
callgrind_control --zero "${pids[0]}" >/dev/null
result="$("$kai" bench --target "$targets" --connections 8 --no-prefill --warmup 0s --json --quiet \
  --duration "${seconds}s" --timeout 30s)"
callgrind_control --dump "${pids[0]}" >/dev/null
measured_ops="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ops"])' "$result")"
errors="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$result")"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
# The counts from --zero to --dump are in the numbered dump file (callgrind.out is what ran after).
dump="$(ls -t "$out"/callgrind.out.* | head -1)"
total="$(callgrind_annotate "$dump" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) (100.0%) *PROGRAM TOTALS.*/\1/p' | tr -d ,)"
echo "role $role: $measured_ops client operations ($errors errors), $total instructions on the profiled node"
echo "instructions per client operation: $(( total / measured_ops ))"
echo
echo "top functions by inclusive cost:"
callgrind_annotate --threshold=100 --inclusive=yes "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | sed -n '1,80p'
echo
echo "top functions by self cost:"
callgrind_annotate --threshold=100 "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | sed -n '1,40p'
echo "(full profile: $dump)"
