//! Validated keys.
//!
//! Invariants: a [`Key`] is 1..=[`MAX_KEY_LEN`] bytes. Keys of the text protocol
//! ([`Key::new`]) have no ASCII whitespace or control characters (the memcached rule), so they
//! can always be written back into a protocol line. Binary keys ([`Key::binary`], the meta
//! protocol's base64 keys) may hold any bytes; they are only written to the wire base64-encoded
//! (or by meta commands, verbatim, as memcached does). Keys decoded from the peer protocol or
//! the store are checked as binary keys.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest key accepted, in bytes (memcached's limit).
pub const MAX_KEY_LEN: usize = 250;

/// Why a byte string is not a valid key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key has no bytes.
    #[error("key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("key is {len} bytes, the limit is {max}")]
    TooLong {
        /// Length of the rejected key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key contains whitespace or a control character.
    #[error("key contains whitespace or a control character at byte {position}")]
    BadCharacter {
        /// Offset of the first offending byte.
        position: usize,
    },
}

/// A key that satisfies the memcached key rules.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Bytes", into = "Bytes")]
pub struct Key(Bytes);

impl Key {
    /// Validates `bytes` as a key.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, KeyError> {
        let key = Self::binary(bytes)?;
        if let Some(position) = key
            .0
            .iter()
            .position(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(KeyError::BadCharacter { position });
        }
        Ok(key)
    }

    /// Validates `bytes` as a binary key: only the length is checked (meta commands, and keys
    /// read back from peers or storage).
    pub fn binary(bytes: impl Into<Bytes>) -> Result<Self, KeyError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                len: bytes.len(),
                max: MAX_KEY_LEN,
            });
        }
        Ok(Key(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key as shared bytes (cheap clone).
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl TryFrom<Bytes> for Key {
    type Error = KeyError;
    fn try_from(bytes: Bytes) -> Result<Self, KeyError> {
        Key::binary(bytes)
    }
}

impl From<Key> for Bytes {
    fn from(key: Key) -> Bytes {
        key.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_keys_up_to_the_limit() {
        assert!(Key::new("a").is_ok());
        assert!(Key::new(vec![b'k'; MAX_KEY_LEN]).is_ok());
        assert!(Key::new("ünïcode-ok").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_unprintable_keys() {
        assert_eq!(Key::new(""), Err(KeyError::Empty));
        assert_eq!(
            Key::new(vec![b'k'; MAX_KEY_LEN + 1]),
            Err(KeyError::TooLong { len: 251, max: 250 })
        );
        assert_eq!(Key::new("a b"), Err(KeyError::BadCharacter { position: 1 }));
        assert_eq!(Key::new("ab\x01"), Err(KeyError::BadCharacter { position: 2 }));
        assert_eq!(Key::new("\t"), Err(KeyError::BadCharacter { position: 0 }));
    }

    #[test]
    fn binary_keys_check_only_the_length() {
        assert!(Key::binary(&b"a b\r\n\0"[..]).is_ok());
        assert_eq!(Key::binary(Bytes::new()), Err(KeyError::Empty));
        assert!(Key::binary(vec![0u8; MAX_KEY_LEN + 1]).is_err());
    }
}
