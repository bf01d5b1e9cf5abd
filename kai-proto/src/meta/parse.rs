//! Parsing of meta command lines, with memcached 1.6's checks in memcached's order.
//!
//! Invariants:
//! - Nothing here allocates more than the line it is given (keys ≤ 250 bytes, opaque tokens ≤
//!   32 bytes, at most [`MAX_TOKENS`] tokens); a `ms` data block is read by the text decoder.
//! - The error of every refused line is memcached's, in memcached's precedence: a duplicate or
//!   unknown flag ends the flag scan at once; other flag errors let it go on and the last one
//!   is reported (`md` and `ma` report every flag error as `invalid or duplicate flag`).
//! - A refused `ms` whose `<datalen>` was readable still has its data block swallowed
//!   ([`Line::Data`] with an `Err` header), as memcached does.

use super::base64;
use super::request::{Echo, MetaCommand, MetaFlags, MetaRequest, SetMode};
use crate::key::{Key, MAX_KEY_LEN};
use crate::memcache::parse::parse_exptime;
use bytes::Bytes;

/// Most tokens of a meta line, counting memcached's terminal token (`MFLAG_MAX_OPT_LENGTH`).
pub const MAX_TOKENS: usize = 20;
/// Longest opaque token, `O` included.
pub const MAX_OPAQUE_LEN: usize = 32;

/// Why a meta line was refused (each is a `CLIENT_ERROR <message>` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Malformed key, length or flag value.
    #[error("bad command line format")]
    BadCommandLine,
    /// More than [`MAX_TOKENS`] tokens on an `mg` line.
    #[error("options flags are too long")]
    GetFlagsTooLong,
    /// More than [`MAX_TOKENS`] tokens on an `ms`/`md`/`ma` line.
    #[error("options flags too long")]
    FlagsTooLong,
    /// A flag given twice (or a non-ASCII flag).
    #[error("duplicate flag")]
    DuplicateFlag,
    /// A flag memcached does not know.
    #[error("invalid flag")]
    InvalidFlag,
    /// Any flag error of `md` and `ma`.
    #[error("invalid or duplicate flag")]
    InvalidOrDuplicateFlag,
    /// `b` with a key that is not base64.
    #[error("error decoding key")]
    KeyDecoding,
    /// A numeric flag token (`N`, `T`, `R`, `C`, `E`) that is not a number.
    #[error("bad token in command line format")]
    BadToken,
    /// `M` with other than one mode character.
    #[error("incorrect length for M token")]
    ModeLength,
    /// `J` that is not a 64-bit unsigned number.
    #[error("invalid numeric initial value")]
    BadInitial,
    /// `D` that is not a 64-bit unsigned number.
    #[error("invalid numeric delta value")]
    BadDelta,
    /// An `O` token over [`MAX_OPAQUE_LEN`] bytes.
    #[error("opaque token too long")]
    OpaqueTooLong,
    /// `ms` with an unknown mode.
    #[error("invalid mode for ms M token")]
    SetMode,
    /// `ma` with an unknown mode.
    #[error("invalid mode for ma M token")]
    ArithmeticMode,
}

/// A refused line that is not a [`MetaError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Too few tokens for the command (memcached answers `ERROR`).
    WrongArgumentCount,
    /// `CLIENT_ERROR <message>`.
    Meta(MetaError),
}

impl From<MetaError> for LineError {
    fn from(e: MetaError) -> Self {
        LineError::Meta(e)
    }
}

/// The header of an `ms` whose data block is still to be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetHeader {
    /// Key and flags.
    pub command: MetaCommand,
    /// The mode.
    pub mode: SetMode,
}

impl SetHeader {
    /// The complete request once its data block arrived.
    pub fn into_request(self, data: Bytes) -> MetaRequest {
        MetaRequest::Set {
            command: self.command,
            mode: self.mode,
            data,
        }
    }
}

/// A parsed meta line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete request.
    Request(MetaRequest),
    /// An `ms`: `len` data bytes and `\r\n` follow, to be read (`Ok`) or swallowed (`Err`).
    Data {
        /// Declared data length.
        len: u64,
        /// The header, or why it was refused.
        header: Result<SetHeader, MetaError>,
    },
}

/// True if `command` is a meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`).
pub fn is_meta(command: &[u8]) -> bool {
    matches!(command, b"mg" | b"ms" | b"md" | b"ma" | b"mn" | b"me")
}

/// Parses the line of meta `command` with its `args` (the tokens after the command).
pub fn parse(command: &[u8], args: &[Bytes]) -> Result<Line, LineError> {
    // memcached counts the command and a terminal token.
    let ntokens = args.len() + 2;
    match command {
        b"mn" => Ok(Line::Request(MetaRequest::Noop)),
        b"me" => parse_debug(args).map(Line::Request),
        b"ms" => parse_set(args, ntokens),
        _ => {
            let [raw_key, tokens @ ..] = args else {
                return Err(LineError::WrongArgumentCount);
            };
            if raw_key.len() > MAX_KEY_LEN {
                return Err(MetaError::BadCommandLine.into());
            }
            let is_get = command == b"mg";
            if ntokens > MAX_TOKENS {
                let error = if is_get {
                    MetaError::GetFlagsTooLong
                } else {
                    MetaError::FlagsTooLong
                };
                return Err(error.into());
            }
            let scanned = scan_flags(raw_key, tokens);
            let (key, flags) = if is_get {
                scanned?
            } else {
                scanned.map_err(|_| MetaError::InvalidOrDuplicateFlag)?
            };
            check_opaque(&flags)?;
            let command_ = MetaCommand { key, flags };
            Ok(Line::Request(match command {
                b"mg" => MetaRequest::Get(command_),
                b"md" => MetaRequest::Delete(command_),
                _ => {
                    let incr = match mode_of(tokens) {
                        None | Some(b'I' | b'+') => true,
                        Some(b'D' | b'-') => false,
                        Some(_) => return Err(MetaError::ArithmeticMode.into()),
                    };
                    MetaRequest::Arithmetic {
                        command: command_,
                        incr,
                    }
                }
            }))
        }
    }
}

/// `ms <key> <datalen> <flags>*`.
fn parse_set(args: &[Bytes], ntokens: usize) -> Result<Line, LineError> {
    let [key, rest @ ..] = args else {
        return Err(LineError::WrongArgumentCount);
    };
    if key.len() > MAX_KEY_LEN {
        return Err(MetaError::BadCommandLine.into());
    }
    let [len, flags @ ..] = rest else {
        return Err(MetaError::BadCommandLine.into());
    };
    if ntokens > MAX_TOKENS {
        return Err(MetaError::FlagsTooLong.into());
    }
    let len = parse_exptime(len)
        .filter(|n| (0..=i32::MAX - 2).contains(n))
        .ok_or(MetaError::BadCommandLine)?;
    let header = (|| {
        let (key, parsed) = scan_flags(key, flags)?;
        // memcached checks the mode before reporting an over-long opaque.
        let mode = match mode_of(flags) {
            None | Some(b'S') => SetMode::Set,
            Some(b'E') => SetMode::Add,
            Some(b'A') => SetMode::Append,
            Some(b'P') => SetMode::Prepend,
            Some(b'R') => SetMode::Replace,
            Some(_) => return Err(MetaError::SetMode),
        };
        check_opaque(&parsed)?;
        Ok(SetHeader {
            command: MetaCommand { key, flags: parsed },
            mode,
        })
    })();
    Ok(Line::Data {
        len: len as u64,
        header,
    })
}

/// `me <key> [b]`: every malformed form is `bad command line format`.
fn parse_debug(args: &[Bytes]) -> Result<MetaRequest, LineError> {
    let Some(raw) = args.first().filter(|k| k.len() <= MAX_KEY_LEN) else {
        return Err(MetaError::BadCommandLine.into());
    };
    let base64 = args.get(1).is_some_and(|f| f.as_ref() == b"b");
    let key = if base64 {
        base64::decode(raw).map(Bytes::from).ok_or(MetaError::BadCommandLine)?
    } else {
        raw.clone()
    };
    let key = Key::binary(key).map_err(|_| MetaError::BadCommandLine)?;
    Ok(MetaRequest::Debug { key, base64 })
}

/// The mode character of an `M` flag (already checked to be one character long).
fn mode_of(flags: &[Bytes]) -> Option<u8> {
    flags.iter().find(|t| t[0] == b'M').map(|t| t[1])
}

fn check_opaque(flags: &MetaFlags) -> Result<(), MetaError> {
    let too_long = flags
        .echo
        .iter()
        .any(|e| matches!(e, Echo::Opaque(token) if token.len() > MAX_OPAQUE_LEN));
    if too_long {
        return Err(MetaError::OpaqueTooLong);
    }
    Ok(())
}

/// memcached's flag scan (`_meta_flag_preparse`): the key (decoded for `b`) and the flags.
fn scan_flags(raw_key: &Bytes, tokens: &[Bytes]) -> Result<(Key, MetaFlags), MetaError> {
    let mut flags = MetaFlags::default();
    let mut seen = [false; 128];
    let mut error: Option<MetaError> = None;
    let mut key = Some(raw_key.clone());
    for token in tokens {
        let flag = token[0];
        if flag >= 127 || seen[flag as usize] {
            return Err(MetaError::DuplicateFlag);
        }
        seen[flag as usize] = true;
        let arg = &token[1..];
        let failure = match flag {
            b'b' => {
                flags.base64 = true;
                key = base64::decode(raw_key).map(Bytes::from);
                key.is_none().then_some(MetaError::KeyDecoding)
            }
            b'N' => number(parse_exptime(arg), &mut flags.vivify, MetaError::BadToken),
            b'T' => number(parse_exptime(arg), &mut flags.ttl, MetaError::BadToken),
            b'R' => number(parse_exptime(arg), &mut flags.recache, MetaError::BadToken),
            b'C' => number(parse_u64(arg), &mut flags.compare_cas, MetaError::BadToken),
            b'E' => number(parse_u64(arg), &mut flags.new_cas, MetaError::BadToken),
            // memcached flags a bad `F` without naming it: the message stays the last one.
            b'F' => number(
                parse_u64(arg).and_then(|n| u32::try_from(n).ok()),
                &mut flags.client_flags,
                error.unwrap_or(MetaError::BadCommandLine),
            ),
            b'M' => (token.len() != 2).then_some(MetaError::ModeLength),
            b'J' => number(parse_u64(arg), &mut flags.initial, MetaError::BadInitial),
            b'D' => number(parse_u64(arg), &mut flags.delta, MetaError::BadDelta),
            b'I' => {
                flags.invalidate = true;
                None
            }
            b'x' => {
                flags.strip_value = true;
                None
            }
            b'q' => {
                flags.quiet = true;
                None
            }
            b'v' => {
                flags.value = true;
                None
            }
            b'u' | b'P' | b'L' => None,
            b'O' | b'k' | b'c' | b'f' | b't' | b's' | b'h' | b'l' => {
                flags.echo.push(match flag {
                    b'O' => Echo::Opaque(token.clone()),
                    b'k' => Echo::Key,
                    b'c' => Echo::Cas,
                    b'f' => Echo::Flags,
                    b't' => Echo::Ttl,
                    b's' => Echo::Size,
                    b'h' => Echo::Hit,
                    _ => Echo::LastAccess,
                });
                None
            }
            _ => return Err(MetaError::InvalidFlag),
        };
        if failure.is_some() {
            error = failure;
        }
    }
    if let Some(error) = error {
        return Err(error);
    }
    let key = key.ok_or(MetaError::KeyDecoding)?;
    let key = Key::binary(key).map_err(|_| MetaError::BadCommandLine)?;
    Ok((key, flags))
}

/// Stores a parsed flag value, or names `error` if it did not parse.
fn number<T>(parsed: Option<T>, slot: &mut Option<T>, error: MetaError) -> Option<MetaError> {
    match parsed {
        Some(n) => {
            *slot = Some(n);
            None
        }
        None => Some(error),
    }
}

/// An unsigned 64-bit decimal.
fn parse_u64(token: &[u8]) -> Option<u64> {
    let digits = token.strip_prefix(b"+").unwrap_or(token);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
