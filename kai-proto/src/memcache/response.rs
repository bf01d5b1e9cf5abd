//! Replies and their wire encoding.
//!
//! This is the one place where outcomes become protocol lines: `ERROR` for unknown commands,
//! `CLIENT_ERROR <reason>` for malformed input, `SERVER_ERROR <reason>` for failures of the
//! server (no quorum, store failure, timeout, object too large).

use super::parse::RequestError;
use bytes::{BufMut, Bytes, BytesMut};

/// One `VALUE` line and its data block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueEntry {
    /// The key as the client sent it.
    pub key: Bytes,
    /// Client flags stored with the value.
    pub flags: u32,
    /// The value.
    pub data: Bytes,
    /// The cas unique, for `gets`.
    pub cas: Option<u64>,
}

/// One `STAT <name> <value>` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsEntry {
    /// Statistic name.
    pub name: String,
    /// Statistic value.
    pub value: String,
}

impl StatsEntry {
    /// A statistic.
    pub fn new(name: impl Into<String>, value: impl ToString) -> Self {
        StatsEntry {
            name: name.into(),
            value: value.to_string(),
        }
    }
}

/// A reply to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Hits of a `get`/`gets`, then `END`.
    Values(Vec<ValueEntry>),
    /// `STORED`
    Stored,
    /// `DELETED`
    Deleted,
    /// `NOT_FOUND`
    NotFound,
    /// `NOT_STORED`
    NotStored,
    /// `EXISTS`
    Exists,
    /// `TOUCHED`
    Touched,
    /// The value after `incr`/`decr`.
    Number(u64),
    /// `OK`
    Ok,
    /// `RESET` (the reply to `stats reset`)
    Reset,
    /// `VERSION <v>`
    Version(String),
    /// `STAT` lines, then `END`.
    Stats(Vec<StatsEntry>),
    /// `ERROR`
    Error,
    /// `CLIENT_ERROR <reason>`
    ClientError(String),
    /// `SERVER_ERROR <reason>`
    ServerError(String),
    /// A meta reply, already encoded by [`crate::meta::reply`] (empty when quiet mode hides it).
    Meta(Bytes),
}

impl Response {
    /// The reply to a request the parser refused.
    pub fn rejected(error: &RequestError) -> Response {
        match error {
            RequestError::UnknownCommand | RequestError::WrongArgumentCount => Response::Error,
            RequestError::TooLarge { .. } => Response::ServerError(error.to_string()),
            _ => Response::ClientError(error.to_string()),
        }
    }

    /// Appends the wire form of this reply to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        match self {
            Response::Values(values) => {
                for v in values {
                    out.reserve(v.key.len() + v.data.len() + 64);
                    out.put_slice(b"VALUE ");
                    out.put_slice(&v.key);
                    put_number(out, b' ', u64::from(v.flags));
                    put_number(out, b' ', v.data.len() as u64);
                    if let Some(cas) = v.cas {
                        put_number(out, b' ', cas);
                    }
                    out.put_slice(b"\r\n");
                    out.put_slice(&v.data);
                    out.put_slice(b"\r\n");
                }
                out.put_slice(b"END\r\n");
            }
            Response::Stored => out.put_slice(b"STORED\r\n"),
            Response::Deleted => out.put_slice(b"DELETED\r\n"),
            Response::NotFound => out.put_slice(b"NOT_FOUND\r\n"),
            Response::NotStored => out.put_slice(b"NOT_STORED\r\n"),
            Response::Exists => out.put_slice(b"EXISTS\r\n"),
            Response::Touched => out.put_slice(b"TOUCHED\r\n"),
            Response::Number(n) => {
                let mut line = BytesMut::new();
                put_number(&mut line, b' ', *n);
                out.put_slice(&line[1..]);
                out.put_slice(b"\r\n");
            }
            Response::Ok => out.put_slice(b"OK\r\n"),
            Response::Reset => out.put_slice(b"RESET\r\n"),
            Response::Version(v) => put_line(out, "VERSION ", v),
            Response::Stats(entries) => {
                for e in entries {
                    out.put_slice(b"STAT ");
                    out.put_slice(e.name.as_bytes());
                    out.put_u8(b' ');
                    out.put_slice(one_line(&e.value).as_bytes());
                    out.put_slice(b"\r\n");
                }
                out.put_slice(b"END\r\n");
            }
            Response::Error => out.put_slice(b"ERROR\r\n"),
            Response::ClientError(reason) => put_line(out, "CLIENT_ERROR ", reason),
            Response::ServerError(reason) => put_line(out, "SERVER_ERROR ", reason),
            Response::Meta(reply) => out.put_slice(reply),
        }
    }
}

fn put_line(out: &mut BytesMut, prefix: &str, text: &str) {
    out.put_slice(prefix.as_bytes());
    out.put_slice(one_line(text).as_bytes());
    out.put_slice(b"\r\n");
}

/// Text with line breaks replaced, so a reason can never break the framing.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ").into()
    } else {
        text.into()
    }
}

fn put_number(out: &mut BytesMut, sep: u8, n: u64) {
    out.put_u8(sep);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Response) -> String {
        let mut out = BytesMut::new();
        r.encode_into(&mut out);
        String::from_utf8(out.to_vec()).expect("ascii")
    }

    #[test]
    fn encodes_values_with_and_without_cas() {
        let v = |cas| ValueEntry {
            key: Bytes::from_static(b"k"),
            flags: 42,
            data: Bytes::from_static(b"a\r\nb"),
            cas,
        };
        assert_eq!(wire(&Response::Values(vec![])), "END\r\n");
        assert_eq!(
            wire(&Response::Values(vec![v(None)])),
            "VALUE k 42 4\r\na\r\nb\r\nEND\r\n"
        );
        assert_eq!(
            wire(&Response::Values(vec![v(Some(0)), v(Some(u64::MAX))])),
            "VALUE k 42 4 0\r\na\r\nb\r\nVALUE k 42 4 18446744073709551615\r\na\r\nb\r\nEND\r\n"
        );
    }

    #[test]
    fn encodes_status_lines() {
        assert_eq!(wire(&Response::Stored), "STORED\r\n");
        assert_eq!(wire(&Response::Deleted), "DELETED\r\n");
        assert_eq!(wire(&Response::NotFound), "NOT_FOUND\r\n");
        assert_eq!(wire(&Response::NotStored), "NOT_STORED\r\n");
        assert_eq!(wire(&Response::Exists), "EXISTS\r\n");
        assert_eq!(wire(&Response::Touched), "TOUCHED\r\n");
        assert_eq!(wire(&Response::Number(0)), "0\r\n");
        assert_eq!(wire(&Response::Number(u64::MAX)), "18446744073709551615\r\n");
        assert_eq!(wire(&Response::Ok), "OK\r\n");
        assert_eq!(wire(&Response::Reset), "RESET\r\n");
        assert_eq!(wire(&Response::Version("0.1.0".into())), "VERSION 0.1.0\r\n");
        assert_eq!(
            wire(&Response::Stats(vec![
                StatsEntry::new("pid", 7),
                StatsEntry::new("kai_node", "a")
            ])),
            "STAT pid 7\r\nSTAT kai_node a\r\nEND\r\n"
        );
    }

    #[test]
    fn errors_map_to_the_memcached_lines() {
        assert_eq!(wire(&Response::rejected(&RequestError::UnknownCommand)), "ERROR\r\n");
        assert_eq!(
            wire(&Response::rejected(&RequestError::WrongArgumentCount)),
            "ERROR\r\n"
        );
        assert_eq!(
            wire(&Response::rejected(&RequestError::BadDataChunk)),
            "CLIENT_ERROR bad data chunk\r\n"
        );
        assert_eq!(
            wire(&Response::rejected(&RequestError::TooLarge {
                size: 9,
                max: 1,
                set_key: None
            })),
            "SERVER_ERROR object too large for cache\r\n"
        );
        assert_eq!(wire(&Response::ServerError("a\r\nb".into())), "SERVER_ERROR a  b\r\n");
    }
}
