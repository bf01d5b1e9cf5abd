//! `kai bench`: a memcache load generator for any server (Kai or memcached).
//!
//! Each connection runs a closed loop, or with `--rate` an open loop at a fixed offered load
//! (requests are sent on a schedule; latency is measured from the actual send, since tokio's
//! timers have 1 ms resolution; if the server cannot keep up, the achieved ops/s falls below the
//! offered rate, which the report shows). Latencies go into HDR histograms; the report gives
//! ops/s and p50/p99/p99.9.

use crate::client::Connection;
use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `kai bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Servers to load (`host:port`, comma separated); connections are spread over them.
    #[arg(long, default_value = "127.0.0.1:11211", value_delimiter = ',')]
    target: Vec<String>,
    /// Concurrent connections in total.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring (not recorded).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Fraction of operations that are gets; the rest are sets.
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Offered load in ops/s over all connections (open loop); default: as fast as possible.
    #[arg(long)]
    rate: Option<u64>,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Do not store every key before measuring.
    #[arg(long)]
    no_prefill: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Highest latency the histograms track, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Results of one connection.
struct Tally {
    latencies: Histogram<u64>,
    ops: u64,
    errors: u64,
}

impl Tally {
    fn new() -> Result<Self> {
        Ok(Tally {
            latencies: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("histogram bounds")?,
            ops: 0,
            errors: 0,
        })
    }
}

fn key_name(i: usize) -> String {
    format!("bench:{i:010}")
}

async fn prefill(args: &BenchArgs, value: &[u8]) -> Result<()> {
    let per_target = args.keys.div_ceil(args.target.len());
    let mut tasks = Vec::new();
    for (t, addr) in args.target.iter().enumerate() {
        let (addr, value) = (addr.clone(), value.to_vec());
        let range = (t * per_target)..((t + 1) * per_target).min(args.keys);
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&addr).await?;
            for i in range {
                if !conn.set(&key_name(i), &value).await? {
                    bail!("prefill: {addr} did not store key {i}");
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.context("prefill task")??;
    }
    Ok(())
}

async fn run_connection(args: Arc<BenchArgs>, index: usize, start: Instant, done: Arc<AtomicU64>) -> Result<Tally> {
    let addr = &args.target[index % args.target.len()];
    let mut conn = Connection::open(addr).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(index as u64);
    let value = vec![b'x'; args.value_size];
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.connections as f64 / rate.max(1) as f64));
    let mut tally = Tally::new()?;
    // Spread the connections' schedules evenly over one interval, so the load is smooth.
    let mut scheduled =
        Instant::now() + interval.map_or(Duration::ZERO, |i| i * index as u32 / args.connections as u32);
    loop {
        let issued = match interval {
            Some(interval) => {
                scheduled += interval;
                tokio::time::sleep_until(scheduled.into()).await;
                Instant::now()
            }
            None => Instant::now(),
        };
        if issued >= end {
            break;
        }
        let key = key_name(rng.random_range(0..args.keys));
        let ok = if rng.random_bool(args.get_ratio) {
            conn.get(&key).await?
        } else {
            conn.set(&key, &value).await?
        };
        if issued < measure_from {
            continue;
        }
        let micros = issued.elapsed().as_micros().clamp(1, u128::from(MAX_LATENCY_US)) as u64;
        tally.latencies.record(micros)?;
        tally.ops += 1;
        tally.errors += u64::from(!ok);
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(tally)
}

/// Runs the benchmark described by `args` and prints the result.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.target.is_empty() || args.connections == 0 || args.keys == 0 {
        bail!("need at least one target, connection and key");
    }
    if !(0.0..=1.0).contains(&args.get_ratio) {
        bail!("--get-ratio must be between 0 and 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: BenchArgs) -> Result<()> {
    let value = vec![b'x'; args.value_size];
    if !args.no_prefill {
        prefill(&args, &value).await?;
    }
    let args = Arc::new(args);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| tokio::spawn(run_connection(Arc::clone(&args), i, start, Arc::clone(&done))))
        .collect();
    let progress = (!args.quiet && !args.json).then(|| progress_bar(&args));
    let total_time = args.warmup + args.duration;
    if let Some(bar) = &progress {
        while start.elapsed() < total_time {
            tokio::time::sleep(Duration::from_millis(250)).await;
            bar.set_position(start.elapsed().as_millis().min(total_time.as_millis()) as u64);
            bar.set_message(format!("{} ops", done.load(Ordering::Relaxed)));
        }
    }
    let mut total = Tally::new()?;
    for task in tasks {
        let tally = task.await.context("connection task")??;
        total.latencies.add(&tally.latencies)?;
        total.ops += tally.ops;
        total.errors += tally.errors;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    report(&args, &total);
    Ok(())
}

fn progress_bar(args: &BenchArgs) -> ProgressBar {
    let bar = ProgressBar::new((args.warmup + args.duration).as_millis() as u64);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:40}] {elapsed}/{duration} {msg}") {
        bar.set_style(style);
    }
    bar
}

fn report(args: &BenchArgs, total: &Tally) {
    let secs = args.duration.as_secs_f64();
    let ops_per_sec = total.ops as f64 / secs;
    let h = &total.latencies;
    let (p50, p99, p999, max) = (
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    );
    if args.json {
        let json = serde_json::json!({
            "targets": args.target, "connections": args.connections, "duration_s": secs,
            "get_ratio": args.get_ratio, "value_size": args.value_size, "keys": args.keys,
            "rate": args.rate, "ops": total.ops, "errors": total.errors, "ops_per_sec": ops_per_sec,
            "p50_us": p50, "p99_us": p99, "p999_us": p999, "max_us": max,
        });
        println!("{json}");
        return;
    }
    println!(
        "targets {}  connections {}  {:.0}% get / {:.0}% set  value {} B  keys {}  {}",
        args.target.join(","),
        args.connections,
        args.get_ratio * 100.0,
        (1.0 - args.get_ratio) * 100.0,
        args.value_size,
        args.keys,
        args.rate
            .map_or("closed loop".to_owned(), |r| format!("offered {r} ops/s")),
    );
    println!(
        "ops {}  ops/s {:.0}  errors {}  p50 {}us  p99 {}us  p99.9 {}us  max {}us",
        total.ops, ops_per_sec, total.errors, p50, p99, p999, max
    );
}
