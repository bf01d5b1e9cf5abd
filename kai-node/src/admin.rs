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
        let mut conn = Connection::open(&args.node).await?;
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
            "transfers: {} bucket(s) pending, {} record(s) pulled at {} keys/s, ETA {} s; anti-entropy repaired {} record(s), compared {} bucket(s)",
            field(&stats, "kai_sync_buckets_pending"),
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
            let mut conn = Connection::open(&args.node).await?;
            let reply = conn.command("kai_leave").await?;
            if reply != "OK" {
                bail!("node refused to leave: {reply}");
            }
            println!("{} is handing its data off…", args.node);
            loop {
                tokio::time::sleep(LEAVE_POLL).await;
                let Ok(mut conn) = Connection::open(&args.node).await else {
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
