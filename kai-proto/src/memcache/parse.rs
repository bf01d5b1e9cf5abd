//! Streaming request parser.
//!
//! Invariants:
//! - Memory is bounded: a request line is at most [`Limits::max_line`] bytes
//!   ([`Limits::max_get_line`] for `get`/`gets`, which may carry many keys); a data block is at
//!   most [`Limits::max_value_size`] bytes. A larger data block is refused and *swallowed* as it
//!   arrives (never buffered), so the connection stays in sync.
//! - Every recoverable error is yielded as [`Parsed::Rejected`] with the stream positioned at the
//!   start of the next line. That is the next request, except after a storage command with a wrong
//!   number of tokens: like memcached, the parser then does not trust its `<bytes>` and reads
//!   the data block as a command line.
//! - Where a client can tell the difference, answers are memcached 1.6's (token counts, `exptime`
//!   truncation, keys in a multi-get); see the functions' docs. The only fatal error is a line that exceeds its limit without a
//!   newline: the stream cannot be resynchronised and the connection must be closed.
//! - Bytes split across reads parse exactly as if they arrived at once.

use super::request::{ConditionalStore, Request, StorageCommand};
use crate::key::{Key, KeyError};
use crate::meta::{self, MetaError};
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio_util::codec::Decoder;

/// Longest request line, in bytes, without the line terminator (memcached's limit).
pub const DEFAULT_MAX_LINE: usize = 2048;
/// Longest `get`/`gets` line: these may name many keys.
pub const DEFAULT_MAX_GET_LINE: usize = 64 * 1024;
/// Largest value accepted by default.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1024 * 1024;
/// Largest `<bytes>` field that is a number at all (memcached's bound); above it the command line
/// is malformed rather than the object too large.
const MAX_DECLARED_LEN: u64 = i32::MAX as u64 - 2;

/// Size limits the parser enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (without `\r\n`).
    pub max_line: usize,
    /// Longest `get`/`gets` request line.
    pub max_get_line: usize,
    /// Largest data block.
    pub max_value_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            max_get_line: DEFAULT_MAX_GET_LINE,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
        }
    }
}

/// A request the parser refused; the stream is in sync again after it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a command this protocol knows (`ERROR`).
    #[error("unknown command")]
    UnknownCommand,
    /// A known command with a number of arguments memcached does not accept (`ERROR`, as
    /// memcached answers; a storage command's data block is then not read).
    #[error("wrong number of arguments")]
    WrongArgumentCount,
    /// A malformed field (not a number, out of range) or an over-long key in a `get`.
    #[error("bad command line format")]
    BadCommandLine,
    /// A `touch`/`gat` expiry that is not a number.
    #[error("invalid exptime argument")]
    BadExptime,
    /// `delete` with the wrong arguments.
    #[error("bad command line format.  Usage: delete <key> [noreply]")]
    BadDeleteUsage,
    /// A key breaks the key rules.
    #[error("bad key: {0}")]
    BadKey(KeyError),
    /// The data block was not followed by `\r\n`.
    #[error("bad data chunk")]
    BadDataChunk,
    /// A malformed meta command (always answered, quiet mode or not).
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The data block exceeds [`Limits::max_value_size`].
    #[error("object too large for cache")]
    TooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        max: usize,
        /// The key, if the command was a `set` or `ms`: memcached deletes the key's current
        /// value when it refuses one, so a stale value cannot outlive a failed overwrite.
        set_key: Option<Key>,
    },
}

/// An error after which the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// No newline within the line limit.
    #[error("line too long")]
    LineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// One item of the request stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete request.
    Request(Request),
    /// A refused request; `noreply` if the client asked for no reply.
    Rejected {
        /// Why it was refused.
        error: RequestError,
        /// The client asked for no reply.
        noreply: bool,
    },
}

/// The streaming parser: feed it bytes, take requests out.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Line,
    /// Waiting for `len` data bytes plus `\r\n`.
    Data { header: DataHeader, len: usize },
    /// Discarding `remaining` bytes of a refused data block.
    Swallow { remaining: u64 },
}

/// The command line of a data block being read.
#[derive(Debug)]
enum DataHeader {
    Storage(StorageHeader),
    MetaSet(meta::SetHeader),
}

impl DataHeader {
    fn into_request(self, data: Bytes) -> Request {
        match self {
            DataHeader::Storage(header) => header.into_request(data),
            DataHeader::MetaSet(header) => Request::Meta(header.into_request(data)),
        }
    }

    /// memcached's `noreply` for a bad data chunk: meta commands always get their error.
    fn noreply(&self) -> bool {
        match self {
            DataHeader::Storage(header) => header.noreply,
            DataHeader::MetaSet(_) => false,
        }
    }

    /// The key whose value a refused oversized block deletes (`set` and `ms`, as memcached).
    fn too_large_key(self) -> Option<Key> {
        match self {
            DataHeader::Storage(header) => header.command.is_none().then_some(header.key),
            DataHeader::MetaSet(header) => Some(header.command.key),
        }
    }
}

#[derive(Debug)]
struct StorageHeader {
    command: Option<ConditionalStore>,
    key: Key,
    flags: u32,
    exptime: i32,
    noreply: bool,
}

impl RequestDecoder {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Line,
        }
    }

    fn line_limit(&self, buf: &[u8]) -> usize {
        let is_get = buf.starts_with(b"get ") || buf.starts_with(b"gets ");
        if is_get {
            self.limits.max_get_line
        } else {
            self.limits.max_line
        }
    }

    /// Starts reading a storage command's data block of `len` bytes, or refuses it (a malformed
    /// header first, as memcached checks it first) and swallows the block.
    fn begin_data(&mut self, header: Result<DataHeader, RequestError>, len: u64, noreply: bool) -> Option<Parsed> {
        let block = len + 2;
        let error = match header {
            Err(error) => error,
            Ok(header) if len > self.limits.max_value_size as u64 => RequestError::TooLarge {
                size: len,
                max: self.limits.max_value_size,
                set_key: header.too_large_key(),
            },
            Ok(header) => {
                self.state = State::Data {
                    header,
                    len: len as usize,
                };
                return None;
            }
        };
        self.state = State::Swallow { remaining: block };
        Some(Parsed::Rejected { error, noreply })
    }

    fn parse_line(&mut self, line: Bytes) -> Option<Parsed> {
        let tokens: Vec<Bytes> = line
            .split(|b| *b == b' ')
            .filter(|t| !t.is_empty())
            .map(|t| line.slice_ref(t))
            .collect();
        let Some(command) = tokens.first() else {
            return Some(reject(RequestError::UnknownCommand, false));
        };
        let args = &tokens[1..];
        if meta::parse::is_meta(command) {
            return self.parse_meta(command, args);
        }
        let request = match command.as_ref() {
            b"get" => parse_get(args, false),
            b"gets" => parse_get(args, true),
            b"set" => return self.parse_storage(None, args),
            b"add" => return self.parse_storage(Some(ConditionalStore::Add), args),
            b"replace" => return self.parse_storage(Some(ConditionalStore::Replace), args),
            b"append" => return self.parse_storage(Some(ConditionalStore::Append), args),
            b"prepend" => return self.parse_storage(Some(ConditionalStore::Prepend), args),
            b"cas" => return self.parse_storage(Some(ConditionalStore::Cas(0)), args),
            b"delete" => parse_delete(args),
            b"incr" => parse_arithmetic(args, true),
            b"decr" => parse_arithmetic(args, false),
            b"touch" => parse_touch(args),
            b"gat" => parse_gat(args, false),
            b"gats" => parse_gat(args, true),
            b"flush_all" => parse_flush_all(args),
            // memcached reads only the first argument as the group and ignores the rest.
            b"stats" => Ok(Request::Stats {
                group: args.first().map(|g| String::from_utf8_lossy(g).into_owned()),
            }),
            b"version" => Ok(Request::Version),
            b"quit" => Ok(Request::Quit),
            b"verbosity" => parse_verbosity(args),
            _ => Err(RequestError::UnknownCommand),
        };
        Some(match request {
            Ok(request) => Parsed::Request(request),
            Err(error) => reject(error, ends_with_noreply(args)),
        })
    }

    /// `<cmd> <key> <flags> <exptime> <bytes> [cas] [noreply]`; `command` is `None` for `set`.
    ///
    /// As in memcached, one token may follow the fixed ones: it asks for no reply if it is
    /// `noreply` and is ignored otherwise. Any other token count is answered `ERROR` and no data
    /// block is read (memcached then reads the block as a command line, and so does Kai).
    fn parse_storage(&mut self, command: Option<ConditionalStore>, args: &[Bytes]) -> Option<Parsed> {
        let is_cas = matches!(command, Some(ConditionalStore::Cas(_)));
        let fixed = if is_cas { 5 } else { 4 };
        if args.len() != fixed && args.len() != fixed + 1 {
            return Some(reject(RequestError::WrongArgumentCount, false));
        }
        let noreply = args.get(fixed).is_some_and(|t| t.as_ref() == b"noreply");
        let Some(len) = parse_number::<u64>(&args[3]).filter(|n| *n <= MAX_DECLARED_LEN) else {
            return Some(reject(RequestError::BadCommandLine, noreply));
        };
        let header = (|| {
            let key = Key::new(args[0].clone()).map_err(RequestError::BadKey)?;
            let flags = parse_number::<u32>(&args[1]).ok_or(RequestError::BadCommandLine)?;
            let exptime = parse_exptime(&args[2]).ok_or(RequestError::BadCommandLine)?;
            let command = match command {
                Some(ConditionalStore::Cas(_)) => Some(ConditionalStore::Cas(
                    parse_number::<u64>(&args[4]).ok_or(RequestError::BadCommandLine)?,
                )),
                other => other,
            };
            Ok(DataHeader::Storage(StorageHeader {
                command,
                key,
                flags,
                exptime,
                noreply,
            }))
        })();
        self.begin_data(header, len, noreply)
    }

    /// A meta command line (see [`crate::meta`]); its errors are always answered.
    fn parse_meta(&mut self, command: &[u8], args: &[Bytes]) -> Option<Parsed> {
        match meta::parse::parse(command, args) {
            Ok(meta::Line::Request(request)) => Some(Parsed::Request(Request::Meta(request))),
            Ok(meta::Line::Data { len, header }) => {
                let header = header.map(DataHeader::MetaSet).map_err(RequestError::Meta);
                self.begin_data(header, len, false)
            }
            Err(meta::LineError::WrongArgumentCount) => Some(reject(RequestError::WrongArgumentCount, false)),
            Err(meta::LineError::Meta(error)) => Some(reject(RequestError::Meta(error), false)),
        }
    }
}

impl Decoder for RequestDecoder {
    type Item = Parsed;
    type Error = FatalError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Parsed>, FatalError> {
        loop {
            match &mut self.state {
                State::Swallow { remaining } => {
                    let n = (*remaining).min(buf.len() as u64);
                    buf.advance(n as usize);
                    *remaining -= n;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Line;
                }
                State::Data { len, .. } => {
                    let block = *len + 2;
                    if buf.len() < block {
                        buf.reserve(block - buf.len());
                        return Ok(None);
                    }
                    let data = buf.split_to(block).freeze();
                    let State::Data { header, len } = std::mem::take(&mut self.state) else {
                        unreachable!("state checked above");
                    };
                    if &data[len..] != b"\r\n" {
                        return Ok(Some(reject(RequestError::BadDataChunk, header.noreply())));
                    }
                    return Ok(Some(Parsed::Request(header.into_request(data.slice(..len)))));
                }
                State::Line => {
                    let limit = self.line_limit(buf);
                    let window = &buf[..buf.len().min(limit + 2)];
                    let Some(newline) = window.iter().position(|b| *b == b'\n') else {
                        if buf.len() > limit + 1 {
                            return Err(FatalError::LineTooLong { limit });
                        }
                        return Ok(None);
                    };
                    let mut line = buf.split_to(newline + 1).freeze();
                    line.truncate(newline);
                    if line.last() == Some(&b'\r') {
                        line.truncate(newline - 1);
                    }
                    if line.len() > limit {
                        return Err(FatalError::LineTooLong { limit });
                    }
                    if let Some(parsed) = self.parse_line(line) {
                        return Ok(Some(parsed));
                    }
                }
            }
        }
    }
}

impl StorageHeader {
    fn into_request(self, data: Bytes) -> Request {
        let cmd = StorageCommand {
            key: self.key,
            flags: self.flags,
            exptime: self.exptime,
            data,
            noreply: self.noreply,
        };
        match self.command {
            None => Request::Set(cmd),
            Some(command) => Request::Conditional(command, cmd),
        }
    }
}

fn reject(error: RequestError, noreply: bool) -> Parsed {
    Parsed::Rejected { error, noreply }
}

/// `get`/`gets <key>+`. As in memcached, a key over [`crate::key::MAX_KEY_LEN`] bytes fails the
/// whole request, while a key with a control character or other whitespace than a space (one
/// memcached would look up, and Kai can never store) is a miss: it is left out of `keys`.
fn parse_get(args: &[Bytes], with_cas: bool) -> Result<Request, RequestError> {
    if args.is_empty() {
        return Err(RequestError::WrongArgumentCount);
    }
    let mut keys = Vec::with_capacity(args.len());
    for arg in args {
        match Key::new(arg.clone()) {
            Ok(key) => keys.push(key),
            Err(KeyError::BadCharacter { .. }) => {}
            Err(KeyError::TooLong { .. } | KeyError::Empty) => return Err(RequestError::BadCommandLine),
        }
    }
    Ok(Request::Get { keys, with_cas })
}

/// `delete <key> [0] [noreply]` (the `0` is a legacy hold time memcached still accepts). Like
/// memcached, 1 to 3 arguments get a usage error when malformed, other counts `ERROR`.
fn parse_delete(args: &[Bytes]) -> Result<Request, RequestError> {
    if !(1..=3).contains(&args.len()) {
        return Err(RequestError::WrongArgumentCount);
    }
    let noreply = ends_with_noreply(args);
    let rest = &args[..args.len() - usize::from(noreply)];
    match rest {
        [_] => {}
        [_, zero] if zero.as_ref() == b"0" => {}
        _ => return Err(RequestError::BadDeleteUsage),
    }
    let key = Key::new(rest[0].clone()).map_err(RequestError::BadKey)?;
    Ok(Request::Delete { key, noreply })
}

/// A command Kai recognises but does not execute, with as many arguments as memcached accepts.
/// `flush_all [delay] [noreply]`. As in memcached, a lone `noreply` is no delay, and a delay
/// that is not a 32-bit number is `CLIENT_ERROR invalid exptime argument`.
fn parse_flush_all(args: &[Bytes]) -> Result<Request, RequestError> {
    if args.len() > 2 {
        return Err(RequestError::WrongArgumentCount);
    }
    let noreply = ends_with_noreply(args);
    let delay = match args.first() {
        Some(token) if !(noreply && args.len() == 1) => parse_number::<i32>(token).ok_or(RequestError::BadExptime)?,
        _ => 0,
    };
    Ok(Request::FlushAll { delay, noreply })
}

/// `incr`/`decr <key> <delta> [noreply]`. As in memcached, a bad key is a `CLIENT_ERROR`
/// at once; a bad delta is answered `CLIENT_ERROR invalid numeric delta argument`.
fn parse_arithmetic(args: &[Bytes], incr: bool) -> Result<Request, RequestError> {
    if !(2..=3).contains(&args.len()) {
        return Err(RequestError::WrongArgumentCount);
    }
    let key = Key::new(args[0].clone()).map_err(RequestError::BadKey)?;
    Ok(Request::Arithmetic {
        key,
        incr,
        delta: parse_number::<u64>(&args[1]).filter(|_| !args[1].starts_with(b"-")),
        noreply: ends_with_noreply(args),
    })
}

/// `touch <key> <exptime> [noreply]`.
fn parse_touch(args: &[Bytes]) -> Result<Request, RequestError> {
    if !(2..=3).contains(&args.len()) {
        return Err(RequestError::WrongArgumentCount);
    }
    let key = Key::new(args[0].clone()).map_err(RequestError::BadKey)?;
    let exptime = parse_exptime(&args[1]).ok_or(RequestError::BadExptime)?;
    Ok(Request::Touch {
        key,
        exptime,
        noreply: ends_with_noreply(args),
    })
}

/// `gat`/`gats <exptime> <key>+`; keys as in `get`.
fn parse_gat(args: &[Bytes], with_cas: bool) -> Result<Request, RequestError> {
    let [exptime, keys @ ..] = args else {
        return Err(RequestError::WrongArgumentCount);
    };
    let exptime = parse_exptime(exptime).ok_or(RequestError::BadExptime)?;
    let Request::Get { keys, with_cas } = parse_get(keys, with_cas)? else {
        return Err(RequestError::BadCommandLine);
    };
    Ok(Request::GetAndTouch {
        exptime,
        keys,
        with_cas,
    })
}

/// `verbosity <level> [noreply]`: as in memcached, a second argument is ignored unless it is
/// `noreply`, and a level that is not a number is a `CLIENT_ERROR`.
fn parse_verbosity(args: &[Bytes]) -> Result<Request, RequestError> {
    if !(1..=2).contains(&args.len()) {
        return Err(RequestError::WrongArgumentCount);
    }
    parse_number::<u32>(&args[0]).ok_or(RequestError::BadCommandLine)?;
    Ok(Request::Verbosity {
        noreply: ends_with_noreply(args),
    })
}

fn ends_with_noreply(args: &[Bytes]) -> bool {
    args.last().is_some_and(|t| t.as_ref() == b"noreply")
}

/// Reads an `exptime` the way memcached 1.6 does: a decimal number with an optional sign that
/// fits in 64 bits, of which only the low 32 bits are kept, as a signed number. So `4294967295`
/// (what libmemcached sends for -1) is -1, "already expired", like every negative exptime.
/// Meta commands read their signed numbers the same way.
pub(crate) fn parse_exptime(token: &[u8]) -> Option<i32> {
    let digits = token
        .strip_prefix(b"-")
        .or_else(|| token.strip_prefix(b"+"))
        .unwrap_or(token);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let wide: i64 = std::str::from_utf8(token).ok()?.parse().ok()?;
    // Truncation to the low 32 bits is memcached's behaviour (`int32_t exptime = strtol(...)`).
    Some(wide as i32)
}

/// Parses a decimal number made only of ASCII digits (and a leading `-` for signed types).
fn parse_number<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
