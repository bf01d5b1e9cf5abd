//! `kai`: run a Kai node, or talk to one.

mod admin;
mod bench;
mod http;
mod settings;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// glibc's malloc was a quarter of the instructions of the replicated path (docs/performance.md,
/// "Profile of the replicated path"); mimalloc's thread-local free lists suit its many small,
/// short-lived allocations (actix envelopes, oneshots, boxed futures, frames).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kai: a Dynamo-style distributed key-value store that speaks memcache.
#[derive(Parser)]
#[command(name = "kai", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node (runs until SIGINT/SIGTERM).
    Start(StartArgs),
    /// Print the version.
    Version,
    /// Load-test any memcache server and print throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Show a running node's view of the cluster: members, ring, transfers (`--watch`: live).
    Status(admin::StatusArgs),
    /// Make a running node hand its data off and leave the cluster, then stop.
    Leave(admin::NodeArgs),
    /// Show how buckets are placed on the ring and the load per node.
    Ring(admin::RingArgs),
    /// Show a running node's statistics.
    Stats(admin::NodeArgs),
    /// Exit 0 if the node answers (container health checks); `--ready` also requires it to serve a cluster.
    Healthcheck(admin::HealthArgs),
}

#[derive(Args)]
struct StartArgs {
    /// TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Memcache listen address (config key `listen`).
    #[arg(long)]
    listen: Option<String>,
    /// Peer listen address (config key `peer_listen`).
    #[arg(long)]
    peer_listen: Option<String>,
    /// Data directory (config key `data_dir`).
    #[arg(long)]
    data_dir: Option<String>,
    /// Node name (config key `name`).
    #[arg(long)]
    name: Option<String>,
    /// Any config key: `--set key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl StartArgs {
    fn overrides(&self) -> Result<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        for (key, value) in [
            ("listen", &self.listen),
            ("peer_listen", &self.peer_listen),
            ("data_dir", &self.data_dir),
            ("name", &self.name),
        ] {
            if let Some(v) = value {
                pairs.push((key.to_owned(), v.clone()));
            }
        }
        for item in &self.set {
            let Some((key, value)) = item.split_once('=') else {
                bail!("--set expects KEY=VALUE, got `{item}`");
            };
            pairs.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(pairs)
    }
}

/// actix-http logs every connection it refuses, one line each; the admin endpoint logs those
/// itself, once per client (`http::bad_input`). Naming the target in `RUST_LOG` turns it back on.
const QUIET_LOG_TARGET: &str = "actix_http::h1::dispatcher";

fn main() -> ExitCode {
    env_logger::Builder::new()
        .filter_module(QUIET_LOG_TARGET, log::LevelFilter::Off)
        .parse_env(env_logger::Env::default().default_filter_or("info"))
        .init();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kai: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Start(args) => start(args),
        Command::Version => {
            println!("kai {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Bench(args) => bench::run(args),
        Command::Status(args) => admin::status(args),
        Command::Leave(args) => admin::leave(args),
        Command::Ring(args) => admin::ring(args),
        Command::Stats(args) => admin::stats(args),
        Command::Healthcheck(args) => admin::healthcheck(args),
    }
}

/// File descriptors a node needs besides its client connections (store files, peers, listeners).
const SPARE_FILE_DESCRIPTORS: u64 = 1024;

fn start(args: StartArgs) -> Result<()> {
    let config = settings::load(args.config.as_deref(), &args.overrides()?)?;
    let wanted = config.max_connections as u64 + SPARE_FILE_DESCRIPTORS;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => log::warn!(
            "open file limit is {limit}; max_connections = {} needs about {wanted} (raise `ulimit -n`)",
            config.max_connections
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
    let admin_socket = http::bind(config.admin_listen)?;
    let admin_token = config.admin_token.clone();
    let system = actix::System::new();
    system.block_on(async move {
        let node = kai_actors::start(config).await.context("node failed to start")?;
        let admin = match http::serve(admin_socket, node.info(), node.shared_stats(), admin_token) {
            Ok(admin) => admin,
            Err(e) => {
                node.shutdown().await;
                return Err(e.context("admin endpoint failed to start"));
            }
        };
        // One machine-readable line on stdout: scripts and tests wait for it.
        println!(
            "kai ready node={} memcache={} peer={} admin={}",
            node.name(),
            node.client_addr(),
            node.peer_addr(),
            admin.addr()
        );
        tokio::select! {
            signal = wait_for_shutdown_signal() => signal?,
            () = node.left() => log::info!("left the cluster"),
        }
        log::info!("shutting down");
        admin.stop().await;
        node.shutdown().await;
        Ok(())
    })
}

async fn wait_for_shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
