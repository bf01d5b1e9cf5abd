//! A linearizability checker for histories of a key-value register (Wing & Gong's search with
//! Lowe's memoisation), run per key.
//!
//! Operations: `Set(v)`, `Delete` (returning whether a value existed) and `Get` (returning the
//! value seen), and memcached's read-modify-writes with their meaning: `add` stores only on an
//! absent key, `cas` only if the current value is the one its `gets` saw (test values are unique
//! per write, so a value names its version), `append` only on a present key, `incr`/`decr` on a
//! decimal value (64-bit, `incr` wraps, `decr` floors at 0), `touch` answers whether the key
//! exists, and `flush_all` (recorded once per key it covers) deletes. A delete is checked as a write of "absent" plus a read of whether the key existed,
//! each placed anywhere within the delete's interval: the write is atomic, the answer is what a
//! read inside the operation saw (two concurrent deletes of one value may both say "existed";
//! making that atomic would take consensus). An operation whose outcome is unknown (error or timeout) is kept only if it is a
//! write: it may have taken effect at any point after its invocation, or never. Unknown reads are
//! dropped (they constrain nothing).
//!
//! The register also holds the meta protocol's stale-while-revalidate marks of its item: stale
//! (`md … I` sets it) and win sent. A meta `mg` hands out the recache win (`W`) exactly when the
//! item is stale or qualifies for recache (`R`), and no win was sent since it was last
//! invalidated or written; `N` vivifies a miss into an empty item whose win goes to that `mg`.
//! Every answer is checked exactly: the value, `W`, `X` (stale) and `Z` (win sent to another
//! client). A write (set, add, cas, append, incr/decr) clears both marks; touch keeps them.
//!
//! The search linearizes operations one at a time; an operation can come next if it was invoked
//! before every not-yet-linearized operation returned. It succeeds once every operation with a
//! known outcome is placed. Visited `(placed set, register value)` pairs are cached.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

/// What an operation did and saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Stored a value.
    Set(String),
    /// Deleted; `Some(existed)` if the outcome is known.
    Delete(Option<bool>),
    /// Read; the value seen.
    Get(Option<String>),
    /// Read of whether the key exists (the answer of a delete; see [`check`]).
    Exists(bool),
    /// `add`; `Some(stored)` if the outcome is known.
    Add(String, Option<bool>),
    /// `cas` of the version whose value was `expected` to `value`; the answer if known.
    Cas {
        /// The value the `gets` before it returned.
        expected: String,
        /// The new value.
        value: String,
        /// `STORED`, `EXISTS` or `NOT_FOUND`, if known.
        outcome: Option<CasOutcome>,
    },
    /// `append`; `Some(stored)` if the outcome is known.
    Append(String, Option<bool>),
    /// `incr` (positive) or `decr` (negative) by the delta; the answer if known.
    Arith(i64, Option<ArithOutcome>),
    /// `touch`; `Some(touched)` if the outcome is known.
    Touch(Option<bool>),
    /// `flush_all`, as seen by this key.
    Flush,
    /// Meta `mg … v` of the stale-while-revalidate family; the answer if known.
    MetaGet {
        /// `N`: a miss creates an empty item and wins.
        vivify: bool,
        /// `R` with a limit beyond the item's expiry: a live item qualifies for the win (the
        /// history clients give every item of such keys an expiry before that limit).
        recache: bool,
        /// The answer, if known.
        outcome: Option<MetaGetOutcome>,
    },
    /// Meta `md … I`: mark the item stale and its win available again; `Some(found)` if the
    /// outcome is known.
    Invalidate(Option<bool>),
}

/// The answer of a meta `mg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaGetOutcome {
    /// `EN`.
    Miss,
    /// `VA`: the value and the return flags.
    Hit {
        /// The value.
        value: String,
        /// `W`: this client won the recache.
        won: bool,
        /// `X`: the item is stale.
        stale: bool,
        /// `Z`: the win went to another client before.
        win_taken: bool,
    },
}

/// The answer of a `cas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// Replaced the expected version.
    Stored,
    /// Another version is current.
    Exists,
    /// The key is absent.
    NotFound,
}

/// The answer of an `incr`/`decr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value.
    Number(u64),
    /// The key is absent.
    NotFound,
    /// The value is not a decimal number.
    NonNumeric,
}

/// One operation of one client.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Client that ran it.
    pub client: usize,
    /// Key.
    pub key: String,
    /// What it did.
    pub op: Op,
    /// Nanoseconds since the history began, at invocation.
    pub invoked: u64,
    /// At completion; `None` if the outcome is unknown.
    pub completed: Option<u64>,
}

/// A shared, append-only history.
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }
}

impl History {
    /// Nanoseconds since the history began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records an operation.
    pub fn record(&self, op: Operation) {
        self.ops.lock().expect("history lock").push(op);
    }

    /// All operations so far.
    pub fn operations(&self) -> Vec<Operation> {
        self.ops.lock().expect("history lock").clone()
    }
}

/// Operations shown before the one that cannot be placed.
const CONTEXT_OPERATIONS: usize = 25;

/// Operations shown: [`CONTEXT_OPERATIONS`], or `KAITEST_HISTORY_CONTEXT` when set.
fn context_operations() -> usize {
    std::env::var("KAITEST_HISTORY_CONTEXT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CONTEXT_OPERATIONS)
}

/// Why a history is not linearizable.
#[derive(Debug)]
pub struct Violation {
    /// The key whose history fails.
    pub key: String,
    /// That key's operations, by invocation time.
    pub operations: Vec<Operation>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "history of key {:?} is not linearizable; it fails within these operations:",
            self.key
        )?;
        let context = self.operations.len().saturating_sub(context_operations());
        for op in &self.operations[context..] {
            let done = op
                .completed
                .map_or("?".to_owned(), |c| format!("{:.3}ms", c as f64 / 1e6));
            writeln!(
                f,
                "  client {:>2} [{:.3}ms, {done}] {:?}",
                op.client,
                op.invoked as f64 / 1e6,
                op.op
            )?;
        }
        Ok(())
    }
}

/// Checks every key's history; returns the first violation.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        let unknown_read = op.completed.is_none() && matches!(op.op, Op::Get(_) | Op::Exists(_) | Op::Touch(_));
        if !unknown_read {
            by_key.entry(&op.key).or_default().push(op.clone());
        }
    }
    for (key, ops) in by_key {
        let mut ops = prune_unobserved_writes(split_deletes(ops));
        ops.sort_by_key(|o| o.invoked);
        if !linearizable(&ops) {
            // Report the shortest failing prefix that keeps every operation a reader may have
            // seen (all invoked before the prefix's last completion). Failing is monotone in
            // the prefix, so binary search finds it.
            let closed_prefix = |n: usize| {
                let horizon = ops[..n]
                    .iter()
                    .map(|o| o.completed.unwrap_or(o.invoked))
                    .max()
                    .unwrap_or(0);
                ops.partition_point(|o| o.invoked <= horizon)
            };
            let (mut lo, mut hi) = (1, ops.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                if linearizable(&ops[..closed_prefix(mid)]) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            ops.truncate(closed_prefix(lo));
            return Err(Violation {
                key: key.to_owned(),
                operations: ops,
            });
        }
    }
    Ok(())
}

/// Drops writes of unknown outcome whose value no read returned, when no later delete reported
/// the key as existing: such a write may as well never have happened, and keeping it only
/// multiplies the orders to try.
fn prune_unobserved_writes(ops: Vec<Operation>) -> Vec<Operation> {
    // incr/decr, append and cas results derive from the values they found: a value can be
    // observed without a read returning it, so nothing is pruned where they occur.
    // So do the stale-while-revalidate marks: a write that clears them is seen in a later answer.
    let derives = |o: &Operation| {
        matches!(
            o.op,
            Op::Arith(..) | Op::Append(..) | Op::Cas { .. } | Op::MetaGet { .. } | Op::Invalidate(_)
        )
    };
    if ops.iter().any(derives) {
        return ops;
    }
    let read: std::collections::HashSet<String> = ops
        .iter()
        .filter_map(|o| match &o.op {
            Op::Get(Some(v)) => Some(v.clone()),
            _ => None,
        })
        .collect();
    let exists_after = |t: u64| {
        ops.iter()
            .any(|o| o.op == Op::Exists(true) && o.completed.is_some_and(|c| c > t))
    };
    let keep: Vec<bool> = ops
        .iter()
        .map(|o| match (&o.op, o.completed) {
            (Op::Set(v), None) => read.contains(v) || exists_after(o.invoked),
            _ => true,
        })
        .collect();
    ops.into_iter().zip(keep).filter(|(_, k)| *k).map(|(o, _)| o).collect()
}

/// The register's item: its value and stale-while-revalidate marks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Item {
    value: String,
    /// Invalidated (`md … I`) since it was last written.
    stale: bool,
    /// The recache win was handed out since it was last invalidated or written.
    win_sent: bool,
}

/// The register: an item or none.
type State = Option<Item>;

/// A freshly written item.
fn written(value: String) -> State {
    Some(Item {
        value,
        stale: false,
        win_sent: false,
    })
}

/// The register after `op`, or `None` if `op`'s observed result contradicts `state`. An
/// operation whose outcome is unknown takes whatever effect it would have on `state`.
fn apply(state: &State, op: &Op) -> Option<State> {
    let unchanged = || Some(state.clone());
    let present = state.as_ref().map(|item| &item.value);
    match op {
        Op::Set(v) => Some(written(v.clone())),
        Op::Delete(_) | Op::Flush => Some(None),
        Op::Get(seen) => (seen.as_ref() == present).then(unchanged)?,
        Op::Exists(existed) => (*existed == state.is_some()).then(unchanged)?,
        Op::Add(v, outcome) => match (state, outcome) {
            (None, None | Some(true)) => Some(written(v.clone())),
            (Some(_), None | Some(false)) => unchanged(),
            _ => None,
        },
        Op::Append(suffix, outcome) => match (present, outcome) {
            (Some(current), None | Some(true)) => Some(written(format!("{current}{suffix}"))),
            (None, None | Some(false)) => unchanged(),
            _ => None,
        },
        Op::Touch(outcome) => (outcome.is_none() || *outcome == Some(state.is_some())).then(unchanged)?,
        Op::Cas {
            expected,
            value,
            outcome,
        } => {
            let actual = match present {
                None => CasOutcome::NotFound,
                Some(current) if current == expected => CasOutcome::Stored,
                Some(_) => CasOutcome::Exists,
            };
            if outcome.is_some_and(|o| o != actual) {
                return None;
            }
            match actual {
                CasOutcome::Stored => Some(written(value.clone())),
                _ => unchanged(),
            }
        }
        Op::Arith(delta, outcome) => {
            let (actual, after) = match present.map(|v| counter(v)) {
                None => (ArithOutcome::NotFound, state.clone()),
                Some(None) => (ArithOutcome::NonNumeric, state.clone()),
                Some(Some(n)) => {
                    let next = if *delta >= 0 {
                        n.wrapping_add(delta.unsigned_abs())
                    } else {
                        n.saturating_sub(delta.unsigned_abs())
                    };
                    (ArithOutcome::Number(next), written(next.to_string()))
                }
            };
            (outcome.is_none() || *outcome == Some(actual)).then_some(after)
        }
        Op::MetaGet {
            vivify,
            recache,
            outcome,
        } => {
            let (actual, after) = match state {
                None if *vivify => {
                    let item = Item {
                        value: String::new(),
                        stale: false,
                        win_sent: true,
                    };
                    let hit = MetaGetOutcome::Hit {
                        value: String::new(),
                        won: true,
                        stale: false,
                        win_taken: false,
                    };
                    (hit, Some(item))
                }
                None => (MetaGetOutcome::Miss, None),
                Some(item) => {
                    let won = !item.win_sent && (item.stale || *recache);
                    let hit = MetaGetOutcome::Hit {
                        value: item.value.clone(),
                        won,
                        stale: item.stale,
                        win_taken: item.win_sent,
                    };
                    let after = Item {
                        win_sent: item.win_sent || won,
                        ..item.clone()
                    };
                    (hit, Some(after))
                }
            };
            (outcome.is_none() || outcome.as_ref() == Some(&actual)).then_some(after)
        }
        Op::Invalidate(outcome) => match (state, outcome) {
            (Some(item), None | Some(true)) => Some(Some(Item {
                stale: true,
                win_sent: false,
                ..item.clone()
            })),
            (None, None | Some(false)) => unchanged(),
            _ => None,
        },
    }
}

/// A value as Kai's `incr`/`decr` reads it: decimal digits only, at most 20, within 64 bits
/// (`kai_proto::change`; so `+5`, which memcached would read as 5, is not a number).
fn counter(value: &str) -> Option<u64> {
    let digits = !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| value.parse().ok()).flatten()
}

/// Splits a delete with a known answer into its write and the existence read behind the answer
/// (each linearized on its own within the delete's interval: Kai's delete is a write, and its
/// DELETED/NOT_FOUND answer is what a read inside it saw).
fn split_deletes(ops: Vec<Operation>) -> Vec<Operation> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        if let Op::Delete(Some(existed)) = op.op {
            out.push(Operation {
                op: Op::Exists(existed),
                ..op.clone()
            });
        }
        out.push(op);
    }
    out
}

/// One call or return in the time-ordered event list.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    call: bool,
}

/// Wing & Gong's search over a doubly linked event list (removal and reinsertion are O(1), as
/// in Lowe's implementation), with visited `(placed set, value)` pairs cached; the placed set is
/// identified by a 128-bit Zobrist hash.
fn linearizable(ops: &[Operation]) -> bool {
    use rand::{Rng, SeedableRng};
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        // At equal times a call sorts first (lenient: the two may be concurrent).
        events.push((op.invoked, false, i));
        if let Some(done) = op.completed {
            events.push((done, true, i));
        }
    }
    events.sort_unstable();
    let list: Vec<Event> = events.iter().map(|&(_, ret, op)| Event { op, call: !ret }).collect();
    // Node 0 is the head sentinel; event k is node k + 1; node len + 1 is the tail sentinel.
    let n = list.len();
    let mut next: Vec<usize> = (1..=n + 2).collect();
    let mut prev: Vec<usize> = (0..n + 2).map(|i| i.saturating_sub(1)).collect();
    let tail = n + 1;
    let mut call_node = vec![0; ops.len()];
    let mut return_node = vec![None; ops.len()];
    for (k, e) in list.iter().enumerate() {
        if e.call {
            call_node[e.op] = k + 1;
        } else {
            return_node[e.op] = Some(k + 1);
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        next[prev[node]] = next[node];
        prev[next[node]] = prev[node];
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        next[prev[node]] = node;
        prev[next[node]] = node;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let zobrist: Vec<u128> = (0..ops.len()).map(|_| rng.random()).collect();
    let mut remaining = ops.iter().filter(|o| o.completed.is_some()).count();
    let mut visited: HashSet<(u128, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let (mut state, mut placed): (State, u128) = (None, 0);
    let mut cursor = next[0];
    loop {
        if remaining == 0 {
            return true;
        }
        let is_call = cursor != tail && list[cursor - 1].call;
        if is_call {
            let op = list[cursor - 1].op;
            if let Some(after) = apply(&state, &ops[op].op) {
                let key = placed ^ zobrist[op];
                if visited.insert((key, after.clone())) {
                    stack.push((op, std::mem::replace(&mut state, after)));
                    placed = key;
                    unlink(&mut next, &mut prev, call_node[op]);
                    if let Some(r) = return_node[op] {
                        unlink(&mut next, &mut prev, r);
                        remaining -= 1;
                    }
                    cursor = next[0];
                    continue;
                }
            }
            cursor = next[cursor];
        } else {
            // A return of an unplaced operation (or the end): back up one placement.
            let Some((op, before)) = stack.pop() else {
                return false;
            };
            state = before;
            placed ^= zobrist[op];
            if let Some(r) = return_node[op] {
                relink(&mut next, &mut prev, r);
                remaining += 1;
            }
            relink(&mut next, &mut prev, call_node[op]);
            cursor = next[call_node[op]];
        }
    }
}
