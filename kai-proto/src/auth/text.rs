//! memcached's text-protocol authentication (`memcached -Y`, `try_read_command_asciiauth`):
//! until a client authenticates, the only request is
//! `set <any key> <flags> <exptime> <bytes>\r\n<user> <password>\r\n`.
//!
//! Invariants (memcached 1.6's answers):
//! - Any other line is answered `CLIENT_ERROR unauthenticated` (and consumed).
//! - A line shorter than 6 bytes, or no newline within 2048 bytes, closes the connection
//!   without a reply.
//! - A declared length over 16384 is answered `CLIENT_ERROR auth token too long`; the data is not
//!   read (it is then taken for command lines).
//! - Data not ending in `\r\n` is `CLIENT_ERROR bad command line termination`; data without a
//!   space is `CLIENT_ERROR bad authentication token format`.
//! - Memory is bounded by the 2048-byte line and the 16384-byte token.

use bytes::{Bytes, BytesMut};
use std::io;
use tokio_util::codec::Decoder;

/// Longest line before the connection is closed.
const MAX_LINE: usize = 2048;
/// Longest authentication data (memcached's `MAX_AUTH_REQ_LEN`).
const MAX_TOKEN: u32 = 16384;
/// Shortest line memcached considers (`MIN_AUTH_REQ_LEN`), counting a `\r` but not the `\n`.
const MIN_LINE: usize = 6;

/// The reply to a successful authentication.
pub const AUTHENTICATED: &[u8] = b"STORED\r\n";
/// The reply to wrong credentials.
pub const FAILED: &[u8] = b"CLIENT_ERROR authentication failure\r\n";

/// One item of an unauthenticated text stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextAuth {
    /// Credentials to check.
    Attempt {
        /// User name.
        user: Bytes,
        /// Password.
        password: Bytes,
    },
    /// A request refused with this reply line (including `\r\n`); still unauthenticated.
    Refused(&'static [u8]),
    /// Close the connection without a reply.
    Close,
}

/// The decoder of an unauthenticated text connection.
#[derive(Debug, Default)]
pub struct TextAuthDecoder {
    /// Length of the data block announced by the last `set` line, if it is awaited.
    data: Option<usize>,
}

impl Decoder for TextAuthDecoder {
    type Item = TextAuth;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<TextAuth>, io::Error> {
        if let Some(len) = self.data {
            if buf.len() < len + 2 {
                return Ok(None);
            }
            self.data = None;
            let block = buf.split_to(len + 2).freeze();
            if &block[len..] != b"\r\n" {
                return Ok(Some(TextAuth::Refused(
                    b"CLIENT_ERROR bad command line termination\r\n",
                )));
            }
            let Some(space) = block.iter().position(|b| *b == b' ') else {
                return Ok(Some(TextAuth::Refused(
                    b"CLIENT_ERROR bad authentication token format\r\n",
                )));
            };
            return Ok(Some(TextAuth::Attempt {
                user: block.slice(..space),
                password: block.slice((space + 1).min(len)..len),
            }));
        }
        let Some(newline) = buf.iter().position(|b| *b == b'\n') else {
            return Ok((buf.len() > MAX_LINE).then_some(TextAuth::Close));
        };
        if newline < MIN_LINE {
            return Ok(Some(TextAuth::Close));
        }
        let line = buf.split_to(newline + 1);
        let line = line[..newline].strip_suffix(b"\r").unwrap_or(&line[..newline]);
        let tokens: Vec<&[u8]> = line.split(|b| *b == b' ').filter(|t| !t.is_empty()).collect();
        let size = tokens
            .get(4)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse::<u32>().ok());
        let size = match size {
            Some(size) if line.starts_with(b"set") => size,
            _ => return Ok(Some(TextAuth::Refused(b"CLIENT_ERROR unauthenticated\r\n"))),
        };
        if size > MAX_TOKEN {
            return Ok(Some(TextAuth::Refused(b"CLIENT_ERROR auth token too long\r\n")));
        }
        self.data = Some(size as usize);
        self.decode(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Vec<TextAuth> {
        let mut decoder = TextAuthDecoder::default();
        let mut buf = BytesMut::from(input);
        let mut items = Vec::new();
        while let Some(item) = decoder.decode(&mut buf).expect("no i/o") {
            let close = item == TextAuth::Close;
            items.push(item);
            if close {
                break;
            }
        }
        items
    }

    #[test]
    fn accepts_a_set_carrying_user_and_password() {
        assert_eq!(
            decode_all(b"set x 0 0 12\r\nalice s3cret\r\n"),
            vec![TextAuth::Attempt {
                user: Bytes::from_static(b"alice"),
                password: Bytes::from_static(b"s3cret")
            }]
        );
    }

    #[test]
    fn answers_like_memcached() {
        assert_eq!(
            decode_all(b"get foo\r\nversion\r\n"),
            vec![
                TextAuth::Refused(b"CLIENT_ERROR unauthenticated\r\n"),
                TextAuth::Refused(b"CLIENT_ERROR unauthenticated\r\n")
            ]
        );
        assert_eq!(decode_all(b"quit\r\n"), vec![TextAuth::Close]);
        assert_eq!(
            decode_all(b"set x 0 0 99999\r\n"),
            vec![TextAuth::Refused(b"CLIENT_ERROR auth token too long\r\n")]
        );
        assert_eq!(
            decode_all(b"set x 0 0 5\r\nalicexx"),
            vec![TextAuth::Refused(b"CLIENT_ERROR bad command line termination\r\n")]
        );
        assert_eq!(
            decode_all(b"set x 0 0 5\r\nalice\r\n"),
            vec![TextAuth::Refused(b"CLIENT_ERROR bad authentication token format\r\n")]
        );
        assert_eq!(decode_all(&[b'a'; 3000]), vec![TextAuth::Close]);
    }

    #[test]
    fn waits_for_the_data_block() {
        let mut decoder = TextAuthDecoder::default();
        let mut buf = BytesMut::from(&b"set x 0 0 6\r\nbob "[..]);
        assert_eq!(decoder.decode(&mut buf).expect("no i/o"), None);
        buf.extend_from_slice(b"pw\r\n");
        assert!(matches!(
            decoder.decode(&mut buf).expect("no i/o"),
            Some(TextAuth::Attempt { .. })
        ));
    }
}
