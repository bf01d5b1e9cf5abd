//! Parsed memcache requests.

use crate::key::Key;
use crate::meta::MetaRequest;
use bytes::Bytes;

/// A storage command whose data block has been read in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageCommand {
    /// The key.
    pub key: Key,
    /// Opaque client flags.
    pub flags: u32,
    /// Expiry as memcached reads it (the low 32 bits of the number sent, see
    /// [`absolute_expiry`]): 0 = never, ≤ 30 days = relative seconds, larger = absolute unix
    /// time, negative = already expired.
    pub exptime: i32,
    /// The data block, without its trailing `\r\n`.
    pub data: Bytes,
    /// The client asked for no reply.
    pub noreply: bool,
}

/// The conditional storage commands, run as read-modify-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionalStore {
    /// `add`: only if absent.
    Add,
    /// `replace`: only if present.
    Replace,
    /// `append`: after the present value.
    Append,
    /// `prepend`: before the present value.
    Prepend,
    /// `cas <unique>`: only if the present version has this cas unique.
    Cas(u64),
}

/// One complete client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `get`/`gets` with one or more keys; `with_cas` for `gets`.
    Get {
        /// Keys in request order; keys Kai cannot store (control characters) are left out, as
        /// they can only miss.
        keys: Vec<Key>,
        /// Include the cas unique in each `VALUE` line (`gets`).
        with_cas: bool,
    },
    /// `set`
    Set(StorageCommand),
    /// `add`, `replace`, `append`, `prepend`, `cas`.
    Conditional(ConditionalStore, StorageCommand),
    /// `incr`/`decr <key> <delta> [noreply]`.
    Arithmetic {
        /// The key.
        key: Key,
        /// `incr` (else `decr`).
        incr: bool,
        /// The delta; `None` if it is not a 64-bit unsigned number
        /// (`CLIENT_ERROR invalid numeric delta argument`).
        delta: Option<u64>,
        /// The client asked for no reply.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        /// The key.
        key: Key,
        /// Expiry as in [`StorageCommand::exptime`].
        exptime: i32,
        /// The client asked for no reply.
        noreply: bool,
    },
    /// `gat`/`gats <exptime> <key>+`: get and touch.
    GetAndTouch {
        /// Expiry as in [`StorageCommand::exptime`].
        exptime: i32,
        /// Keys, as in [`Request::Get`].
        keys: Vec<Key>,
        /// `gats`: include cas uniques.
        with_cas: bool,
    },
    /// `delete <key> [noreply]`
    Delete {
        /// The key.
        key: Key,
        /// The client asked for no reply.
        noreply: bool,
    },
    /// `stats [group]`
    Stats {
        /// Optional argument, e.g. `kai`.
        group: Option<String>,
    },
    /// `version`
    Version,
    /// `verbosity <level> [noreply]`
    Verbosity {
        /// The client asked for no reply.
        noreply: bool,
    },
    /// `quit`: close the connection.
    Quit,
    /// A meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`). Its reply decides itself what
    /// quiet mode hides, so [`Request::noreply`] is false for it.
    Meta(MetaRequest),
    /// `flush_all [delay] [noreply]`: everything stored before it (or, with a delay, before
    /// that time) is gone, cluster-wide.
    FlushAll {
        /// As memcached reads it: ≤ 0 now, up to 30 days relative seconds, else a unix time.
        delay: i32,
        /// The client asked for no reply.
        noreply: bool,
    },
}

impl Request {
    /// True if the reply is to be left out: the client asked for none.
    pub fn noreply(&self) -> bool {
        match self {
            Request::Set(cmd) | Request::Conditional(_, cmd) => cmd.noreply,
            Request::Delete { noreply, .. }
            | Request::Verbosity { noreply }
            | Request::Arithmetic { noreply, .. }
            | Request::Touch { noreply, .. }
            | Request::FlushAll { noreply, .. } => *noreply,
            Request::Get { .. }
            | Request::GetAndTouch { .. }
            | Request::Stats { .. }
            | Request::Version
            | Request::Quit
            | Request::Meta(_) => false,
        }
    }
}

/// Seconds of relative expiry beyond which memcached reads `exptime` as a unix timestamp.
pub const MAX_RELATIVE_EXPTIME: i32 = 60 * 60 * 24 * 30;

impl StorageCommand {
    /// The absolute expiry (unix seconds, 0 = never) of this command when received at `now`,
    /// following memcached: 0 never expires, up to 30 days is relative, larger is an absolute
    /// unix time, negative is already expired.
    pub fn expires_at(&self, now: u64) -> u64 {
        absolute_expiry(self.exptime, now)
    }
}

/// See [`StorageCommand::expires_at`]. `exptime` is bounded to memcached's range by its type:
/// absolute times reach 2038 at most, and an absolute time in the past is already expired.
pub fn absolute_expiry(exptime: i32, now: u64) -> u64 {
    match exptime {
        0 => 0,
        e if e < 0 => now.max(1),
        e if e <= MAX_RELATIVE_EXPTIME => now + u64::from(e.unsigned_abs()),
        e => u64::from(e.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_memcached_rules() {
        let now = 1_800_000_000;
        assert_eq!(absolute_expiry(0, now), 0);
        assert_eq!(absolute_expiry(10, now), now + 10);
        assert_eq!(
            absolute_expiry(MAX_RELATIVE_EXPTIME, now),
            now + MAX_RELATIVE_EXPTIME as u64
        );
        assert_eq!(
            absolute_expiry(MAX_RELATIVE_EXPTIME + 1, now),
            MAX_RELATIVE_EXPTIME as u64 + 1
        );
        assert_eq!(absolute_expiry(1_900_000_000, now), 1_900_000_000);
        assert!(absolute_expiry(-1, now) <= now);
        assert_ne!(absolute_expiry(-1, now), 0);
    }
}
