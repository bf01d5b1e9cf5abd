//! Streaming decoder of binary requests.
//!
//! Invariants:
//! - Memory is bounded: before a value is buffered the decoder holds at most one header, the
//!   extras (≤ 255 bytes) and the key (≤ [`MAX_KEY_LEN`]); a value is buffered only if it fits
//!   `max_value_size`, otherwise it is refused ([`Status::TooLarge`]) and swallowed as it arrives.
//! - Checks and answers follow memcached 1.6's `dispatch_bin_command`: a body shorter than its
//!   key and extras is `Unknown command` and closes the connection; a body over 1 GiB, a key over
//!   250 bytes, or a known opcode whose extras/key/body lengths are not what it takes is
//!   `Invalid arguments` and closes the connection; an unknown opcode is `Unknown command` and
//!   its body is skipped. A first byte other than 0x80 is fatal (memcached closes silently).
//! - Where memcached leaves body bytes it never reads in the stream (a `stat` or `touch` with
//!   a value, or an unknown opcode's key and extras, which memcached skips twice), Kai skips
//!   exactly the body, so the stream stays in sync.
//! - After a rejection that closes the connection nothing more is decoded.
//! - Bytes split across reads decode exactly as if they arrived at once.

use super::header::{opcode as op, RawHeader, RequestHeader, Status, HEADER_LEN, REQUEST_MAGIC};
use super::request::{Command, StoreMode};
use crate::key::MAX_KEY_LEN;
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio_util::codec::Decoder;

/// Largest body memcached considers at all (`ITEM_SIZE_MAX_UPPER_LIMIT`).
const MAX_BODY_LEN: u32 = 1024 * 1024 * 1024;
/// Longest SASL mechanism name (memcached's `MAX_SASL_MECH_LEN`).
const MAX_SASL_MECH_LEN: usize = 32;

/// A request the decoder refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The key and extras are longer than the whole body.
    #[error("key and extras longer than the body")]
    BadLengths,
    /// The body claims more than memcached's 1 GiB upper limit.
    #[error("body too long")]
    BodyTooLong,
    /// A key over 250 bytes, or lengths a known opcode does not take.
    #[error("malformed request")]
    Malformed,
    /// An opcode memcached does not implement.
    #[error("unknown command")]
    UnknownCommand,
    /// A value over `max_value_size`. `set_key` is the key of a `set`: memcached deletes the
    /// key's current value when it refuses a `set`, and so does Kai.
    #[error("value too large")]
    TooLarge {
        /// The key, for set/setq.
        set_key: Option<Bytes>,
    },
    /// A SASL mechanism name over 32 bytes.
    #[error("bad SASL mechanism")]
    BadMechanism,
}

impl Rejection {
    /// The status memcached answers.
    pub fn status(&self) -> Status {
        match self {
            Rejection::BadLengths | Rejection::UnknownCommand => Status::UnknownCommand,
            Rejection::BodyTooLong | Rejection::Malformed | Rejection::BadMechanism => Status::Invalid,
            Rejection::TooLarge { .. } => Status::TooLarge,
        }
    }

    /// True if the connection is closed after the reply.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Rejection::BadLengths | Rejection::BodyTooLong | Rejection::Malformed
        )
    }
}

/// An error after which the connection is closed without a reply.
#[derive(Debug, thiserror::Error)]
pub enum BinaryFatal {
    /// A packet that does not start with the request magic.
    #[error("invalid magic byte {0:#04x}")]
    BadMagic(u8),
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// One item of the request stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinaryParsed {
    /// A complete request.
    Request {
        /// Opcode, opaque and cas.
        header: RequestHeader,
        /// What it asks.
        command: Command,
    },
    /// A refused request.
    Rejected {
        /// Opcode, opaque and cas.
        header: RequestHeader,
        /// Why.
        rejection: Rejection,
    },
}

/// The streaming decoder.
#[derive(Debug)]
pub struct BinaryDecoder {
    max_value_size: usize,
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Header,
    /// Waiting for `len` value bytes of a request whose header, extras and key are read.
    Value {
        header: RequestHeader,
        extras: Bytes,
        key: Bytes,
        len: usize,
    },
    /// Discarding `remaining` body bytes.
    Swallow { remaining: u64 },
    /// A rejection closed the connection.
    Closed,
}

/// What the body of an opcode holds besides extras and key.
enum Shape {
    /// No value (memcached checks the body is exactly extras and key).
    Fixed,
    /// A value the command uses.
    Value,
    /// Bytes memcached never reads; skipped.
    Ignored,
}

impl BinaryDecoder {
    /// A decoder accepting values up to `max_value_size` bytes.
    pub fn new(max_value_size: usize) -> Self {
        BinaryDecoder {
            max_value_size,
            state: State::Header,
        }
    }

    fn reject(&mut self, header: RequestHeader, rejection: Rejection, skip: u64) -> Option<BinaryParsed> {
        self.state = if rejection.closes() {
            State::Closed
        } else {
            State::Swallow { remaining: skip }
        };
        Some(BinaryParsed::Rejected { header, rejection })
    }

    /// Decodes a header (with its extras and key, once all have arrived).
    fn header(&mut self, buf: &mut BytesMut) -> Result<Option<BinaryParsed>, BinaryFatal> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let raw = RawHeader::parse(&buf[..HEADER_LEN]);
        if raw.magic != REQUEST_MAGIC {
            return Err(BinaryFatal::BadMagic(raw.magic));
        }
        let header = raw.request;
        let (extras_len, key_len) = (usize::from(raw.extras_len), usize::from(raw.key_len));
        if (extras_len + key_len) as u64 > u64::from(raw.body_len) {
            return Ok(self.reject(header, Rejection::BadLengths, 0));
        }
        if raw.body_len > MAX_BODY_LEN {
            return Ok(self.reject(header, Rejection::BodyTooLong, 0));
        }
        if key_len > MAX_KEY_LEN {
            return Ok(self.reject(header, Rejection::Malformed, 0));
        }
        if buf.len() < HEADER_LEN + extras_len + key_len {
            buf.reserve(HEADER_LEN + extras_len + key_len - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let extras = buf.split_to(extras_len).freeze();
        let key = buf.split_to(key_len).freeze();
        let value_len = u64::from(raw.body_len) - (extras_len + key_len) as u64;
        let Some(shape) = shape(header.opcode, extras_len, key_len, value_len) else {
            return Ok(self.reject(header, Rejection::UnknownCommand, value_len));
        };
        let shape = match shape {
            Ok(shape) => shape,
            Err(rejection) => return Ok(self.reject(header, rejection, value_len)),
        };
        match shape {
            Shape::Fixed => Ok(Some(request(header, &extras, key, Bytes::new()))),
            Shape::Ignored => {
                self.state = State::Swallow { remaining: value_len };
                Ok(Some(request(header, &extras, key, Bytes::new())))
            }
            Shape::Value if value_len > self.max_value_size as u64 => {
                let set_key = matches!(header.opcode, op::SET | op::SETQ).then_some(key);
                Ok(self.reject(header, Rejection::TooLarge { set_key }, value_len))
            }
            Shape::Value => {
                self.state = State::Value {
                    header,
                    extras,
                    key,
                    len: value_len as usize,
                };
                Ok(None)
            }
        }
    }
}

/// The body shape `opcode` takes, `Err` if the lengths are not what memcached accepts for it, or
/// `None` for an opcode memcached does not implement.
fn shape(opcode: u8, extras: usize, key: usize, value: u64) -> Option<Result<Shape, Rejection>> {
    let check = |ok: bool, shape: Shape| Some(if ok { Ok(shape) } else { Err(Rejection::Malformed) });
    let bare = extras == 0 && key == 0 && value == 0;
    match opcode {
        op::VERSION | op::NOOP | op::QUIT | op::QUITQ | op::SASL_LIST_MECHS => check(bare, Shape::Fixed),
        op::FLUSH | op::FLUSHQ => check(key == 0 && value == 0 && (extras == 0 || extras == 4), Shape::Fixed),
        op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => {
            check(extras == 8 && key != 0, Shape::Value)
        }
        op::GET | op::GETQ | op::GETK | op::GETKQ | op::DELETE | op::DELETEQ => {
            check(extras == 0 && key != 0 && value == 0, Shape::Fixed)
        }
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => {
            check(extras == 20 && key != 0 && value == 0, Shape::Fixed)
        }
        op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => check(extras == 0 && key != 0, Shape::Value),
        op::STAT => check(extras == 0, Shape::Ignored),
        op::SASL_AUTH | op::SASL_STEP if extras == 0 && key > MAX_SASL_MECH_LEN => Some(Err(Rejection::BadMechanism)),
        op::SASL_AUTH | op::SASL_STEP => check(extras == 0 && key != 0, Shape::Value),
        op::TOUCH | op::GAT | op::GATQ | op::GATK | op::GATKQ => check(extras == 4 && key != 0, Shape::Ignored),
        _ => None,
    }
}

/// Builds the request of a known opcode whose lengths were checked by [`shape`].
fn request(header: RequestHeader, extras: &[u8], key: Bytes, value: Bytes) -> BinaryParsed {
    let mut ex = extras;
    let command = match header.opcode {
        op::GET | op::GETQ | op::GETK | op::GETKQ => Command::Get { key },
        op::TOUCH | op::GAT | op::GATQ | op::GATK | op::GATKQ => Command::GetAndTouch {
            key,
            exptime: ex.get_u32(),
        },
        op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => Command::Store {
            mode: match header.opcode {
                op::SET | op::SETQ => StoreMode::Set,
                op::ADD | op::ADDQ => StoreMode::Add,
                _ => StoreMode::Replace,
            },
            key,
            flags: ex.get_u32(),
            exptime: ex.get_u32(),
            value,
        },
        op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => Command::Concat {
            append: matches!(header.opcode, op::APPEND | op::APPENDQ),
            key,
            value,
        },
        op::DELETE | op::DELETEQ => Command::Delete { key },
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => Command::Counter {
            incr: matches!(header.opcode, op::INCREMENT | op::INCREMENTQ),
            key,
            delta: ex.get_u64(),
            initial: ex.get_u64(),
            exptime: ex.get_u32(),
        },
        op::QUIT | op::QUITQ => Command::Quit,
        op::FLUSH | op::FLUSHQ => Command::Flush {
            exptime: if ex.len() == 4 { ex.get_u32() } else { 0 },
        },
        op::NOOP => Command::Noop,
        op::VERSION => Command::Version,
        op::STAT => Command::Stat { group: key },
        op::SASL_LIST_MECHS => Command::SaslListMechs,
        _ => Command::Sasl {
            step: header.opcode == op::SASL_STEP,
            mechanism: key,
            data: value,
        },
    };
    BinaryParsed::Request { header, command }
}

impl Decoder for BinaryDecoder {
    type Item = BinaryParsed;
    type Error = BinaryFatal;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BinaryParsed>, BinaryFatal> {
        loop {
            match &mut self.state {
                State::Closed => {
                    buf.clear();
                    return Ok(None);
                }
                State::Swallow { remaining } => {
                    let n = (*remaining).min(buf.len() as u64);
                    buf.advance(n as usize);
                    *remaining -= n;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Value { len, .. } => {
                    if buf.len() < *len {
                        buf.reserve(*len - buf.len());
                        return Ok(None);
                    }
                    let State::Value {
                        header,
                        extras,
                        key,
                        len,
                    } = std::mem::take(&mut self.state)
                    else {
                        unreachable!("state checked above");
                    };
                    let value = buf.split_to(len).freeze();
                    return Ok(Some(request(header, &extras, key, value)));
                }
                State::Header => {
                    let parsed = self.header(buf)?;
                    if parsed.is_some() || matches!(self.state, State::Header) {
                        return Ok(parsed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
