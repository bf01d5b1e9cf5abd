//! `kai bench`: a memcache load generator for any server (Kai or memcached).
//!
//! Closed loop (default): each connection sends its next request as soon as the previous reply
//! arrived; latency is send → reply. Open loop (`--rate`): each connection follows a fixed
//! schedule ([`schedule`]) and latency is counted from the request's *intended* start, so a
//! server stall counts in every request it delays (no coordinated omission). Only answered
//! operations count as throughput; errors are counted apart and fail the run above
//! `--max-error-rate` ([`report`]). Keys are uniform or Zipfian, value sizes a weighted mix
//! ([`keys`]); `--mix` chooses the operations ([`workload`]), `--multiget` how many keys a get
//! reads; `--protocol` the dialect ([`protocol`]: [`text`], [`meta`], [`binary`], over one
//! [`wire`]).

mod binary;
mod keys;
mod meta;
mod protocol;
mod report;
mod schedule;
mod text;
mod wire;
mod workload;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use keys::{KeyChooser, ValueSizes};
use protocol::{Connection, Protocol, Read, Reply, Store};
use rand::{Rng, SeedableRng};
use report::{Series, Summary, Tally};
use schedule::Schedule;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use workload::{Mix, Op, Target, Workload};

/// Options of `kai bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Servers to load (`host:port`, comma separated); connections are spread over them.
    #[arg(long, default_value = "127.0.0.1:11211", value_delimiter = ',')]
    target: Vec<String>,
    /// Protocol dialect.
    #[arg(long, value_enum, default_value_t = Protocol::Text)]
    protocol: Protocol,
    /// Operation mix.
    #[arg(long, value_enum, default_value_t = Mix::GetSet)]
    mix: Mix,
    /// Concurrent connections in total (one request in flight each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// How long to measure (`0s` with `--warmup 0s`: only store the keys).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring (not recorded).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// `--mix get-set`: fraction of operations that are gets; the rest are sets.
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// `--mix get-set`: keys each get reads in one request (text `get k1 k2 …`, meta quiet `mg`
    /// batches ended by `mn`, binary `getkq` batches ended by `noop`). An operation is one
    /// request; `keys_per_sec` counts the keys. A text `get` line grows 17 bytes per key (Kai
    /// reads `get` lines of up to 64 KiB).
    #[arg(long, default_value_t = 1)]
    multiget: usize,
    /// Value sizes in bytes: `100`, or weighted `100:80,1000:15,10000:5` (size:weight).
    #[arg(long, default_value = "100")]
    value_size: String,
    /// Number of distinct keys (all stored before measuring, unless `--no-prefill`).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Zipfian key popularity with this exponent (0 < θ < 1, e.g. 0.99); default uniform.
    #[arg(long)]
    zipf: Option<f64>,
    /// Offered load in ops/s over all connections (open loop); default: closed loop.
    #[arg(long)]
    rate: Option<u64>,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A request not answered within this time is an error (the connection is reopened).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Fail the run if more than this fraction of attempts are errors.
    #[arg(long, default_value_t = 0.001)]
    max_error_rate: f64,
    /// Do not store every key before measuring.
    #[arg(long)]
    no_prefill: bool,
    /// Also report ops, errors, p99 and the latency histogram (`[µs, count]` pairs, two
    /// significant digits) per interval of this length (JSON `series`; the measurement starts
    /// at `measure_start_unix`).
    #[arg(long, value_parser = humantime::parse_duration)]
    series: Option<Duration>,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Keys stored per pipelined prefill batch.
const PREFILL_BATCH: usize = 100;
/// Prefill connections per target.
const PREFILL_CONNECTIONS: usize = 2;
/// Pause before reopening a connection that failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);
/// Time given to the tasks to start before the first scheduled request.
const START_DELAY: Duration = Duration::from_millis(20);
/// The one counter of `--mix hot-incr`.
const HOT_KEY: &[u8] = b"bench:hot";

/// Everything the connections share.
struct Plan {
    args: BenchArgs,
    keys: KeyChooser,
    sizes: ValueSizes,
    /// `x` repeated to the largest value size; values are prefixes of it.
    filler: Vec<u8>,
    /// Distinguishes this run's fresh `add` keys from earlier runs'.
    run_id: u32,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    done: AtomicU64,
    series: Option<Mutex<Series>>,
}

impl Plan {
    fn key_name(&self, target: Target, out: &mut Vec<u8>) {
        out.clear();
        // Writing to a Vec cannot fail.
        let _ = match target {
            Target::Key(n) => write!(out, "bench:{n:010}"),
            Target::Fresh { connection, n } => write!(out, "bench:add:{}:{connection}:{n}", self.run_id),
            Target::Hot => out.write_all(HOT_KEY),
        };
    }

    /// Draws `n` prefilled keys into `out` (reusing its buffers).
    fn draw_keys(&self, n: usize, rng: &mut impl Rng, out: &mut Vec<Vec<u8>>) {
        out.resize_with(n, Vec::new);
        for name in out.iter_mut() {
            self.key_name(Target::Key(self.keys.next(rng)), name);
        }
    }

    fn value(&self, size: usize) -> &[u8] {
        if self.args.mix.counters() {
            b"0"
        } else {
            &self.filler[..size]
        }
    }
}

/// Runs the benchmark described by `args` and prints the result.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.target.is_empty() || args.connections == 0 {
        bail!("need at least one target and connection");
    }
    if !(0.0..=1.0).contains(&args.get_ratio) {
        bail!("--get-ratio must be between 0 and 1");
    }
    if args.multiget == 0 || (args.multiget > 1 && args.mix != Mix::GetSet) {
        bail!("--multiget must be at least 1, and above 1 only with --mix get-set");
    }
    if let Some(rate) = args.rate {
        if rate == 0 {
            bail!("--rate must be positive");
        }
        if rate as f64 / args.connections as f64 > 1000.0 {
            log::warn!("more than 1000 ops/s per connection: the client's 1 ms timer tick bunches requests");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: BenchArgs) -> Result<()> {
    let keys = KeyChooser::new(args.keys, args.zipf)?;
    let sizes = ValueSizes::parse(&args.value_size)?;
    let filler = vec![b'x'; sizes.max()];
    let mut plan = Plan {
        keys,
        sizes,
        filler,
        run_id: rand::rng().random(),
        start: Instant::now(),
        measure_from: Instant::now(),
        end: Instant::now(),
        done: AtomicU64::new(0),
        series: None,
        args,
    };
    if !plan.args.no_prefill && plan.args.mix != Mix::HotIncr {
        prefill(&plan).await?;
    }
    if plan.args.mix == Mix::HotIncr {
        let mut conn = Connection::open(plan.args.protocol, &plan.args.target[0]).await?;
        if conn.store(Store::Set, HOT_KEY, b"0").await? != Reply::Done {
            bail!("cannot reset the hot counter");
        }
    }
    plan.start = Instant::now() + START_DELAY;
    plan.measure_from = plan.start + plan.args.warmup;
    plan.end = plan.measure_from + plan.args.duration;
    if let Some(interval) = plan.args.series {
        plan.series = Some(Mutex::new(Series::new(interval, plan.args.duration)?));
    }
    let measure_start_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| {
            d.as_secs_f64()
                + plan
                    .measure_from
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
        })
        .unwrap_or(0.0);
    let plan = Arc::new(plan);
    let tasks: Vec<_> = (0..plan.args.connections)
        .map(|i| tokio::spawn(run_connection(Arc::clone(&plan), i)))
        .collect();
    let progress = (!plan.args.quiet && !plan.args.json).then(|| progress_bar(&plan.args));
    if let Some(bar) = &progress {
        let total = plan.end.saturating_duration_since(plan.start);
        while Instant::now() < plan.end {
            tokio::time::sleep(Duration::from_millis(250)).await;
            bar.set_position(plan.start.elapsed().min(total).as_millis() as u64);
            bar.set_message(format!("{} ops", plan.done.load(Ordering::Relaxed)));
        }
    }
    let mut total = Tally::new()?;
    let mut last_reply = plan.end;
    for task in tasks {
        let (tally, finished) = task.await.context("connection task")??;
        total.merge(&tally)?;
        last_reply = last_reply.max(finished);
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    // Open loop: a server that fell behind answers past `end`; the window stretches with it.
    let elapsed = last_reply.saturating_duration_since(plan.measure_from);
    let summary = Summary::new(&total, elapsed);
    let lost = if plan.args.mix == Mix::HotIncr {
        let mut conn = Connection::open(plan.args.protocol, &plan.args.target[0]).await?;
        let value = conn.counter(HOT_KEY).await?.context("the hot counter is gone")?;
        Some((
            value,
            workload::lost_increments(value, total.increments_acknowledged, total.increments_unknown),
        ))
    } else {
        None
    };
    print_report(&plan, &total, &summary, elapsed, lost, measure_start_unix);
    summary.check_errors(plan.args.max_error_rate)?;
    if let Some((value, lost)) = lost {
        if lost != 0 {
            bail!(
                "the hot counter reads {value} after {} acknowledged and {} unknown increments: {lost} lost",
                total.increments_acknowledged,
                total.increments_unknown
            );
        }
    }
    Ok(())
}

async fn prefill(plan: &Plan) -> Result<()> {
    let args = &plan.args;
    let workers = args.target.len() * PREFILL_CONNECTIONS;
    let progress = (!args.quiet && !args.json && args.keys > 100_000).then(|| {
        let bar = ProgressBar::new(args.keys);
        bar.set_message("prefill");
        bar
    });
    let stored = AtomicU64::new(0);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (addr, stored, progress) = (&args.target[w % args.target.len()], &stored, &progress);
        tasks.push(async move {
            let mut conn = Connection::open(args.protocol, addr).await?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed ^ (w as u64) << 32);
            let mut first = (w * PREFILL_BATCH) as u64;
            let mut batch = Vec::with_capacity(PREFILL_BATCH);
            while first < args.keys {
                batch.clear();
                for n in first..(first + PREFILL_BATCH as u64).min(args.keys) {
                    let mut name = Vec::new();
                    plan.key_name(Target::Key(n), &mut name);
                    batch.push((name, plan.value(plan.sizes.next(&mut rng))));
                }
                let ok = conn.set_batch(&batch).await?;
                if ok != batch.len() {
                    bail!("prefill: {addr} stored {ok} of {} keys", batch.len());
                }
                let now = stored.fetch_add(ok as u64, Ordering::Relaxed) + ok as u64;
                if let Some(bar) = progress {
                    bar.set_position(now);
                }
                first += (workers * PREFILL_BATCH) as u64;
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    for result in futures_util::future::join_all(tasks).await {
        result?;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(())
}

/// One connection's run: its tally and when its last reply came.
async fn run_connection(plan: Arc<Plan>, index: usize) -> Result<(Tally, Instant)> {
    let args = &plan.args;
    let addr = &args.target[index % args.target.len()];
    let mut conn = Connection::open(args.protocol, addr).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed.wrapping_mul(1_000_003) ^ index as u64);
    let mut workload = Workload::new(args.mix, args.get_ratio, args.multiget, index);
    let schedule = args
        .rate
        .map(|rate| Schedule::new(plan.start, rate, args.connections, index));
    // Open loop: past this, requests still scheduled are counted as missed, not sent.
    let deadline = plan.end + args.timeout;
    let mut tally = Tally::new()?;
    let mut key = Vec::new();
    let mut batch = Vec::new();
    let mut free = Instant::now();
    tokio::time::sleep_until(plan.start.into()).await;
    for n in 0u64.. {
        let (intended, sent) = match schedule {
            Some(s) => {
                let intended = s.intended(n);
                if intended >= plan.end {
                    break;
                }
                if Instant::now() >= deadline {
                    tally.missed += count_missed(&s, n, plan.measure_from, plan.end);
                    break;
                }
                tokio::time::sleep_until(intended.into()).await;
                (intended, Instant::now())
            }
            None => {
                let now = Instant::now();
                if now >= plan.end {
                    break;
                }
                (now, now)
            }
        };
        let (key_index, size) = (plan.keys.next(&mut rng), plan.sizes.next(&mut rng));
        let op = workload.next(&mut rng, key_index, size);
        if let Op::MultiGet(n) = op {
            plan.draw_keys(n, &mut rng, &mut batch);
        }
        let result = tokio::time::timeout(args.timeout, execute(&mut conn, &plan, op, &mut key, &batch)).await;
        let done = Instant::now();
        let measured = intended >= plan.measure_from;
        let hot = matches!(op, Op::Incr(Target::Hot));
        let (reply, hits) = match result {
            Ok(Ok(Read { reply, hits })) => (reply, hits),
            Ok(Err(e)) => (Reply::Failed(format!("connection failed: {e:#}")), 0),
            Err(_) => (Reply::Failed(format!("no reply within {:?}", args.timeout)), 0),
        };
        tally.increments_acknowledged += u64::from(hot && reply == Reply::Done);
        let broken =
            matches!(&reply, Reply::Failed(m) if m.starts_with("connection failed") || m.starts_with("no reply"));
        match reply {
            Reply::Done | Reply::Refused if measured => {
                let latency = match schedule {
                    Some(_) => {
                        tally
                            .timer_lag
                            .saturating_record(sent.saturating_duration_since(intended.max(free)).as_micros() as u64);
                        schedule::open_loop_latency(intended, free, sent, done)
                    }
                    None => done - sent,
                };
                tally.record(latency, reply == Reply::Refused, op.keys(), hits);
                if let Some(series) = &plan.series {
                    let mut series = series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    series.record(intended - plan.measure_from, latency);
                }
                plan.done.fetch_add(1, Ordering::Relaxed);
            }
            Reply::Done | Reply::Refused => {}
            Reply::Failed(message) => {
                if measured {
                    tally.error(|| message);
                    if let Some(series) = &plan.series {
                        let mut series = series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        series.error(intended - plan.measure_from);
                    }
                }
                tally.increments_unknown += u64::from(hot);
            }
        }
        free = done;
        if broken {
            conn = reconnect(args.protocol, addr, plan.end).await?;
            free = Instant::now();
        }
    }
    Ok((tally, free))
}

/// Requests of `schedule` from number `n` on that fall in the measured window.
fn count_missed(schedule: &Schedule, n: u64, measure_from: Instant, end: Instant) -> u64 {
    (n..)
        .map(|i| schedule.intended(i))
        .take_while(|t| *t < end)
        .filter(|t| *t >= measure_from)
        .count() as u64
}

async fn reconnect(protocol: Protocol, addr: &str, until: Instant) -> Result<Connection> {
    loop {
        match Connection::open(protocol, addr).await {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
        }
    }
}

/// Sends `op`; `batch` holds the keys of a [`Op::MultiGet`].
async fn execute(conn: &mut Connection, plan: &Plan, op: Op, key: &mut Vec<u8>, batch: &[Vec<u8>]) -> Result<Read> {
    match op {
        Op::Get(t) => {
            plan.key_name(t, key);
            conn.get(key).await
        }
        Op::MultiGet(_) => conn.multi_get(batch).await,
        Op::Set(t, size) => {
            plan.key_name(t, key);
            conn.store(Store::Set, key, plan.value(size)).await.map(Read::from)
        }
        Op::Add(t, size) => {
            plan.key_name(t, key);
            conn.store(Store::Add, key, plan.value(size)).await.map(Read::from)
        }
        Op::Incr(t) => {
            plan.key_name(t, key);
            conn.incr(key).await.map(Read::from)
        }
        Op::Cas(t, size) => {
            plan.key_name(t, key);
            conn.cas(key, plan.value(size)).await.map(Read::from)
        }
    }
}

fn progress_bar(args: &BenchArgs) -> ProgressBar {
    let bar = ProgressBar::new((args.warmup + args.duration).as_millis() as u64);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:40}] {elapsed}/{duration} {msg}") {
        bar.set_style(style);
    }
    bar
}

fn print_report(
    plan: &Plan,
    total: &Tally,
    s: &Summary,
    elapsed: Duration,
    lost: Option<(u64, i64)>,
    measure_start_unix: f64,
) {
    let args = &plan.args;
    let keys = match args.zipf {
        Some(theta) => format!("{} keys zipf {theta}", args.keys),
        None => format!("{} keys uniform", args.keys),
    };
    let load = args
        .rate
        .map_or("closed loop".to_owned(), |r| format!("open loop, offered {r} ops/s"));
    if args.json {
        let series: Vec<_> = plan.series.as_ref().map_or(Vec::new(), |series| {
            let series = series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            series
                .slots()
                .map(|(t, slot)| {
                    let histogram: Vec<_> = slot
                        .latencies
                        .iter_recorded()
                        .map(|v| [v.value_iterated_to(), v.count_at_value()])
                        .collect();
                    serde_json::json!({"t": t, "ops": slot.ops, "errors": slot.errors,
                        "p99_us": slot.latencies.value_at_quantile(0.99), "histogram": histogram})
                })
                .collect()
        });
        let json = serde_json::json!({
            "measure_start_unix": measure_start_unix, "series": series,
            "targets": args.target, "protocol": format!("{:?}", args.protocol).to_lowercase(),
            "mix": format!("{:?}", args.mix), "multiget": args.multiget,
            "connections": args.connections, "threads": args.threads,
            "duration_s": args.duration.as_secs_f64(), "elapsed_s": elapsed.as_secs_f64(),
            "get_ratio": args.get_ratio, "value_size": args.value_size, "value_mean": plan.sizes.mean(), "keys": args.keys,
            "zipf": args.zipf, "rate": args.rate, "ops": s.ops, "refused": s.refused,
            "errors": s.errors, "missed": total.missed, "error_rate": s.error_rate,
            "error_samples": total.error_samples, "ops_per_sec": s.ops_per_sec, "keys_per_sec": s.keys_per_sec,
            "keys_read_or_written": total.keys, "hits": total.hits,
            "p50_us": s.p50_us, "p90_us": s.p90_us, "p99_us": s.p99_us, "p999_us": s.p999_us,
            "max_us": s.max_us, "timer_lag_p99_us": s.timer_lag_p99_us,
            "increments_acknowledged": total.increments_acknowledged,
            "increments_unknown": total.increments_unknown,
            "hot_counter": lost.map(|(v, _)| v), "lost_increments": lost.map(|(_, l)| l),
        });
        println!("{json}");
        return;
    }
    let multiget = match args.multiget {
        1 => String::new(),
        k => format!(" ({k} keys per get)"),
    };
    println!(
        "{} {:?}{multiget} via {}  {} connections  {} client threads  {keys}  values {} B (mean {:.0})  {load}",
        args.target.join(","),
        args.mix,
        format!("{:?}", args.protocol).to_lowercase(),
        args.connections,
        args.threads,
        args.value_size,
        plan.sizes.mean(),
    );
    println!(
        "ops/s {:.0}  ops {}  refused {}  errors {} ({:.3}%)  p50 {}us  p90 {}us  p99 {}us  p99.9 {}us  max {}us",
        s.ops_per_sec,
        s.ops,
        s.refused,
        s.errors,
        s.error_rate * 100.0,
        s.p50_us,
        s.p90_us,
        s.p99_us,
        s.p999_us,
        s.max_us
    );
    if args.multiget > 1 {
        println!(
            "keys/s {:.0}  hits {} of {} keys",
            s.keys_per_sec, total.hits, total.keys
        );
    }
    if args.rate.is_some() {
        println!(
            "client timer lateness p99 {}us (not counted in latency)",
            s.timer_lag_p99_us
        );
    }
    for sample in &total.error_samples {
        println!("error: {sample}");
    }
    if let Some((value, lost)) = lost {
        println!(
            "hot counter {value}: {} increments acknowledged, {} unknown, {lost} lost",
            total.increments_acknowledged, total.increments_unknown
        );
    }
}
