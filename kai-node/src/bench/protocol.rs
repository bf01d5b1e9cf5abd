//! The protocol dialects `kai bench` can speak, behind one connection type.
//!
//! Extension point: a new dialect (meta, binary) adds a [`Protocol`] variant, a module with its
//! connection, and one arm in each [`Connection`] method; the load generator above does not
//! change. Invariants: every method answers a [`Reply`] for a reply the server sent and an
//! `Err` only when the connection is unusable (I/O error, closed, garbled framing).

use super::text::TextConnection;
use anyhow::Result;
use clap::ValueEnum;

/// `kai bench --protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// The classic memcache text protocol.
    Text,
}

/// How the server answered one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The command's success answer (a hit or a miss for reads, `STORED`, a number).
    Done,
    /// The command's documented refusal (`NOT_STORED`, `EXISTS`, `NOT_FOUND`): a normal outcome.
    Refused,
    /// Anything else (`SERVER_ERROR …`, `CLIENT_ERROR …`, `ERROR`, an unexpected line): an error.
    Failed(String),
}

impl Reply {
    /// A failure carrying the (lossily decoded) reply line.
    pub fn failed(line: &[u8]) -> Reply {
        Reply::Failed(String::from_utf8_lossy(line).into_owned())
    }
}

/// One connection in some dialect.
pub enum Connection {
    /// Text protocol.
    Text(TextConnection),
}

impl Connection {
    /// Connects to `addr` speaking `protocol`.
    pub async fn open(protocol: Protocol, addr: &str) -> Result<Connection> {
        Ok(match protocol {
            Protocol::Text => Connection::Text(TextConnection::open(addr).await?),
        })
    }

    /// Reads `key` (a hit or a miss is done).
    pub async fn get(&mut self, key: &[u8]) -> Result<Reply> {
        match self {
            Connection::Text(c) => c.get(key).await,
        }
    }

    /// Stores `value` unconditionally.
    pub async fn set(&mut self, key: &[u8], value: &[u8]) -> Result<Reply> {
        match self {
            Connection::Text(c) => c.store("set", key, value).await,
        }
    }

    /// Stores `value` only if `key` is absent.
    pub async fn add(&mut self, key: &[u8], value: &[u8]) -> Result<Reply> {
        match self {
            Connection::Text(c) => c.store("add", key, value).await,
        }
    }

    /// Increments the counter `key` by one.
    pub async fn incr(&mut self, key: &[u8]) -> Result<Reply> {
        match self {
            Connection::Text(c) => c.incr(key).await,
        }
    }

    /// Reads `key` with its cas unique, then replaces it with `value` if it did not change.
    pub async fn cas(&mut self, key: &[u8], value: &[u8]) -> Result<Reply> {
        match self {
            Connection::Text(c) => c.cas(key, value).await,
        }
    }

    /// Stores every item, pipelined; the number stored.
    pub async fn set_batch(&mut self, items: &[(Vec<u8>, &[u8])]) -> Result<usize> {
        match self {
            Connection::Text(c) => c.set_batch(items).await,
        }
    }

    /// The number `key` holds, if any.
    pub async fn counter(&mut self, key: &[u8]) -> Result<Option<u64>> {
        match self {
            Connection::Text(c) => c.counter(key).await,
        }
    }
}
