//! Who may change a node through the admin endpoint.
//!
//! Invariants: with an `admin_token`, a mutating request is accepted only if its
//! `Authorization` header is exactly `Bearer <token>` (compared in constant time, so response
//! times do not reveal how much of a guess was right). Without a token the endpoint listens on
//! loopback only (the configuration refuses anything else), so only local users can reach it
//! and every request is accepted. Reading endpoints never need the token.

/// Why a mutating request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization` header.
    #[error("missing bearer token (send `Authorization: Bearer <admin_token>`)")]
    Missing,
    /// A header that is not `Bearer <token>`.
    #[error("malformed Authorization header (expected `Bearer <admin_token>`)")]
    Malformed,
    /// A bearer token that is not the node's.
    #[error("wrong bearer token")]
    Wrong,
}

/// Decides whether a request carrying `header` (the raw `Authorization` value, if any) may
/// change a node whose token is `token`.
pub fn authorize(token: Option<&str>, header: Option<&[u8]>) -> Result<(), Refusal> {
    let Some(token) = token else {
        return Ok(());
    };
    let header = header.ok_or(Refusal::Missing)?;
    let presented = header
        .strip_prefix(b"Bearer ")
        .or_else(|| header.strip_prefix(b"bearer "))
        .ok_or(Refusal::Malformed)?;
    if constant_time_eq(presented, token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// Compares without stopping at the first difference (only the length leaks).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let token = Some("s3cret");
        assert_eq!(authorize(token, Some(b"Bearer s3cret")), Ok(()));
        assert_eq!(authorize(token, Some(b"bearer s3cret")), Ok(()));
        assert_eq!(authorize(token, None), Err(Refusal::Missing));
        assert_eq!(authorize(token, Some(b"s3cret")), Err(Refusal::Malformed));
        assert_eq!(authorize(token, Some(b"Basic czNjcmV0")), Err(Refusal::Malformed));
        assert_eq!(authorize(token, Some(b"Bearer s3cre")), Err(Refusal::Wrong));
        assert_eq!(authorize(token, Some(b"Bearer s3cret ")), Err(Refusal::Wrong));
        assert_eq!(authorize(token, Some(b"Bearer ")), Err(Refusal::Wrong));
    }

    #[test]
    fn without_a_token_every_request_is_accepted() {
        assert_eq!(authorize(None, None), Ok(()));
        assert_eq!(authorize(None, Some(b"Bearer anything")), Ok(()));
    }
}
