//! The protocol dialects `kai bench` can speak, behind one connection type.
//!
//! Extension point: a dialect is a [`Protocol`] variant, a module with its connection (request
//! encoding and reply classification), and a [`Connection`] variant; the load generator above
//! does not change. Invariants: every method answers a [`Reply`] for a reply the server sent and
//! an `Err` only when the connection is unusable (I/O error, closed, garbled framing); a
//! multi-key read accepts only hits of requested keys, in request order ([`HitOrder`]).

use super::binary::BinaryConnection;
use super::meta::MetaConnection;
use super::text::TextConnection;
use anyhow::Result;
use clap::ValueEnum;

/// `kai bench --protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// The classic memcache text protocol (`get k1 k2 …` for multi-key reads).
    Text,
    /// memcached's meta commands (`mg`/`ms`/`ma`; multi-key reads as quiet `mg` ended by `mn`).
    Meta,
    /// The memcached binary protocol (multi-key reads as `getkq` packets ended by `noop`).
    Binary,
}

/// How the server answered one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The command's success answer (a hit or a miss for reads, stored, a number).
    Done,
    /// The command's documented refusal (not stored, exists, not found): a normal outcome.
    Refused,
    /// Anything else (a server or client error, an unexpected reply): an error.
    Failed(String),
}

impl Reply {
    /// A failure carrying the (lossily decoded) reply line.
    pub fn failed(line: &[u8]) -> Reply {
        Reply::Failed(String::from_utf8_lossy(line).into_owned())
    }
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// How it went.
    pub reply: Reply,
    /// How many of its keys were found (0 for anything but a read).
    pub hits: u64,
}

impl From<Reply> for Read {
    fn from(reply: Reply) -> Read {
        Read { reply, hits: 0 }
    }
}

/// The unconditional and the add-only store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Store whatever is there.
    Set,
    /// Store only if the key is absent.
    Add,
}

/// Checks the hits of one multi-key read: each must be a requested key, in request order (a key
/// requested twice may hit twice).
pub struct HitOrder<'a, K> {
    keys: &'a [K],
    next: usize,
}

impl<'a, K: AsRef<[u8]>> HitOrder<'a, K> {
    /// Nothing seen yet of the read of `keys`.
    pub fn new(keys: &'a [K]) -> HitOrder<'a, K> {
        HitOrder { keys, next: 0 }
    }

    /// A hit of `key` (text and meta: identified by key): true if a requested key at or after
    /// the previous hit's position is `key`.
    pub fn accept(&mut self, key: &[u8]) -> bool {
        match self.keys[self.next..].iter().position(|k| k.as_ref() == key) {
            Some(at) => {
                self.next += at + 1;
                true
            }
            None => false,
        }
    }

    /// A hit of request number `index` carrying `key` (binary: identified by opaque): true if
    /// `index` comes after the previous hit's and that request's key is `key`.
    pub fn accept_at(&mut self, index: usize, key: &[u8]) -> bool {
        if index < self.next || self.keys.get(index).is_none_or(|k| k.as_ref() != key) {
            return false;
        }
        self.next = index + 1;
        true
    }
}

/// One connection in some dialect.
pub enum Connection {
    /// Text protocol.
    Text(TextConnection),
    /// Meta protocol.
    Meta(MetaConnection),
    /// Binary protocol.
    Binary(BinaryConnection),
}

/// Calls the same method on whichever dialect `$conn` speaks.
macro_rules! each {
    ($conn:expr, $c:ident => $call:expr) => {
        match $conn {
            Connection::Text($c) => $call,
            Connection::Meta($c) => $call,
            Connection::Binary($c) => $call,
        }
    };
}

impl Connection {
    /// Connects to `addr` speaking `protocol`.
    pub async fn open(protocol: Protocol, addr: &str) -> Result<Connection> {
        Ok(match protocol {
            Protocol::Text => Connection::Text(TextConnection::open(addr).await?),
            Protocol::Meta => Connection::Meta(MetaConnection::open(addr).await?),
            Protocol::Binary => Connection::Binary(BinaryConnection::open(addr).await?),
        })
    }

    /// Reads `key` (a hit or a miss is done).
    pub async fn get(&mut self, key: &[u8]) -> Result<Read> {
        each!(self, c => c.get(key).await)
    }

    /// Reads every key of `keys` in one request or batch (hits and misses are done).
    pub async fn multi_get(&mut self, keys: &[Vec<u8>]) -> Result<Read> {
        each!(self, c => c.multi_get(keys).await)
    }

    /// Stores `value` as `store` says.
    pub async fn store(&mut self, store: Store, key: &[u8], value: &[u8]) -> Result<Reply> {
        each!(self, c => c.store(store, key, value).await)
    }

    /// Increments the counter `key` by one (a missing key is refused, not created).
    pub async fn incr(&mut self, key: &[u8]) -> Result<Reply> {
        each!(self, c => c.incr(key).await)
    }

    /// Reads `key` with its cas unique, then replaces it with `value` if it did not change.
    pub async fn cas(&mut self, key: &[u8], value: &[u8]) -> Result<Reply> {
        each!(self, c => c.cas(key, value).await)
    }

    /// Stores every item, pipelined; the number stored.
    pub async fn set_batch(&mut self, items: &[(Vec<u8>, &[u8])]) -> Result<usize> {
        each!(self, c => c.set_batch(items).await)
    }

    /// The number `key` holds, if any.
    pub async fn counter(&mut self, key: &[u8]) -> Result<Option<u64>> {
        each!(self, c => c.counter(key).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn hits_by_key_must_follow_request_order() {
        let requested = keys(&["a", "b", "a", "c"]);
        let mut order = HitOrder::new(&requested);
        assert!(order.accept(b"a"));
        assert!(order.accept(b"a"), "requested twice, may hit twice");
        assert!(!order.accept(b"b"), "b was requested before the second a");
        assert!(order.accept(b"c"));
        assert!(!order.accept(b"c"), "c was requested once");
        assert!(!HitOrder::new(&requested).accept(b"z"), "never requested");
    }

    #[test]
    fn hits_by_index_must_carry_that_requests_key_in_order() {
        let requested = keys(&["a", "b", "c"]);
        let mut order = HitOrder::new(&requested);
        assert!(order.accept_at(1, b"b"));
        assert!(!order.accept_at(0, b"a"), "before the previous hit");
        assert!(!order.accept_at(1, b"b"), "the same request twice");
        assert!(!order.accept_at(2, b"b"), "the wrong key");
        assert!(order.accept_at(2, b"c"));
        assert!(!order.accept_at(3, b"c"), "no such request");
    }
}
