//! Reply packets and when a quiet request gets none.

use super::header::{opcode as op, RequestHeader, Status, HEADER_LEN, RESPONSE_MAGIC};
use bytes::{BufMut, Bytes, BytesMut};

/// One reply packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Echoed from the request.
    pub opcode: u8,
    /// The outcome.
    pub status: Status,
    /// Echoed from the request.
    pub opaque: u32,
    /// The item's cas (0 for errors).
    pub cas: u64,
    /// Extras (the flags of a get).
    pub extras: Bytes,
    /// The key (getk, gatk, stat names).
    pub key: Bytes,
    /// The value (or an error's text).
    pub value: Bytes,
}

/// Text memcached sends with each error status.
pub trait StatusExt {
    /// The error text memcached puts in the body.
    fn message(self) -> &'static str;
}

impl StatusExt for Status {
    fn message(self) -> &'static str {
        match self {
            Status::Success => "",
            Status::KeyNotFound => "Not found",
            Status::KeyExists => "Data exists for key.",
            Status::TooLarge => "Too large.",
            Status::Invalid => "Invalid arguments",
            Status::NotStored => "Not stored.",
            Status::NonNumeric => "Non-numeric server-side value for incr or decr",
            Status::AuthError => "Auth failure.",
            Status::AuthContinue => "",
            Status::UnknownCommand => "Unknown command",
            Status::OutOfMemory => "Out of memory",
            Status::InternalError => "Internal error",
        }
    }
}

impl Reply {
    /// A successful reply to `request` with no body.
    pub fn ok(request: &RequestHeader) -> Reply {
        Reply {
            opcode: request.opcode,
            status: Status::Success,
            opaque: request.opaque,
            cas: 0,
            extras: Bytes::new(),
            key: Bytes::new(),
            value: Bytes::new(),
        }
    }

    /// An error reply with memcached's text for `status`.
    pub fn error(request: &RequestHeader, status: Status) -> Reply {
        Reply::error_with(request, status, status.message())
    }

    /// An error reply with its own text (Kai's reason for a failure).
    pub fn error_with(request: &RequestHeader, status: Status, text: &str) -> Reply {
        Reply {
            status,
            value: Bytes::copy_from_slice(text.as_bytes()),
            ..Reply::ok(request)
        }
    }

    /// True if this reply is left out: its request is quiet and this is the outcome quiet mode
    /// hides (a miss for the get family, success for the others; errors are always sent).
    pub fn suppressed(&self) -> bool {
        match self.opcode {
            op::GETQ | op::GETKQ | op::GATQ | op::GATKQ => self.status == Status::KeyNotFound,
            op::SETQ
            | op::ADDQ
            | op::REPLACEQ
            | op::DELETEQ
            | op::INCREMENTQ
            | op::DECREMENTQ
            | op::QUITQ
            | op::FLUSHQ
            | op::APPENDQ
            | op::PREPENDQ => self.status == Status::Success,
            _ => false,
        }
    }

    /// Appends the packet to `out`, unless [`Reply::suppressed`].
    pub fn encode_into(&self, out: &mut BytesMut) {
        if self.suppressed() {
            return;
        }
        let body = self.extras.len() + self.key.len() + self.value.len();
        out.reserve(HEADER_LEN + body);
        out.put_u8(RESPONSE_MAGIC);
        out.put_u8(self.opcode);
        out.put_u16(self.key.len() as u16);
        out.put_u8(self.extras.len() as u8);
        out.put_u8(0);
        out.put_u16(self.status as u16);
        out.put_u32(body as u32);
        out.put_u32(self.opaque);
        out.put_u64(self.cas);
        out.put_slice(&self.extras);
        out.put_slice(&self.key);
        out.put_slice(&self.value);
    }
}

/// True for the opcodes whose replies carry the key (getk, getkq, gatk, gatkq).
pub fn returns_key(opcode: u8) -> bool {
    matches!(opcode, op::GETK | op::GETKQ | op::GATK | op::GATKQ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: u8) -> RequestHeader {
        RequestHeader {
            opcode,
            opaque: 0xdead_beef,
            cas: 7,
        }
    }

    fn wire(reply: &Reply) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode_into(&mut out);
        out.to_vec()
    }

    #[test]
    fn encodes_a_get_hit_like_memcached() {
        let reply = Reply {
            cas: 0x0102,
            extras: Bytes::from_static(&[0, 0, 0, 5]),
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"abc"),
            ..Reply::ok(&header(op::GETK))
        };
        let mut expected = vec![0x81, 0x0c, 0, 1, 4, 0, 0, 0, 0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&[0, 0, 0, 5, b'k', b'a', b'b', b'c']);
        assert_eq!(wire(&reply), expected);
    }

    #[test]
    fn errors_carry_memcacheds_text_and_no_cas() {
        let out = wire(&Reply::error(&header(op::GET), Status::KeyNotFound));
        assert_eq!(&out[6..8], &[0, 1]);
        assert_eq!(&out[8..12], &[0, 0, 0, 9]);
        assert_eq!(&out[16..24], &[0; 8]);
        assert_eq!(&out[24..], b"Not found");
    }

    #[test]
    fn quiet_requests_hide_only_the_expected_outcome() {
        assert!(wire(&Reply::error(&header(op::GETQ), Status::KeyNotFound)).is_empty());
        assert!(!wire(&Reply::ok(&header(op::GETQ))).is_empty());
        assert!(wire(&Reply::ok(&header(op::SETQ))).is_empty());
        assert!(!wire(&Reply::error(&header(op::SETQ), Status::KeyExists)).is_empty());
        assert!(!wire(&Reply::error(&header(op::DELETEQ), Status::KeyNotFound)).is_empty());
        assert!(wire(&Reply::ok(&header(op::QUITQ))).is_empty());
        assert!(!wire(&Reply::error(&header(op::GET), Status::KeyNotFound)).is_empty());
    }
}
