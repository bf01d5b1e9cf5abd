//! Stored records and their on-disk encoding.
//!
//! A [`Record`] is what a replica holds for a key: a [`Tag`] plus either a value (client flags,
//! absolute expiry, bytes) or a tombstone. Deletes are tombstones so that a replica that missed a
//! delete can never resurrect the key: the tombstone's higher tag wins.
//!
//! Encoding (format version 1, big-endian integers):
//! `[version u8][kind u8][counter u64][writer u64]` then, for a value (kind 0),
//! `[flags u32][expires_at u64][data…]`, for a tombstone (kind 1) `[deleted_at u64]`, for a
//! value with a [`ValueState`] other than the default (kind 2, the meta protocol's
//! stale-while-revalidate marks) `[flags u32][expires_at u64][marks u8][winner?][cas?][data…]`,
//! where `winner` (present when marks bit 2 is set) is the tag `[counter u64][writer u64]` of the
//! version whose proposal handed the recache win out, and `cas` (bit 3, `u64`) a cas unique the
//! client chose (meta `E` flag) instead of the one derived from the tag.
//! `expires_at` and `deleted_at` are unix seconds; `expires_at == 0` means "never expires".
//! Kind 2 was added without changing the format version: everything stored before it decodes
//! as before, and a value without marks is still written as kind 0. A node of an older version
//! refuses kind 2 records (`UnknownKind`).

use crate::tag::{Tag, WriterId};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

const FORMAT_VERSION: u8 = 1;
const KIND_VALUE: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
const KIND_MARKED_VALUE: u8 = 2;
const STATE_STALE: u8 = 1;
const STATE_WIN_SENT: u8 = 2;
const STATE_WINNER: u8 = 4;
const WINNER_LEN: usize = 16;
const STATE_CAS: u8 = 8;
const CAS_LEN: usize = 8;
const HEADER_LEN: usize = 1 + 1 + 8 + 8;
const VALUE_META_LEN: usize = 4 + 8;
const TOMBSTONE_LEN: usize = 8;

/// The meta protocol's stale-while-revalidate marks of a value (memcached's `ITEM_STALE` and
/// `ITEM_TOKEN_SENT`). Every change of them is a new version written by a read-modify-write,
/// so exactly one client is ever told it won.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValueState {
    /// Invalidated (`md … I`, or `ms … I` with an old cas): readers see `X`.
    pub stale: bool,
    /// A client was handed the recache win (`W`); later readers see `Z`.
    pub win_sent: bool,
    /// The tag of the version whose proposal handed the win out (set by the proposer, kept
    /// while `win_sent` holds): lets a proposer whose accept had an unknown outcome tell
    /// whether its win took effect.
    pub winner: Option<Tag>,
    /// A cas unique chosen by the client (meta `E`), shown instead of the tag's.
    pub cas: Option<u64>,
}

impl ValueState {
    /// Bytes the marks take in a kind 2 record.
    fn encoded_len(&self) -> usize {
        1 + if self.winner.is_some() { WINNER_LEN } else { 0 } + if self.cas.is_some() { CAS_LEN } else { 0 }
    }

    fn encode_into(&self, out: &mut BytesMut) {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        out.put_u8(
            flag(self.stale, STATE_STALE)
                | flag(self.win_sent, STATE_WIN_SENT)
                | flag(self.winner.is_some(), STATE_WINNER)
                | flag(self.cas.is_some(), STATE_CAS),
        );
        if let Some(winner) = self.winner {
            out.put_u64(winner.counter);
            out.put_u64(winner.writer.0);
        }
        if let Some(cas) = self.cas {
            out.put_u64(cas);
        }
    }

    /// Decodes marks from the start of `bytes`.
    fn decode(bytes: &[u8]) -> Option<Self> {
        let marks = *bytes.first()?;
        let winner = if marks & STATE_WINNER != 0 {
            let tag = bytes.get(1..1 + WINNER_LEN)?;
            Some(Tag {
                counter: be_u64(&tag[..8]),
                writer: WriterId(be_u64(&tag[8..])),
            })
        } else {
            None
        };
        let cas = if marks & STATE_CAS != 0 {
            let at = 1 + if winner.is_some() { WINNER_LEN } else { 0 };
            Some(be_u64(bytes.get(at..at + CAS_LEN)?))
        } else {
            None
        };
        Some(ValueState {
            stale: marks & STATE_STALE != 0,
            win_sent: marks & STATE_WIN_SENT != 0,
            winner,
            cas,
        })
    }
}

/// What a record holds besides its tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordBody {
    /// A live value.
    Value {
        /// Opaque client flags (memcached's 32-bit flags).
        flags: u32,
        /// Absolute expiry in unix seconds; 0 means never.
        expires_at: u64,
        /// The value's bytes.
        data: Bytes,
        /// Stale-while-revalidate marks (default: none).
        state: ValueState,
    },
    /// The key was deleted at `deleted_at` (unix seconds).
    Tombstone {
        /// When the delete was coordinated, for tombstone garbage collection.
        deleted_at: u64,
    },
}

/// One version of a key as stored on a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The version; a replica keeps the record with the highest tag.
    pub tag: Tag,
    /// Value or tombstone.
    pub body: RecordBody,
}

/// Why stored bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordDecodeError {
    /// Fewer bytes than the fixed part of the layout needs.
    #[error("record is truncated: {len} bytes")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Written by an unknown format version.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// Kind byte is neither value nor tombstone.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
}

impl Record {
    /// A live value.
    pub fn value(tag: Tag, flags: u32, expires_at: u64, data: Bytes) -> Self {
        Record {
            tag,
            body: RecordBody::Value {
                flags,
                expires_at,
                data,
                state: ValueState::default(),
            },
        }
    }

    /// This record with the value's marks set to `state` (no effect on a tombstone).
    pub fn with_state(mut self, new: ValueState) -> Self {
        if let RecordBody::Value { state, .. } = &mut self.body {
            *state = new;
        }
        self
    }

    /// The memcached cas unique of this version: the one a client chose (meta `E`), else the
    /// tag's ([`Tag::cas_unique`]).
    pub fn cas_unique(&self) -> u64 {
        self.state().cas.unwrap_or_else(|| self.tag.cas_unique())
    }

    /// The value's marks (default for a tombstone).
    pub fn state(&self) -> ValueState {
        match &self.body {
            RecordBody::Value { state, .. } => *state,
            RecordBody::Tombstone { .. } => ValueState::default(),
        }
    }

    /// A tombstone.
    pub fn tombstone(tag: Tag, deleted_at: u64) -> Self {
        Record {
            tag,
            body: RecordBody::Tombstone { deleted_at },
        }
    }

    /// True if this record is a value that has not expired at `now` (unix seconds).
    pub fn is_live(&self, now: u64) -> bool {
        match &self.body {
            RecordBody::Value { expires_at, .. } => *expires_at == 0 || *expires_at > now,
            RecordBody::Tombstone { .. } => false,
        }
    }

    /// True if this is a value whose expiry time has passed at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        matches!(&self.body, RecordBody::Value { expires_at, .. } if *expires_at != 0 && *expires_at <= now)
    }

    /// Size of the encoded form in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match &self.body {
                RecordBody::Value { data, state, .. } => VALUE_META_LEN + marks_len(state) + data.len(),
                RecordBody::Tombstone { .. } => TOMBSTONE_LEN,
            }
    }

    /// Appends the on-disk encoding to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u8(FORMAT_VERSION);
        out.put_u8(match &self.body {
            RecordBody::Value { state, .. } if *state != ValueState::default() => KIND_MARKED_VALUE,
            RecordBody::Value { .. } => KIND_VALUE,
            RecordBody::Tombstone { .. } => KIND_TOMBSTONE,
        });
        out.put_u64(self.tag.counter);
        out.put_u64(self.tag.writer.0);
        match &self.body {
            RecordBody::Value {
                flags,
                expires_at,
                data,
                state,
            } => {
                out.put_u32(*flags);
                out.put_u64(*expires_at);
                if *state != ValueState::default() {
                    state.encode_into(out);
                }
                out.put_slice(data);
            }
            RecordBody::Tombstone { deleted_at } => out.put_u64(*deleted_at),
        }
    }

    /// The on-disk encoding.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Decodes only the tag, without copying the value.
    pub fn decode_tag(bytes: &[u8]) -> Result<Tag, RecordDecodeError> {
        let header = Header::parse(bytes)?;
        Ok(header.tag)
    }

    /// Decodes only whether the record is a tombstone (a value with or without marks is not).
    pub fn decode_is_tombstone(bytes: &[u8]) -> Result<bool, RecordDecodeError> {
        Ok(Header::parse(bytes)?.kind == KIND_TOMBSTONE)
    }

    /// Decodes only the absolute expiry of a value (0 for tombstones and non-expiring values).
    pub fn decode_expiry(bytes: &[u8]) -> Result<u64, RecordDecodeError> {
        let header = Header::parse(bytes)?;
        if header.kind == KIND_TOMBSTONE {
            return Ok(0);
        }
        let meta = rest(bytes, VALUE_META_LEN)?;
        Ok(be_u64(&meta[4..12]))
    }

    /// Decodes a record; `bytes` is shared so the value is not copied.
    pub fn decode(bytes: Bytes) -> Result<Record, RecordDecodeError> {
        let header = Header::parse(&bytes)?;
        let body = match header.kind {
            KIND_VALUE | KIND_MARKED_VALUE => {
                let meta = rest(&bytes, VALUE_META_LEN)?;
                let state = if header.kind == KIND_MARKED_VALUE {
                    ValueState::decode(&bytes[HEADER_LEN + VALUE_META_LEN..])
                        .ok_or(RecordDecodeError::Truncated { len: bytes.len() })?
                } else {
                    ValueState::default()
                };
                RecordBody::Value {
                    flags: u32::from_be_bytes([meta[0], meta[1], meta[2], meta[3]]),
                    expires_at: be_u64(&meta[4..12]),
                    data: bytes.slice(HEADER_LEN + VALUE_META_LEN + marks_len(&state)..),
                    state,
                }
            }
            _ => {
                let meta = rest(&bytes, TOMBSTONE_LEN)?;
                RecordBody::Tombstone {
                    deleted_at: be_u64(&meta[..8]),
                }
            }
        };
        Ok(Record { tag: header.tag, body })
    }
}

struct Header {
    kind: u8,
    tag: Tag,
}

impl Header {
    fn parse(bytes: &[u8]) -> Result<Header, RecordDecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(RecordDecodeError::Truncated { len: bytes.len() });
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(RecordDecodeError::UnknownVersion(bytes[0]));
        }
        let kind = bytes[1];
        if kind != KIND_VALUE && kind != KIND_TOMBSTONE && kind != KIND_MARKED_VALUE {
            return Err(RecordDecodeError::UnknownKind(kind));
        }
        Ok(Header {
            kind,
            tag: Tag {
                counter: be_u64(&bytes[2..10]),
                writer: WriterId(be_u64(&bytes[10..18])),
            },
        })
    }
}

/// Bytes the marks of a value take (none for a value without marks: kind 0).
fn marks_len(state: &ValueState) -> usize {
    if *state == ValueState::default() {
        0
    } else {
        state.encoded_len()
    }
}

/// The `need` bytes after the header, or `Truncated`.
fn rest(bytes: &[u8], need: usize) -> Result<&[u8], RecordDecodeError> {
    bytes
        .get(HEADER_LEN..HEADER_LEN + need)
        .ok_or(RecordDecodeError::Truncated { len: bytes.len() })
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(counter: u64, node: u64) -> Tag {
        Tag {
            counter,
            writer: WriterId(node),
        }
    }

    #[test]
    fn value_and_tombstone_round_trip() {
        let v = Record::value(tag(3, 7), 0xdead_beef, 1_700_000_000, Bytes::from_static(b"a\r\nb\0"));
        assert_eq!(Record::decode(v.encode()), Ok(v.clone()));
        assert_eq!(Record::decode_tag(&v.encode()), Ok(tag(3, 7)));
        assert_eq!(Record::decode_expiry(&v.encode()), Ok(1_700_000_000));
        assert_eq!(Record::decode_is_tombstone(&v.encode()), Ok(false));
        let marked = v.with_state(ValueState {
            stale: true,
            ..ValueState::default()
        });
        assert_eq!(Record::decode_is_tombstone(&marked.encode()), Ok(false));
        let t = Record::tombstone(tag(4, 7), 99);
        assert_eq!(Record::decode(t.encode()), Ok(t.clone()));
        assert_eq!(Record::decode_expiry(&t.encode()), Ok(0));
        assert_eq!(Record::decode_is_tombstone(&t.encode()), Ok(true));
        assert!(Record::decode_is_tombstone(&[1, 9]).is_err());
    }

    #[test]
    fn marked_values_round_trip_and_unmarked_ones_keep_the_old_layout() {
        let plain = Record::value(tag(3, 7), 5, 9, Bytes::from_static(b"v"));
        let old_layout = [
            &[1u8, 0][..],
            &3u64.to_be_bytes(),
            &7u64.to_be_bytes(),
            &5u32.to_be_bytes(),
            &9u64.to_be_bytes(),
            b"v",
        ]
        .concat();
        assert_eq!(plain.encode(), old_layout, "records without marks are stored as before");
        let winner = Some(tag(9, 8));
        let cases = [
            (true, false, None, None),
            (false, true, winner, None),
            (true, true, None, Some(7)),
            (false, true, winner, Some(u64::MAX)),
            (false, false, None, Some(1)),
        ];
        for (stale, win_sent, winner, cas) in cases {
            let state = ValueState {
                stale,
                win_sent,
                winner,
                cas,
            };
            let marked = plain.clone().with_state(state);
            let encoded = marked.encode();
            assert_eq!(encoded.len(), marked.encoded_len());
            assert_eq!(encoded[1], KIND_MARKED_VALUE);
            assert_eq!(Record::decode(encoded.clone()), Ok(marked.clone()));
            assert_eq!(Record::decode_expiry(&encoded), Ok(9));
            assert_eq!(marked.state(), state);
            assert_eq!(marked.cas_unique(), cas.unwrap_or(marked.tag.cas_unique()));
            assert_ne!(Record::decode(encoded.slice(..encoded.len() - 2)), Ok(marked.clone()));
        }
        let tombstone = Record::tombstone(tag(1, 1), 0).with_state(ValueState {
            stale: true,
            win_sent: true,
            winner: None,
            cas: Some(3),
        });
        assert_eq!(tombstone.state(), ValueState::default());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            Record::decode(Bytes::from_static(b"\x01\x00")),
            Err(RecordDecodeError::Truncated { len: 2 })
        );
        assert_eq!(
            Record::decode(Bytes::from(vec![9u8; 40])),
            Err(RecordDecodeError::UnknownVersion(9))
        );
        let mut v = Record::tombstone(tag(1, 1), 0).encode().to_vec();
        v[1] = 5;
        assert_eq!(Record::decode(v.into()), Err(RecordDecodeError::UnknownKind(5)));
        let short_value = &Record::value(tag(1, 1), 0, 0, Bytes::new()).encode()[..20];
        assert!(Record::decode(Bytes::copy_from_slice(short_value)).is_err());
    }

    #[test]
    fn liveness_follows_expiry_and_tombstones() {
        let forever = Record::value(tag(1, 1), 0, 0, Bytes::new());
        let until_10 = Record::value(tag(1, 1), 0, 10, Bytes::new());
        assert!(forever.is_live(u64::MAX) && !forever.is_expired(u64::MAX));
        assert!(until_10.is_live(9) && !until_10.is_live(10) && until_10.is_expired(10));
        assert!(!Record::tombstone(tag(1, 1), 0).is_live(0));
    }

    proptest! {
        #[test]
        fn any_value_round_trips(counter: u64, node: u64, flags: u32, exp: u64, data: Vec<u8>, stale: bool, win_sent: bool, winner: Option<(u64, u64)>, cas: Option<u64>) {
            let winner = winner.map(|(c, w)| tag(c, w));
            let r = Record::value(tag(counter, node), flags, exp, data.into()).with_state(ValueState { stale, win_sent, winner, cas });
            prop_assert_eq!(Record::decode(r.encode()), Ok(r));
        }

        #[test]
        fn random_bytes_never_panic(data: Vec<u8>) {
            let _ = Record::decode(data.into());
        }
    }
}
