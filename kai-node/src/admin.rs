//! `kai status` and `kai leave`: talk to a running node over its memcache port.

use crate::client::Connection;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::time::Duration;

/// Which node to talk to.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The node's memcache address.
    #[arg(long, default_value = "127.0.0.1:11211")]
    node: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// For a node with `auth_file`: a file of memcached's `user:password` lines (e.g. the
    /// node's own) whose first user the command authenticates as.
    #[arg(long)]
    auth_file: Option<std::path::PathBuf>,
}

/// How often `kai leave` checks whether the node has gone.
const LEAVE_POLL: Duration = Duration::from_millis(500);

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn field<'a>(stats: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    stats.get(name).map_or("?", String::as_str)
}

/// One member line of `stats members`: `<status> id=… addr=… buckets=… silent_ms=…`.
struct Member {
    name: String,
    status: String,
    fields: BTreeMap<String, String>,
}

fn members(raw: &BTreeMap<String, String>) -> Vec<Member> {
    raw.iter()
        .filter_map(|(name, value)| {
            let name = name.strip_prefix("member:")?;
            let mut parts = value.split_whitespace();
            let status = parts.next()?.to_owned();
            let fields = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Some(Member {
                name: name.to_owned(),
                status,
                fields,
            })
        })
        .collect()
}

/// `kai status`: the node's view of the cluster and its transfers.
pub fn status(args: NodeArgs) -> Result<()> {
    runtime()?.block_on(async {
        let mut conn = Connection::open_as(&args.node, args.auth_file.as_deref()).await?;
        let stats = conn.stats(None).await?;
        let raw_members = conn.stats(Some("members")).await?;
        let members = members(&raw_members);
        if args.json {
            let json = serde_json::json!({
                "node": field(&stats, "kai_node"),
                "ring_version": field(&stats, "kai_ring_version"),
                "rings_active": field(&stats, "kai_rings_active"),
                "majority": field(&stats, "kai_majority") == "1",
                "members": members.iter().map(|m| serde_json::json!({
                    "name": m.name, "status": m.status, "fields": m.fields,
                })).collect::<Vec<_>>(),
                "transfers": {
                    "buckets_pending": field(&stats, "kai_sync_buckets_pending"),
                    "keys_pulled": field(&stats, "kai_sync_keys_pulled"),
                    "keys_remaining": field(&stats, "kai_sync_keys_remaining"),
                    "keys_per_sec": field(&stats, "kai_sync_keys_per_sec"),
                    "eta_secs": field(&stats, "kai_sync_eta_secs"),
                    "keys_repaired": field(&stats, "kai_sync_keys_repaired"),
                },
            });
            println!("{json}");
            return Ok(());
        }
        let transition = if field(&stats, "kai_rings_active") == "1" { "settled" } else { "in transition" };
        println!(
            "node {} — ring version {} ({transition}), {} member(s), quorum {}, {}",
            field(&stats, "kai_node"),
            field(&stats, "kai_ring_version"),
            field(&stats, "kai_members"),
            field(&stats, "kai_quorum"),
            if field(&stats, "kai_majority") == "1" { "sees a majority" } else { "CANNOT SEE A MAJORITY" },
        );
        println!();
        println!("{:<28} {:<9} {:>8} {:<24} {:>10}", "MEMBER", "STATUS", "BUCKETS", "ADDRESS", "SILENT");
        for m in &members {
            let get = |k: &str| m.fields.get(k).map_or("?", String::as_str);
            let silent = get("silent_ms").parse::<u64>().map_or("?".to_owned(), |ms| format!("{ms} ms"));
            println!("{:<28} {:<9} {:>8} {:<24} {:>10}", m.name, m.status, get("buckets"), get("addr"), silent);
        }
        println!();
        println!(
            "transfers: {} bucket(s) pending (about {} record(s)), {} record(s) pulled at {} keys/s, ETA {} s; anti-entropy repaired {} record(s), compared {} bucket(s)",
            field(&stats, "kai_sync_buckets_pending"),
            field(&stats, "kai_sync_keys_remaining"),
            field(&stats, "kai_sync_keys_pulled"),
            field(&stats, "kai_sync_keys_per_sec"),
            field(&stats, "kai_sync_eta_secs"),
            field(&stats, "kai_sync_keys_repaired"),
            field(&stats, "kai_sync_buckets_compared"),
        );
        Ok(())
    })
}

/// `kai leave`: asks the node to hand its data off and leave, then waits until it has gone.
pub fn leave(args: NodeArgs) -> Result<()> {
    runtime()?
        .block_on(async {
            let mut conn = Connection::open_as(&args.node, args.auth_file.as_deref()).await?;
            let reply = conn.command("kai_leave").await?;
            if reply != "OK" {
                bail!("node refused to leave: {reply}");
            }
            println!("{} is handing its data off…", args.node);
            loop {
                tokio::time::sleep(LEAVE_POLL).await;
                let Ok(mut conn) = Connection::open_as(&args.node, args.auth_file.as_deref()).await else {
                    println!("{} has left the cluster and stopped", args.node);
                    return Ok(());
                };
                let Ok(stats) = conn.stats(None).await else {
                    println!("{} has left the cluster and stopped", args.node);
                    return Ok(());
                };
                println!(
                    "  ring version {} ({} active), {} bucket(s) owned",
                    field(&stats, "kai_ring_version"),
                    field(&stats, "kai_rings_active"),
                    field(&stats, "kai_buckets_owned"),
                );
            }
        })
        .context("leave")
}

/// Options of `kai ring`.
#[derive(Args, Debug, Clone)]
pub struct RingArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Also list every bucket's preference list.
    #[arg(long)]
    buckets: bool,
}

/// `kai ring`: how buckets are placed, and the load per node.
pub fn ring(args: RingArgs) -> Result<()> {
    runtime()?.block_on(async {
        let mut conn = Connection::open_as(&args.node.node, args.node.auth_file.as_deref()).await?;
        let stats = conn.stats(None).await?;
        let placement: Vec<(u32, Vec<String>)> = conn
            .stats(Some("ring"))
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let bucket = k.strip_prefix("bucket:")?.parse().ok()?;
                Some((bucket, v.split(',').map(String::from).collect()))
            })
            .collect();
        let mut load: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (_, owners) in &placement {
            for (i, owner) in owners.iter().enumerate() {
                let entry = load.entry(owner.clone()).or_default();
                if i == 0 {
                    entry.0 += 1;
                }
                entry.1 += 1;
            }
        }
        if args.node.json {
            let json = serde_json::json!({
                "ring_version": field(&stats, "kai_ring_version"),
                "buckets": placement.len(),
                "load": load.iter().map(|(n, (p, r))| (n.clone(), serde_json::json!({"primary": p, "replica": r}))).collect::<serde_json::Map<_, _>>(),
                "placement": if args.buckets { serde_json::json!(placement.iter().map(|(b, o)| (b.to_string(), o)).collect::<BTreeMap<_, _>>()) } else { serde_json::Value::Null },
            });
            println!("{json}");
            return Ok(());
        }
        println!(
            "ring version {}: {} buckets, {} node(s), quorum {}",
            field(&stats, "kai_ring_version"),
            placement.len(),
            load.len(),
            field(&stats, "kai_quorum")
        );
        println!();
        println!("{:<28} {:>8} {:>8} {:>8}", "NODE", "PRIMARY", "REPLICA", "SHARE");
        let slots: usize = load.values().map(|(_, r)| r).sum();
        for (node, (primary, replica)) in &load {
            let share = 100.0 * *replica as f64 / slots.max(1) as f64;
            println!("{node:<28} {primary:>8} {replica:>8} {share:>7.1}%");
        }
        if args.buckets {
            println!();
            for (bucket, owners) in &placement {
                println!("{bucket:>6}  {}", owners.join(" → "));
            }
        }
        Ok(())
    })
}

/// `kai stats`: a node's statistics, grouped.
pub fn stats(args: NodeArgs) -> Result<()> {
    runtime()?.block_on(async {
        let mut conn = Connection::open_as(&args.node, args.auth_file.as_deref()).await?;
        let stats = conn.stats(None).await?;
        if args.json {
            println!("{}", serde_json::json!(stats));
            return Ok(());
        }
        type Group = (&'static str, fn(&str) -> bool);
        let groups: [Group; 3] = [
            ("memcache", |k| !k.starts_with("kai_")),
            ("cluster", |k| {
                k.starts_with("kai_") && !k.starts_with("kai_sync") && !k.starts_with("kai_tombstones")
            }),
            ("background sync", |k| {
                k.starts_with("kai_sync") || k.starts_with("kai_tombstones")
            }),
        ];
        for (title, belongs) in groups {
            println!("{title}:");
            for (name, value) in stats.iter().filter(|(k, _)| belongs(k)) {
                println!("  {:<28} {value}", name.trim_start_matches("kai_"));
            }
        }
        Ok(())
    })
}

/// Options of `kai healthcheck`.
#[derive(Args, Debug, Clone)]
pub struct HealthArgs {
    /// The node's memcache address; default: `listen` from the node's configuration
    /// (`KAI_LISTEN`, `--config`), with a wildcard host replaced by 127.0.0.1.
    #[arg(long)]
    node: Option<String>,
    /// TOML configuration file to read `listen` from.
    #[arg(long, short)]
    config: Option<std::path::PathBuf>,
    /// Also require the node to be in a cluster and to see a majority of it (readiness).
    #[arg(long)]
    ready: bool,
    /// File of memcached's `user:password` lines to authenticate with; default: the node's
    /// `auth_file` when `--node` is not given.
    #[arg(long)]
    auth_file: Option<std::path::PathBuf>,
}

/// Longest a health check waits for the node.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// `kai healthcheck`: exits 0 if the node answers (and, with `--ready`, serves a cluster).
pub fn healthcheck(args: HealthArgs) -> Result<()> {
    let (node, auth_file) = match args.node {
        Some(node) => (node, args.auth_file),
        None => {
            let config = crate::settings::load(args.config.as_deref(), &[])?;
            let mut addr = config.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            (addr.to_string(), args.auth_file.or(config.auth_file))
        }
    };
    runtime()?
        .block_on(async {
            let check = async {
                let mut conn = Connection::open_as(&node, auth_file.as_deref()).await?;
                let version = conn.command("version").await?;
                if !version.starts_with("VERSION ") {
                    bail!("unexpected answer to version: {version}");
                }
                if args.ready {
                    let stats = conn.stats(None).await?;
                    if field(&stats, "kai_members") == "0" || field(&stats, "kai_majority") != "1" {
                        bail!("not ready: not in a cluster, or cannot see a majority of it");
                    }
                }
                Ok(())
            };
            tokio::time::timeout(HEALTH_TIMEOUT, check)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {HEALTH_TIMEOUT:?}")))
        })
        .with_context(|| format!("node {node} is not healthy"))
}
