//! Wall-clock time in unix seconds, the unit of expiry and tombstone times.
//!
//! Only expiry and tombstone garbage collection read the wall clock; ordering of writes never
//! does (version tags are logical), so a clock jump can change when a value expires, never which
//! write wins.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
