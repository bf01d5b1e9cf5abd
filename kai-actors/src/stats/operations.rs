//! Counts and latencies of timed operations: client commands (whatever protocol carried them)
//! and replica calls (local or to a peer).
//!
//! Invariants: one fixed slot per kind (an array index, no map lookup or lock on the request
//! path); these counters only grow (`stats reset` leaves them alone, so Prometheus rates stay
//! right).

use super::latency::{Histogram, Snapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A client command, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `get`
    Get,
    /// `gets`
    Gets,
    /// `set`
    Set,
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `append`
    Append,
    /// `prepend`
    Prepend,
    /// `cas`
    Cas,
    /// `incr`
    Incr,
    /// `decr`
    Decr,
    /// `touch`
    Touch,
    /// `gat` and `gats`
    Gat,
    /// `delete`
    Delete,
    /// `stats`
    Stats,
    /// Anything else (`version`, `verbosity`, refused or unsupported requests, …).
    Other,
}

impl Command {
    /// Every command, in slot order.
    pub const ALL: [Command; 15] = [
        Command::Get,
        Command::Gets,
        Command::Set,
        Command::Add,
        Command::Replace,
        Command::Append,
        Command::Prepend,
        Command::Cas,
        Command::Incr,
        Command::Decr,
        Command::Touch,
        Command::Gat,
        Command::Delete,
        Command::Stats,
        Command::Other,
    ];

    /// The label value (memcached's command name).
    pub fn name(self) -> &'static str {
        match self {
            Command::Get => "get",
            Command::Gets => "gets",
            Command::Set => "set",
            Command::Add => "add",
            Command::Replace => "replace",
            Command::Append => "append",
            Command::Prepend => "prepend",
            Command::Cas => "cas",
            Command::Incr => "incr",
            Command::Decr => "decr",
            Command::Touch => "touch",
            Command::Gat => "gat",
            Command::Delete => "delete",
            Command::Stats => "stats",
            Command::Other => "other",
        }
    }
}

/// One kind of timed operation.
#[derive(Debug, Default)]
pub struct Timed {
    /// Operations that failed (`SERVER_ERROR` for a command, an error for a replica call).
    pub errors: AtomicU64,
    /// Latency of every operation (its count is the number of operations).
    pub latency: Histogram,
}

impl Timed {
    /// Counts one operation that took `elapsed`.
    pub fn record(&self, elapsed: Duration, failed: bool) {
        self.latency.record(elapsed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Per-command counters of client requests.
#[derive(Debug, Default)]
pub struct CommandStats([Timed; Command::ALL.len()]);

impl CommandStats {
    /// The counters of `command`.
    pub fn of(&self, command: Command) -> &Timed {
        &self.0[command as usize]
    }

    /// Latencies of every command together.
    pub fn all(&self) -> Snapshot {
        let mut total = Snapshot::default();
        for timed in &self.0 {
            total.merge(&timed.latency.snapshot());
        }
        total
    }
}

/// A replica operation, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaCall {
    /// Reading a key's version.
    ReadVersion,
    /// Reading a key's record.
    Read,
    /// Writing a record.
    Write,
    /// Paxos prepare.
    Prepare,
    /// Paxos accept.
    Accept,
}

impl ReplicaCall {
    /// Every replica call, in slot order.
    pub const ALL: [ReplicaCall; 5] = [
        ReplicaCall::ReadVersion,
        ReplicaCall::Read,
        ReplicaCall::Write,
        ReplicaCall::Prepare,
        ReplicaCall::Accept,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            ReplicaCall::ReadVersion => "read_version",
            ReplicaCall::Read => "read",
            ReplicaCall::Write => "write",
            ReplicaCall::Prepare => "prepare",
            ReplicaCall::Accept => "accept",
        }
    }
}

/// Per-operation counters of replica calls, apart for the local replica and remote ones.
#[derive(Debug, Default)]
pub struct ReplicaCallStats {
    local: [Timed; ReplicaCall::ALL.len()],
    remote: [Timed; ReplicaCall::ALL.len()],
}

impl ReplicaCallStats {
    /// The counters of `call` to the local replica (`remote == false`) or a peer's.
    pub fn of(&self, call: ReplicaCall, remote: bool) -> &Timed {
        let slots = if remote { &self.remote } else { &self.local };
        &slots[call as usize]
    }
}
