//! Decoded binary requests. Keys are raw bytes: binary keys may hold any byte, and the server
//! decides what to do with one Kai cannot store (see the session).

use crate::memcache::request::MAX_RELATIVE_EXPTIME;
use bytes::Bytes;

/// The expiry of an incr/decr that must not create a missing key (memcached's rule).
pub const COUNTER_NO_CREATE: u32 = 0xffff_ffff;

/// How a set-family request stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// Unconditionally.
    Set,
    /// Only if absent.
    Add,
    /// Only if present.
    Replace,
}

/// One request, quiet and loud forms folded together (the opcode in the
/// [`crate::binary::RequestHeader`] still tells them apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// get, getq, getk, getkq.
    Get {
        /// The key.
        key: Bytes,
    },
    /// touch, gat, gatq, gatk, gatkq: set the expiry, answer flags (and value, but for touch).
    GetAndTouch {
        /// The key.
        key: Bytes,
        /// New expiry (see [`absolute_expiry`]).
        exptime: u32,
    },
    /// set, add, replace and their quiet forms; a non-zero cas in the header makes any of them
    /// a compare-and-swap, as in memcached.
    Store {
        /// Which store.
        mode: StoreMode,
        /// The key.
        key: Bytes,
        /// Client flags.
        flags: u32,
        /// Expiry (see [`absolute_expiry`]).
        exptime: u32,
        /// The value.
        value: Bytes,
    },
    /// append, prepend and their quiet forms.
    Concat {
        /// Append (else prepend).
        append: bool,
        /// The key.
        key: Bytes,
        /// The bytes to add.
        value: Bytes,
    },
    /// delete, deleteq.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// increment, decrement and their quiet forms.
    Counter {
        /// Increment (else decrement).
        incr: bool,
        /// The key.
        key: Bytes,
        /// The amount.
        delta: u64,
        /// The value a missing key is created with.
        initial: u64,
        /// Expiry of a created key; [`COUNTER_NO_CREATE`] = answer "not found" instead.
        exptime: u32,
    },
    /// quit, quitq.
    Quit,
    /// flush, flushq.
    Flush {
        /// Delay in seconds (0 = now).
        exptime: u32,
    },
    /// noop: answered at once; clients use it to end a batch of quiet requests.
    Noop,
    /// version.
    Version,
    /// stat with an optional group (the key).
    Stat {
        /// The group; empty for all statistics.
        group: Bytes,
    },
    /// SASL: list the mechanisms.
    SaslListMechs,
    /// SASL: start (`step` false) or continue an authentication.
    Sasl {
        /// SASL step (else SASL auth).
        step: bool,
        /// Mechanism name (the key).
        mechanism: Bytes,
        /// Mechanism data (the value).
        data: Bytes,
    },
}

/// Absolute expiry (unix seconds, 0 = never) of a binary `exptime` received at `now`. Unlike the
/// text protocol the field is unsigned: 0 never expires, up to 30 days is relative, anything
/// larger is an absolute unix time (in the past: already expired), as in memcached.
pub fn absolute_expiry(exptime: u32, now: u64) -> u64 {
    match exptime {
        0 => 0,
        e if e <= MAX_RELATIVE_EXPTIME.unsigned_abs() => now + u64::from(e),
        e => u64::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_unsigned() {
        let now = 1_800_000_000;
        assert_eq!(absolute_expiry(0, now), 0);
        assert_eq!(absolute_expiry(60, now), now + 60);
        assert_eq!(absolute_expiry(2_592_000, now), now + 2_592_000);
        assert_eq!(absolute_expiry(2_592_001, now), 2_592_001);
        assert_eq!(absolute_expiry(u32::MAX, now), u64::from(u32::MAX));
    }
}
