//! memcached's meta protocol as `kai bench` speaks it: `mg <key> v` reads, `ms <key> <len>`
//! stores (`ME` for add, `C<cas>` for compare-and-swap), `ma <key>` increments; a multi-key read
//! is one quiet `mg <key> v k q` per key ended by `mn` (hits answer `VA`, misses nothing, `MN`
//! closes the batch), and the prefill is quiet `ms … q` ended by `mn`.
//!
//! Invariants: `HD` is done, `NS`/`EX`/`NF` refused, anything else a failure; in a batch every
//! line before `MN` that is not a hit of a requested key (in request order) is a failure, and
//! the batch is read up to `MN` so the connection stays in step.

use super::protocol::{HitOrder, Read, Reply, Store};
use super::wire::Wire;
use anyhow::{Context, Result};
use std::io::Write;

/// One meta-protocol connection.
pub struct MetaConnection {
    wire: Wire,
}

/// The fields of a `VA <size> <flags>*` line that `kai bench` asks for.
#[derive(Debug, PartialEq, Eq)]
struct ValueHeader<'a> {
    len: usize,
    /// `k<key>`.
    key: Option<&'a [u8]>,
    /// `c<cas>`.
    cas: Option<u64>,
}

/// Parses a line that starts with `VA `; an error if it is malformed (the data block's length is
/// then unknown, so the connection is out of step).
fn value_header(line: &[u8]) -> Result<ValueHeader<'_>> {
    let bad = || format!("bad VA line `{}`", String::from_utf8_lossy(line));
    let mut tokens = line.split(|b| *b == b' ').skip(1);
    let len = tokens
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse().ok())
        .with_context(bad)?;
    let mut header = ValueHeader {
        len,
        key: None,
        cas: None,
    };
    for token in tokens {
        match token.split_first() {
            Some((b'k', key)) => header.key = Some(key),
            Some((b'c', cas)) => {
                header.cas = std::str::from_utf8(cas).ok().and_then(|c| c.parse().ok());
            }
            _ => {}
        }
    }
    Ok(header)
}

/// Classifies an `ms`/`ma` reply.
fn status(line: &[u8]) -> Reply {
    match line.get(..2) {
        Some(b"HD") if line.len() == 2 || line[2] == b' ' => Reply::Done,
        Some(b"NS" | b"EX" | b"NF") if line.len() == 2 || line[2] == b' ' => Reply::Refused,
        _ => Reply::failed(line),
    }
}

/// Appends `ms <key> <len>[ ME][ C<cas>][ q]\r\n<value>\r\n` to `out`.
fn set_command(out: &mut Vec<u8>, store: Store, key: &[u8], value: &[u8], cas: Option<u64>, quiet: bool) {
    out.extend_from_slice(b"ms ");
    out.extend_from_slice(key);
    // Writing to a Vec cannot fail.
    let _ = write!(out, " {}", value.len());
    if store == Store::Add {
        out.extend_from_slice(b" ME");
    }
    if let Some(cas) = cas {
        let _ = write!(out, " C{cas}");
    }
    if quiet {
        out.extend_from_slice(b" q");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `mg <key> <flags>\r\n` to `out`.
fn get_command(out: &mut Vec<u8>, key: &[u8], flags: &[u8]) {
    out.extend_from_slice(b"mg ");
    out.extend_from_slice(key);
    out.push(b' ');
    out.extend_from_slice(flags);
    out.extend_from_slice(b"\r\n");
}

impl MetaConnection {
    /// Connects to `addr`.
    pub async fn open(addr: &str) -> Result<MetaConnection> {
        Ok(MetaConnection {
            wire: Wire::open(addr).await?,
        })
    }

    /// `mg key v` (with `c`: and the cas): a hit or a miss is done; a hit's cas and its data
    /// block (left in `wire.data`).
    async fn fetch(&mut self, key: &[u8], with_cas: bool) -> Result<(Read, Option<u64>)> {
        let w = &mut self.wire;
        w.request.clear();
        w.data.clear();
        get_command(&mut w.request, key, if with_cas { b"v c" } else { b"v" });
        w.send().await?;
        w.read_line().await?;
        if w.line == b"EN" {
            return Ok((Reply::Done.into(), None));
        }
        if !w.line.starts_with(b"VA ") {
            return Ok((Reply::failed(&w.line).into(), None));
        }
        let header = value_header(&w.line)?;
        let (len, cas) = (header.len, header.cas);
        w.read_block(len + 2).await?;
        let read = Read {
            reply: Reply::Done,
            hits: 1,
        };
        Ok((read, cas))
    }

    /// `mg key v`.
    pub async fn get(&mut self, key: &[u8]) -> Result<Read> {
        Ok(self.fetch(key, false).await?.0)
    }

    /// `mg k1 v k q`, `mg k2 v k q`, … `mn`, in one write.
    pub async fn multi_get(&mut self, keys: &[Vec<u8>]) -> Result<Read> {
        let w = &mut self.wire;
        w.request.clear();
        for key in keys {
            get_command(&mut w.request, key, b"v k q");
        }
        w.request.extend_from_slice(b"mn\r\n");
        w.send().await?;
        let mut order = HitOrder::new(keys);
        let (mut failure, mut hits) = (None, 0);
        loop {
            w.read_line().await?;
            if w.line == b"MN" {
                let reply = failure.unwrap_or(Reply::Done);
                return Ok(Read { reply, hits });
            }
            if !w.line.starts_with(b"VA ") {
                failure.get_or_insert_with(|| Reply::failed(&w.line));
                continue;
            }
            let header = value_header(&w.line)?;
            if header.key.is_some_and(|key| order.accept(key)) {
                hits += 1;
            } else {
                failure.get_or_insert_with(|| Reply::failed(&w.line));
            }
            let len = header.len;
            w.read_block(len + 2).await?;
        }
    }

    /// `ms key len` (`ME` for add).
    pub async fn store(&mut self, store: Store, key: &[u8], value: &[u8]) -> Result<Reply> {
        self.wire.request.clear();
        set_command(&mut self.wire.request, store, key, value, None, false);
        self.wire.send().await?;
        self.wire.read_line().await?;
        Ok(status(&self.wire.line))
    }

    /// `ma key` (a missing key is `NF`, refused).
    pub async fn incr(&mut self, key: &[u8]) -> Result<Reply> {
        let w = &mut self.wire;
        w.request.clear();
        w.request.extend_from_slice(b"ma ");
        w.request.extend_from_slice(key);
        w.request.extend_from_slice(b"\r\n");
        w.send().await?;
        w.read_line().await?;
        Ok(status(&w.line))
    }

    /// `mg key v c` then `ms key len C<cas>`: `EX` (a concurrent change), `NF` or a miss is
    /// refused.
    pub async fn cas(&mut self, key: &[u8], value: &[u8]) -> Result<Reply> {
        let (read, cas) = self.fetch(key, true).await?;
        let Some(cas) = cas else {
            return Ok(match read.reply {
                Reply::Done => Reply::Refused,
                failed => failed,
            });
        };
        self.wire.request.clear();
        set_command(&mut self.wire.request, Store::Set, key, value, Some(cas), false);
        self.wire.send().await?;
        self.wire.read_line().await?;
        Ok(status(&self.wire.line))
    }

    /// `ms … q` for every item, then `mn`, in one write; the number stored (every line before
    /// `MN` is one that was not).
    pub async fn set_batch(&mut self, items: &[(Vec<u8>, &[u8])]) -> Result<usize> {
        let w = &mut self.wire;
        w.request.clear();
        for (key, value) in items {
            set_command(&mut w.request, Store::Set, key, value, None, true);
        }
        w.request.extend_from_slice(b"mn\r\n");
        w.send().await?;
        let mut refused = 0;
        loop {
            w.read_line().await?;
            if w.line == b"MN" {
                return Ok(items.len().saturating_sub(refused));
            }
            refused += 1;
        }
    }

    /// The value of `key` as a number, if it holds one.
    pub async fn counter(&mut self, key: &[u8]) -> Result<Option<u64>> {
        match self.fetch(key, false).await?.0 {
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
    fn value_headers_give_length_key_and_cas_in_any_order() {
        assert_eq!(
            value_header(b"VA 100 kbench:1").expect("parses"),
            ValueHeader {
                len: 100,
                key: Some(b"bench:1"),
                cas: None
            }
        );
        let header = value_header(b"VA 3 c77 f0 kk").expect("parses");
        assert_eq!((header.len, header.key, header.cas), (3, Some(&b"k"[..]), Some(77)));
        assert_eq!(value_header(b"VA 0").expect("parses").len, 0);
        assert!(value_header(b"VA").is_err(), "no size");
        assert!(value_header(b"VA x kk").is_err(), "size not a number");
    }

    #[test]
    fn statuses_are_done_refused_or_failed() {
        assert_eq!(status(b"HD"), Reply::Done);
        assert_eq!(status(b"HD c5"), Reply::Done);
        assert_eq!(status(b"NS"), Reply::Refused);
        assert_eq!(status(b"EX"), Reply::Refused);
        assert_eq!(status(b"NF"), Reply::Refused);
        assert!(matches!(status(b"HDX"), Reply::Failed(_)));
        assert!(matches!(status(b"SERVER_ERROR no quorum"), Reply::Failed(_)));
        assert!(matches!(
            status(b"CLIENT_ERROR bad command line format"),
            Reply::Failed(_)
        ));
        assert!(matches!(status(b""), Reply::Failed(_)));
    }

    #[test]
    fn commands_are_encoded_as_memcached_expects() {
        let mut out = Vec::new();
        set_command(&mut out, Store::Set, b"k", b"abc", None, false);
        set_command(&mut out, Store::Add, b"k", b"", None, true);
        set_command(&mut out, Store::Set, b"k", b"x", Some(9), false);
        get_command(&mut out, b"k", b"v k q");
        assert_eq!(
            out,
            b"ms k 3\r\nabc\r\nms k 0 ME q\r\n\r\nms k 1 C9\r\nx\r\nmg k v k q\r\n"
        );
    }
}
