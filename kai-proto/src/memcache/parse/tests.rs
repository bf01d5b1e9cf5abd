use super::*;
use proptest::prelude::*;

fn key(k: &str) -> Key {
    Key::new(k.to_owned()).expect("valid key")
}

/// Parses `input` fed in one piece; returns the items and whether a fatal error ended it.
fn parse_all(limits: Limits, input: &[u8]) -> (Vec<Parsed>, Option<String>) {
    parse_chunks(limits, &[input])
}

fn parse_chunks(limits: Limits, chunks: &[&[u8]]) -> (Vec<Parsed>, Option<String>) {
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

fn requests(input: &[u8]) -> Vec<Parsed> {
    let (items, fatal) = parse_all(Limits::default(), input);
    assert!(fatal.is_none(), "unexpected fatal error {fatal:?}");
    items
}

fn set(k: &str, flags: u32, exptime: i32, data: &[u8], noreply: bool) -> Parsed {
    Parsed::Request(Request::Set(StorageCommand {
        key: key(k),
        flags,
        exptime,
        data: Bytes::copy_from_slice(data),
        noreply,
    }))
}

fn rejected(error: RequestError) -> Parsed {
    Parsed::Rejected { error, noreply: false }
}

#[test]
fn parses_every_supported_command() {
    let input = b"get a\r\ngets a bb ccc\r\nset k 5 0 3\r\nabc\r\nset k 4294967295 -1 0 noreply\r\n\r\n\
delete k\r\ndelete k 0 noreply\r\nstats\r\nstats kai\r\nversion\r\nverbosity 1\r\nverbosity 1 noreply\r\nquit\r\n";
    assert_eq!(
        requests(input),
        vec![
            Parsed::Request(Request::Get {
                keys: vec![key("a")],
                with_cas: false
            }),
            Parsed::Request(Request::Get {
                keys: vec![key("a"), key("bb"), key("ccc")],
                with_cas: true
            }),
            set("k", 5, 0, b"abc", false),
            set("k", u32::MAX, -1, b"", true),
            Parsed::Request(Request::Delete {
                key: key("k"),
                noreply: false
            }),
            Parsed::Request(Request::Delete {
                key: key("k"),
                noreply: true
            }),
            Parsed::Request(Request::Stats { group: None }),
            Parsed::Request(Request::Stats {
                group: Some("kai".into())
            }),
            Parsed::Request(Request::Version),
            Parsed::Request(Request::Verbosity { noreply: false }),
            Parsed::Request(Request::Verbosity { noreply: true }),
            Parsed::Request(Request::Quit),
        ]
    );
}

#[test]
fn values_are_binary_safe() {
    let input = b"set bin 0 0 6 \r\n\r\n\0x\r\n\r\nget bin\n";
    assert_eq!(
        requests(input),
        vec![
            set("bin", 0, 0, b"\r\n\0x\r\n", false),
            Parsed::Request(Request::Get {
                keys: vec![key("bin")],
                with_cas: false
            }),
        ]
    );
}

#[test]
fn read_modify_write_commands_parse_and_keep_the_stream_in_sync() {
    let input = b"add k 0 0 2\r\nhi\r\ncas k 0 0 1 99 noreply\r\nx\r\nincr k 1\r\ndecr k x noreply\r\n\
touch k 10 noreply\r\ngats -1 a b\r\nflush_all\r\nget k\r\n";
    let stored = |data: &'static [u8], noreply| StorageCommand {
        key: key("k"),
        flags: 0,
        exptime: 0,
        data: Bytes::from_static(data),
        noreply,
    };
    assert_eq!(
        requests(input),
        vec![
            Parsed::Request(Request::Conditional(ConditionalStore::Add, stored(b"hi", false))),
            Parsed::Request(Request::Conditional(ConditionalStore::Cas(99), stored(b"x", true))),
            Parsed::Request(Request::Arithmetic {
                key: key("k"),
                incr: true,
                delta: Some(1),
                noreply: false
            }),
            Parsed::Request(Request::Arithmetic {
                key: key("k"),
                incr: false,
                delta: None,
                noreply: true
            }),
            Parsed::Request(Request::Touch {
                key: key("k"),
                exptime: 10,
                noreply: true
            }),
            Parsed::Request(Request::GetAndTouch {
                exptime: -1,
                keys: vec![key("a"), key("b")],
                with_cas: true
            }),
            Parsed::Request(Request::FlushAll {
                delay: 0,
                noreply: false
            }),
            Parsed::Request(Request::Get {
                keys: vec![key("k")],
                with_cas: false
            }),
        ]
    );
    assert_eq!(requests(b"touch k x\r\n"), vec![rejected(RequestError::BadExptime)]);
}

#[test]
fn malformed_lines_are_rejected_and_the_next_request_still_parses() {
    let input = b"bogus\r\n\r\nget\r\nset k notanumber 0 1\r\nx\r\nset k 0 0\r\nset k -1 0 1\r\nx\r\ndelete\r\ndelete a b c\r\nverbosity\r\nget ok\r\n";
    assert_eq!(
        requests(input),
        vec![
            rejected(RequestError::UnknownCommand),
            rejected(RequestError::UnknownCommand),
            rejected(RequestError::WrongArgumentCount),
            rejected(RequestError::BadCommandLine),
            rejected(RequestError::WrongArgumentCount),
            rejected(RequestError::BadCommandLine),
            rejected(RequestError::WrongArgumentCount),
            rejected(RequestError::BadDeleteUsage),
            rejected(RequestError::WrongArgumentCount),
            Parsed::Request(Request::Get {
                keys: vec![key("ok")],
                with_cas: false
            }),
        ]
    );
}

#[test]
fn flags_must_fit_in_32_bits() {
    let items = requests(b"set k 4294967296 0 1\r\nx\r\nset k +1 0 1\r\nx\r\n");
    assert_eq!(
        items,
        vec![
            rejected(RequestError::BadCommandLine),
            rejected(RequestError::BadCommandLine)
        ]
    );
}

#[test]
fn bad_keys_are_rejected_and_their_data_swallowed() {
    let long = "k".repeat(251);
    let input = format!("set {long} 0 0 1\r\nx\r\nget {long}\r\nget ok\r\n");
    let items = requests(input.as_bytes());
    assert!(matches!(
        items[0],
        Parsed::Rejected {
            error: RequestError::BadKey(KeyError::TooLong { .. }),
            ..
        }
    ));
    assert_eq!(items[1], rejected(RequestError::BadCommandLine));
    assert_eq!(
        items[2],
        Parsed::Request(Request::Get {
            keys: vec![key("ok")],
            with_cas: false
        })
    );
    assert_eq!(items.len(), 3);
}

#[test]
fn wrong_data_length_is_a_bad_data_chunk() {
    let items = requests(b"set k 0 0 2\r\nabc\r\nget k\r\n");
    // "ab" + "c\r" is the block: not terminated by \r\n; then "\nget k" resumes as a line.
    assert_eq!(items[0], rejected(RequestError::BadDataChunk));
    let items = requests(b"set k 0 0 5 noreply\r\nab\r\n\r\n\r\nget k\r\n");
    assert_eq!(
        items[0],
        Parsed::Rejected {
            error: RequestError::BadDataChunk,
            noreply: true
        }
    );
    assert_eq!(
        items.last(),
        Some(&Parsed::Request(Request::Get {
            keys: vec![key("k")],
            with_cas: false
        }))
    );
}

#[test]
fn oversized_values_are_refused_and_swallowed_without_buffering() {
    let limits = Limits {
        max_value_size: 10,
        ..Limits::default()
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = BytesMut::from(&b"set big 0 0 1000\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf).expect("not fatal"),
        Some(rejected(RequestError::TooLarge {
            size: 1000,
            max: 10,
            set_key: Some(key("big"))
        }))
    );
    for _ in 0..10 {
        buf.extend_from_slice(&[b'x'; 100]);
        assert_eq!(decoder.decode(&mut buf).expect("not fatal"), None);
        assert!(buf.is_empty(), "swallowed bytes must not be kept");
    }
    buf.extend_from_slice(b"\r\nget k\r\n");
    assert_eq!(
        decoder.decode(&mut buf).expect("not fatal"),
        Some(Parsed::Request(Request::Get {
            keys: vec![key("k")],
            with_cas: false
        }))
    );
}

#[test]
fn a_refused_set_names_its_key_and_a_malformed_header_comes_first() {
    let limits = Limits {
        max_value_size: 1,
        ..Limits::default()
    };
    let long = "k".repeat(251);
    let input = format!("set k 0 0 3 noreply\r\nabc\r\nadd k 0 0 3\r\nabc\r\nset {long} 0 0 3\r\nabc\r\n");
    let (items, fatal) = parse_all(limits, input.as_bytes());
    assert!(fatal.is_none());
    let too_large = |set_key, noreply| Parsed::Rejected {
        error: RequestError::TooLarge {
            size: 3,
            max: 1,
            set_key,
        },
        noreply,
    };
    assert_eq!(items[..2], [too_large(Some(key("k")), true), too_large(None, false)]);
    assert!(matches!(
        items[2],
        Parsed::Rejected {
            error: RequestError::BadKey(KeyError::TooLong { .. }),
            ..
        }
    ));
    assert_eq!(items.len(), 3);
}

#[test]
fn exptime_is_read_like_memcached() {
    // memcached keeps the low 32 bits of the number as a signed value (checked against
    // memcached 1.6.18): 4294967295 is -1 ("already expired"), -4294967296 is 0 ("never").
    let cases: &[(&str, i32)] = &[
        ("4294967295", -1),
        ("2147483647", i32::MAX),
        ("2147483648", i32::MIN),
        ("-2147483649", i32::MAX),
        ("-4294967296", 0),
        ("9999999999", 1_410_065_407),
        ("+5", 5),
        ("-0", 0),
    ];
    for (sent, read) in cases {
        let input = format!("set k 0 {sent} 1\r\nx\r\n");
        assert_eq!(
            requests(input.as_bytes()),
            vec![set("k", 0, *read, b"x", false)],
            "{sent}"
        );
    }
    for bad in ["99999999999999999999", "0x10", "1x", "-", "+"] {
        let input = format!("set k 0 {bad} 1\r\nx\r\n");
        assert_eq!(
            requests(input.as_bytes()),
            vec![rejected(RequestError::BadCommandLine)],
            "{bad}"
        );
    }
}

#[test]
fn a_token_after_the_length_is_ignored_unless_it_is_noreply() {
    assert_eq!(
        requests(b"set k 0 0 1 garbage\r\nx\r\nset k 0 0 1 noreply garbage\r\nx\r\n"),
        vec![
            set("k", 0, 0, b"x", false),
            rejected(RequestError::WrongArgumentCount),
            // memcached does not read a data block after a wrong token count: it is a command line.
            rejected(RequestError::UnknownCommand),
        ]
    );
    assert!(matches!(
        &requests(b"cas k 0 0 1 7 garbage\r\nx\r\n")[..],
        [Parsed::Request(Request::Conditional(ConditionalStore::Cas(7), cmd))] if !cmd.noreply
    ));
}

#[test]
fn wrong_token_counts_are_errors_like_memcached() {
    let input = b"incr\r\nincr a\r\nincr a 1 2 3\r\ntouch a\r\ngat\r\nflush_all 0 noreply x\r\n\
delete a b c d\r\nverbosity\r\nverbosity 1 2 3\r\nset k 0 0 1 a noreply\r\ncas k 0 0 1\r\n";
    let items = requests(input);
    assert_eq!(items.len(), 11);
    for item in items {
        assert_eq!(item, rejected(RequestError::WrongArgumentCount));
    }
    let accepted = requests(b"incr a 1 noreply\r\ngats 10 a b\r\nflush_all 0 noreply\r\nflush_all\r\n");
    assert_eq!(accepted.len(), 4);
    assert!(accepted.iter().all(|p| matches!(p, Parsed::Request(_))));
}

#[test]
fn flush_all_takes_an_optional_delay_and_noreply_like_memcached() {
    let flush = |delay, noreply| Parsed::Request(Request::FlushAll { delay, noreply });
    assert_eq!(
        requests(b"flush_all noreply\r\nflush_all 10\r\nflush_all -5 noreply\r\nflush_all 7 x\r\n"),
        vec![flush(0, true), flush(10, false), flush(-5, true), flush(7, false)]
    );
    assert_eq!(
        requests(b"flush_all x\r\nflush_all 99999999999\r\nflush_all x noreply\r\n"),
        vec![
            rejected(RequestError::BadExptime),
            rejected(RequestError::BadExptime),
            Parsed::Rejected {
                error: RequestError::BadExptime,
                noreply: true
            },
        ]
    );
}

#[test]
fn verbosity_needs_a_numeric_level() {
    assert_eq!(
        requests(b"verbosity foo\r\nverbosity 1 2\r\nverbosity foo noreply\r\nverbosity 0 noreply\r\n"),
        vec![
            rejected(RequestError::BadCommandLine),
            Parsed::Request(Request::Verbosity { noreply: false }),
            Parsed::Rejected {
                error: RequestError::BadCommandLine,
                noreply: true
            },
            Parsed::Request(Request::Verbosity { noreply: true }),
        ]
    );
}

#[test]
fn a_key_kai_cannot_store_is_a_miss_but_an_over_long_key_fails_the_get() {
    let get = |keys: Vec<Key>| Parsed::Request(Request::Get { keys, with_cas: false });
    assert_eq!(
        requests(b"get a b\x01c a\r\nget a\tb\r\n"),
        vec![get(vec![key("a"), key("a")]), get(vec![])]
    );
    let long = "k".repeat(251);
    assert_eq!(
        requests(format!("gets a {long} b\r\n").as_bytes()),
        vec![rejected(RequestError::BadCommandLine)]
    );
}

#[test]
fn stats_takes_its_group_from_the_first_argument() {
    assert_eq!(
        requests(b"stats reset now\r\nstats  items\r\n"),
        vec![
            Parsed::Request(Request::Stats {
                group: Some("reset".into())
            }),
            Parsed::Request(Request::Stats {
                group: Some("items".into())
            }),
        ]
    );
}

#[test]
fn absurd_lengths_are_malformed() {
    assert_eq!(
        requests(b"set k 0 0 99999999999\r\n"),
        vec![rejected(RequestError::BadCommandLine)]
    );
}

#[test]
fn an_endless_line_is_fatal_and_bounded() {
    let (items, fatal) = parse_all(Limits::default(), &[b'a'; 5000]);
    assert!(items.is_empty());
    assert_eq!(fatal.as_deref(), Some("line too long"));
    let (_, fatal) = parse_all(
        Limits::default(),
        format!("set {} 0 0 1\r\n", "k".repeat(2100)).as_bytes(),
    );
    assert_eq!(fatal.as_deref(), Some("line too long"));
}

#[test]
fn get_lines_may_carry_many_keys() {
    let keys: Vec<String> = (0..500).map(|i| format!("key:{i:05}")).collect();
    let line = format!("get {}\r\n", keys.join(" "));
    assert!(line.len() > DEFAULT_MAX_LINE);
    match &requests(line.as_bytes())[..] {
        [Parsed::Request(Request::Get { keys: got, .. })] => assert_eq!(got.len(), 500),
        other => panic!("unexpected {other:?}"),
    }
}

fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
    let command = prop_oneof![
        "[a-z0-9:]{1,20}".prop_map(|k| format!("get {k}\r\n").into_bytes()),
        (
            "[a-z0-9]{1,20}",
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>()
        )
            .prop_map(|(k, f, data, noreply)| {
                let mut v = format!(
                    "set {k} {f} 0 {}{}\r\n",
                    data.len(),
                    if noreply { " noreply" } else { "" }
                )
                .into_bytes();
                v.extend_from_slice(&data);
                v.extend_from_slice(b"\r\n");
                v
            }),
        "[a-z]{1,10}".prop_map(|k| format!("delete {k}\r\n").into_bytes()),
        Just(b"version\r\n".to_vec()),
        Just(b"nonsense here\r\n".to_vec()),
    ];
    proptest::collection::vec(command, 1..20).prop_map(|cmds| cmds.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_splits_parse_identically(stream in valid_stream(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let whole = parse_all(Limits::default(), &stream);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&stream[start..p]);
            start = p;
        }
        chunks.push(&stream[start..]);
        prop_assert_eq!(parse_chunks(Limits::default(), &chunks), whole);
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let limits = Limits { max_value_size: 512, ..Limits::default() };
        let mut decoder = RequestDecoder::new(limits);
        let mut buf = BytesMut::new();
        for chunk in data.chunks(97) {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return Ok(()),
                }
            }
            prop_assert!(buf.len() <= DEFAULT_MAX_GET_LINE + 2 + 512);
        }
    }
}

#[test]
fn admin_commands_are_not_memcache_commands() {
    // `kai_leave` once made any client able to remove a node; it lives on the admin HTTP API now.
    assert_eq!(
        requests(b"kai_leave\r\nkai_leave now\r\n"),
        vec![
            rejected(RequestError::UnknownCommand),
            rejected(RequestError::UnknownCommand)
        ]
    );
}
