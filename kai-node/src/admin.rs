//! The admin commands (`kai status`, `ring`, `stats`, `leave`, `healthcheck`): clients of a
//! running node's admin HTTP endpoint (`admin_listen`), never of its memcache port.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Which node to talk to, and how to prove the right to change it.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The node's admin address (`host:port`); default: `admin_listen` from the node's
    /// configuration (`KAI_ADMIN_LISTEN`, `--config`), a wildcard host replaced by 127.0.0.1.
    #[arg(long)]
    admin: Option<String>,
    /// TOML configuration file to read `admin_listen` and `admin_token` from.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Bearer token for `kai leave`; default: `admin_token` from the configuration
    /// (`KAI_ADMIN_TOKEN`, `--config`).
    #[arg(long)]
    token: Option<String>,
}

/// Options of the commands that print a report.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    #[command(flatten)]
    target: Target,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// How often `kai leave` checks whether the node has gone.
const LEAVE_POLL: Duration = Duration::from_millis(500);
/// Longest one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a health check waits for the node.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// An admin endpoint and the token to present.
struct Endpoint {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Target {
    fn endpoint(&self, timeout: Duration) -> Result<Endpoint> {
        // The configuration is read only for what the command line leaves out; a node's full
        // configuration may not validate where only the admin address is wanted.
        let config = match (&self.admin, &self.token) {
            (Some(_), Some(_)) => None,
            (Some(_), None) => crate::settings::load(self.config.as_deref(), &[]).ok(),
            (None, _) => Some(crate::settings::load(self.config.as_deref(), &[])?),
        };
        let admin = match &self.admin {
            Some(admin) => admin.clone(),
            None => {
                let mut addr = config.as_ref().map(|c| c.admin_listen).context("no admin address")?;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                addr.to_string()
            }
        };
        let token = self.token.clone().or_else(|| config.and_then(|c| c.admin_token));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(Endpoint {
            base: format!("http://{admin}"),
            token,
            agent,
        })
    }
}

impl Endpoint {
    /// `GET path`: the status code and body.
    fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut response = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .with_context(|| format!("cannot reach the admin endpoint {}", self.base))?;
        let body = response.body_mut().read_to_string()?;
        Ok((response.status().as_u16(), body))
    }

    /// `GET path` of a JSON document.
    fn json(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get(path)?;
        if status != 200 {
            bail!("{}{path} answered {status}: {}", self.base, body.trim());
        }
        serde_json::from_str(&body).with_context(|| format!("{}{path} did not answer JSON", self.base))
    }

    /// `POST path` with the bearer token: the status code and body.
    fn post(&self, path: &str) -> Result<(u16, String)> {
        let mut request = self.agent.post(&format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request
            .send_empty()
            .with_context(|| format!("cannot reach the admin endpoint {}", self.base))?;
        let body = response.body_mut().read_to_string()?;
        Ok((response.status().as_u16(), body))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "?".to_owned(),
        other => other.to_string(),
    }
}

/// Options of `kai status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Redraw every second until interrupted (with `--json`, one document per line).
    #[arg(long)]
    watch: bool,
}

/// How often `kai status --watch` redraws.
const WATCH_PERIOD: Duration = Duration::from_secs(1);
/// ANSI: clear the screen and move the cursor home.
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

/// `kai status`: the node's view of the cluster and its transfers (`--watch`: live).
pub fn status(args: StatusArgs) -> Result<()> {
    let endpoint = args.node.target.endpoint(REQUEST_TIMEOUT)?;
    loop {
        let status = endpoint.json("/api/v1/status")?;
        if args.node.json {
            println!("{status}");
        } else {
            if args.watch {
                print!("{CLEAR_SCREEN}");
            }
            print_status(&status);
        }
        if !args.watch {
            return Ok(());
        }
        std::thread::sleep(WATCH_PERIOD);
    }
}

fn print_status(status: &Value) {
    let transition = if status["rings_active"] == 1 {
        "settled"
    } else {
        "in transition"
    };
    let q = &status["quorum"];
    println!(
        "node {} — ring version {} ({transition}), {} member(s), quorum {}:{}:{}, {}",
        text(&status["node"]),
        text(&status["ring_version"]),
        text(&status["ring_members"]),
        text(&q["n"]),
        text(&q["r"]),
        text(&q["w"]),
        if status["majority"] == true {
            "sees a majority"
        } else {
            "CANNOT SEE A MAJORITY"
        },
    );
    println!();
    println!(
        "{:<28} {:<9} {:>8} {:<24} {:>10}",
        "MEMBER", "STATUS", "BUCKETS", "ADDRESS", "SILENT"
    );
    for m in status["members"].as_array().into_iter().flatten() {
        let silent = m["silent_ms"].as_u64().map_or("?".to_owned(), |ms| format!("{ms} ms"));
        println!(
            "{:<28} {:<9} {:>8} {:<24} {:>10}",
            text(&m["name"]),
            text(&m["status"]),
            text(&m["buckets"]),
            text(&m["addr"]),
            silent
        );
    }
    let t = &status["transfers"];
    println!();
    println!(
        "transfers: {} bucket(s) pending (about {} record(s)), {} record(s) pulled at {} keys/s, ETA {} s; anti-entropy repaired {} record(s), compared {} bucket(s)",
        text(&t["buckets_pending"]),
        text(&t["keys_remaining"]),
        text(&t["keys_pulled"]),
        text(&t["keys_per_sec"]),
        text(&t["eta_secs"]),
        text(&t["keys_repaired"]),
        text(&t["buckets_compared"]),
    );
}

/// `kai leave`: asks the node to hand its data off and leave, then shows the handoff until the
/// node has gone.
pub fn leave(args: NodeArgs) -> Result<()> {
    let endpoint = args.target.endpoint(REQUEST_TIMEOUT)?;
    let (code, body) = endpoint.post("/api/v1/leave").context("leave")?;
    if code != 202 {
        bail!("node refused to leave ({code}): {}", body.trim());
    }
    let owned = |s: &Value| {
        s["members"]
            .as_array()
            .and_then(|members| members.iter().find(|m| m["name"] == s["node"]))
            .and_then(|m| m["buckets"].as_u64())
            .unwrap_or(0)
    };
    let first = endpoint.json("/api/v1/status").ok();
    let start = first.as_ref().map_or(0, owned);
    let bar = indicatif::ProgressBar::new(start);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} handing off buckets [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if !args.json {
        println!("{} is handing its data off…", endpoint.base);
    }
    loop {
        std::thread::sleep(LEAVE_POLL);
        let Ok(status) = endpoint.json("/api/v1/status") else {
            bar.finish_and_clear();
            if args.json {
                println!("{}", serde_json::json!({ "left": true }));
            } else {
                println!("{} has left the cluster and stopped", endpoint.base);
            }
            return Ok(());
        };
        bar.set_position(start.saturating_sub(owned(&status)));
        bar.set_message(format!(
            "ring version {} ({} active)",
            text(&status["ring_version"]),
            text(&status["rings_active"])
        ));
    }
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
    let endpoint = args.node.target.endpoint(REQUEST_TIMEOUT)?;
    let ring = endpoint.json("/api/v1/ring")?;
    let status = endpoint.json("/api/v1/status")?;
    let nodes: Vec<String> = ring["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| text(&n["name"]))
        .collect();
    let placement: Vec<Vec<String>> = ring["placement"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|owners| {
            owners
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| nodes.get(i.as_u64()? as usize).cloned())
                .collect()
        })
        .collect();
    if args.node.json {
        let mut out = ring.clone();
        if !args.buckets {
            out["placement"] = Value::Null;
        }
        println!("{out}");
        return Ok(());
    }
    let q = &status["quorum"];
    println!(
        "ring version {}: {} buckets, {} node(s), quorum {}:{}:{}",
        text(&ring["version"]),
        text(&ring["buckets"]),
        nodes.len(),
        text(&q["n"]),
        text(&q["r"]),
        text(&q["w"]),
    );
    println!();
    println!("{:<28} {:>8} {:>8} {:>8}", "NODE", "PRIMARY", "REPLICA", "SHARE");
    let slots: u64 = ring["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["replica"].as_u64())
        .sum();
    for node in ring["nodes"].as_array().into_iter().flatten() {
        let replica = node["replica"].as_u64().unwrap_or(0);
        let share = 100.0 * replica as f64 / slots.max(1) as f64;
        println!(
            "{:<28} {:>8} {:>8} {share:>7.1}%",
            text(&node["name"]),
            text(&node["primary"]),
            replica
        );
    }
    if args.buckets {
        println!();
        for (bucket, owners) in placement.iter().enumerate() {
            println!("{bucket:>6}  {}", owners.join(" → "));
        }
    }
    Ok(())
}

/// `kai stats`: a node's statistics, grouped.
pub fn stats(args: NodeArgs) -> Result<()> {
    let stats = args.target.endpoint(REQUEST_TIMEOUT)?.json("/api/v1/stats")?;
    if args.json {
        println!("{stats}");
        return Ok(());
    }
    let Some(stats) = stats.as_object() else {
        bail!("/api/v1/stats did not answer an object");
    };
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
            println!("  {:<28} {}", name.trim_start_matches("kai_"), text(value));
        }
    }
    Ok(())
}

/// Options of `kai healthcheck`.
#[derive(Args, Debug, Clone)]
pub struct HealthArgs {
    #[command(flatten)]
    target: Target,
    /// Also require the node to be in a cluster and to see a majority of it (readiness).
    #[arg(long)]
    ready: bool,
}

/// `kai healthcheck`: exits 0 if the node answers `/health` (with `--ready`, `/ready`).
pub fn healthcheck(args: HealthArgs) -> Result<()> {
    let endpoint = args.target.endpoint(HEALTH_TIMEOUT)?;
    let path = if args.ready { "/ready" } else { "/health" };
    let (code, body) = endpoint
        .get(path)
        .with_context(|| format!("node {} is not healthy", endpoint.base))?;
    if code != 200 {
        bail!("node {} is not healthy: {}", endpoint.base, body.trim());
    }
    Ok(())
}
