#!/usr/bin/env bash
# Mutation check: plants deliberate bugs, one at a time, in a copy of the tree and runs the test
# named to catch each. Every mutant must make its test fail; a mutant that survives (or no longer
# applies because the code moved) fails the check. The table of mutants and catching tests is in
# docs/reliability.md.
#
#   scripts/mutants.sh            all mutants
#   scripts/mutants.sh NAME...    only those
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work="${KAI_MUTANTS_DIR:-${TMPDIR:-/tmp}/kai-mutants}"
# A target dir of its own: the mutated `kai` binary must never replace the real one.
main_target="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="${KAI_MUTANTS_TARGET:-$HOME/.cache/kai-target-mutants}"
# Link the RocksDB library the normal build already compiled instead of compiling it again.
if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
  built=$(ls -t "$main_target"/debug/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -1 || true)
  if [ -n "$built" ]; then
    export ROCKSDB_LIB_DIR="${built%/*}" ROCKSDB_STATIC=1
  fi
fi
export CARGO_TERM_COLOR=never

# name | test target | test name | file | exact code to replace | replacement [| file | code | replacement …]
# (fields are separated by '|': in code, '\p' stands for '|' and '\&' for '&')
mutants=(
  "no-read-write-back|in_process_cluster|reads_repair_a_replica_that_missed_writes|kai-actors/src/coordinator.rs|if let Some((record, short)) = decision.write_back {|if let (Some((record, short)), true) = (decision.write_back, false) {"
  "stale-ring-fence-disabled|lib|fence::tests|kai-actors/src/fence.rs|if ring < *adopted {|if ring < *adopted \&\& false {"
  "minority-fence-disabled|in_process_cluster|a_cut_off_minority_refuses_writes_its_own_owners_could_acknowledge|kai-actors/src/fence.rs|if !self.majority.load(Ordering::Relaxed) {|if !self.majority.load(Ordering::Relaxed) \&\& false {"
  "ack-before-wal|durability|acknowledged_writes_survive_killing_every_node|kai-actors/src/store/rocks.rs|write_options.set_sync(fsync);|write_options.set_sync(fsync); write_options.disable_wal(true);"
  "adopt-without-wipe|lib|sync::plan|kai-actors/src/sync/plan.rs|Some((latest, _)) if *latest > already_adopted => new_buckets(rings, me),|Some((latest, _)) if *latest > already_adopted => Vec::new(),"
  "gc-without-all-owners|safe_movement|tombstones_are_not_purged_while_an_owner_is_unreachable|kai-actors/src/sync/actor.rs|let theirs = mover.digest_of(*peer, bucket).await?;|let Ok(theirs) = mover.digest_of(*peer, bucket).await else { continue };|kai-actors/src/sync/mover.rs|self.call(*node, request).await?;|let _ = self.call(*node, request).await;"
  "r-w-one|in_process_cluster|without_a_quorum_operations_fail_instead_of_answering_stale|kai-actors/src/quorum.rs|let needed = needed.min(members.len());|let needed = needed.min(members.len()).min(1);"
  "add-ignores-present-value|cluster|histories_are_linearizable_while_nodes_are_killed_and_paused|kai-proto/src/change.rs|(Change::Add(v), None) \p (Change::Replace(v), Some(_))|(Change::Add(v), _) \p (Change::Replace(v), Some(_))"
  "flush-mask-disabled|single_node|flush_all_empties_the_cache_and_later_writes_survive_it|kai-actors/src/flush.rs|kai_proto::flush::masked(self.current(), record)|kai_proto::flush::masked(None, record)"
  "recache-win-twice|meta_protocol|stale_while_revalidate_answers_like_memcached|kai-proto/src/change/meta.rs|let won = !item.state.win_sent \&\& (|let won = (|kai-actors/src/listener/meta.rs|(!state.win_sent \&\& (state.stale|((state.stale"
  "recache-win-unstamped|lib|paxos::tests|kai-actors/src/paxos.rs|state.winner = Some(ballot);|state.winner = None;"
  "recache-win-raced|cluster|histories_are_linearizable_while_nodes_are_killed_and_paused|kai-proto/src/change/meta.rs|let won = !item.state.win_sent \&\& (|let won = ("
  "rewrite-changes-cas|lib|paxos::tests|kai-actors/src/paxos.rs|cas: Some(latest.cas_unique()),|cas: latest.state().cas,"
  "rollback-undetected|safe_movement|a_data_dir_restored_from_a_backup_refills_before_it_serves|kai-actors/src/membership/catchup.rs|theirs.newer_than(mine))|(theirs.newer_than(mine) \&\& false))"
  "retry-mints-new-version|lib|coordinator::tests|kai-actors/src/coordinator.rs|let record = match minted.get() {|let record = match None::<\&Record> {|kai-actors/src/coordinator.rs|.get_or_init(\p\p Record::value(tag, flags, expires_at, data))|.get_or_init(\p\p Record::value(tag, flags, expires_at, data.clone())); Record::value(tag, flags, expires_at, data)"
  "stale-pull-completes|lib|sync::transition|kai-actors/src/sync/transition.rs|if generation == self.generation \&\& self.progress.unpulled.remove(\&bucket.0) {|if self.progress.unpulled.remove(\&bucket.0) {"
)

selected=("$@")
wanted() {
  [ "${#selected[@]}" -eq 0 ] && return 0
  local s
  for s in "${selected[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# Replaces exactly one occurrence of $2 with $3 in file $1; fails if $2 is not there exactly once.
plant() {
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
def unescape(code):
    return code.replace("\\&", "&").replace("\\p", "|")
path, old, new = sys.argv[1], unescape(sys.argv[2]), unescape(sys.argv[3])
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"mutant does not apply: {old!r} occurs {text.count(old)} times in {path}")
open(path, "w").write(text.replace(old, new))
EOF
}

survivors=()
for entry in "${mutants[@]}"; do
  IFS='|' read -r -a fields <<<"$entry"
  name=${fields[0]} target=${fields[1]} test=${fields[2]}
  wanted "$name" || continue
  rm -rf "$work"
  mkdir -p "$work"
  # The working tree as it is (committed or not), without build products.
  tar -C "$root" --exclude=./target --exclude=./.git -cf - . | tar -C "$work" -xf -
  planted=true
  for ((i = 3; i + 2 < ${#fields[@]}; i += 3)); do
    plant "$work/${fields[i]}" "${fields[i + 1]}" "${fields[i + 2]}" || planted=false
  done
  if ! $planted; then
    survivors+=("$name (does not apply)")
    continue
  fi
  if [ "$target" = lib ]; then
    args=(-p kai-actors --lib "$test")
  else
    args=(-p kai-node --test "$target" "$test")
  fi
  echo "mutants: $name — expecting cargo test ${args[*]} to fail"
  if (cd "$work" && cargo test "${args[@]}" >"$work.log" 2>&1); then
    echo "mutants: $name SURVIVED"
    tail -20 "$work.log"
    survivors+=("$name")
  elif grep -q "test result: FAILED" "$work.log"; then
    echo "mutants: $name caught by $test"
  else
    echo "mutants: $name broke the build instead of a test"
    tail -20 "$work.log"
    survivors+=("$name (build failed)")
  fi
done
rm -rf "$work"

if [ "${#survivors[@]}" -gt 0 ]; then
  echo "mutants: not caught: ${survivors[*]}"
  exit 1
fi
echo "mutants: every mutant was caught"
