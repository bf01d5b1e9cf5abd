//! The memcached binary protocol as `kai bench` speaks it: `get`, `set`/`add` (with the cas in
//! the header for compare-and-swap), `increment` that does not create; a multi-key read is one
//! `getkq` per key (opaque = its index) ended by `noop`, the prefill `setq` packets ended by
//! `noop`. Opcodes, status codes and header constants are kai-proto's ([`kai_proto::binary`]).
//!
//! Invariants: a reply must carry the response magic and lengths that add up, or the connection
//! is out of step (an `Err`); a reply to another opcode, or a status not documented for the
//! command, is a failure; in a batch every reply before the `noop`'s that is not a hit of a
//! requested key (in request order) is a failure, and the batch is read up to the `noop`'s
//! reply.

use super::protocol::{HitOrder, Read, Reply, Store};
use super::wire::Wire;
use anyhow::{bail, Result};
use kai_proto::binary::{opcode as op, Status, COUNTER_NO_CREATE, HEADER_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};

/// Largest reply body read; a header claiming more is garbled (bounds the client's memory).
const MAX_REPLY_BODY: usize = 256 << 20;
/// Statuses of a read that are done: a hit or a miss.
const READ_DONE: &[Status] = &[Status::Success, Status::KeyNotFound];
/// The status of anything else that is done.
const SUCCESS: &[Status] = &[Status::Success];
/// Documented refusals of a store (add of a present key, cas of a changed or missing one).
const STORE_REFUSED: &[Status] = &[Status::KeyExists, Status::NotStored, Status::KeyNotFound];
/// Documented refusal of an increment that must not create the key.
const COUNTER_REFUSED: &[Status] = &[Status::KeyNotFound];

/// One binary-protocol connection.
pub struct BinaryConnection {
    wire: Wire,
}

/// The fields of a reply header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReplyHeader {
    opcode: u8,
    key_len: usize,
    extras_len: usize,
    status: u16,
    body_len: usize,
    opaque: u32,
    cas: u64,
}

/// Parses a reply header; an error if it is not one (the connection is out of step).
fn reply_header(bytes: &[u8]) -> Result<ReplyHeader> {
    let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
        bail!("short reply header");
    };
    if h[0] != RESPONSE_MAGIC {
        bail!("reply magic {:#04x}, expected {RESPONSE_MAGIC:#04x}", h[0]);
    }
    let header = ReplyHeader {
        opcode: h[1],
        key_len: usize::from(u16::from_be_bytes([h[2], h[3]])),
        extras_len: usize::from(h[4]),
        status: u16::from_be_bytes([h[6], h[7]]),
        body_len: u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize,
        opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        cas: u64::from_be_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
    };
    if header.extras_len + header.key_len > header.body_len || header.body_len > MAX_REPLY_BODY {
        bail!("reply lengths do not add up: {header:?}");
    }
    Ok(header)
}

impl ReplyHeader {
    /// The key within the reply's body.
    fn key<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        &body[self.extras_len..self.extras_len + self.key_len]
    }

    /// The value within the reply's body.
    fn value<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        &body[self.extras_len + self.key_len..]
    }

    /// The outcome of a request with `opcode`: `done` and `refused` list its statuses.
    fn outcome(&self, body: &[u8], opcode: u8, done: &[Status], refused: &[Status]) -> Reply {
        match Status::from_code(self.status) {
            _ if self.opcode != opcode => {
                Reply::Failed(format!("reply to opcode {:#04x}, expected {opcode:#04x}", self.opcode))
            }
            Some(s) if done.contains(&s) => Reply::Done,
            Some(s) if refused.contains(&s) => Reply::Refused,
            _ => Reply::Failed(format!(
                "status {:#06x} {}",
                self.status,
                String::from_utf8_lossy(self.value(body))
            )),
        }
    }
}

/// Appends a request packet to `out`.
fn encode(out: &mut Vec<u8>, opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) {
    let body = extras.len() + key.len() + value.len();
    out.extend_from_slice(&[REQUEST_MAGIC, opcode]);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Extras of a store: flags 0, no expiry.
const STORE_EXTRAS: [u8; 8] = [0; 8];

/// Extras of an increment by one that answers "not found" for a missing key.
fn increment_extras() -> [u8; 20] {
    let mut extras = [0u8; 20];
    extras[..8].copy_from_slice(&1u64.to_be_bytes());
    extras[16..].copy_from_slice(&COUNTER_NO_CREATE.to_be_bytes());
    extras
}

impl BinaryConnection {
    /// Connects to `addr`.
    pub async fn open(addr: &str) -> Result<BinaryConnection> {
        Ok(BinaryConnection {
            wire: Wire::open(addr).await?,
        })
    }

    /// Reads one reply: its header, with its body left in `wire.data`.
    async fn read_reply(&mut self) -> Result<ReplyHeader> {
        let mut header = [0; HEADER_LEN];
        self.wire.read_exact(&mut header).await?;
        let header = reply_header(&header)?;
        self.wire.read_block(header.body_len).await?;
        Ok(header)
    }

    /// Sends one request and reads its reply.
    async fn call(&mut self, opcode: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64) -> Result<ReplyHeader> {
        self.wire.request.clear();
        encode(&mut self.wire.request, opcode, extras, key, value, 0, cas);
        self.wire.send().await?;
        self.read_reply().await
    }

    /// `get key`.
    pub async fn get(&mut self, key: &[u8]) -> Result<Read> {
        let h = self.call(op::GET, &[], key, &[], 0).await?;
        let reply = h.outcome(&self.wire.data, op::GET, READ_DONE, &[]);
        let hits = u64::from(reply == Reply::Done && h.status == Status::Success as u16);
        Ok(Read { reply, hits })
    }

    /// `getkq` of every key (opaque = its index), then `noop`, in one write.
    pub async fn multi_get(&mut self, keys: &[Vec<u8>]) -> Result<Read> {
        self.wire.request.clear();
        for (i, key) in keys.iter().enumerate() {
            encode(&mut self.wire.request, op::GETKQ, &[], key, &[], i as u32, 0);
        }
        encode(&mut self.wire.request, op::NOOP, &[], &[], &[], keys.len() as u32, 0);
        self.wire.send().await?;
        let mut order = HitOrder::new(keys);
        let (mut failure, mut hits) = (None, 0);
        loop {
            let h = self.read_reply().await?;
            let body = &self.wire.data;
            if h.opcode == op::NOOP {
                let end = h.outcome(body, op::NOOP, SUCCESS, &[]);
                let reply = failure.unwrap_or(end);
                return Ok(Read { reply, hits });
            }
            let reply = h.outcome(body, op::GETKQ, SUCCESS, &[]);
            if reply != Reply::Done {
                failure.get_or_insert(reply);
            } else if order.accept_at(h.opaque as usize, h.key(body)) {
                hits += 1;
            } else {
                failure.get_or_insert_with(|| {
                    Reply::Failed(format!(
                        "getkq hit of `{}` as request {}, not requested there",
                        String::from_utf8_lossy(h.key(body)),
                        h.opaque
                    ))
                });
            }
        }
    }

    /// `set`/`add` of `value`.
    pub async fn store(&mut self, store: Store, key: &[u8], value: &[u8]) -> Result<Reply> {
        let opcode = match store {
            Store::Set => op::SET,
            Store::Add => op::ADD,
        };
        let h = self.call(opcode, &STORE_EXTRAS, key, value, 0).await?;
        Ok(h.outcome(&self.wire.data, opcode, SUCCESS, STORE_REFUSED))
    }

    /// `increment key` by one, not creating a missing key.
    pub async fn incr(&mut self, key: &[u8]) -> Result<Reply> {
        let h = self.call(op::INCREMENT, &increment_extras(), key, &[], 0).await?;
        Ok(h.outcome(&self.wire.data, op::INCREMENT, SUCCESS, COUNTER_REFUSED))
    }

    /// `get key` then `set` with the hit's cas: a concurrent change or a miss is refused.
    pub async fn cas(&mut self, key: &[u8], value: &[u8]) -> Result<Reply> {
        let h = self.call(op::GET, &[], key, &[], 0).await?;
        match h.outcome(&self.wire.data, op::GET, SUCCESS, &[Status::KeyNotFound]) {
            Reply::Done => {}
            other => return Ok(other),
        }
        let h = self.call(op::SET, &STORE_EXTRAS, key, value, h.cas).await?;
        Ok(h.outcome(&self.wire.data, op::SET, SUCCESS, STORE_REFUSED))
    }

    /// `setq` of every item, then `noop`, in one write; the number stored (every reply before
    /// the `noop`'s is one that was not).
    pub async fn set_batch(&mut self, items: &[(Vec<u8>, &[u8])]) -> Result<usize> {
        self.wire.request.clear();
        for (i, (key, value)) in items.iter().enumerate() {
            encode(&mut self.wire.request, op::SETQ, &STORE_EXTRAS, key, value, i as u32, 0);
        }
        encode(&mut self.wire.request, op::NOOP, &[], &[], &[], items.len() as u32, 0);
        self.wire.send().await?;
        let mut refused = 0;
        while self.read_reply().await?.opcode != op::NOOP {
            refused += 1;
        }
        Ok(items.len().saturating_sub(refused))
    }

    /// The value of `key` as a number, if it holds one.
    pub async fn counter(&mut self, key: &[u8]) -> Result<Option<u64>> {
        let h = self.call(op::GET, &[], key, &[], 0).await?;
        if h.outcome(&self.wire.data, op::GET, SUCCESS, &[]) != Reply::Done {
            return Ok(None);
        }
        let digits = h.value(&self.wire.data);
        Ok(std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(opcode: u8, status: Status, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, opcode, extras, key, value, 7, 99);
        out[0] = RESPONSE_MAGIC;
        out[6..8].copy_from_slice(&(status as u16).to_be_bytes());
        out
    }

    #[test]
    fn requests_are_encoded_as_memcached_expects() {
        let mut out = Vec::new();
        encode(&mut out, op::SET, &STORE_EXTRAS, b"k", b"ab", 0x0102_0304, 5);
        let mut expected = vec![0x80, 0x01, 0, 1, 8, 0, 0, 0, 0, 0, 0, 11, 1, 2, 3, 4];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5]);
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(b"kab");
        assert_eq!(out, expected);
        let extras = increment_extras();
        assert_eq!(&extras[..8], &1u64.to_be_bytes(), "delta");
        assert_eq!(&extras[8..16], &[0; 8], "initial");
        assert_eq!(&extras[16..], &[0xff; 4], "do not create");
    }

    #[test]
    fn reply_headers_locate_extras_key_and_value() {
        let packet = reply(op::GETKQ, Status::Success, &[0, 0, 0, 0], b"key", b"value");
        let h = reply_header(&packet).expect("parses");
        assert_eq!(
            (h.opcode, h.status, h.body_len, h.opaque, h.cas),
            (op::GETKQ, 0, 12, 7, 99)
        );
        let body = &packet[HEADER_LEN..];
        assert_eq!((h.key(body), h.value(body)), (&b"key"[..], &b"value"[..]));
    }

    #[test]
    fn garbled_reply_headers_are_errors() {
        let mut packet = reply(op::GET, Status::Success, &[], b"", b"");
        assert!(reply_header(&packet[..10]).is_err(), "short");
        packet[0] = REQUEST_MAGIC;
        assert!(reply_header(&packet).is_err(), "request magic");
        let mut packet = reply(op::GETK, Status::Success, &[0; 4], b"key", b"");
        packet[11] = 5;
        assert!(reply_header(&packet).is_err(), "extras and key longer than the body");
        packet[8] = 0xff;
        assert!(reply_header(&packet).is_err(), "a 4 GiB body");
    }

    #[test]
    fn statuses_are_done_refused_or_failed() {
        let classify = |opcode, status, done: &[Status], refused: &[Status]| {
            let packet = reply(opcode, status, &[], b"", status_text(status));
            let h = reply_header(&packet).expect("parses");
            h.outcome(&packet[HEADER_LEN..], op::GET, done, refused)
        };
        fn status_text(status: Status) -> &'static [u8] {
            match status {
                Status::InternalError => b"no quorum",
                _ => b"",
            }
        }
        assert_eq!(classify(op::GET, Status::KeyNotFound, READ_DONE, &[]), Reply::Done);
        assert_eq!(
            classify(op::GET, Status::KeyExists, SUCCESS, STORE_REFUSED),
            Reply::Refused
        );
        assert_eq!(
            classify(op::GET, Status::InternalError, READ_DONE, &[]),
            Reply::Failed("status 0x0084 no quorum".to_owned())
        );
        assert!(
            matches!(classify(op::SET, Status::Success, READ_DONE, &[]), Reply::Failed(m) if m.contains("opcode")),
            "a reply to another request"
        );
    }
}
