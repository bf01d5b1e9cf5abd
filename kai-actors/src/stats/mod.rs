//! Observability of a node, in two layers: at the bottom [`counters`], [`latency`] and
//! [`operations`] (atomics on the request path, no knowledge of actors); on top [`mod@report`]
//! (views over the counters and the node's live state, for the memcache `stats` command and the
//! admin endpoint). A lower layer never reads a higher one.

pub mod counters;
pub mod latency;
pub mod operations;
pub mod report;

pub use counters::{add, get, NodeStats, SyncStats};
pub use operations::{Command, ReplicaCall};
pub use report::{buckets_report, cpu_usage, limit_maxbytes, members_report, report, ring_report, CpuUsage, NodeInfo};

/// The version a node reports to memcache clients: the memcached protocol level it implements,
/// then Kai's own version as a semver pre-release tag. Clients such as libmemcached parse the
/// leading numbers and refuse a major version of 0, so Kai's own `0.x` cannot lead.
pub const PROTOCOL_VERSION: &str = concat!("1.6.0-kai.", env!("CARGO_PKG_VERSION"));
