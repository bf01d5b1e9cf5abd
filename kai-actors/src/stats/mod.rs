//! The bottom layer of observability: [`counters`], [`latency`] and [`operations`] — atomics on
//! the request path, with no knowledge of actors. The views over them and over the node's live
//! state live a layer up, in [`crate::report`]; this module never reads a higher one.

pub mod counters;
pub mod latency;
pub mod operations;

pub use counters::{add, get, NodeStats, SyncStats};
pub use operations::{Command, ReplicaCall};

/// The version a node reports to memcache clients: the memcached protocol level it implements,
/// then Kai's own version as a semver pre-release tag. Clients such as libmemcached parse the
/// leading numbers and refuse a major version of 0, so Kai's own `0.x` cannot lead.
pub const PROTOCOL_VERSION: &str = concat!("1.6.0-kai.", env!("CARGO_PKG_VERSION"));
