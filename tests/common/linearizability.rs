//! A linearizability checker for histories of a key-value register (Wing & Gong's search with
//! Lowe's memoisation), run per key.
//!
//! Operations: `Set(v)`, `Delete` (returning whether a value existed) and `Get` (returning the
//! value seen). A delete is checked as a write of "absent" plus a read of whether the key existed,
//! each placed anywhere within the delete's interval: the write is atomic, the answer is what a
//! read inside the operation saw (two concurrent deletes of one value may both say "existed";
//! making that atomic would take consensus). An operation whose outcome is unknown (error or timeout) is kept only if it is a
//! write: it may have taken effect at any point after its invocation, or never. Unknown reads are
//! dropped (they constrain nothing).
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
        let context = self.operations.len().saturating_sub(CONTEXT_OPERATIONS);
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
        let unknown_read = op.completed.is_none() && matches!(op.op, Op::Get(_) | Op::Exists(_));
        if !unknown_read {
            by_key.entry(&op.key).or_default().push(op.clone());
        }
    }
    for (key, ops) in by_key {
        let mut ops = split_deletes(ops);
        ops.sort_by_key(|o| o.invoked);
        if !Search::new(&ops).run() {
            // Report the shortest failing prefix that keeps every operation a reader may have
            // seen (all invoked before the prefix's last completion).
            let closed_prefix = |n: usize| {
                let horizon = ops[..n]
                    .iter()
                    .map(|o| o.completed.unwrap_or(o.invoked))
                    .max()
                    .unwrap_or(0);
                ops.partition_point(|o| o.invoked <= horizon)
            };
            let shortest = (1..=ops.len())
                .map(closed_prefix)
                .find(|&n| !Search::new(&ops[..n]).run())
                .unwrap_or(ops.len());
            ops.truncate(shortest);
            return Err(Violation {
                key: key.to_owned(),
                operations: ops,
            });
        }
    }
    Ok(())
}

/// The register after `op`, or `None` if `op`'s observed result contradicts `state`.
fn apply(state: &Option<String>, op: &Op) -> Option<Option<String>> {
    match op {
        Op::Set(v) => Some(Some(v.clone())),
        Op::Delete(_) => Some(None),
        Op::Get(seen) => (seen == state).then(|| state.clone()),
        Op::Exists(existed) => (*existed == state.is_some()).then(|| state.clone()),
    }
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

struct Search<'a> {
    ops: &'a [Operation],
    placed: Vec<bool>,
    visited: HashSet<(Vec<u64>, Option<String>)>,
}

/// One level of the depth-first search: the register value reached, the operations that may be
/// placed next, and which of them is being tried.
struct Level {
    state: Option<String>,
    candidates: Vec<usize>,
    next: usize,
    tried: Option<usize>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Operation]) -> Self {
        Search {
            ops,
            placed: vec![false; ops.len()],
            visited: HashSet::new(),
        }
    }

    fn key(&self) -> Vec<u64> {
        let mut words = vec![0u64; self.placed.len().div_ceil(64)];
        for (i, placed) in self.placed.iter().enumerate() {
            if *placed {
                words[i / 64] |= 1 << (i % 64);
            }
        }
        words
    }

    /// Operations that may be linearized next: not placed yet and invoked before every unplaced
    /// operation returned. `None` once every operation with a known outcome is placed.
    fn candidates(&self) -> Option<Vec<usize>> {
        let unplaced = || self.ops.iter().enumerate().filter(|(i, _)| !self.placed[*i]);
        if unplaced().all(|(_, op)| op.completed.is_none()) {
            return None;
        }
        let earliest_return = unplaced().filter_map(|(_, op)| op.completed).min().unwrap_or(u64::MAX);
        Some(
            unplaced()
                .filter(|(_, op)| op.invoked <= earliest_return)
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// A level for `state`, or `None` if this (placed set, state) was already explored.
    fn level(&mut self, state: Option<String>) -> Result<Option<Level>, ()> {
        let Some(candidates) = self.candidates() else {
            return Err(());
        };
        if !self.visited.insert((self.key(), state.clone())) {
            return Ok(None);
        }
        Ok(Some(Level {
            state,
            candidates,
            next: 0,
            tried: None,
        }))
    }

    /// True if the operations can be linearized.
    fn run(&mut self) -> bool {
        let mut stack = match self.level(None) {
            Err(()) => return true,
            Ok(level) => level.into_iter().collect::<Vec<_>>(),
        };
        while let Some(top) = stack.last_mut() {
            if let Some(previous) = top.tried.take() {
                self.placed[previous] = false;
            }
            let mut descend = None;
            while top.next < top.candidates.len() {
                let i = top.candidates[top.next];
                top.next += 1;
                if let Some(state) = apply(&top.state, &self.ops[i].op) {
                    top.tried = Some(i);
                    descend = Some((i, state));
                    break;
                }
            }
            match descend {
                Some((i, state)) => {
                    self.placed[i] = true;
                    match self.level(state) {
                        Err(()) => return true,
                        Ok(Some(level)) => stack.push(level),
                        Ok(None) => {}
                    }
                }
                None => {
                    stack.pop();
                }
            }
        }
        false
    }
}
