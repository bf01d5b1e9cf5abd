//! The 24-byte packet header shared by requests and replies, the opcodes and the status codes.
//!
//! All numbers are big-endian. A request header is `magic (0x80) | opcode | key length (2) |
//! extras length | data type | reserved (2) | total body length (4) | opaque (4) | cas (8)`; a
//! reply has magic 0x81 and the status in place of the reserved field. The body is extras, then
//! key, then value.

use bytes::Buf;

/// Length of every header.
pub const HEADER_LEN: usize = 24;
/// First byte of a request: how a connection is recognised as binary.
pub const REQUEST_MAGIC: u8 = 0x80;
/// First byte of a reply.
pub const RESPONSE_MAGIC: u8 = 0x81;

/// The opcodes memcached 1.6 implements. The `Q` forms are quiet: see
/// [`crate::binary::Reply::suppressed`].
pub mod opcode {
    #![allow(missing_docs)]
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Reply status codes: memcached's, plus the protocol's `Internal error` for what Kai fails to
/// do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// No error.
    Success = 0x00,
    /// Key not found.
    KeyNotFound = 0x01,
    /// Key exists (or cas mismatch).
    KeyExists = 0x02,
    /// Value too large.
    TooLarge = 0x03,
    /// Invalid arguments.
    Invalid = 0x04,
    /// Item not stored.
    NotStored = 0x05,
    /// Incr/decr on a non-numeric value.
    NonNumeric = 0x06,
    /// Authentication required or failed.
    AuthError = 0x20,
    /// Authentication continues (a further SASL step is needed).
    AuthContinue = 0x21,
    /// Unknown command.
    UnknownCommand = 0x81,
    /// Out of memory.
    OutOfMemory = 0x82,
    /// Internal error (Kai: no quorum, storage failure, timeout).
    InternalError = 0x84,
}

impl Status {
    /// Every status, in code order.
    const ALL: [Status; 12] = [
        Status::Success,
        Status::KeyNotFound,
        Status::KeyExists,
        Status::TooLarge,
        Status::Invalid,
        Status::NotStored,
        Status::NonNumeric,
        Status::AuthError,
        Status::AuthContinue,
        Status::UnknownCommand,
        Status::OutOfMemory,
        Status::InternalError,
    ];

    /// The status a reply's status field `code` names, if it is one of these (what a client
    /// reads back).
    pub fn from_code(code: u16) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as u16 == code)
    }
}

/// The fields of a request header a reply needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// The opcode, echoed in replies.
    pub opcode: u8,
    /// Echoed in replies.
    pub opaque: u32,
    /// Compare-and-swap value; 0 means none.
    pub cas: u64,
}

/// A complete request header as read from the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub magic: u8,
    pub key_len: u16,
    pub extras_len: u8,
    pub body_len: u32,
    pub request: RequestHeader,
}

impl RawHeader {
    /// Parses the first [`HEADER_LEN`] bytes of `bytes` (which holds at least that many).
    pub fn parse(mut bytes: &[u8]) -> RawHeader {
        let magic = bytes.get_u8();
        let opcode = bytes.get_u8();
        let key_len = bytes.get_u16();
        let extras_len = bytes.get_u8();
        let _data_type = bytes.get_u8();
        let _reserved = bytes.get_u16();
        let body_len = bytes.get_u32();
        let opaque = bytes.get_u32();
        let cas = bytes.get_u64();
        RawHeader {
            magic,
            key_len,
            extras_len,
            body_len,
            request: RequestHeader { opcode, opaque, cas },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_decodes_from_its_code_and_nothing_else_does() {
        for status in Status::ALL {
            assert_eq!(Status::from_code(status as u16), Some(status));
        }
        assert_eq!(Status::from_code(0x85), None);
        assert_eq!(Status::from_code(0x07), None);
    }
}
