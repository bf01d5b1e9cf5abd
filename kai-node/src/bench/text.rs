//! The memcache text protocol as `kai bench` speaks it: one request in flight per connection
//! (pipelined only for the prefill), multi-key reads as one `get k1 k2 …`, replies classified as
//! done, refused or failed.
//!
//! Invariants: a reply that is not the command's documented answer is a failure, never a
//! success; a `VALUE` of a key not requested (or out of request order) is a failure; an error
//! line ends a read (as in memcached), anything else is read up to `END` so the connection stays
//! in step.

use super::protocol::{HitOrder, Read, Reply, Store};
use super::wire::Wire;
use anyhow::{bail, Context, Result};
use std::io::Write;

/// One text-protocol connection.
pub struct TextConnection {
    wire: Wire,
}

/// The fields of a `VALUE <key> <flags> <bytes> [<cas unique>]` line.
#[derive(Debug, PartialEq, Eq)]
struct ValueLine<'a> {
    key: &'a [u8],
    len: usize,
    unique: Option<u64>,
}

/// Parses a line that starts with `VALUE `; an error if it is malformed (the data block's
/// length is then unknown, so the connection is out of step).
fn value_line(line: &[u8]) -> Result<ValueLine<'_>> {
    let bad = || format!("bad VALUE line `{}`", String::from_utf8_lossy(line));
    let mut fields = line.split(|b| *b == b' ').skip(1);
    let key = fields.next().filter(|k| !k.is_empty()).with_context(bad)?;
    let mut number = |required: bool| -> Result<Option<u64>> {
        match fields.next() {
            Some(f) => Ok(Some(
                std::str::from_utf8(f)
                    .ok()
                    .and_then(|f| f.parse().ok())
                    .with_context(bad)?,
            )),
            None if required => bail!(bad()),
            None => Ok(None),
        }
    };
    let _flags = number(true)?;
    let len = number(true)?.unwrap_or_default() as usize;
    let unique = number(false)?;
    Ok(ValueLine { key, len, unique })
}

/// Classifies a storage reply.
fn stored(line: &[u8]) -> Reply {
    match line {
        b"STORED" => Reply::Done,
        b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => Reply::Refused,
        other => Reply::failed(other),
    }
}

/// Classifies an `incr` reply: a number is done.
fn incremented(line: &[u8]) -> Reply {
    match line {
        b"NOT_FOUND" => Reply::Refused,
        digits if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => Reply::Done,
        other => Reply::failed(other),
    }
}

/// Appends a storage command (`command key 0 0 len [cas]\r\nvalue\r\n`) to `out`.
fn storage(out: &mut Vec<u8>, command: &str, key: &[u8], value: &[u8], cas: Option<u64>) {
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    // Writing to a Vec cannot fail.
    let _ = write!(out, " 0 0 {}", value.len());
    if let Some(cas) = cas {
        let _ = write!(out, " {cas}");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl TextConnection {
    /// Connects to `addr`.
    pub async fn open(addr: &str) -> Result<TextConnection> {
        Ok(TextConnection {
            wire: Wire::open(addr).await?,
        })
    }

    /// `get`/`gets` (`command`) of `keys`: hits and misses are done. Returns the last hit's cas
    /// unique (with `gets`); the last hit's data block is left in `wire.data`.
    async fn fetch<K: AsRef<[u8]>>(&mut self, command: &[u8], keys: &[K]) -> Result<(Read, Option<u64>)> {
        let w = &mut self.wire;
        w.request.clear();
        w.data.clear();
        w.request.extend_from_slice(command);
        for key in keys {
            w.request.push(b' ');
            w.request.extend_from_slice(key.as_ref());
        }
        w.request.extend_from_slice(b"\r\n");
        w.send().await?;
        let mut order = HitOrder::new(keys);
        let (mut failure, mut unique, mut hits) = (None, None, 0);
        loop {
            w.read_line().await?;
            if w.line == b"END" {
                let reply = failure.unwrap_or(Reply::Done);
                return Ok((Read { reply, hits }, unique));
            }
            if !w.line.starts_with(b"VALUE ") {
                return Ok((Reply::failed(&w.line).into(), None));
            }
            let value = value_line(&w.line)?;
            if order.accept(value.key) {
                hits += 1;
            } else {
                failure.get_or_insert_with(|| Reply::failed(&w.line));
            }
            let len = value.len;
            unique = value.unique;
            w.read_block(len + 2).await?;
        }
    }

    /// `get key`.
    pub async fn get(&mut self, key: &[u8]) -> Result<Read> {
        Ok(self.fetch(b"get", &[key]).await?.0)
    }

    /// `get k1 k2 …`.
    pub async fn multi_get(&mut self, keys: &[Vec<u8>]) -> Result<Read> {
        Ok(self.fetch(b"get", keys).await?.0)
    }

    /// `set`/`add` of `value`.
    pub async fn store(&mut self, store: Store, key: &[u8], value: &[u8]) -> Result<Reply> {
        let command = match store {
            Store::Set => "set",
            Store::Add => "add",
        };
        self.wire.request.clear();
        storage(&mut self.wire.request, command, key, value, None);
        self.wire.send().await?;
        self.wire.read_line().await?;
        Ok(stored(&self.wire.line))
    }

    /// `incr key 1`.
    pub async fn incr(&mut self, key: &[u8]) -> Result<Reply> {
        let w = &mut self.wire;
        w.request.clear();
        w.request.extend_from_slice(b"incr ");
        w.request.extend_from_slice(key);
        w.request.extend_from_slice(b" 1\r\n");
        w.send().await?;
        w.read_line().await?;
        Ok(incremented(&w.line))
    }

    /// `gets key` then `cas key … unique` with `value`: `EXISTS` (a concurrent change) or a miss
    /// is refused.
    pub async fn cas(&mut self, key: &[u8], value: &[u8]) -> Result<Reply> {
        let (read, unique) = self.fetch(b"gets", &[key]).await?;
        let Some(unique) = unique else {
            return Ok(match read.reply {
                Reply::Done => Reply::Refused,
                failed => failed,
            });
        };
        self.wire.request.clear();
        storage(&mut self.wire.request, "cas", key, value, Some(unique));
        self.wire.send().await?;
        self.wire.read_line().await?;
        Ok(stored(&self.wire.line))
    }

    /// Stores every `(key, value)` pipelined in one write; the number answered `STORED`.
    pub async fn set_batch(&mut self, items: &[(Vec<u8>, &[u8])]) -> Result<usize> {
        self.wire.request.clear();
        for (key, value) in items {
            storage(&mut self.wire.request, "set", key, value, None);
        }
        self.wire.send().await?;
        let mut count = 0;
        for _ in items {
            self.wire.read_line().await?;
            count += usize::from(self.wire.line == b"STORED");
        }
        Ok(count)
    }

    /// The value of `key` as a number, if it holds one.
    pub async fn counter(&mut self, key: &[u8]) -> Result<Option<u64>> {
        match self.fetch(b"get", &[key]).await?.0 {
            Read {
                reply: Reply::Done,
                hits: 1,
            } if self.wire.data.len() >= 2 => {
                let digits = &self.wire.data[..self.wire.data.len() - 2];
                Ok(std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines_give_key_length_and_cas() {
        assert_eq!(
            value_line(b"VALUE bench:1 0 100").expect("parses"),
            ValueLine {
                key: b"bench:1",
                len: 100,
                unique: None
            }
        );
        assert_eq!(value_line(b"VALUE k 5 3 77").expect("parses").unique, Some(77));
        assert!(value_line(b"VALUE k 0").is_err(), "no length");
        assert!(value_line(b"VALUE k 0 x").is_err(), "length not a number");
        assert!(value_line(b"VALUE  0 3").is_err(), "empty key");
    }

    #[test]
    fn replies_are_classified_as_done_refused_or_failed() {
        assert_eq!(stored(b"STORED"), Reply::Done);
        assert_eq!(stored(b"EXISTS"), Reply::Refused);
        assert_eq!(
            stored(b"SERVER_ERROR out of memory"),
            Reply::failed(b"SERVER_ERROR out of memory")
        );
        assert_eq!(incremented(b"42"), Reply::Done);
        assert_eq!(incremented(b"NOT_FOUND"), Reply::Refused);
        assert!(matches!(incremented(b""), Reply::Failed(_)));
        assert!(matches!(
            incremented(b"CLIENT_ERROR cannot increment"),
            Reply::Failed(_)
        ));
    }

    #[test]
    fn storage_commands_are_encoded_as_memcached_expects() {
        let mut out = Vec::new();
        storage(&mut out, "set", b"k", b"abc", None);
        storage(&mut out, "cas", b"k", b"", Some(9));
        assert_eq!(out, b"set k 0 0 3\r\nabc\r\ncas k 0 0 0 9\r\n\r\n");
    }
}
