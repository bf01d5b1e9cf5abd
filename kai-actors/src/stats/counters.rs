//! The bottom layer of observability: counters updated on the request path.
//!
//! Counters are plain atomics (relaxed ordering: each is exact on its own; a report is not a
//! consistent cut across them). `stats reset` zeroes the counters memcached resets (those
//! counting events since start, [`NodeStats::reset`]); gauges of the current state
//! (connections, items, sync progress) are never reset. Nothing here knows about actors or
//! reports: [`crate::report`] and the admin endpoint read these counters.

use super::operations::{CommandStats, ReplicaCallStats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters of one node.
#[derive(Debug)]
pub struct NodeStats {
    started: Instant,
    /// Open client connections.
    pub curr_connections: AtomicU64,
    /// Client connections accepted since start.
    pub total_connections: AtomicU64,
    /// Connections refused because `max_connections` was reached.
    pub rejected_connections: AtomicU64,
    /// Keys requested by get/gets.
    pub cmd_get: AtomicU64,
    /// Storage commands executed.
    pub cmd_set: AtomicU64,
    /// `flush_all` commands executed.
    pub cmd_flush: AtomicU64,
    /// Items stored since start (successful `set`s).
    pub total_items: AtomicU64,
    /// `set`s refused because the value exceeds `max_value_size`.
    pub store_too_large: AtomicU64,
    /// Keys found by get/gets.
    pub get_hits: AtomicU64,
    /// Keys not found by get/gets.
    pub get_misses: AtomicU64,
    /// Deletes of existing keys.
    pub delete_hits: AtomicU64,
    /// Deletes of missing keys.
    pub delete_misses: AtomicU64,
    /// Bytes received from clients.
    pub bytes_read: AtomicU64,
    /// Bytes sent to clients.
    pub bytes_written: AtomicU64,
    /// Reads that found replicas disagreeing.
    pub unreconciled_reads: AtomicU64,
    /// Records written back to stale replicas by reads.
    pub read_repairs: AtomicU64,
    /// Operations that failed for lack of a quorum.
    pub quorum_failures: AtomicU64,
    /// Open connections to peers (one per peer per worker thread when all are up).
    pub peer_connections: AtomicU64,
    /// Background data movement.
    pub sync: SyncStats,
    /// Client requests per command: count, failures, latency.
    pub commands: CommandStats,
    /// Replica calls per operation, local and remote: count, failures, latency.
    pub replica_calls: ReplicaCallStats,
    /// Replicas asked beyond the first choice: hedges after a slow reply, replacements of failed
    /// replicas.
    pub spare_calls: AtomicU64,
    /// Operations run again because a replica had adopted a newer ring.
    pub stale_ring_retries: AtomicU64,
    /// Replica requests this node's fence refused: from a coordinator on an older ring.
    pub fence_stale_ring: AtomicU64,
    /// Replica requests refused because this node could not see a majority.
    pub fence_minority: AtomicU64,
    /// Replica requests refused because this node's store was being refilled.
    pub fence_refilling: AtomicU64,
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats {
            started: Instant::now(),
            curr_connections: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            cmd_get: AtomicU64::new(0),
            cmd_set: AtomicU64::new(0),
            cmd_flush: AtomicU64::new(0),
            total_items: AtomicU64::new(0),
            store_too_large: AtomicU64::new(0),
            get_hits: AtomicU64::new(0),
            get_misses: AtomicU64::new(0),
            delete_hits: AtomicU64::new(0),
            delete_misses: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            unreconciled_reads: AtomicU64::new(0),
            read_repairs: AtomicU64::new(0),
            quorum_failures: AtomicU64::new(0),
            peer_connections: AtomicU64::new(0),
            sync: SyncStats::default(),
            commands: CommandStats::default(),
            replica_calls: ReplicaCallStats::default(),
            spare_calls: AtomicU64::new(0),
            stale_ring_retries: AtomicU64::new(0),
            fence_stale_ring: AtomicU64::new(0),
            fence_minority: AtomicU64::new(0),
            fence_refilling: AtomicU64::new(0),
        }
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl NodeStats {
    /// Seconds since the node started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// `stats reset`: zeroes the counters of events since start, as memcached does (its
    /// `total_connections`, `cmd_*`, hits and misses, `bytes_read`/`bytes_written`,
    /// `total_items`, …) and Kai's request-path counters. Gauges keep their values, and so do the
    /// Prometheus-facing operation counters ([`super::operations`]), which only grow.
    pub fn reset(&self) {
        for counter in [
            &self.total_connections,
            &self.rejected_connections,
            &self.cmd_get,
            &self.cmd_set,
            &self.cmd_flush,
            &self.total_items,
            &self.store_too_large,
            &self.get_hits,
            &self.get_misses,
            &self.delete_hits,
            &self.delete_misses,
            &self.bytes_read,
            &self.bytes_written,
            &self.unreconciled_reads,
            &self.read_repairs,
            &self.quorum_failures,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// Progress of background data movement.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Buckets this node still has to pull in the current transition.
    pub buckets_pending: AtomicU64,
    /// Buckets pulled since start.
    pub buckets_pulled: AtomicU64,
    /// Records received by bucket pulls since start.
    pub keys_pulled: AtomicU64,
    /// Records exchanged by anti-entropy since start (both directions).
    pub keys_repaired: AtomicU64,
    /// Bucket comparisons made by anti-entropy since start.
    pub buckets_compared: AtomicU64,
    /// Tombstones garbage-collected since start.
    pub tombstones_purged: AtomicU64,
    /// Buckets dropped because this node no longer owns them.
    pub buckets_dropped: AtomicU64,
    /// Sync requests refused (stale or unknown ring, sender not an owner, this node not
    /// current, minority, refilling).
    pub refused: AtomicU64,
    /// 1 while this node's store is new or being refilled (it refuses replica requests).
    pub refilling: AtomicU64,
    /// Records per second of the current (or last) handoff.
    pub keys_per_sec: AtomicU64,
    /// Estimated seconds until the current handoff completes.
    pub eta_secs: AtomicU64,
    /// Estimated records the current handoff still has to pull (pending buckets × records per
    /// bucket so far).
    pub keys_remaining: AtomicU64,
}
