use super::*;
use crate::binary::request::COUNTER_NO_CREATE;
use bytes::BufMut;
use proptest::prelude::*;

const MAX_VALUE: usize = 1024;

/// A request packet: `extras`, `key`, `value` with the lengths they have.
fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    packet_with(
        opcode,
        extras,
        key,
        value,
        (extras.len() + key.len() + value.len()) as u32,
    )
}

fn packet_with(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], body_len: u32) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(0x80);
    out.put_u8(opcode);
    out.put_u16(key.len() as u16);
    out.put_u8(extras.len() as u8);
    out.put_u8(0);
    out.put_u16(0);
    out.put_u32(body_len);
    out.put_u32(0x0102_0304);
    out.put_u64(99);
    out.put_slice(extras);
    out.put_slice(key);
    out.put_slice(value);
    out.to_vec()
}

fn decode_all(bytes: &[u8]) -> Vec<BinaryParsed> {
    let mut decoder = BinaryDecoder::new(MAX_VALUE);
    let mut buf = BytesMut::from(bytes);
    let mut items = Vec::new();
    while let Some(item) = decoder.decode(&mut buf).expect("not fatal") {
        items.push(item);
    }
    items
}

fn command(parsed: &BinaryParsed) -> &Command {
    match parsed {
        BinaryParsed::Request { command, .. } => command,
        other => panic!("not a request: {other:?}"),
    }
}

fn rejection(parsed: &BinaryParsed) -> &Rejection {
    match parsed {
        BinaryParsed::Rejected { rejection, .. } => rejection,
        other => panic!("not a rejection: {other:?}"),
    }
}

#[test]
fn decodes_every_opcode_family() {
    let mut stream = Vec::new();
    stream.extend(packet(op::GETKQ, &[], b"k", &[]));
    stream.extend(packet(op::SETQ, &[0, 0, 0, 5, 0, 0, 0, 60], b"k", b"value"));
    stream.extend(packet(op::PREPEND, &[], b"k", b"pre"));
    let mut counter = Vec::new();
    counter.put_u64(3);
    counter.put_u64(10);
    counter.put_u32(COUNTER_NO_CREATE);
    stream.extend(packet(op::DECREMENTQ, &counter, b"n", &[]));
    stream.extend(packet(op::GAT, &[0, 0, 1, 0], b"k", &[]));
    stream.extend(packet(op::FLUSH, &[0, 0, 0, 9], b"", &[]));
    stream.extend(packet(op::STAT, &[], b"settings", &[]));
    stream.extend(packet(op::SASL_AUTH, &[], b"PLAIN", b"\0u\0p"));
    stream.extend(packet(op::NOOP, &[], b"", &[]));
    let items = decode_all(&stream);
    let key = |k: &'static [u8]| Bytes::from_static(k);
    let expected = vec![
        Command::Get { key: key(b"k") },
        Command::Store {
            mode: StoreMode::Set,
            key: key(b"k"),
            flags: 5,
            exptime: 60,
            value: key(b"value"),
        },
        Command::Concat {
            append: false,
            key: key(b"k"),
            value: key(b"pre"),
        },
        Command::Counter {
            incr: false,
            key: key(b"n"),
            delta: 3,
            initial: 10,
            exptime: COUNTER_NO_CREATE,
        },
        Command::GetAndTouch {
            key: key(b"k"),
            exptime: 256,
        },
        Command::Flush { exptime: 9 },
        Command::Stat {
            group: key(b"settings"),
        },
        Command::Sasl {
            step: false,
            mechanism: key(b"PLAIN"),
            data: key(b"\0u\0p"),
        },
        Command::Noop,
    ];
    assert_eq!(items.iter().map(command).cloned().collect::<Vec<_>>(), expected);
    let BinaryParsed::Request { header, .. } = &items[0] else {
        unreachable!()
    };
    assert_eq!(
        *header,
        RequestHeader {
            opcode: op::GETKQ,
            opaque: 0x0102_0304,
            cas: 99
        }
    );
}

#[test]
fn unknown_opcode_skips_its_body_and_keeps_the_connection() {
    let mut stream = packet(0x1b, &[0, 0, 0, 1], b"", &[]);
    stream.extend(packet(op::NOOP, &[], b"", &[]));
    let items = decode_all(&stream);
    assert_eq!(rejection(&items[0]), &Rejection::UnknownCommand);
    assert!(!rejection(&items[0]).closes());
    assert_eq!(command(&items[1]), &Command::Noop);
}

#[test]
fn wrong_lengths_close_the_connection() {
    let cases = [
        packet(op::GET, &[], b"", &[]),
        packet(op::GET, &[1], b"k", &[]),
        packet(op::VERSION, &[], b"x", &[]),
        packet(op::SET, &[0; 4], b"k", b"v"),
        packet(op::INCREMENT, &[0; 8], b"k", &[]),
        packet(op::DELETE, &[], b"k", b"v"),
        packet(op::FLUSH, &[0; 2], b"", &[]),
        packet(op::GET, &[], &[b'k'; 251], &[]),
    ];
    for case in cases {
        let mut stream = case.clone();
        stream.extend(packet(op::NOOP, &[], b"", &[]));
        let items = decode_all(&stream);
        assert_eq!(items.len(), 1, "{case:?}");
        assert_eq!(rejection(&items[0]).status(), Status::Invalid);
        assert!(rejection(&items[0]).closes());
    }
}

#[test]
fn body_shorter_than_key_and_extras_is_unknown_command_and_closes() {
    let items = decode_all(&packet_with(op::GET, &[], b"key", &[], 2));
    assert_eq!(rejection(&items[0]), &Rejection::BadLengths);
    assert_eq!(rejection(&items[0]).status(), Status::UnknownCommand);
    assert!(rejection(&items[0]).closes());
}

#[test]
fn a_claimed_4_gib_body_is_refused_at_once() {
    let header = packet_with(op::SET, &[0; 8], b"k", &[], u32::MAX);
    let mut decoder = BinaryDecoder::new(MAX_VALUE);
    let mut buf = BytesMut::from(&header[..]);
    let item = decoder.decode(&mut buf).expect("not fatal").expect("an answer");
    assert_eq!(rejection(&item), &Rejection::BodyTooLong);
    assert!(rejection(&item).closes());
}

#[test]
fn an_oversized_value_is_refused_and_swallowed_as_it_arrives() {
    let value = vec![b'x'; MAX_VALUE + 1];
    let mut stream = packet(op::SETQ, &[0; 8], b"big", &value);
    stream.extend(packet(op::NOOP, &[], b"", &[]));
    let mut decoder = BinaryDecoder::new(MAX_VALUE);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in stream.chunks(100) {
        buf.extend_from_slice(chunk);
        while let Some(item) = decoder.decode(&mut buf).expect("not fatal") {
            items.push(item);
        }
        assert!(buf.len() <= 200, "buffered {}", buf.len());
    }
    assert_eq!(
        rejection(&items[0]),
        &Rejection::TooLarge {
            set_key: Some(Bytes::from_static(b"big"))
        }
    );
    assert_eq!(command(&items[1]), &Command::Noop);
}

#[test]
fn a_value_of_exactly_the_limit_is_accepted() {
    let value = vec![b'x'; MAX_VALUE];
    let items = decode_all(&packet(op::APPEND, &[], b"k", &value));
    assert!(matches!(command(&items[0]), Command::Concat { value: v, .. } if v.len() == MAX_VALUE));
}

#[test]
fn long_sasl_mechanism_is_invalid_but_keeps_the_connection() {
    let mut stream = packet(op::SASL_AUTH, &[], &[b'M'; 33], b"data");
    stream.extend(packet(op::NOOP, &[], b"", &[]));
    let items = decode_all(&stream);
    assert_eq!(rejection(&items[0]), &Rejection::BadMechanism);
    assert_eq!(command(&items[1]), &Command::Noop);
}

#[test]
fn bad_magic_is_fatal() {
    let mut decoder = BinaryDecoder::new(MAX_VALUE);
    let mut buf = BytesMut::from(&[0x81u8; 24][..]);
    assert!(matches!(decoder.decode(&mut buf), Err(BinaryFatal::BadMagic(0x81))));
}

#[test]
fn truncated_header_waits_for_more() {
    let stream = packet(op::GET, &[], b"key", &[]);
    let mut decoder = BinaryDecoder::new(MAX_VALUE);
    let mut buf = BytesMut::from(&stream[..10]);
    assert_eq!(decoder.decode(&mut buf).expect("not fatal"), None);
    buf.extend_from_slice(&stream[10..26]);
    assert_eq!(decoder.decode(&mut buf).expect("not fatal"), None);
    buf.extend_from_slice(&stream[26..]);
    assert!(decoder.decode(&mut buf).expect("not fatal").is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Any split of a valid stream decodes to the same items.
    #[test]
    fn splits_do_not_matter(cuts in proptest::collection::vec(0usize..400, 0..8)) {
        let mut stream = packet(op::SET, &[0, 0, 0, 1, 0, 0, 0, 0], b"key", b"some value");
        stream.extend(packet(op::GETK, &[], b"key", &[]));
        stream.extend(packet(0x55, &[1, 2], b"zz", b"junk"));
        stream.extend(packet(op::APPENDQ, &[], b"key", &[7u8; 100]));
        stream.extend(packet(op::TOUCH, &[0, 0, 0, 1], b"key", b"ignored"));
        stream.extend(packet(op::VERSION, &[], b"", &[]));
        let whole = decode_all(&stream);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % stream.len()).collect();
        cuts.sort_unstable();
        let mut decoder = BinaryDecoder::new(MAX_VALUE);
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            buf.extend_from_slice(&stream[from..cut.max(from)]);
            from = cut.max(from);
            while let Some(item) = decoder.decode(&mut buf).expect("not fatal") {
                items.push(item);
            }
        }
        prop_assert_eq!(items, whole.clone());
        prop_assert_eq!(whole.len(), 6);
    }

    /// Arbitrary bytes after a valid magic never panic and never grow the buffer past what was fed.
    #[test]
    fn arbitrary_input_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut stream = vec![0x80];
        stream.extend(body);
        let mut decoder = BinaryDecoder::new(MAX_VALUE);
        let mut buf = BytesMut::from(&stream[..]);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
        prop_assert!(buf.len() <= stream.len());
    }
}
