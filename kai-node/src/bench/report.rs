//! What a benchmark run counted, and the summary it prints.
//!
//! Invariants: only operations the server answered with the command's success or documented
//! refusal count as throughput and go into the latency histogram; errors (failure replies,
//! timeouts, broken connections) and scheduled requests never sent are counted apart, and a run
//! whose error share exceeds the threshold fails.

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::time::Duration;

/// Highest latency the histograms track, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 3;

/// Counts of one connection, or of all merged.
pub struct Tally {
    /// Latency of answered operations, µs.
    pub latencies: Histogram<u64>,
    /// Open loop: how late the client's timer sent requests, µs (not counted in latency).
    pub timer_lag: Histogram<u64>,
    /// Operations answered with success or a documented refusal.
    pub ops: u64,
    /// Of those, refusals (`NOT_STORED`, `EXISTS`, `NOT_FOUND`).
    pub refused: u64,
    /// Keys those operations read or wrote (more than `ops` with multi-key reads).
    pub keys: u64,
    /// Keys their reads found.
    pub hits: u64,
    /// Failure replies, timeouts and broken connections.
    pub errors: u64,
    /// Open loop: requests scheduled within the run that were never sent (the run's deadline
    /// passed while the server was behind).
    pub missed: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// `hot-incr`: increments answered with a number, warm-up included.
    pub increments_acknowledged: u64,
    /// `hot-incr`: increments that failed without a clear outcome, warm-up included.
    pub increments_unknown: u64,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Result<Tally> {
        let histogram = || Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("histogram bounds");
        Ok(Tally {
            latencies: histogram()?,
            timer_lag: histogram()?,
            ops: 0,
            refused: 0,
            keys: 0,
            hits: 0,
            errors: 0,
            missed: 0,
            error_samples: Vec::new(),
            increments_acknowledged: 0,
            increments_unknown: 0,
        })
    }

    /// Records an answered operation on `keys` keys, `hits` of them found by a read, and its
    /// latency.
    pub fn record(&mut self, latency: Duration, refused: bool, keys: u64, hits: u64) {
        self.latencies.saturating_record(micros(latency));
        self.ops += 1;
        self.refused += u64::from(refused);
        self.keys += keys;
        self.hits += hits;
    }

    /// Records an error.
    pub fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(message());
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Tally) -> Result<()> {
        self.latencies.add(&other.latencies).context("merge histograms")?;
        self.timer_lag.add(&other.timer_lag).context("merge histograms")?;
        self.ops += other.ops;
        self.refused += other.refused;
        self.keys += other.keys;
        self.hits += other.hits;
        self.errors += other.errors;
        self.missed += other.missed;
        for sample in &other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(sample.clone());
            }
        }
        self.increments_acknowledged += other.increments_acknowledged;
        self.increments_unknown += other.increments_unknown;
        Ok(())
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros().min(u128::from(MAX_LATENCY_US)) as u64).max(1)
}

/// The figures of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Answered operations per second of the measured window.
    pub ops_per_sec: f64,
    /// Keys of answered operations per second (above `ops_per_sec` with multi-key reads).
    pub keys_per_sec: f64,
    /// Answered operations.
    pub ops: u64,
    /// Refusals among them.
    pub refused: u64,
    /// Errors plus never-sent requests.
    pub errors: u64,
    /// `errors / (ops + errors)`.
    pub error_rate: f64,
    /// Latency percentiles, µs: p50, p90, p99, p99.9, max.
    pub p50_us: u64,
    /// p90.
    pub p90_us: u64,
    /// p99.
    pub p99_us: u64,
    /// p99.9.
    pub p999_us: u64,
    /// Highest latency.
    pub max_us: u64,
    /// Open loop: p99 of the client's timer lateness, µs.
    pub timer_lag_p99_us: u64,
}

impl Summary {
    /// Summarises `tally` over a measured window of `elapsed`.
    pub fn new(tally: &Tally, elapsed: Duration) -> Summary {
        let h = &tally.latencies;
        let errors = tally.errors + tally.missed;
        let attempts = tally.ops + errors;
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Summary {
            ops_per_sec: tally.ops as f64 / seconds,
            keys_per_sec: tally.keys as f64 / seconds,
            ops: tally.ops,
            refused: tally.refused,
            errors,
            error_rate: if attempts == 0 {
                0.0
            } else {
                errors as f64 / attempts as f64
            },
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            timer_lag_p99_us: tally.timer_lag.value_at_quantile(0.99),
        }
    }

    /// Fails if the error share is above `max_error_rate`.
    pub fn check_errors(&self, max_error_rate: f64) -> Result<()> {
        if self.error_rate > max_error_rate || (self.ops == 0 && self.errors > 0) {
            bail!(
                "{} errors in {} attempts ({:.3}%), above the threshold of {:.3}% (--max-error-rate)",
                self.errors,
                self.ops + self.errors,
                self.error_rate * 100.0,
                max_error_rate * 100.0
            );
        }
        Ok(())
    }
}

/// Highest latency a series slot tracks, in microseconds.
const MAX_SLOT_LATENCY_US: u64 = 10_000_000;

/// One slot of a time series: the operations intended to start within it.
pub struct Slot {
    /// Answered operations.
    pub ops: u64,
    /// Errors.
    pub errors: u64,
    /// Their latencies, µs (two significant digits).
    pub latencies: Histogram<u64>,
}

/// Per-interval counts over the measured window (`--series`), for runs that must be cut to a
/// phase of the server (e.g. a catch-up). Slot `i` holds operations whose intended start is in
/// `[i·interval, (i+1)·interval)` after the start of measurement.
pub struct Series {
    interval: Duration,
    slots: Vec<Slot>,
}

impl Series {
    /// Slots of `interval` covering `window`.
    pub fn new(interval: Duration, window: Duration) -> Result<Series> {
        let count = (window.as_secs_f64() / interval.as_secs_f64().max(1e-3))
            .ceil()
            .max(1.0) as usize;
        let slots = (0..count)
            .map(|_| {
                Ok(Slot {
                    ops: 0,
                    errors: 0,
                    latencies: Histogram::new_with_bounds(1, MAX_SLOT_LATENCY_US, 2).context("histogram bounds")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Series { interval, slots })
    }

    fn slot(&mut self, since_start: Duration) -> Option<&mut Slot> {
        let i = (since_start.as_secs_f64() / self.interval.as_secs_f64()) as usize;
        self.slots.get_mut(i)
    }

    /// Records an answered operation intended `since_start` after the start of measurement.
    pub fn record(&mut self, since_start: Duration, latency: Duration) {
        if let Some(slot) = self.slot(since_start) {
            slot.ops += 1;
            slot.latencies
                .saturating_record(micros(latency).min(MAX_SLOT_LATENCY_US));
        }
    }

    /// Records an error.
    pub fn error(&mut self, since_start: Duration) {
        if let Some(slot) = self.slot(since_start) {
            slot.errors += 1;
        }
    }

    /// The slots as `(start offset in seconds, slot)`.
    pub fn slots(&self) -> impl Iterator<Item = (f64, &Slot)> {
        let step = self.interval.as_secs_f64();
        self.slots.iter().enumerate().map(move |(i, s)| (i as f64 * step, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_answered_operations_only() {
        let mut tally = Tally::new().expect("tally");
        for us in 1..=1000 {
            tally.record(Duration::from_micros(us), us % 10 == 0, 3, 2);
        }
        tally.error(|| "SERVER_ERROR quorum not reached".to_owned());
        let s = Summary::new(&tally, Duration::from_secs(2));
        assert_eq!(s.ops, 1000);
        assert_eq!(s.ops_per_sec, 500.0, "the error is not throughput");
        assert_eq!(s.keys_per_sec, 1500.0, "three keys per operation");
        assert_eq!(s.refused, 100);
        assert_eq!(s.errors, 1);
        assert!((s.p50_us as i64 - 500).abs() <= 1, "p50 {}", s.p50_us);
        assert!((s.p99_us as i64 - 990).abs() <= 1, "p99 {}", s.p99_us);
        assert!((s.p999_us as i64 - 999).abs() <= 1, "p99.9 {}", s.p999_us);
        assert_eq!(s.max_us, 1000);
    }

    #[test]
    fn merged_tallies_add_up() {
        let mut a = Tally::new().expect("tally");
        let mut b = Tally::new().expect("tally");
        a.record(Duration::from_micros(10), false, 1, 0);
        b.record(Duration::from_micros(30), false, 4, 3);
        b.missed = 2;
        for i in 0..5 {
            b.error(|| format!("error {i}"));
        }
        a.merge(&b).expect("merge");
        assert_eq!((a.ops, a.keys, a.hits, a.errors, a.missed), (2, 5, 3, 5, 2));
        assert_eq!(a.error_samples.len(), ERROR_SAMPLES);
        assert_eq!(a.latencies.max(), 30);
    }

    #[test]
    fn series_slots_hold_the_operations_intended_in_them() {
        let mut series = Series::new(Duration::from_secs(1), Duration::from_millis(2500)).expect("series");
        series.record(Duration::from_millis(100), Duration::from_micros(50));
        series.record(Duration::from_millis(1900), Duration::from_micros(70));
        series.record(Duration::from_millis(1950), Duration::from_micros(900));
        series.error(Duration::from_millis(2100));
        series.record(Duration::from_secs(9), Duration::from_micros(1));
        let slots: Vec<_> = series
            .slots()
            .map(|(t, s)| (t, s.ops, s.errors, s.latencies.max()))
            .collect();
        assert_eq!(slots.len(), 3);
        assert_eq!(slots[0], (0.0, 1, 0, 50));
        assert_eq!((slots[1].0, slots[1].1, slots[1].2), (1.0, 2, 0));
        assert!((slots[1].3 as i64 - 900).abs() <= 9, "two significant digits");
        assert_eq!(slots[2], (2.0, 0, 1, 0));
    }

    #[test]
    fn a_run_fails_above_the_error_threshold() {
        let mut tally = Tally::new().expect("tally");
        for _ in 0..999 {
            tally.record(Duration::from_micros(5), false, 1, 0);
        }
        tally.error(String::new);
        let s = Summary::new(&tally, Duration::from_secs(1));
        assert!(s.check_errors(0.001).is_ok(), "1 in 1000 is at the threshold");
        tally.missed = 1;
        assert!(Summary::new(&tally, Duration::from_secs(1))
            .check_errors(0.001)
            .is_err());
        let mut nothing = Tally::new().expect("tally");
        nothing.error(String::new);
        assert!(Summary::new(&nothing, Duration::from_secs(1))
            .check_errors(1.0)
            .is_err());
    }
}
