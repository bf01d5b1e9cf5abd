//! Latency histograms cheap enough for every request.
//!
//! Invariants: recording is two relaxed atomic additions and a bucket index computed from the
//! duration's bit length (no lock, no search, no allocation). Bucket `i` counts durations of at
//! most `FIRST_BOUND_MICROS << i` (powers of two from 32 µs to about 4.2 s); the last bucket
//! counts everything longer. A [`Snapshot`] is read bucket by bucket, not as a consistent cut:
//! a concurrent recording may be missing from the sum but present in a bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bound of the first bucket, in microseconds.
pub const FIRST_BOUND_MICROS: u64 = 32;
/// Buckets with a finite upper bound (`32 µs · 2^i` for `i < BOUNDED`).
pub const BOUNDED: usize = 18;
const SLOTS: usize = BOUNDED + 1;

/// A histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; SLOTS],
    sum_micros: AtomicU64,
}

/// The bucket of a duration of `micros`.
fn slot(micros: u64) -> usize {
    if micros <= FIRST_BOUND_MICROS {
        return 0;
    }
    // ⌈log2(micros)⌉ − log2(FIRST_BOUND_MICROS)
    let bits = (u64::BITS - (micros - 1).leading_zeros()) as usize;
    (bits - FIRST_BOUND_MICROS.trailing_zeros() as usize).min(BOUNDED)
}

/// Upper bound of bucket `i < BOUNDED`.
pub fn bound(i: usize) -> Duration {
    Duration::from_micros(FIRST_BOUND_MICROS << i)
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[slot(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// Counts of a [`Histogram`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Durations per bucket (not cumulative); the last counts those beyond every bound.
    pub counts: [u64; SLOTS],
    /// Sum of all durations, in microseconds.
    pub sum_micros: u64,
}

impl Snapshot {
    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Snapshot) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_micros += other.sum_micros;
    }

    /// An upper estimate of quantile `q` (0–1): the bound of the bucket holding it; `None` if
    /// nothing was counted or it lies beyond the last bound.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for i in 0..BOUNDED {
            seen += self.counts[i];
            if seen >= rank {
                return Some(bound(i));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_lands_in_the_first_bucket_that_bounds_it() {
        assert_eq!(slot(0), 0);
        assert_eq!(slot(32), 0);
        assert_eq!(slot(33), 1);
        assert_eq!(slot(64), 1);
        assert_eq!(slot(65), 2);
        assert_eq!(slot(1_000), 5); // ≤ 1024 µs
        let last = FIRST_BOUND_MICROS << (BOUNDED - 1);
        assert_eq!(slot(last), BOUNDED - 1);
        assert_eq!(slot(last + 1), BOUNDED);
        assert_eq!(slot(u64::MAX), BOUNDED);
        for micros in [1, 31, 100, 5_000, 123_456, 3_000_000] {
            let i = slot(micros);
            assert!(micros <= FIRST_BOUND_MICROS << i, "{micros} above bucket {i}");
            assert!(
                i == 0 || micros > FIRST_BOUND_MICROS << (i - 1),
                "{micros} fits bucket {}",
                i - 1
            );
        }
    }

    #[test]
    fn quantiles_and_counts_follow_the_recordings() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().quantile(0.99), None);
        for _ in 0..98 {
            h.record(Duration::from_micros(100)); // ≤ 128 µs
        }
        h.record(Duration::from_millis(3)); // ≤ 4096 µs
        h.record(Duration::from_secs(60)); // beyond every bound
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.sum_micros, 98 * 100 + 3_000 + 60_000_000);
        assert_eq!(s.quantile(0.5), Some(Duration::from_micros(128)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_micros(4096)));
        assert_eq!(s.quantile(1.0), None);
        assert_eq!((s.counts[2], s.counts[7], s.counts[BOUNDED]), (98, 1, 1));
        let mut merged = s;
        merged.merge(&s);
        assert_eq!(merged.count(), 200);
    }
}
