//! The `stats [group]` command: which report answers which group.
//!
//! memcached's groups answer with memcached's field names and Kai's nearest facts. Kai keeps its
//! items in one store without slab classes, so `items` and `slabs` show a single class `1`
//! holding every item (and only the totals when the node holds none, as memcached does);
//! `settings` shows the node's configuration under memcached's names; `conns` lists the
//! listening socket and the open client connections; `sizes` says the item size histogram is
//! disabled (Kai keeps none); `reset` zeroes the counters memcached
//! resets and answers `RESET`. Kai's own groups are `ring`, `members` and `buckets`. memcached
//! reads only the first argument as the group; any other group is `ERROR`.

use super::SessionShared;
use crate::clock::unix_now;
use crate::config::ExpiryPolicy;
use crate::report::{buckets_report, limit_maxbytes, members_report, report, ring_report};
use crate::stats::get;
use kai_proto::memcache::{Response, StatsEntry as S};

/// The reply to `stats` (no group) or `stats <group>`.
pub(crate) fn respond(shared: &SessionShared, group: Option<&str>) -> Response {
    let info = &shared.info;
    Response::Stats(match group {
        None => report(info, &shared.stats),
        Some("settings") => settings(shared),
        Some("items") => items(shared),
        Some("slabs") => slabs(shared),
        Some("conns") => conns(shared),
        // Kai keeps no item size histogram; memcached says the same when it keeps none.
        Some("sizes") => vec![S::new("sizes_status", "disabled")],
        Some("ring") => ring_report(info),
        Some("members") => members_report(info),
        Some("buckets") => buckets_report(info),
        Some("reset") => {
            shared.stats.reset();
            return Response::Reset;
        }
        Some(_) => return Response::Error,
    })
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn settings(shared: &SessionShared) -> Vec<S> {
    let info = &shared.info;
    let (n, r, w) = info.quorum;
    vec![
        S::new("maxbytes", limit_maxbytes(info)),
        S::new("maxconns", info.max_connections),
        S::new("tcpport", info.listen.port()),
        S::new("udpport", 0),
        S::new("inter", info.listen.ip()),
        S::new("verbosity", 0),
        S::new("oldest", 0),
        S::new("evictions", "off"),
        S::new("domain_socket", "NULL"),
        S::new("cas_enabled", "yes"),
        S::new("binding_protocol", "ascii"),
        S::new("auth_enabled_sasl", "no"),
        S::new("auth_enabled_ascii", "no"),
        S::new("item_size_max", info.max_value_size),
        S::new("num_threads", info.threads),
        S::new("flush_enabled", "yes"),
        S::new("hash_algorithm", "xxh3"),
        S::new("kai_quorum", format!("{n}:{r}:{w}")),
        S::new("kai_store", info.store.backend()),
        S::new("kai_expiry", yes_no(shared.expiry == ExpiryPolicy::Honour)),
    ]
}

fn items(shared: &SessionShared) -> Vec<S> {
    let count = shared.info.store.value_count();
    if count == 0 {
        return Vec::new();
    }
    let field = |name: &str, value: u64| S::new(format!("items:1:{name}"), value);
    vec![
        field("number", count),
        field("number_hot", 0),
        field("number_warm", 0),
        field("number_cold", count),
        field("age_hot", 0),
        field("age_warm", 0),
        field("age", 0),
        field("mem_requested", shared.info.store.value_bytes()),
        field("evicted", 0),
        field("evicted_nonzero", 0),
        field("evicted_time", 0),
        field("outofmemory", 0),
        field("tailrepairs", 0),
        field("reclaimed", 0),
        field("expired_unfetched", 0),
        field("evicted_unfetched", 0),
        field("evicted_active", 0),
    ]
}

fn slabs(shared: &SessionShared) -> Vec<S> {
    let store = &shared.info.store;
    let (count, bytes) = (store.value_count(), store.value_bytes());
    let stats = &shared.stats;
    let mut out = Vec::new();
    if count > 0 {
        let field = |name: &str, value: u64| S::new(format!("1:{name}"), value);
        out.extend([
            field("chunk_size", shared.info.max_value_size as u64),
            field("chunks_per_page", 1),
            field("total_pages", count),
            field("total_chunks", count),
            field("used_chunks", count),
            field("free_chunks", 0),
            field("free_chunks_end", 0),
            field("get_hits", get(&stats.get_hits)),
            field("cmd_set", get(&stats.cmd_set)),
            field("delete_hits", get(&stats.delete_hits)),
            field("incr_hits", 0),
            field("decr_hits", 0),
            field("cas_hits", 0),
            field("cas_badval", 0),
            field("touch_hits", 0),
        ]);
    }
    out.push(S::new("active_slabs", u64::from(count > 0)));
    out.push(S::new("total_malloced", bytes));
    out
}

fn conns(shared: &SessionShared) -> Vec<S> {
    let listen = shared.info.listen;
    let now = unix_now();
    let uptime = shared.stats.uptime_secs();
    let mut out = vec![
        S::new("0:addr", format!("tcp:{listen}")),
        S::new("0:state", "conn_listening"),
        S::new("0:secs_since_last_cmd", uptime),
    ];
    for c in shared.connections.list() {
        let id = c.id;
        out.extend([
            S::new(format!("{id}:addr"), format!("tcp:{}", c.peer)),
            S::new(format!("{id}:listen_addr"), format!("tcp:{listen}")),
            S::new(format!("{id}:secs_since_last_cmd"), c.secs_since_last_command(now)),
        ]);
    }
    out
}
