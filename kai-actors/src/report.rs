//! The top layer of observability: reports built from the counters ([`crate::stats`]) and the
//! node's live state (ring, membership, store) — the memcache `stats` groups and the admin API
//! read them.

use crate::stats::{get, NodeStats, PROTOCOL_VERSION};

/// Static facts about a node and handles to its live state, for reports.
#[derive(Clone)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node id.
    pub id: kai_proto::NodeId,
    /// Configured `(n, r, w)`.
    pub quorum: (usize, usize, usize),
    /// Worker threads serving clients.
    pub threads: usize,
    /// Configured connection limit.
    pub max_connections: usize,
    /// Largest value accepted, in bytes.
    pub max_value_size: usize,
    /// The memcache address the node listens on.
    pub listen: std::net::SocketAddr,
    /// The directory holding the node's data (its filesystem's size is `limit_maxbytes`).
    pub data_dir: std::path::PathBuf,
    /// The local store.
    pub store: crate::store::StoreHandle,
    /// The current ring.
    pub ring: crate::ring::RingReader,
    /// This node's view of the cluster.
    pub cluster: crate::membership::StatusReader,
    /// The Membership actor (the admin endpoint asks it to leave).
    pub membership: actix::Addr<crate::membership::Membership>,
}

impl NodeInfo {
    /// Asks the node to hand its buckets off and leave the cluster (it stops once it has left).
    pub fn leave(&self) {
        self.membership.do_send(crate::membership::Leave);
    }

    /// True if the node serves: it knows a ring and sees a majority of its cluster.
    pub fn ready(&self) -> bool {
        !self.ring.load().rings.is_empty() && self.cluster.load().majority
    }
}

/// The `stats` report: memcached's standard fields, then Kai's `kai_` fields.
pub fn report(info: &NodeInfo, stats: &NodeStats) -> Vec<kai_proto::memcache::StatsEntry> {
    use kai_proto::memcache::StatsEntry as S;
    let placement = info.ring.load();
    let cluster = info.cluster.load();
    let (n, r, w) = info.quorum;
    let members = placement.latest().map_or(0, |ring| ring.nodes().len());
    let owned = placement.latest().map_or(0, |ring| ring.buckets_of(info.id).count());
    let sync = &stats.sync;
    let cpu = cpu_usage();
    vec![
        S::new("pid", std::process::id()),
        S::new("uptime", stats.uptime_secs()),
        S::new("time", crate::clock::unix_now()),
        S::new("version", PROTOCOL_VERSION),
        S::new("pointer_size", usize::BITS),
        S::new("rusage_user", seconds(cpu.user)),
        S::new("rusage_system", seconds(cpu.system)),
        S::new("curr_connections", get(&stats.curr_connections)),
        S::new("total_connections", get(&stats.total_connections)),
        S::new("rejected_connections", get(&stats.rejected_connections)),
        S::new("max_connections", info.max_connections),
        S::new("cmd_get", get(&stats.cmd_get)),
        S::new("cmd_set", get(&stats.cmd_set)),
        S::new("cmd_flush", get(&stats.cmd_flush)),
        S::new("store_too_large", get(&stats.store_too_large)),
        S::new("get_hits", get(&stats.get_hits)),
        S::new("get_misses", get(&stats.get_misses)),
        S::new("delete_hits", get(&stats.delete_hits)),
        S::new("delete_misses", get(&stats.delete_misses)),
        S::new("bytes_read", get(&stats.bytes_read)),
        S::new("bytes_written", get(&stats.bytes_written)),
        S::new("limit_maxbytes", limit_maxbytes(info)),
        S::new("bytes", info.store.value_bytes()),
        S::new("curr_items", info.store.value_count()),
        S::new("total_items", get(&stats.total_items)),
        // Kai stores on disk and never evicts.
        S::new("evictions", 0),
        S::new("threads", info.threads),
        S::new("kai_node", &info.name),
        S::new("kai_node_id", info.id),
        S::new("kai_quorum", format!("{n}:{r}:{w}")),
        S::new("kai_store", info.store.backend()),
        S::new("kai_members", members),
        S::new("kai_known_nodes", cluster.members.len()),
        S::new("kai_majority", u8::from(cluster.majority)),
        S::new("kai_ring_version", placement.latest_id().version),
        S::new("kai_rings_active", placement.rings.len()),
        S::new("kai_peer_connections", get(&stats.peer_connections)),
        S::new("kai_buckets", placement.buckets()),
        S::new("kai_buckets_owned", owned),
        S::new("kai_unreconciled_reads", get(&stats.unreconciled_reads)),
        S::new("kai_read_repairs", get(&stats.read_repairs)),
        S::new("kai_quorum_failures", get(&stats.quorum_failures)),
        S::new("kai_sync_buckets_pending", get(&sync.buckets_pending)),
        S::new("kai_sync_buckets_pulled", get(&sync.buckets_pulled)),
        S::new("kai_sync_keys_pulled", get(&sync.keys_pulled)),
        S::new("kai_sync_keys_per_sec", get(&sync.keys_per_sec)),
        S::new("kai_sync_eta_secs", get(&sync.eta_secs)),
        S::new("kai_sync_keys_remaining", get(&sync.keys_remaining)),
        S::new("kai_sync_keys_repaired", get(&sync.keys_repaired)),
        S::new("kai_sync_buckets_compared", get(&sync.buckets_compared)),
        S::new("kai_sync_buckets_dropped", get(&sync.buckets_dropped)),
        S::new("kai_sync_refused", get(&sync.refused)),
        S::new("kai_sync_refilling", get(&sync.refilling)),
        S::new("kai_tombstones", info.store.tombstone_count()),
        S::new("kai_tombstones_purged", get(&sync.tombstones_purged)),
    ]
}

/// CPU time the process has used, in user and system mode.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUsage {
    /// User-mode CPU time.
    pub user: std::time::Duration,
    /// Kernel-mode CPU time.
    pub system: std::time::Duration,
}

/// This process's CPU usage (`getrusage(RUSAGE_SELF)`); zero if the system cannot tell.
pub fn cpu_usage() -> CpuUsage {
    use nix::sys::resource::{getrusage, UsageWho};
    let as_duration = |t: nix::sys::time::TimeVal| {
        let micros = t.tv_sec().max(0) as u64 * 1_000_000 + t.tv_usec().max(0) as u64;
        std::time::Duration::from_micros(micros)
    };
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => CpuUsage {
            user: as_duration(usage.user_time()),
            system: as_duration(usage.system_time()),
        },
        Err(e) => {
            log::debug!("getrusage failed: {e}");
            CpuUsage::default()
        }
    }
}

/// Seconds with microseconds, as memcached prints `rusage_user` (`0.019460`).
fn seconds(d: std::time::Duration) -> String {
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// memcached's memory limit. Kai keeps its items on disk and never evicts, so its limit is the
/// size of the filesystem holding the data directory (0 if it cannot be read).
pub fn limit_maxbytes(info: &NodeInfo) -> u64 {
    // The directory may not exist yet (the memory store creates none): measure its nearest
    // existing ancestor.
    let existing = info
        .data_dir
        .ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .find(|p| p.exists())
        .unwrap_or(std::path::Path::new("."));
    match nix::sys::statvfs::statvfs(existing) {
        Ok(fs) => fs.blocks().saturating_mul(fs.fragment_size()),
        Err(e) => {
            log::debug!("statvfs of {} failed: {e}", info.data_dir.display());
            0
        }
    }
}

/// The `stats members` report: one line per known node,
/// `STAT member:<name> <status> id=<id> addr=<addr> buckets=<owned> silent_ms=<ms>`.
pub fn members_report(info: &NodeInfo) -> Vec<kai_proto::memcache::StatsEntry> {
    let placement = info.ring.load();
    info.cluster
        .load()
        .members
        .iter()
        .map(|m| {
            let owned = placement.latest().map_or(0, |ring| ring.buckets_of(m.id).count());
            kai_proto::memcache::StatsEntry::new(
                format!("member:{}", m.name),
                format!(
                    "{} id={} addr={} buckets={owned} silent_ms={}",
                    m.status, m.id, m.addr, m.silent_ms
                ),
            )
        })
        .collect()
}

/// The `stats buckets` report: for each bucket this node owns in the newest ring,
/// `STAT bucket:<id> <root>` where the root (hex) summarises the replica's digests: owners of a
/// bucket that hold the same records report the same root.
pub fn buckets_report(info: &NodeInfo) -> Vec<kai_proto::memcache::StatsEntry> {
    let placement = info.ring.load();
    let Some(ring) = placement.latest() else {
        return Vec::new();
    };
    ring.buckets_of(info.id)
        .map(|bucket| {
            let digest = info.store.digest(bucket);
            let mut bytes = Vec::with_capacity(digest.len() * 8);
            for d in digest {
                bytes.extend_from_slice(&d.to_be_bytes());
            }
            let root = xxhash_rust::xxh3::xxh3_64(&bytes);
            kai_proto::memcache::StatsEntry::new(format!("bucket:{}", bucket.0), format!("{root:016x}"))
        })
        .collect()
}

/// The `stats ring` report: the newest ring's preference list of every bucket,
/// `STAT bucket:<id> <name>,<name>,…` (coordinator preference first).
pub fn ring_report(info: &NodeInfo) -> Vec<kai_proto::memcache::StatsEntry> {
    let placement = info.ring.load();
    let Some(ring) = placement.latest() else {
        return Vec::new();
    };
    let cluster = info.cluster.load();
    let name = |id: kai_proto::NodeId| cluster.name_of(id);
    (0..placement.buckets())
        .map(kai_proto::BucketId)
        .map(|b| {
            let owners: Vec<String> = ring.preference_list(b).iter().map(|id| name(*id)).collect();
            kai_proto::memcache::StatsEntry::new(format!("bucket:{}", b.0), owners.join(","))
        })
        .collect()
}
