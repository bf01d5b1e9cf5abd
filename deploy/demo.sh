#!/usr/bin/env bash
# The Kai docker-compose demo.
#
#   deploy/demo.sh up       build the image (FROM scratch) and start a 3-node cluster
#   deploy/demo.sh five     add kai4 and kai5 to it
#   deploy/demo.sh status   what kai1 thinks of the cluster
#   deploy/demo.sh chaos    write, kill a node, partition a node, heal, restart, verify
#   deploy/demo.sh down     stop it and delete its volumes
#
# Needs docker and docker-compose; talks to the nodes through 127.0.0.1:11211-11213 with bash's
# /dev/tcp, so no memcache client is needed on the host. Dashboards: http://127.0.0.1:11311/
# (kai1), 11312 (kai2), 11313 (kai3). Environment: KAI_IMAGE (image tag), KAI_BINARY (build the
# image from this binary instead of a release build), COMPOSE_PROJECT_NAME, KAI<i>_PORT and
# KAI<i>_ADMIN_PORT (published ports), KAI_ADMIN_TOKEN, KAI_TLS=1 (TLS on the memcache ports and
# between the nodes: certificates from make-certs.sh in deploy/certs/ or KAI_CERTS,
# docker-compose.tls.yml added, the nodes reached through `openssl s_client`).
set -euo pipefail
cd "$(dirname "$0")"
project="${COMPOSE_PROJECT_NAME:-kai}"
export KAI_IMAGE="${KAI_IMAGE:-kai:latest}"
export KAI_CERTS="${KAI_CERTS:-./certs}"
files=(-f docker-compose.yml)
if [ -n "${KAI_TLS:-}" ]; then files+=(-f docker-compose.tls.yml); fi
compose() { docker-compose -p "$project" "${files[@]}" "$@"; }
port() { case "$1" in kai1) echo "${KAI1_PORT:-11211}" ;; kai2) echo "${KAI2_PORT:-11212}" ;; kai3) echo "${KAI3_PORT:-11213}" ;; esac; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# mc_tls NODE COMMAND [DATA]: mc over TLS (then `quit`, so the server ends the session).
mc_tls() {
  local node="$1" command="$2" data="${3-}" request out
  request="$command"$'\r\n'
  if [ -n "$data" ]; then request+="$data"$'\r\n'; fi
  out="$(printf '%squit\r\n' "$request" | timeout 5 openssl s_client -quiet -verify_return_error \
    -connect "127.0.0.1:$(port "$node")" -CAfile "$KAI_CERTS/ca.pem" 2>/dev/null)" || true
  out="${out//$'\r'/}"
  if [[ "$out" == VALUE* ]]; then out="${out#*$'\n'}"; fi
  printf '%s\n' "${out%%$'\n'*}"
}

# mc NODE COMMAND [DATA]: one memcache request; prints the first reply line (empty if none).
mc() {
  local node="$1" command="$2" data="${3-}" reply=""
  if [ -n "${KAI_TLS:-}" ]; then mc_tls "$@"; return 0; fi
  exec 3<>"/dev/tcp/127.0.0.1/$(port "$node")" || { echo "(cannot connect)"; return 0; }
  if [ -n "$data" ]; then printf '%s\r\n%s\r\n' "$command" "$data" >&3; else printf '%s\r\n' "$command" >&3; fi
  IFS= read -r -t 5 reply <&3 || true
  if [[ "$reply" == VALUE* ]]; then IFS= read -r -t 5 reply <&3 || true; fi
  exec 3>&-
  printf '%s\n' "${reply%$'\r'}"
}

set_key() { mc "$1" "set $2 0 0 ${#3}" "$3"; }
get_key() { mc "$1" "get $2"; }

wait_healthy() {
  local node
  for node in "$@"; do
    printf 'waiting for %s' "$node"
    for _ in $(seq 1 120); do
      if docker exec "$project-$node" /kai healthcheck --ready >/dev/null 2>&1; then echo " ok"; continue 2; fi
      printf '.'; sleep 1
    done
    echo " gave up"; return 1
  done
}

# first_line COMMAND…: the first line COMMAND prints, whatever its exit status. (Piping into
# `head -1` would end COMMAND with SIGPIPE, and pipefail would then abort the demo.)
first_line() {
  local out
  out="$("$@" 2>&1)" || true
  printf '%s\n' "${out%%$'\n'*}"
}

check_all() { # check_all PREFIX COUNT NODE: every key readable through NODE
  local prefix="$1" count="$2" node="$3" bad=0 i
  for i in $(seq 1 "$count"); do
    [ "$(get_key "$node" "$prefix$i")" = "v$i" ] || bad=$((bad + 1))
  done
  echo "$node reads $((count - bad))/$count keys correctly"
  [ "$bad" -eq 0 ]
}

case "${1:-}" in
  up)
    if [ -n "${KAI_TLS:-}" ] && [ ! -f "$KAI_CERTS/kai5.pem" ]; then ./make-certs.sh "$KAI_CERTS" kai1 kai2 kai3 kai4 kai5; fi
    ./build-image.sh ${KAI_BINARY:+--binary "$KAI_BINARY"} --tag "$KAI_IMAGE"
    compose up -d kai1 kai2 kai3
    wait_healthy kai1 kai2 kai3
    docker exec "$project-kai1" /kai status
    ;;
  five)
    compose --profile five up -d kai4 kai5
    wait_healthy kai4 kai5
    docker exec "$project-kai1" /kai status
    ;;
  status)
    docker exec "$project-kai1" /kai status
    ;;
  chaos)
    say "1. write 100 keys through kai1"
    for i in $(seq 1 100); do set_key kai1 "demo$i" "v$i" >/dev/null; done
    check_all demo 100 kai3
    say "2. docker kill kai3: reads and writes continue on kai1 and kai2 (2 of 3 is a quorum)"
    docker kill "$project-kai3" >/dev/null
    echo "set through kai2: $(set_key kai2 during-kill yes)"
    echo "get through kai1: $(get_key kai1 during-kill)"
    check_all demo 100 kai2
    say "3. restart kai3: it rejoins and catches up"
    compose start kai3 >/dev/null
    wait_healthy kai3
    echo "get through kai3: $(get_key kai3 during-kill)"
    check_all demo 100 kai3
    say "4. partition kai2 from the others (docker network disconnect)"
    docker network disconnect "${project}_kai" "$project-kai2"
    printf 'waiting for kai2 to notice it lost its majority'
    for _ in $(seq 1 60); do
      docker exec "$project-kai2" /kai healthcheck --ready >/dev/null 2>&1 || break
      printf '.'; sleep 1
    done
    echo
    echo "set through kai1: $(set_key kai1 during-partition yes)"
    echo "get through kai3: $(get_key kai3 during-partition)"
    echo "kai2's own view (it refuses requests while it cannot see a majority):"
    first_line docker exec "$project-kai2" /kai status
    say "5. heal the partition"
    docker network connect "${project}_kai" "$project-kai2"
    wait_healthy kai2
    echo "get through kai2: $(get_key kai2 during-partition)"
    check_all demo 100 kai2
    say "6. cluster status"
    docker exec "$project-kai1" /kai status
    say "no acknowledged write was lost"
    ;;
  down)
    compose --profile five down -v --remove-orphans
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
