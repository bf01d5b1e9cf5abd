//! When each request of an open-loop connection is meant to start, and how its latency is
//! counted.
//!
//! Invariants: the intended start of request `n` depends only on the schedule (never on when
//! earlier replies came back), so a server stall delays every later request and that delay is
//! counted in their latency — the measurement is free of coordinated omission. The only delay
//! not counted is the client's own timer lateness: the time between the moment a request could
//! have been sent (its intended start, or the previous reply if that came later) and its actual
//! send.

use std::time::{Duration, Instant};

/// The intended send times of one connection: every `interval`, starting at `first`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    first: Instant,
    interval: Duration,
}

impl Schedule {
    /// The schedule of connection `index` of `connections` that together offer `rate` ops/s;
    /// the connections' first requests are spread evenly over one interval so the load is
    /// smooth.
    pub fn new(start: Instant, rate: u64, connections: usize, index: usize) -> Schedule {
        let interval = Duration::from_secs_f64(connections as f64 / rate.max(1) as f64);
        let offset = interval.mul_f64(index as f64 / connections.max(1) as f64);
        Schedule {
            first: start + offset,
            interval,
        }
    }

    /// Intended start of request number `n` (counting from 0).
    pub fn intended(&self, n: u64) -> Instant {
        self.first + self.interval.mul_f64(n as f64)
    }

    /// Time between two requests of this connection.
    #[cfg(test)]
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// Latency of one open-loop request: from its intended start to its reply, minus the client's
/// timer lateness.
///
/// `free` is when the connection could send (the previous reply), `sent` when it did, `done`
/// when the reply arrived. If the connection was free before the intended start, the request
/// waited only for the client's timer, which is not the server's doing: the latency is
/// `done - sent`. If the previous reply came after the intended start, the server held the
/// request back: the latency is `done - intended`, minus only the lateness after `free`.
pub fn open_loop_latency(intended: Instant, free: Instant, sent: Instant, done: Instant) -> Duration {
    let could_send = intended.max(free);
    let timer_lateness = sent.saturating_duration_since(could_send);
    done.saturating_duration_since(intended).saturating_sub(timer_lateness)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn connections_are_spread_over_one_interval() {
        let t = Instant::now();
        let a = Schedule::new(t, 1000, 4, 0);
        let b = Schedule::new(t, 1000, 4, 2);
        assert_eq!(a.interval(), ms(4));
        assert_eq!(a.intended(0), t);
        assert_eq!(b.intended(0), t + ms(2));
        assert_eq!(b.intended(3), t + ms(14));
    }

    #[test]
    fn intended_starts_do_not_move_when_replies_are_late() {
        let t = Instant::now();
        let s = Schedule::new(t, 100, 1, 0);
        // Whatever happened to requests 0..9, request 10 is meant for 100 ms after the start.
        assert_eq!(s.intended(10), t + ms(100));
    }

    #[test]
    fn a_stall_is_counted_in_every_request_it_delays() {
        let t = Instant::now();
        // Request 0 intended at 0 takes 50 ms; request 1 was intended at 10 ms, could only go at
        // 50 ms and took 1 ms: its latency is 41 ms, not 1 ms.
        let latency = open_loop_latency(t + ms(10), t + ms(50), t + ms(50), t + ms(51));
        assert_eq!(latency, ms(41));
    }

    #[test]
    fn the_clients_own_timer_lateness_is_not_counted() {
        let t = Instant::now();
        // Free since 0, intended at 10 ms, the timer fired at 11 ms, reply at 11.2 ms.
        let done = t + ms(11) + Duration::from_micros(200);
        assert_eq!(
            open_loop_latency(t + ms(10), t, t + ms(11), done),
            Duration::from_micros(200)
        );
        // Previous reply at 20 ms (a stall), sent at 20.5 ms, reply at 21 ms: 10.5 ms counted.
        assert_eq!(
            open_loop_latency(
                t + ms(10),
                t + ms(20),
                t + ms(20) + Duration::from_micros(500),
                t + ms(21)
            ),
            Duration::from_micros(10_500)
        );
    }
}
