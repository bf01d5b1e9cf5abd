//! Client authentication against memcached's auth file (`user:password` lines).
//!
//! - [`AuthFile`]: the parsed file and the password check.
//! - [`plain`]: the SASL PLAIN message binary clients send.
//! - [`text`]: memcached's text-protocol authentication (a `set` whose data is `user password`).
//!
//! Invariants: passwords never appear in `Debug` output or error messages; comparisons take the
//! same time wherever two secrets of equal length differ.

pub mod plain;
pub mod text;

use std::fmt;

/// Why an auth file cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFileError {
    /// A line without the `:` between user and password (line numbers start at 1).
    #[error("line {line} is not `user:password`")]
    Malformed {
        /// The line.
        line: usize,
    },
    /// No user at all: nobody could authenticate.
    #[error("no `user:password` line")]
    Empty,
}

/// The users of an auth file.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthFile {
    users: Vec<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFile")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl AuthFile {
    /// Parses memcached's format: one `user:password` per line; the password runs to the end
    /// of the line (`\r` excluded) and may contain `:`. Empty lines are skipped.
    pub fn parse(text: &[u8]) -> Result<AuthFile, AuthFileError> {
        let mut users = Vec::new();
        for (index, line) in text.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let colon = line
                .iter()
                .position(|b| *b == b':')
                .ok_or(AuthFileError::Malformed { line: index + 1 })?;
            users.push((line[..colon].to_vec(), line[colon + 1..].to_vec()));
        }
        if users.is_empty() {
            return Err(AuthFileError::Empty);
        }
        Ok(AuthFile { users })
    }

    /// The first user and password of the file (what an admin tool authenticates as).
    pub fn first_user(&self) -> Option<(&[u8], &[u8])> {
        self.users.first().map(|(u, p)| (u.as_slice(), p.as_slice()))
    }

    /// True if `user` has password `password`.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        self.users
            .iter()
            .fold(false, |found, (u, p)| found | (same(u, user) & same(p, password)))
    }
}

/// Equality without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memcacheds_format() {
        let creds = AuthFile::parse(b"alice:s3cret\r\nbob:pa:ss\n\n").expect("valid");
        assert!(creds.check(b"alice", b"s3cret"));
        assert!(creds.check(b"bob", b"pa:ss"));
        assert!(!creds.check(b"alice", b"s3cre"));
        assert!(!creds.check(b"alice", b"pa:ss"));
        assert!(!creds.check(b"carol", b""));
        assert_eq!(creds.first_user(), Some((&b"alice"[..], &b"s3cret"[..])));
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    #[test]
    fn refuses_malformed_and_empty_files() {
        assert_eq!(
            AuthFile::parse(b"alice:x\nbob\n"),
            Err(AuthFileError::Malformed { line: 2 })
        );
        assert_eq!(AuthFile::parse(b"\n"), Err(AuthFileError::Empty));
    }
}
