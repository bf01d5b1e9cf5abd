//! `GET /metrics`: the node's counters in the Prometheus (OpenMetrics) text format.
//!
//! The counters stay where the request path updates them (atomics in
//! [`kai_actors::stats::counters`]); a [`Collector`] reads them at scrape time, so serving
//! metrics adds no work to requests. Counter names get `_total` from the encoder.

use kai_actors::report::NodeInfo;
use kai_actors::stats::latency::{self, Snapshot};
use kai_actors::stats::operations::Timed;
use kai_actors::stats::{get, Command, NodeStats, ReplicaCall};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry that reads `stats` and `info` at every scrape.
pub fn registry(info: NodeInfo, stats: Arc<NodeStats>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector { info, stats }));
    registry
}

/// The scrape: the registry in text form.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

struct NodeCollector {
    info: NodeInfo,
    stats: Arc<NodeStats>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").field("node", &self.info.name).finish()
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn histogram(encoder: &mut MetricEncoder, snapshot: &Snapshot) -> std::fmt::Result {
    let sum = snapshot.sum_micros as f64 / 1e6;
    // Per-bucket counts (the encoder accumulates them); `f64::MAX` is its `+Inf` bucket.
    let buckets: Vec<(f64, u64)> = (0..latency::BOUNDED)
        .map(|i| (latency::bound(i).as_secs_f64(), snapshot.counts[i]))
        .chain([(f64::MAX, snapshot.counts[latency::BOUNDED])])
        .collect();
    encoder.encode_histogram::<NoLabelSet>(sum, snapshot.count(), &buckets, None)
}

/// A labelled family: `name` with one series per `(labels, timed)` for its latency histogram
/// and `name_errors` (a counter) for its failures.
fn timed_family<'a, const L: usize>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = ([(&'static str, &'static str); L], &'a Timed)> + Clone,
) -> std::fmt::Result {
    let (latency_name, errors_name) = (format!("{name}_seconds"), format!("{name}_errors"));
    let errors_help = format!("Failures among: {help}");
    {
        let mut family = e.encode_descriptor(&latency_name, help, None, MetricType::Histogram)?;
        for (labels, timed) in series.clone() {
            histogram(&mut family.encode_family(&labels)?, &timed.latency.snapshot())?;
        }
    }
    let mut family = e.encode_descriptor(&errors_name, &errors_help, None, MetricType::Counter)?;
    for (labels, timed) in series {
        let metric = ConstCounter::new(get(&timed.errors));
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.stats;
        let info = &self.info;
        let placement = info.ring.load();
        let cluster = info.cluster.load();
        let counters = [
            (
                "kai_connections",
                "Client connections accepted.",
                get(&s.total_connections),
            ),
            (
                "kai_connections_rejected",
                "Client connections refused at max_connections.",
                get(&s.rejected_connections),
            ),
            ("kai_get_keys", "Keys requested by get/gets/gat/gats.", get(&s.cmd_get)),
            ("kai_get_hits", "Keys found by get/gets/gat/gats.", get(&s.get_hits)),
            (
                "kai_get_misses",
                "Keys not found by get/gets/gat/gats.",
                get(&s.get_misses),
            ),
            ("kai_storage_commands", "Storage commands executed.", get(&s.cmd_set)),
            ("kai_stored_items", "Items stored.", get(&s.total_items)),
            (
                "kai_store_too_large",
                "Storage commands refused for a value over max_value_size.",
                get(&s.store_too_large),
            ),
            ("kai_delete_hits", "Deletes of existing keys.", get(&s.delete_hits)),
            ("kai_delete_misses", "Deletes of missing keys.", get(&s.delete_misses)),
            (
                "kai_client_read_bytes",
                "Bytes received from clients.",
                get(&s.bytes_read),
            ),
            (
                "kai_client_written_bytes",
                "Bytes sent to clients.",
                get(&s.bytes_written),
            ),
            (
                "kai_unreconciled_reads",
                "Reads that found replicas disagreeing.",
                get(&s.unreconciled_reads),
            ),
            (
                "kai_read_repairs",
                "Records written back to stale replicas by reads.",
                get(&s.read_repairs),
            ),
            (
                "kai_quorum_failures",
                "Operations that failed for lack of a quorum.",
                get(&s.quorum_failures),
            ),
            (
                "kai_sync_buckets_pulled",
                "Buckets pulled by handoff.",
                get(&s.sync.buckets_pulled),
            ),
            (
                "kai_sync_keys_pulled",
                "Records received by handoff.",
                get(&s.sync.keys_pulled),
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut e, name, help, value)?;
        }
        let more = [
            (
                "kai_sync_keys_repaired",
                "Records exchanged by anti-entropy (both directions).",
                get(&s.sync.keys_repaired),
            ),
            (
                "kai_sync_buckets_compared",
                "Bucket comparisons made by anti-entropy.",
                get(&s.sync.buckets_compared),
            ),
            (
                "kai_sync_buckets_dropped",
                "Buckets dropped because this node no longer owns them.",
                get(&s.sync.buckets_dropped),
            ),
            (
                "kai_sync_refused",
                "Sync requests refused (stale ring, not an owner, not current, minority, refilling).",
                get(&s.sync.refused),
            ),
            (
                "kai_tombstones_purged",
                "Tombstones garbage-collected.",
                get(&s.sync.tombstones_purged),
            ),
        ];
        for (name, help, value) in more {
            counter(&mut e, name, help, value)?;
        }
        let members = |status: &str| cluster.members.iter().filter(|m| m.status == status).count() as u64;
        let gauges = [
            ("kai_uptime_seconds", "Seconds since the node started.", s.uptime_secs()),
            (
                "kai_client_connections",
                "Open client connections.",
                get(&s.curr_connections),
            ),
            (
                "kai_peer_connections",
                "Open connections to peers.",
                get(&s.peer_connections),
            ),
            ("kai_items", "Live items in the local store.", info.store.value_count()),
            (
                "kai_item_bytes",
                "Bytes of live values in the local store.",
                info.store.value_bytes(),
            ),
            (
                "kai_tombstones",
                "Tombstones in the local store: deleted keys not yet garbage-collected.",
                info.store.tombstone_count(),
            ),
            (
                "kai_ring_version",
                "Version of the newest ring.",
                placement.latest_id().version,
            ),
            (
                "kai_rings_active",
                "Rings in use (2 during a transition).",
                placement.rings.len() as u64,
            ),
            (
                "kai_ring_members",
                "Nodes in the newest ring.",
                placement.latest().map_or(0, |r| r.nodes().len()) as u64,
            ),
            (
                "kai_buckets_owned",
                "Buckets this node holds a replica of in the newest ring.",
                placement.latest().map_or(0, |r| r.buckets_of(info.id).count()) as u64,
            ),
            (
                "kai_majority",
                "1 if this node sees a majority of its cluster.",
                u64::from(cluster.majority),
            ),
            (
                "kai_ready",
                "1 if this node serves (knows a ring, sees a majority).",
                u64::from(info.ready()),
            ),
            ("kai_members_up", "Known nodes heard from lately.", members("up")),
            (
                "kai_members_suspect",
                "Known nodes silent for a while.",
                members("suspect"),
            ),
            (
                "kai_members_down",
                "Known nodes silent for down_after.",
                members("down"),
            ),
            (
                "kai_sync_buckets_pending",
                "Buckets this node still has to pull in the current transition.",
                get(&s.sync.buckets_pending),
            ),
            (
                "kai_sync_keys_remaining",
                "Estimated records the current handoff still has to pull.",
                get(&s.sync.keys_remaining),
            ),
            (
                "kai_sync_eta_seconds",
                "Estimated seconds until the current handoff completes.",
                get(&s.sync.eta_secs),
            ),
        ];
        for (name, help, value) in gauges {
            gauge(&mut e, name, help, signed(value))?;
        }
        gauge(
            &mut e,
            "kai_sync_keys_per_second",
            "Records per second of the current (or last) handoff.",
            signed(get(&s.sync.keys_per_sec)),
        )?;
        gauge(
            &mut e,
            "kai_sync_refilling",
            "1 while the local store is new or being refilled.",
            signed(get(&s.sync.refilling)),
        )?;
        self.encode_operations(&mut e)?;
        self.encode_engine(&mut e)
    }
}

impl NodeCollector {
    fn encode_operations(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.stats;
        let commands = Command::ALL
            .iter()
            .map(|c| ([("command", c.name())], s.commands.of(*c)));
        timed_family(
            e,
            "kai_command",
            "Client commands by command: latency from parsed request to reply.",
            commands,
        )?;
        let calls = ReplicaCall::ALL.iter().flat_map(|c| {
            [false, true].map(|remote| {
                let target = if remote { "remote" } else { "local" };
                (
                    [("call", c.name()), ("replica", target)],
                    s.replica_calls.of(*c, remote),
                )
            })
        });
        timed_family(
            e,
            "kai_replica_call",
            "Replica calls made by this node's coordinators, by operation and target.",
            calls,
        )?;
        counter(
            e,
            "kai_spare_calls",
            "Replicas asked beyond the first choice (hedges after a slow reply, replacements of failed ones).",
            get(&s.spare_calls),
        )?;
        counter(
            e,
            "kai_stale_ring_retries",
            "Operations run again after a replica answered from a newer ring.",
            get(&s.stale_ring_retries),
        )?;
        let mut refusals = e.encode_descriptor(
            "kai_fence_refusals",
            "Replica requests this node refused: coordinator on an older ring, no majority here, store refilling.",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [
            ("stale_ring", get(&s.fence_stale_ring)),
            ("minority", get(&s.fence_minority)),
            ("refilling", get(&s.fence_refilling)),
        ] {
            ConstCounter::new(value).encode(refusals.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }

    /// RocksDB's own figures (nothing for the memory store).
    fn encode_engine(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let f = self.info.store.engine_figures();
        let gauges = [
            (
                "kai_store_memtable_bytes",
                "Bytes in RocksDB memtables.",
                f.memtable_bytes,
            ),
            ("kai_store_sst_bytes", "Bytes of RocksDB SST files.", f.sst_bytes),
            (
                "kai_store_compaction_pending_bytes",
                "Bytes RocksDB estimates compaction still has to rewrite.",
                f.compaction_pending_bytes,
            ),
            (
                "kai_store_compactions_running",
                "RocksDB compactions running.",
                f.compactions_running,
            ),
            (
                "kai_store_block_cache_bytes",
                "Bytes held by the RocksDB block cache.",
                f.block_cache_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                gauge(e, name, help, signed(value))?;
            }
        }
        for (name, help, value) in [
            (
                "kai_store_block_cache_hits",
                "RocksDB block-cache lookups that found their block.",
                f.block_cache_hits,
            ),
            (
                "kai_store_block_cache_misses",
                "RocksDB block-cache lookups that read the disk.",
                f.block_cache_misses,
            ),
        ] {
            if let Some(value) = value {
                counter(e, name, help, value)?;
            }
        }
        Ok(())
    }
}
