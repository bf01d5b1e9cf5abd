//! SASL PLAIN (RFC 4616): the client sends `authzid NUL authcid NUL password`; Kai checks the
//! authentication identity and password and ignores the authorization identity.

/// The only mechanism Kai offers, as `SASL list mechs` answers it.
pub const MECHANISM: &[u8] = b"PLAIN";

/// The user and password of a PLAIN message, or `None` if it is not one.
pub fn parse(message: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = message.splitn(3, |b| *b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let password = parts.next()?;
    (!user.is_empty()).then_some((user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_message() {
        assert_eq!(parse(b"\0alice\0pw"), Some((&b"alice"[..], &b"pw"[..])));
        assert_eq!(parse(b"admin\0alice\0p\0w"), Some((&b"alice"[..], &b"p\0w"[..])));
        assert_eq!(parse(b"alice\0pw"), None);
        assert_eq!(parse(b"\0\0pw"), None);
        assert_eq!(parse(b""), None);
    }
}
