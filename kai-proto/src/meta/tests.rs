use super::parse::{parse, Line, LineError, MetaError};
use super::reply::{self, GetHit, ItemView, Status};
use super::*;
use crate::key::Key;
use crate::memcache::{Parsed, Request, RequestDecoder, RequestError, Response};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Every item the text decoder yields for `input`, and the fatal error that ended it, if any.
fn decode_all(input: &[u8]) -> (Vec<Parsed>, Option<String>) {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(item)) => out.push(item),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

fn one(input: &str) -> Parsed {
    let (items, fatal) = decode_all(input.as_bytes());
    assert!(fatal.is_none(), "{input:?}: {fatal:?}");
    assert_eq!(items.len(), 1, "{input:?}: {items:?}");
    items.into_iter().next().expect("one item")
}

/// The reply line the client gets for a refused `input`.
fn error_of(input: &str) -> String {
    match one(input) {
        Parsed::Rejected { error, noreply } => {
            assert!(!noreply, "meta errors are always answered");
            let mut out = BytesMut::new();
            Response::rejected(&error).encode_into(&mut out);
            String::from_utf8(out.to_vec()).expect("ascii")
        }
        other => panic!("{input:?} parsed as {other:?}"),
    }
}

fn meta(input: &str) -> MetaRequest {
    match one(input) {
        Parsed::Request(Request::Meta(request)) => request,
        other => panic!("{input:?} parsed as {other:?}"),
    }
}

fn command(input: &str) -> MetaCommand {
    match meta(input) {
        MetaRequest::Get(c) | MetaRequest::Delete(c) => c,
        MetaRequest::Set { command, .. } | MetaRequest::Arithmetic { command, .. } => command,
        other => panic!("{other:?}"),
    }
}

fn key(k: &str) -> Key {
    Key::new(k.to_owned()).expect("key")
}

fn args(line: &str) -> Vec<Bytes> {
    line.split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| Bytes::copy_from_slice(t.as_bytes()))
        .collect()
}

#[test]
fn parses_every_flag_of_mg() {
    let c = command("mg foo v f c t T30 k q s N10 R5 h l Oab u E77\r\n");
    assert_eq!(c.key, key("foo"));
    let f = &c.flags;
    assert!(f.value && f.quiet && !f.base64);
    assert_eq!(
        (f.ttl, f.vivify, f.recache, f.new_cas),
        (Some(30), Some(10), Some(5), Some(77))
    );
    assert_eq!(
        f.echo,
        vec![
            Echo::Flags,
            Echo::Cas,
            Echo::Ttl,
            Echo::Key,
            Echo::Size,
            Echo::Hit,
            Echo::LastAccess,
            Echo::Opaque(Bytes::from_static(b"Oab")),
        ]
    );
}

#[test]
fn parses_ms_with_its_data_block_and_modes() {
    let MetaRequest::Set { command, mode, data } = meta("ms Zm9v 5 c b F7 C9 T60 I MA q O1 N30\r\nhello\r\n") else {
        panic!("not a set");
    };
    assert_eq!(data, Bytes::from_static(b"hello"));
    assert_eq!(mode, SetMode::Append);
    let f = &command.flags;
    assert!(f.base64 && f.invalidate && f.quiet);
    assert_eq!(
        (f.client_flags, f.compare_cas, f.ttl, f.vivify),
        (Some(7), Some(9), Some(60), Some(30))
    );
    assert_eq!(command.key, key("foo"), "the key was base64");
    for (m, mode) in [
        ("MS", SetMode::Set),
        ("ME", SetMode::Add),
        ("MA", SetMode::Append),
        ("MP", SetMode::Prepend),
        ("MR", SetMode::Replace),
    ] {
        let MetaRequest::Set { mode: parsed, .. } = meta(&format!("ms k 1 {m}\r\nx\r\n")) else {
            panic!("not a set");
        };
        assert_eq!(parsed, mode);
    }
    let MetaRequest::Set { data, .. } = meta("ms k 0\r\n\r\n") else {
        panic!("not a set");
    };
    assert!(data.is_empty());
}

#[test]
fn parses_md_ma_mn_me() {
    let c = command("md foo C5 T30 I q O9 x k\r\n");
    assert!(c.flags.invalidate && c.flags.strip_value && c.flags.quiet);
    assert_eq!((c.flags.compare_cas, c.flags.ttl), (Some(5), Some(30)));
    let MetaRequest::Arithmetic { command, incr } = meta("ma foo v D5 J10 N0 C3 q MD O1 T9 t c k\r\n") else {
        panic!("not ma");
    };
    assert!(!incr);
    let f = &command.flags;
    assert_eq!(
        (f.delta, f.initial, f.vivify, f.compare_cas, f.ttl),
        (Some(5), Some(10), Some(0), Some(3), Some(9))
    );
    for (m, incr) in [("MI", true), ("M+", true), ("MD", false), ("M-", false)] {
        assert!(matches!(meta(&format!("ma k {m}\r\n")), MetaRequest::Arithmetic { incr: i, .. } if i == incr));
    }
    assert_eq!(meta("mn\r\n"), MetaRequest::Noop);
    assert_eq!(
        meta("mn extra\r\n"),
        MetaRequest::Noop,
        "memcached ignores mn's arguments"
    );
    assert_eq!(
        meta("me Zm9v b\r\n"),
        MetaRequest::Debug {
            key: key("foo"),
            base64: true
        }
    );
}

#[test]
fn errors_are_memcached_errors() {
    let cases = [
        ("mg\r\n", "ERROR\r\n"),
        ("ms\r\n", "ERROR\r\n"),
        ("md\r\n", "ERROR\r\n"),
        ("ma\r\n", "ERROR\r\n"),
        ("mz foo\r\n", "ERROR\r\n"),
        ("ms foo\r\n", "CLIENT_ERROR bad command line format\r\n"),
        ("ms foo bar\r\n", "CLIENT_ERROR bad command line format\r\n"),
        ("ms foo -1\r\n", "CLIENT_ERROR bad command line format\r\n"),
        ("me\r\n", "CLIENT_ERROR bad command line format\r\n"),
        ("me !!!! b\r\n", "CLIENT_ERROR bad command line format\r\n"),
        ("mg foo !\r\n", "CLIENT_ERROR invalid flag\r\n"),
        ("mg foo v v\r\n", "CLIENT_ERROR duplicate flag\r\n"),
        ("mg foo \u{7f}\r\n", "CLIENT_ERROR duplicate flag\r\n"),
        ("mg foo Tx\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
        ("mg foo N\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
        ("mg Zm9 b\r\n", "CLIENT_ERROR error decoding key\r\n"),
        ("mg foo MAB\r\n", "CLIENT_ERROR incorrect length for M token\r\n"),
        ("md foo !\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
        ("md foo q q\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
        ("ma foo Dx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
        ("ma foo MX\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n"),
        ("mg foo Fx\r\n", "CLIENT_ERROR bad command line format\r\n"),
        ("mg foo Tx Fx\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
        ("mg foo Jx\r\n", "CLIENT_ERROR invalid numeric initial value\r\n"),
        ("mg foo Dx\r\n", "CLIENT_ERROR invalid numeric delta value\r\n"),
        ("mg foo Tx Dx\r\n", "CLIENT_ERROR invalid numeric delta value\r\n"),
        ("mg foo Tx !\r\n", "CLIENT_ERROR invalid flag\r\n"),
    ];
    for (input, expected) in cases {
        assert_eq!(error_of(input), expected, "{input:?}");
    }
    let long_opaque = format!("mg foo O{}\r\n", "x".repeat(32));
    assert_eq!(error_of(&long_opaque), "CLIENT_ERROR opaque token too long\r\n");
    let ok_opaque = format!("mg foo O{}\r\n", "x".repeat(31));
    assert!(matches!(one(&ok_opaque), Parsed::Request(_)));
    let long_key = format!("mg {} v\r\n", "k".repeat(251));
    assert_eq!(error_of(&long_key), "CLIENT_ERROR bad command line format\r\n");
    let flags17 = "a ".repeat(17);
    assert_eq!(
        error_of(&format!("mg foo {flags17}\r\n")),
        "CLIENT_ERROR invalid flag\r\n",
        "17 flags are scanned"
    );
    let flags18 = "a ".repeat(18);
    assert_eq!(
        error_of(&format!("mg foo {flags18}\r\n")),
        "CLIENT_ERROR options flags are too long\r\n"
    );
    assert_eq!(
        error_of(&format!("md foo {flags18}\r\n")),
        "CLIENT_ERROR options flags too long\r\n"
    );
}

#[test]
fn a_refused_ms_swallows_its_data_block() {
    for line in ["ms foo 3 !\r\n", "ms foo 3 MZ\r\n", "ms foo 3 v v\r\n"] {
        let input = format!("{line}abc\r\nmn\r\n");
        let (items, fatal) = decode_all(input.as_bytes());
        assert!(fatal.is_none());
        assert_eq!(items.len(), 2, "{line:?}: {items:?}");
        assert!(matches!(items[0], Parsed::Rejected { .. }));
        assert_eq!(items[1], Parsed::Request(Request::Meta(MetaRequest::Noop)));
    }
    assert_eq!(
        error_of("ms foo 3 MZ\r\nabc\r\n"),
        "CLIENT_ERROR invalid mode for ms M token\r\n"
    );
    let mode_beats_opaque = format!("ms foo 1 MZ O{}\r\nx\r\n", "o".repeat(40));
    assert_eq!(
        error_of(&mode_beats_opaque),
        "CLIENT_ERROR invalid mode for ms M token\r\n"
    );
    // A bad data chunk is answered even in quiet mode.
    let (items, _) = decode_all(b"ms foo 1 q\r\nxy\r\n");
    assert_eq!(
        items[0],
        Parsed::Rejected {
            error: RequestError::BadDataChunk,
            noreply: false
        }
    );
}

#[test]
fn an_oversized_ms_is_refused_and_deletes_the_key() {
    let (items, _) = decode_all(format!("ms foo {} T0\r\n", 2 * 1024 * 1024).as_bytes());
    assert_eq!(
        items,
        vec![Parsed::Rejected {
            error: RequestError::TooLarge {
                size: 2 * 1024 * 1024,
                max: 1024 * 1024,
                set_key: Some(key("foo")),
            },
            noreply: false
        }]
    );
}

#[test]
fn binary_keys_may_hold_any_byte() {
    let c = command("mg IAkKAA== b k\r\n");
    assert_eq!(c.key.as_bytes(), b" \t\n\0");
    assert_eq!(
        parse(b"ms", &args("foo 3 b")),
        Ok(Line::Data {
            len: 3,
            header: Err(MetaError::KeyDecoding)
        }),
        "a refused ms still has its data swallowed"
    );
    assert_eq!(
        parse(b"mg", &args("!!!! b")),
        Err(LineError::Meta(MetaError::KeyDecoding))
    );
    assert!(matches!(
        parse(b"ms", &args("Zm9v 3 b")),
        Ok(Line::Data { len: 3, header: Ok(_) })
    ));
}

fn item(data: &'static [u8]) -> ItemView {
    ItemView {
        flags: 5,
        data: Bytes::from_static(data),
        cas: 42,
        ttl: None,
    }
}

fn text(b: Bytes) -> String {
    String::from_utf8(b.to_vec()).expect("ascii")
}

#[test]
fn mg_replies_list_flags_in_request_order_then_zxw() {
    let hit = |won, stale, win_taken| GetHit {
        item: ItemView {
            ttl: Some(30),
            ..item(b"hi")
        },
        stale,
        win_taken,
        won,
    };
    let c = command("mg foo s v t c f Oxy k h l\r\n");
    assert_eq!(
        text(reply::get(&c, Some(&hit(false, false, false)))),
        "VA 2 s2 t30 c42 f5 Oxy kfoo h0 l0\r\nhi\r\n"
    );
    assert_eq!(text(reply::get(&c, None)), "EN Oxy kfoo\r\n");
    let c = command("mg foo\r\n");
    assert_eq!(text(reply::get(&c, Some(&hit(true, true, false)))), "HD X W\r\n");
    assert_eq!(text(reply::get(&c, Some(&hit(false, true, true)))), "HD Z X\r\n");
    assert_eq!(text(reply::get(&c, None)), "EN\r\n");
    let c = command("mg foo q t\r\n");
    assert_eq!(text(reply::get(&c, None)), "", "quiet hides the miss");
    assert_eq!(text(reply::get(&c, Some(&hit(false, false, false)))), "HD t30\r\n");
    let c = command("mg foo v C42\r\n");
    assert_eq!(
        text(reply::get(&c, Some(&hit(false, false, false)))),
        "HD\r\n",
        "cas matches: no value"
    );
    let c = command("mg Zm9v b k v\r\n");
    assert_eq!(
        text(reply::get(&c, Some(&hit(false, false, false)))),
        "VA 2 kZm9v b\r\nhi\r\n"
    );
}

#[test]
fn ms_md_ma_replies_and_quiet_mode() {
    let c = command("ms foo 1 c Oa k\r\nx\r\n");
    assert_eq!(text(reply::set(&c, Status::Done, 7)), "HD c7 Oa kfoo\r\n");
    assert_eq!(text(reply::set(&c, Status::NotStored, 0)), "NS c0 Oa kfoo\r\n");
    let q = command("ms foo 1 q\r\nx\r\n");
    assert_eq!(text(reply::set(&q, Status::Done, 7)), "");
    assert_eq!(text(reply::set(&q, Status::Exists, 0)), "EX\r\n");
    let d = command("md foo q O1\r\n");
    assert_eq!(text(reply::delete(&d, Status::Done)), "");
    assert_eq!(text(reply::delete(&d, Status::NotFound)), "NF O1\r\n");
    let a = command("ma foo v t c O2 k\r\n");
    let counter = ItemView {
        ttl: Some(9),
        ..item(b"11")
    };
    assert_eq!(
        text(reply::arithmetic(&a, Ok((11, &counter)))),
        "VA 2 t9 c42 O2 kfoo\r\n11\r\n"
    );
    assert_eq!(text(reply::arithmetic(&a, Err(Status::NotFound))), "NF O2 kfoo\r\n");
    let aq = command("ma foo q v\r\n");
    assert_eq!(text(reply::arithmetic(&aq, Ok((11, &counter)))), "");
    assert_eq!(text(reply::arithmetic(&aq, Err(Status::Exists))), "EX\r\n");
    assert_eq!(text(reply::noop()), "MN\r\n");
    let view = reply::DebugView {
        exp: -1,
        cas: 3,
        size: 70,
    };
    assert_eq!(
        text(reply::debug(&key("foo"), false, Some(&view))),
        "ME foo exp=-1 la=0 cas=3 fetch=no cls=1 size=70\r\n"
    );
    assert_eq!(text(reply::debug(&key("foo"), true, None)), "EN\r\n");
}

proptest! {
    /// Arbitrary meta lines never panic, and the decoder stays in sync: a `mn` after them is
    /// always recognised (unless the garbage left a data block pending).
    #[test]
    fn arbitrary_meta_lines_never_panic(
        cmd in prop::sample::select(vec!["mg", "ms", "md", "ma", "mn", "me"]),
        tokens in prop::collection::vec("[ -~]{0,40}", 0..30),
    ) {
        let line = format!("{cmd} {}\r\n", tokens.join(" "));
        let (_, fatal) = decode_all(line.as_bytes());
        prop_assert!(fatal.is_none() || line.len() > 2048);
    }

    #[test]
    fn random_bytes_after_a_meta_command_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut input = b"mg ".to_vec();
        input.extend_from_slice(&bytes);
        let _ = decode_all(&input);
    }

    #[test]
    fn flags_round_trip_through_the_reply(opaque in "[a-zA-Z0-9]{1,31}", k in "[a-z]{1,20}") {
        let c = command(&format!("md {k} O{opaque} k\r\n"));
        prop_assert_eq!(text(reply::delete(&c, Status::NotFound)), format!("NF O{opaque} k{k}\r\n"));
    }
}
