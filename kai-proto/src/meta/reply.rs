//! Meta replies and their wire encoding, as memcached 1.6 writes them.
//!
//! Invariants:
//! - Echoed flags appear in request order; `mg` adds `Z`, `X`, `W` after them, in that order.
//! - Quiet mode (`q`) hides only the nominal reply: `EN` of `mg`; `HD` of `ms` and `md`; the
//!   success reply of `ma` (`HD` or `VA`). Everything else, errors included, is always sent.
//! - A hidden reply encodes to nothing; `mn` then tells the client the batch is done.

use super::base64;
use super::request::{Echo, MetaCommand};
use crate::key::Key;
use bytes::{BufMut, Bytes, BytesMut};

/// Status codes of `ms`, `md` and `ma`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `HD`: stored / deleted / done.
    Done,
    /// `NS`: not stored.
    NotStored,
    /// `EX`: the cas unique did not match.
    Exists,
    /// `NF`: not found.
    NotFound,
}

impl Status {
    fn code(self) -> &'static [u8] {
        match self {
            Status::Done => b"HD",
            Status::NotStored => b"NS",
            Status::Exists => b"EX",
            Status::NotFound => b"NF",
        }
    }
}

/// What a reply may report of an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemView {
    /// Client flags.
    pub flags: u32,
    /// The value.
    pub data: Bytes,
    /// The cas unique.
    pub cas: u64,
    /// Remaining seconds to live; `None` for no expiry.
    pub ttl: Option<u64>,
}

/// An `mg` hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetHit {
    /// The item (after any change the `mg` made).
    pub item: ItemView,
    /// The item is stale (`X`).
    pub stale: bool,
    /// Another client already won the recache (`Z`).
    pub win_taken: bool,
    /// This client won the recache (`W`).
    pub won: bool,
}

/// The reply to `mg`; `None` is a miss.
pub fn get(command: &MetaCommand, hit: Option<&GetHit>) -> Bytes {
    let flags = &command.flags;
    let mut out = BytesMut::new();
    let Some(hit) = hit else {
        if flags.quiet {
            return Bytes::new();
        }
        out.put_slice(b"EN");
        echo_request_tokens(&mut out, command);
        out.put_slice(b"\r\n");
        return out.freeze();
    };
    let item = &hit.item;
    // `C` with `v`: the value is only sent if the client's copy is outdated.
    let send_value = flags.value && flags.compare_cas != Some(item.cas);
    if send_value {
        out.put_slice(b"VA ");
        put_number(&mut out, item.data.len() as u64);
    } else {
        out.put_slice(b"HD");
    }
    for echo in &flags.echo {
        match echo {
            Echo::Size => put_flag(&mut out, b's', item.data.len() as u64),
            Echo::Ttl => put_ttl(&mut out, item.ttl),
            Echo::Cas => put_flag(&mut out, b'c', item.cas),
            Echo::Flags => put_flag(&mut out, b'f', u64::from(item.flags)),
            // Kai keeps no access history: never fetched, accessed just now.
            Echo::LastAccess => put_flag(&mut out, b'l', 0),
            Echo::Hit => put_flag(&mut out, b'h', 0),
            Echo::Opaque(token) => put_token(&mut out, token),
            Echo::Key => put_key(&mut out, &command.key, flags.base64),
        }
    }
    for (on, flag) in [(hit.win_taken, b'Z'), (hit.stale, b'X'), (hit.won, b'W')] {
        if on {
            out.put_slice(&[b' ', flag]);
        }
    }
    out.put_slice(b"\r\n");
    if send_value {
        out.put_slice(&item.data);
        out.put_slice(b"\r\n");
    }
    out.freeze()
}

/// The reply to `ms`: `cas` is the new version's cas unique when stored, else 0.
pub fn set(command: &MetaCommand, status: Status, cas: u64) -> Bytes {
    if command.flags.quiet && status == Status::Done {
        return Bytes::new();
    }
    let mut out = BytesMut::new();
    out.put_slice(status.code());
    for echo in &command.flags.echo {
        match echo {
            Echo::Opaque(token) => put_token(&mut out, token),
            Echo::Key => put_key(&mut out, &command.key, command.flags.base64),
            Echo::Cas => put_flag(&mut out, b'c', cas),
            _ => {}
        }
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The reply to `md`.
pub fn delete(command: &MetaCommand, status: Status) -> Bytes {
    if command.flags.quiet && status == Status::Done {
        return Bytes::new();
    }
    let mut out = BytesMut::new();
    out.put_slice(status.code());
    echo_request_tokens(&mut out, command);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The reply to `ma`: the new number and the item on success, else the status.
pub fn arithmetic(command: &MetaCommand, outcome: Result<(u64, &ItemView), Status>) -> Bytes {
    let flags = &command.flags;
    let mut out = BytesMut::new();
    let (number, item) = match outcome {
        Ok(done) => done,
        Err(status) => {
            out.put_slice(status.code());
            echo_request_tokens(&mut out, command);
            out.put_slice(b"\r\n");
            return out.freeze();
        }
    };
    if flags.quiet {
        return Bytes::new();
    }
    let digits = number.to_string();
    if flags.value {
        out.put_slice(b"VA ");
        put_number(&mut out, digits.len() as u64);
    } else {
        out.put_slice(b"HD");
    }
    for echo in &flags.echo {
        match echo {
            Echo::Cas => put_flag(&mut out, b'c', item.cas),
            Echo::Ttl => put_ttl(&mut out, item.ttl),
            Echo::Opaque(token) => put_token(&mut out, token),
            Echo::Key => put_key(&mut out, &command.key, flags.base64),
            _ => {}
        }
    }
    out.put_slice(b"\r\n");
    if flags.value {
        out.put_slice(digits.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.freeze()
}

/// The reply to `mn`.
pub fn noop() -> Bytes {
    Bytes::from_static(b"MN\r\n")
}

/// What `me` shows of an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugView {
    /// memcached's `exp`: -1 without expiry, else its (odd) `now - expiry`.
    pub exp: i64,
    /// The cas unique.
    pub cas: u64,
    /// Bytes the item takes in storage.
    pub size: u64,
}

/// The reply to `me`; `None` is a miss (`EN`).
pub fn debug(key: &Key, base64_key: bool, view: Option<&DebugView>) -> Bytes {
    let Some(view) = view else {
        return Bytes::from_static(b"EN\r\n");
    };
    let mut out = BytesMut::new();
    out.put_slice(b"ME ");
    if base64_key {
        out.put_slice(&base64::encode(key.as_bytes()));
    } else {
        out.put_slice(key.as_bytes());
    }
    // Kai keeps no access history and has no slab classes: `la=0 fetch=no cls=1`.
    let fields = format!(
        " exp={} la=0 cas={} fetch=no cls=1 size={}\r\n",
        view.exp, view.cas, view.size
    );
    out.put_slice(fields.as_bytes());
    out.freeze()
}

/// The `O` and `k` tokens every reply carries (all that replies without an item echo).
fn echo_request_tokens(out: &mut BytesMut, command: &MetaCommand) {
    for echo in &command.flags.echo {
        match echo {
            Echo::Opaque(token) => put_token(out, token),
            Echo::Key => put_key(out, &command.key, command.flags.base64),
            _ => {}
        }
    }
}

fn put_key(out: &mut BytesMut, key: &Key, base64_key: bool) {
    out.put_slice(b" k");
    if base64_key {
        out.put_slice(&base64::encode(key.as_bytes()));
        out.put_slice(b" b");
    } else {
        out.put_slice(key.as_bytes());
    }
}

fn put_token(out: &mut BytesMut, token: &[u8]) {
    out.put_u8(b' ');
    out.put_slice(token);
}

fn put_ttl(out: &mut BytesMut, ttl: Option<u64>) {
    match ttl {
        Some(seconds) => put_flag(out, b't', seconds),
        None => out.put_slice(b" t-1"),
    }
}

fn put_flag(out: &mut BytesMut, flag: u8, n: u64) {
    out.put_slice(&[b' ', flag]);
    put_number(out, n);
}

fn put_number(out: &mut BytesMut, n: u64) {
    out.put_slice(n.to_string().as_bytes());
}
