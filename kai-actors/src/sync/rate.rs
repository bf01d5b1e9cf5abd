//! A token bucket limiting background data movement (keys per second), so handoff and
//! anti-entropy cannot starve client requests.

use std::time::{Duration, Instant};

/// Tokens accrue at `rate` per second up to one second's worth.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket refilling at `rate` tokens per second, starting full.
    pub fn new(rate: u64, now: Instant) -> Self {
        TokenBucket {
            rate: rate.max(1) as f64,
            tokens: rate.max(1) as f64,
            last: now,
        }
    }

    /// Takes `n` tokens at `now`; returns how long the caller must wait before using them
    /// (zero if they were available). Debt is allowed, so large batches are not starved.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_up_to_one_second_then_paces() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000, t0);
        assert_eq!(bucket.take(1000, t0), Duration::ZERO);
        assert_eq!(bucket.take(500, t0), Duration::from_millis(500));
        // Half a second later the debt is paid; another 250 need a quarter second.
        assert_eq!(
            bucket.take(250, t0 + Duration::from_millis(500)),
            Duration::from_millis(250)
        );
        // Idle time refills at most one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(bucket.take(1000, later), Duration::ZERO);
        assert!(bucket.take(1, later) > Duration::ZERO);
    }
}
