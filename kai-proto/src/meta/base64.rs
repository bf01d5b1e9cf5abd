//! Base64 for meta keys (`b` flag), accepting exactly what memcached 1.6 accepts.
//!
//! Invariants: [`decode`] follows memcached's rules, which differ from strict RFC 4648 decoders
//! (that is why no crate is used): bytes outside the standard alphabet and `=` are skipped, the
//! remaining characters must be a non-zero multiple of four, decoding stops after the first
//! padded block, and a block with more than two `=` is refused. [`encode`] is standard padded
//! base64, as memcached writes keys back.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The 6-bit value of an alphabet character; `=` counts as 0; other bytes are skipped.
fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decodes `text`; `None` where memcached's decoder fails (it then returns length 0).
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let count = text.iter().filter(|b| sextet(**b).is_some()).count();
    if count == 0 || count % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(count / 4 * 3);
    let mut block = [0u8; 4];
    let (mut filled, mut pad) = (0, 0);
    for byte in text {
        let Some(value) = sextet(*byte) else { continue };
        if *byte == b'=' {
            pad += 1;
        }
        block[filled] = value;
        filled += 1;
        if filled == 4 {
            out.push((block[0] << 2) | (block[1] >> 4));
            out.push((block[1] << 4) | (block[2] >> 2));
            out.push((block[2] << 6) | block[3]);
            filled = 0;
            if pad > 0 {
                if pad > 2 {
                    return None;
                }
                out.truncate(out.len() - pad);
                break;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Standard padded base64 of `bytes`.
pub fn encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_like_memcached() {
        assert_eq!(decode(b"Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(decode(b"Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(decode(b"Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(
            decode(b"Zm9v!").as_deref(),
            Some(&b"foo"[..]),
            "foreign bytes are skipped"
        );
        assert_eq!(decode(b"Zg==Zm9v").as_deref(), Some(&b"f"[..]), "stops after padding");
        assert_eq!(decode(b"Zm9"), None, "not a multiple of four");
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"!!!!"), None);
        assert_eq!(decode(b"Z==="), None, "three pad characters");
        assert_eq!(decode(b"===="), None);
    }

    #[test]
    fn encodes_standard_base64() {
        assert_eq!(encode(b"foo"), b"Zm9v");
        assert_eq!(encode(b"fo"), b"Zm8=");
        assert_eq!(encode(b"f"), b"Zg==");
        assert_eq!(encode(b"\x00\xff\x10 k"), b"AP8QIGs=");
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..200)) {
            prop_assert_eq!(decode(&encode(&bytes)), Some(bytes));
        }

        #[test]
        fn never_panics(text in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&text);
        }
    }
}
