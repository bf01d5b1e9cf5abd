//! The JSON documents of the admin API (`/api/v1/…`), built from a node's live state.
//!
//! Each is a snapshot: values are read one after another, not as a consistent cut. Field names
//! are part of the API (the `kai` admin commands and the dashboard read them); add fields, do
//! not rename them.

use kai_actors::report::NodeInfo;
use kai_actors::stats::{get, latency, Command, NodeStats, PROTOCOL_VERSION};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `GET /api/v1/status`: the node, its ring, its view of the members and its transfers.
pub fn status(info: &NodeInfo, stats: &NodeStats) -> Value {
    let placement = info.ring.load();
    let (n, r, w) = info.quorum;
    json!({
        "node": info.name,
        "id": info.id.to_string(),
        "version": PROTOCOL_VERSION,
        "uptime_secs": stats.uptime_secs(),
        "quorum": { "n": n, "r": r, "w": w },
        "ring_version": placement.latest_id().version,
        "rings_active": placement.rings.len(),
        "buckets": placement.buckets(),
        "ring_members": placement.latest().map_or(0, |ring| ring.nodes().len()),
        "majority": info.cluster.load().majority,
        "ready": info.ready(),
        "members": members(info),
        "transfers": transfers(stats),
        "connections": get(&stats.curr_connections),
        "peer_connections": get(&stats.peer_connections),
        "items": info.store.value_count(),
        "tombstones": info.store.tombstone_count(),
        "commands": commands(stats),
    })
}

/// Client commands of every kind together, as running totals: the dashboard derives ops/s and
/// latency quantiles from the difference of two polls. `counts[i]` counts commands that took at
/// most `bounds_micros[i]`; the one extra count, those that took longer.
fn commands(stats: &NodeStats) -> Value {
    let all = stats.commands.all();
    let errors: u64 = Command::ALL.iter().map(|c| get(&stats.commands.of(*c).errors)).sum();
    let bounds: Vec<u64> = (0..latency::BOUNDED)
        .map(|i| u64::try_from(latency::bound(i).as_micros()).unwrap_or(u64::MAX))
        .collect();
    json!({
        "count": all.count(),
        "errors": errors,
        "sum_micros": all.sum_micros,
        "bounds_micros": bounds,
        "counts": all.counts.to_vec(),
    })
}

/// `GET /api/v1/members`: every node this one knows, with its status, silence and share.
pub fn members(info: &NodeInfo) -> Value {
    let placement = info.ring.load();
    let cluster = info.cluster.load();
    Value::Array(
        cluster
            .members
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "id": m.id.to_string(),
                    "addr": m.addr,
                    "status": m.status,
                    "silent_ms": m.silent_ms,
                    "buckets": placement.latest().map_or(0, |ring| ring.buckets_of(m.id).count()),
                    "unhealthy": cluster.unhealthy.contains(&m.id),
                })
            })
            .collect(),
    )
}

/// `GET /api/v1/transfers`: progress of handoff and anti-entropy on this node.
pub fn transfers(stats: &NodeStats) -> Value {
    let sync = &stats.sync;
    json!({
        "buckets_pending": get(&sync.buckets_pending),
        "buckets_pulled": get(&sync.buckets_pulled),
        "keys_pulled": get(&sync.keys_pulled),
        "keys_remaining": get(&sync.keys_remaining),
        "keys_per_sec": get(&sync.keys_per_sec),
        "eta_secs": get(&sync.eta_secs),
        "keys_repaired": get(&sync.keys_repaired),
        "buckets_compared": get(&sync.buckets_compared),
        "buckets_dropped": get(&sync.buckets_dropped),
        "refused": get(&sync.refused),
        "refilling": get(&sync.refilling) != 0,
        "tombstones_purged": get(&sync.tombstones_purged),
    })
}

/// `GET /api/v1/ring`: the newest ring: every bucket's preference list (by member index) and
/// the load per member.
pub fn ring(info: &NodeInfo) -> Value {
    let placement = info.ring.load();
    let Some(ring) = placement.latest() else {
        return json!({ "version": 0, "buckets": placement.buckets(), "nodes": [], "placement": [] });
    };
    let cluster = info.cluster.load();
    let name = |id: kai_proto::NodeId| cluster.name_of(id);
    let nodes: Vec<kai_proto::NodeId> = ring.nodes().to_vec();
    let index: BTreeMap<kai_proto::NodeId, usize> = nodes.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut load = vec![(0usize, 0usize); nodes.len()];
    let placement_lists: Vec<Vec<usize>> = (0..placement.buckets())
        .map(|b| {
            let owners: Vec<usize> = ring
                .preference_list(kai_proto::BucketId(b))
                .iter()
                .filter_map(|id| index.get(id).copied())
                .collect();
            for (rank, &owner) in owners.iter().enumerate() {
                if rank == 0 {
                    load[owner].0 += 1;
                }
                load[owner].1 += 1;
            }
            owners
        })
        .collect();
    json!({
        "version": placement.latest_id().version,
        "rings_active": placement.rings.len(),
        "buckets": placement.buckets(),
        "replicas": ring.replicas(),
        "nodes": nodes.iter().zip(&load).map(|(id, (primary, replica))| json!({
            "name": name(*id),
            "id": id.to_string(),
            "primary": primary,
            "replica": replica,
        })).collect::<Vec<_>>(),
        "placement": placement_lists,
    })
}

/// `GET /api/v1/stats`: the memcache `stats` report as one object.
pub fn stats(info: &NodeInfo, stats: &NodeStats) -> Value {
    Value::Object(
        kai_actors::report::report(info, stats)
            .into_iter()
            .map(|entry| (entry.name, Value::String(entry.value)))
            .collect(),
    )
}
