//! Differential tests: the same request sequences go to a real memcached (spawned on a free
//! port; `memcached` must be in PATH, Debian package `memcached`) and to a real single `kai`
//! node, and the replies must be equal byte for byte, except cas values (each server numbers
//! its own versions; only "zero or not" is compared) and the version string.
//!
//! Sequences are hand-written edge cases plus sequences generated from a seeded RNG
//! (`KAITEST_DIFF_SEED` picks another seed, `KAITEST_DIFF_OPS` the length), over the text and
//! binary protocols, and memcached's text authentication (`-Y`).
//!
//! Cases left out on purpose, each a documented deviation (README, docs/design.md §6):
//! delayed `flush_all` (timing), stats, non-zero relative expiry (timing), the exact value-size boundary
//! (memcached counts its item header), and keys with spaces or control characters in binary (Kai
//! cannot store them). One normalisation: memcached pads a counter that shrank with spaces (`decr`
//! of 100 by 95 leaves `5  `); Kai stores `5`, so trailing spaces after digits are dropped.

mod common;

use common::memcached::Memcached;
use common::KaiProcess;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Socket timeout: a reply that does not come fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

// ---------------------------------------------------------------------------------------------
// Text protocol

/// Runs `requests` on one connection (a new one after the server closes it) and returns each
/// request's reply, normalised. After each request the harness sends `version` and reads up to
/// its reply, so quiet requests and "data line read as a command" cases are framed exactly.
fn text_replies(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<String> {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut replies = Vec::new();
    for request in requests {
        let reader = conn.get_or_insert_with(|| BufReader::new(connect(addr)));
        reader.get_mut().write_all(request).expect("write");
        reader.get_mut().write_all(b"version\r\n").expect("write");
        let mut reply = Vec::new();
        let mut closed = false;
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
            }
            if line.starts_with(b"VERSION ") {
                break;
            }
            if let Some(len) = value_len(&line) {
                let mut data = vec![0; len + 2];
                reader.read_exact(&mut data).expect("value data");
                line.extend(data);
            }
            reply.extend(line);
        }
        let mut text = normalise_text(&reply);
        if closed {
            text.push_str("<closed>");
            conn = None;
        }
        replies.push(text);
    }
    replies
}

/// The data length of a `VALUE <key> <flags> <bytes> [<cas>]` line.
fn value_len(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    let mut tokens = text.split_whitespace();
    (tokens.next()? == "VALUE").then_some(())?;
    tokens.nth(2)?.parse().ok()
}

/// Cas uniques become `C`; counters padded with spaces lose the padding (and the length
/// follows).
fn normalise_text(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply).into_owned();
    let mut out = String::new();
    let mut lines = text.split_inclusive("\r\n").peekable();
    while let Some(line) = lines.next() {
        let tokens: Vec<&str> = line.trim_end().split(' ').collect();
        if tokens[0] == "VALUE" && tokens.len() >= 4 {
            let data = lines.next().unwrap_or_default();
            let value = counter_padding_dropped(data.trim_end_matches("\r\n").as_bytes());
            let cas = if tokens.len() == 5 { " C" } else { "" };
            out.push_str(&format!(
                "VALUE {} {} {}{cas}\r\n{}\r\n",
                tokens[1],
                tokens[2],
                value.len(),
                String::from_utf8_lossy(&value)
            ));
        } else {
            out.push_str(line);
        }
    }
    out
}

fn counter_padding_dropped(value: &[u8]) -> Vec<u8> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && value[digits..].iter().all(|b| *b == b' ') {
        value[..digits].to_vec()
    } else {
        value.to_vec()
    }
}

fn assert_same_text(requests: &[Vec<u8>], memcached: SocketAddr, kai: SocketAddr) {
    let expected = text_replies(memcached, requests);
    let actual = text_replies(kai, requests);
    for ((request, want), got) in requests.iter().zip(&expected).zip(&actual) {
        assert_eq!(
            got,
            want,
            "text request {:?}: kai answered {got:?}, memcached {want:?}",
            String::from_utf8_lossy(request)
        );
    }
}

fn lines(requests: &[&str]) -> Vec<Vec<u8>> {
    requests.iter().map(|r| r.as_bytes().to_vec()).collect()
}

#[test]
fn text_edge_cases_answer_like_memcached() {
    let memcached = Memcached::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let requests = lines(&[
        "get missing\r\n",
        "set k 5 0 3\r\nabc\r\n",
        "get k\r\n",
        "gets k missing k\r\n",
        "set k 1 0 3 noreply\r\nxyz\r\n",
        "get k\r\n",
        "set k 0 0 3 junk\r\nabc\r\n",
        "set k 0 0\r\n",
        "set k 0 0 3 a b\r\nabc\r\n",
        // Left out: a storage line with bad flags. memcached then reads the data as a command
        // line; Kai consumes it (docs/design.md §6, a deliberate deviation).
        "set k 0 0 3\r\nabcd\r\n",
        "add k 0 0 1\r\nz\r\n",
        "add fresh 0 0 1\r\nz\r\n",
        "replace none 0 0 1\r\nz\r\n",
        "replace k 7 0 2\r\nrr\r\n",
        "append k 0 0 2\r\n++\r\n",
        "prepend k 0 0 2\r\n--\r\n",
        "append none 0 0 1\r\nx\r\n",
        "get k fresh\r\n",
        "cas k 0 0 1 1\r\nx\r\n",
        "cas none 0 0 1 1\r\nx\r\n",
        "set n 0 0 3\r\n100\r\n",
        "incr n 5\r\n",
        "decr n 200\r\n",
        "incr n 18446744073709551615\r\n",
        "incr n abc\r\n",
        "incr k 1\r\n",
        "incr none 1\r\n",
        "decr n 1 noreply\r\n",
        "get n\r\n",
        "touch k 0\r\n",
        "touch none 0\r\n",
        "gat 0 k none\r\n",
        "gats 0 k\r\n",
        "set gone 0 -1 1\r\nx\r\n",
        "get gone\r\n",
        "set old 0 2592001 1\r\nx\r\n",
        "get old\r\n",
        "delete k\r\n",
        "delete k\r\n",
        "delete k noreply\r\n",
        "delete k 0\r\n",
        "delete\r\n",
        "bogus\r\n",
        "\r\n",
        "verbosity 1\r\n",
        "verbosity\r\n",
        "get\r\n",
        "set f 0 0 1\r\n1\r\n",
        "flush_all\r\n",
        "get n f\r\n",
        "add f 0 0 1\r\n2\r\n",
        "get f\r\n",
        "flush_all noreply\r\n",
        "flush_all soon\r\n",
        "flush_all 1 2 3\r\n",
        "flush_all -1\r\n",
        "get f\r\n",
        "set n 0 0 1\r\n5\r\n",
        "quit\r\n",
        "get n\r\n",
    ]);
    assert_same_text(&requests, memcached.addr, kai.addr);
}

/// Keys and values of the generated sequences.
const VALUES: &[&str] = &["0", "7", "42", "100", "18446744073709551615", "abc", "", "hello world"];

/// A key for a generated request. Counters (incr/decr) and concatenations (append/prepend) use
/// different keys: memcached pads a counter that shrank with spaces, which an append then keeps
/// inside the value (`0  42`), the documented deviation normalisation cannot undo.
fn pick_key(rng: &mut StdRng, counter: bool, concat: bool) -> &'static str {
    const COUNTERS: &[&str] = &["counter", "n"];
    const OTHERS: &[&str] = &["a", "b", "x:y"];
    const ALL: &[&str] = &["counter", "n", "a", "b", "x:y"];
    let keys = match (counter, concat) {
        (true, _) => COUNTERS,
        (_, true) => OTHERS,
        _ => ALL,
    };
    keys[rng.random_range(0..keys.len())]
}

/// A seeded random sequence of classic commands over a few keys.
fn generated_text(rng: &mut StdRng, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let op = rng.random_range(0..14);
            let key = pick_key(rng, op == 6 || op == 7, op == 4 || op == 5);
            let value = VALUES[rng.random_range(0..VALUES.len())];
            let flags = [0u32, 1, 4_294_967_295][rng.random_range(0..3)];
            let noreply = if rng.random_bool(0.15) { " noreply" } else { "" };
            let request = match op {
                0 | 1 => format!("set {key} {flags} 0 {}{noreply}\r\n{value}\r\n", value.len()),
                2 => format!("add {key} {flags} 0 {}{noreply}\r\n{value}\r\n", value.len()),
                3 => format!("replace {key} {flags} 0 {}{noreply}\r\n{value}\r\n", value.len()),
                4 => format!("append {key} 0 0 {}{noreply}\r\n{value}\r\n", value.len()),
                5 => format!("prepend {key} 0 0 {}{noreply}\r\n{value}\r\n", value.len()),
                6 => format!("incr {key} {}{noreply}\r\n", rng.random_range(0..1000)),
                7 => format!("decr {key} {}{noreply}\r\n", rng.random_range(0..1000)),
                8 => format!("delete {key}{noreply}\r\n"),
                9 => format!("touch {key} 0{noreply}\r\n"),
                10 => format!("gets {key} {}\r\n", pick_key(rng, false, false)),
                11 => format!("gat 0 {key}\r\n"),
                12 => format!("cas {key} 0 0 {} 999999999{noreply}\r\n{value}\r\n", value.len()),
                _ => format!("get {key}\r\n"),
            };
            request.into_bytes()
        })
        .collect()
}

fn seed() -> u64 {
    std::env::var("KAITEST_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe)
}

fn generated_ops() -> usize {
    std::env::var("KAITEST_DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}

#[test]
fn generated_text_sequences_answer_like_memcached() {
    let memcached = Memcached::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let seed = seed();
    println!("seed {seed}");
    let requests = generated_text(&mut StdRng::seed_from_u64(seed), generated_ops());
    assert_same_text(&requests, memcached.addr, kai.addr);
}

// ---------------------------------------------------------------------------------------------
// Text authentication (memcached -Y)

/// Sends each request and reads one reply line (or notes that the server closed).
fn auth_replies(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<String> {
    let mut conn: Option<BufReader<TcpStream>> = None;
    requests
        .iter()
        .map(|request| {
            let reader = conn.get_or_insert_with(|| BufReader::new(connect(addr)));
            reader.get_mut().write_all(request).expect("write");
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    conn = None;
                    "<closed>".to_owned()
                }
                Ok(_) => String::from_utf8_lossy(&line).into_owned(),
            }
        })
        .collect()
}

#[test]
fn text_authentication_answers_like_memcached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth_file = dir.path().join("auth");
    std::fs::write(&auth_file, "alice:s3cret\nbob:pass\n").expect("auth file");
    let memcached = Memcached::start(&["-Y", auth_file.to_str().expect("utf-8 path")]);
    let kai = KaiProcess::start(
        &dir.path().join("kai"),
        &[("auth_file", auth_file.to_str().expect("utf-8"))],
    );
    // Left out, where current memcached (which Kai follows) differs from Debian's 1.6.18: a
    // declared token over 16 KiB (`CLIENT_ERROR auth token too long`; 1.6.18 closes), a line
    // under 6 bytes (closes; 1.6.18 answers `CLIENT_ERROR unauthenticated`) and a password
    // with a space (everything after the first space; 1.6.18 only the next word).
    let requests = lines(&[
        "get foo\r\n",
        "version\r\n",
        "set x 0 0 11\r\nalice wrong\r\n",
        "set x 0 0 5\r\nalice\r\n",
        "set x 0 0 5\r\nalice!!",
        "set x 0 0 12\r\nalice s3cret\r\n",
        "set k 0 0 1\r\nv\r\n",
        "incr k 1\r\n",
        "quit\r\n",
        "set any 1 2 8\r\nbob pass\r\n",
        "delete k\r\n",
        "quit\r\n",
    ]);
    let expected = auth_replies(memcached.addr, &requests);
    let actual = auth_replies(kai.addr, &requests);
    for ((request, want), got) in requests.iter().zip(&expected).zip(&actual) {
        assert_eq!(
            got,
            want,
            "request {:?}: kai answered {got:?}, memcached {want:?}",
            String::from_utf8_lossy(request)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Binary protocol

const NOOP: u8 = 0x0a;
/// A cas no item holds in either server: memcached numbers versions from 1 and a sequence
/// makes far fewer, Kai's are 63-bit hashes of version tags.
const UNSEEN_CAS: u64 = 999_999_999;
/// Opaque of the harness's framing noop.
const MARKER: u32 = 0xfeed_f00d;

/// One binary request of a sequence.
#[derive(Clone, Debug)]
struct Packet {
    opcode: u8,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    cas: u64,
    /// Use the cas of this key the server last returned (or [`UNSEEN_CAS`] if none), instead
    /// of `cas`.
    cas_of: Option<Vec<u8>>,
    /// Lie about the body length (for bad-input cases).
    body_len: Option<u32>,
}

fn packet(opcode: u8, extras: &[u8], key: &str, value: &str) -> Packet {
    Packet {
        opcode,
        extras: extras.to_vec(),
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        cas: 0,
        cas_of: None,
        body_len: None,
    }
}

fn encode(p: &Packet, cas: u64, opaque: u32) -> Vec<u8> {
    let body = p
        .body_len
        .unwrap_or((p.extras.len() + p.key.len() + p.value.len()) as u32);
    let mut out = vec![0x80, p.opcode];
    out.extend((p.key.len() as u16).to_be_bytes());
    out.push(p.extras.len() as u8);
    out.extend([0, 0, 0]);
    out.extend(body.to_be_bytes());
    out.extend(opaque.to_be_bytes());
    out.extend(cas.to_be_bytes());
    out.extend(&p.extras);
    out.extend(&p.key);
    out.extend(&p.value);
    out
}

/// A reply packet, normalised: cas as 0 or 1, the version's text dropped, counters' padding
/// dropped from values.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    opcode: u8,
    status: u16,
    opaque: u32,
    has_cas: bool,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn read_answer(stream: &mut TcpStream) -> Option<(Answer, u64)> {
    let mut header = [0u8; 24];
    stream.read_exact(&mut header).ok()?;
    assert_eq!(header[0], 0x81, "reply magic");
    let key_len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let extras_len = header[4] as usize;
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let opaque = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    let cas = u64::from_be_bytes(header[16..24].try_into().expect("8 bytes"));
    let mut body = vec![0u8; body_len];
    stream.read_exact(&mut body).ok()?;
    let value = body[extras_len + key_len..].to_vec();
    let value = match header[1] {
        0x0b => b"<version>".to_vec(),
        _ => counter_padding_dropped(&value),
    };
    let answer = Answer {
        opcode: header[1],
        status,
        opaque,
        has_cas: cas != 0,
        extras: body[..extras_len].to_vec(),
        key: body[extras_len..extras_len + key_len].to_vec(),
        value,
    };
    Some((answer, cas))
}

/// Runs `packets`, each followed by a framing noop, on one connection (a new one after the
/// server closes it); returns each request's replies, with `<closed>` noted as `None`.
fn binary_replies(addr: SocketAddr, packets: &[Packet]) -> Vec<Vec<Option<Answer>>> {
    let mut conn: Option<TcpStream> = None;
    let mut cas_seen: std::collections::HashMap<Vec<u8>, u64> = Default::default();
    let mut all = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let stream = conn.get_or_insert_with(|| connect(addr));
        let cas = p
            .cas_of
            .as_ref()
            .map_or(p.cas, |key| cas_seen.get(key).copied().unwrap_or(UNSEEN_CAS));
        let mut bytes = encode(p, cas, i as u32);
        bytes.extend(encode(&packet(NOOP, &[], "", ""), 0, MARKER));
        stream.write_all(&bytes).expect("write");
        let mut replies = Vec::new();
        loop {
            match read_answer(stream) {
                None => {
                    replies.push(None);
                    conn = None;
                    break;
                }
                Some((answer, _)) if answer.opcode == NOOP && answer.opaque == MARKER => break,
                Some((answer, cas)) => {
                    if cas != 0 && !p.key.is_empty() {
                        cas_seen.insert(p.key.clone(), cas);
                    }
                    replies.push(Some(answer));
                }
            }
        }
        all.push(replies);
    }
    all
}

fn assert_same_binary(packets: &[Packet], memcached: SocketAddr, kai: SocketAddr) {
    let expected = binary_replies(memcached, packets);
    let actual = binary_replies(kai, packets);
    for ((p, want), got) in packets.iter().zip(&expected).zip(&actual) {
        assert_eq!(got, want, "binary request {p:?}");
    }
}

mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const GETQ: u8 = 0x09;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSH: u8 = 0x08;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

fn counter_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    [&delta.to_be_bytes()[..], &initial.to_be_bytes(), &exptime.to_be_bytes()].concat()
}

#[test]
fn binary_edge_cases_answer_like_memcached() {
    let memcached = Memcached::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let set = |key: &str, value: &str| packet(op::SET, &store_extras(3, 0), key, value);
    let with_cas_of = |mut p: Packet, key: &str| {
        p.cas_of = Some(key.as_bytes().to_vec());
        p
    };
    let with_cas = |mut p: Packet, cas: u64| {
        p.cas = cas;
        p
    };
    let no_create = u32::MAX;
    let packets = vec![
        packet(op::GET, &[], "missing", ""),
        packet(op::GETK, &[], "missing", ""),
        packet(op::GETQ, &[], "missing", ""),
        packet(op::GETKQ, &[], "missing", ""),
        set("k", "value"),
        packet(op::GET, &[], "k", ""),
        packet(op::GETK, &[], "k", ""),
        packet(op::GETQ, &[], "k", ""),
        packet(op::GETKQ, &[], "k", ""),
        packet(op::SETQ, &store_extras(9, 0), "k", "quiet"),
        packet(op::GET, &[], "k", ""),
        packet(op::ADD, &store_extras(0, 0), "k", "x"),
        packet(op::ADDQ, &store_extras(0, 0), "k", "x"),
        packet(op::ADD, &store_extras(0, 0), "new", "x"),
        packet(op::REPLACE, &store_extras(0, 0), "none", "x"),
        packet(op::REPLACEQ, &store_extras(0, 0), "none", "x"),
        packet(op::REPLACE, &store_extras(1, 0), "new", "y"),
        packet(op::APPEND, &[], "new", "++"),
        packet(op::PREPENDQ, &[], "new", "--"),
        packet(op::APPENDQ, &[], "none", "x"),
        packet(op::PREPEND, &[], "none", "x"),
        packet(op::GET, &[], "new", ""),
        with_cas(set("k", "v"), 12345),
        with_cas(packet(op::ADD, &store_extras(0, 0), "none", "v"), 12345),
        with_cas_of(set("k", "cas ok"), "k"),
        packet(op::GET, &[], "k", ""),
        packet(op::INCREMENT, &counter_extras(1, 0, no_create), "n", ""),
        packet(op::INCREMENT, &counter_extras(1, 10, 0), "n", ""),
        packet(op::INCREMENT, &counter_extras(5, 10, 0), "n", ""),
        packet(op::DECREMENT, &counter_extras(100, 10, 0), "n", ""),
        packet(op::DECREMENT, &counter_extras(3, 10, 0), "fresh", ""),
        packet(op::INCREMENTQ, &counter_extras(7, 0, 0), "n", ""),
        packet(op::DECREMENTQ, &counter_extras(1, 0, no_create), "nothing", ""),
        packet(op::GET, &[], "n", ""),
        packet(op::INCREMENT, &counter_extras(1, 0, 0), "k", ""),
        set("big", "18446744073709551615"),
        packet(op::INCREMENT, &counter_extras(2, 0, 0), "big", ""),
        packet(op::GET, &[], "big", ""),
        packet(op::TOUCH, &0u32.to_be_bytes(), "k", ""),
        packet(op::TOUCH, &0u32.to_be_bytes(), "none", ""),
        packet(op::GAT, &0u32.to_be_bytes(), "k", ""),
        packet(op::GATQ, &0u32.to_be_bytes(), "none", ""),
        packet(op::GATK, &0u32.to_be_bytes(), "k", ""),
        packet(op::GATKQ, &0u32.to_be_bytes(), "none", ""),
        packet(op::GATK, &0u32.to_be_bytes(), "none", ""),
        packet(op::SET, &store_extras(0, 2_592_001), "old", "x"),
        packet(op::GET, &[], "old", ""),
        packet(op::DELETE, &[], "k", ""),
        packet(op::DELETE, &[], "k", ""),
        packet(op::DELETEQ, &[], "new", ""),
        packet(op::DELETEQ, &[], "new", ""),
        packet(op::VERSION, &[], "", ""),
        set("f", "before"),
        packet(op::FLUSH, &[], "", ""),
        packet(op::GET, &[], "f", ""),
        set("f", "after"),
        packet(op::FLUSHQ, &0u32.to_be_bytes(), "", ""),
        packet(op::GETK, &[], "f", ""),
        packet(op::GET, &[], "n", ""),
        set("n", "1"),
        // Unknown opcodes keep the connection.
        packet(0x1b, &[], "", ""),
        packet(0x55, &[], "", ""),
        // SASL without authentication configured is an unknown command.
        packet(op::SASL_LIST_MECHS, &[], "", ""),
        packet(op::SASL_AUTH, &[], "PLAIN", "\0u\0p"),
        packet(op::GET, &[], "n", ""),
        // Wrong lengths close the connection.
        packet(op::GET, &[1, 2, 3, 4], "k", ""),
        packet(op::GET, &[], "n", ""),
        packet(op::SET, &[0, 0, 0, 0], "k", "v"),
        packet(op::GET, &[], "n", ""),
        packet(op::INCREMENT, &[0; 8], "n", ""),
        packet(op::VERSION, &[], "", "x"),
        Packet {
            body_len: Some(2),
            ..packet(op::GET, &[], "kkk", "")
        },
        packet(op::GET, &[], &"k".repeat(251), ""),
        packet(op::QUIT, &[], "", ""),
        packet(op::QUITQ, &[], "", ""),
        packet(op::GET, &[], "n", ""),
    ];
    assert_same_binary(&packets, memcached.addr, kai.addr);
}

#[test]
fn binary_cas_on_delete_append_prepend_and_counters_answers_like_memcached() {
    let memcached = Memcached::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let set = |key: &str, value: &str| packet(op::SET, &store_extras(3, 0), key, value);
    let get = |key: &str| packet(op::GET, &[], key, "");
    // The cas of the key's last reply (a hit or a successful write), or a wrong one.
    let right = |mut p: Packet| {
        p.cas_of = Some(p.key.clone());
        p
    };
    let wrong = |mut p: Packet| {
        p.cas = UNSEEN_CAS;
        p
    };
    let append = |opcode: u8, key: &str, value: &str| packet(opcode, &[], key, value);
    let counter = |opcode: u8, key: &str, exptime: u32| packet(opcode, &counter_extras(1, 5, exptime), key, "");
    let no_create = u32::MAX;
    let packets = vec![
        // delete: a wrong cas is "exists" (quiet or not), a miss "not found".
        set("d", "v"),
        wrong(packet(op::DELETE, &[], "d", "")),
        wrong(packet(op::DELETEQ, &[], "d", "")),
        wrong(packet(op::DELETE, &[], "none", "")),
        wrong(packet(op::DELETEQ, &[], "none", "")),
        get("d"),
        right(packet(op::DELETEQ, &[], "d", "")),
        get("d"),
        set("d", "v"),
        right(packet(op::DELETE, &[], "d", "")),
        right(packet(op::DELETE, &[], "d", "")),
        // append/prepend: a wrong cas is "exists", a miss "not stored", whatever the cas.
        set("a", "v"),
        wrong(append(op::APPEND, "a", "+")),
        wrong(append(op::PREPENDQ, "a", "-")),
        wrong(append(op::APPEND, "none", "+")),
        wrong(append(op::APPENDQ, "none", "+")),
        right(append(op::PREPEND, "none", "+")),
        right(append(op::APPEND, "a", "+")),
        right(append(op::PREPENDQ, "a", "-")),
        get("a"),
        right(append(op::PREPEND, "a", "<")),
        right(append(op::APPENDQ, "a", ">")),
        get("a"),
        // incr/decr: a wrong cas is "exists"; a miss is created (cas or not) unless told not to.
        set("n", "10"),
        wrong(counter(op::INCREMENT, "n", 0)),
        wrong(counter(op::INCREMENTQ, "n", 0)),
        wrong(counter(op::DECREMENT, "n", no_create)),
        right(counter(op::INCREMENT, "n", 0)),
        right(counter(op::DECREMENTQ, "n", no_create)),
        get("n"),
        right(counter(op::DECREMENT, "n", 0)),
        wrong(counter(op::INCREMENT, "fresh", 0)),
        get("fresh"),
        wrong(counter(op::DECREMENTQ, "fresh2", 0)),
        get("fresh2"),
        wrong(counter(op::DECREMENT, "nothing", no_create)),
        wrong(counter(op::INCREMENTQ, "nothing", no_create)),
        // Not a number: "exists" if the cas is wrong, but an empty value is refused first.
        wrong(counter(op::INCREMENT, "a", 0)),
        right(counter(op::INCREMENT, "a", 0)),
        set("e", ""),
        wrong(counter(op::INCREMENT, "e", 0)),
        right(counter(op::DECREMENT, "e", no_create)),
        // A delete with the cas of the last increment.
        right(counter(op::INCREMENT, "n", 0)),
        right(packet(op::DELETE, &[], "n", "")),
        get("n"),
    ];
    assert_same_binary(&packets, memcached.addr, kai.addr);
}

#[test]
fn binary_oversized_values_answer_like_memcached() {
    let memcached = Memcached::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let big = "x".repeat(2 * 1024 * 1024);
    let packets = vec![
        packet(op::SET, &store_extras(0, 0), "k", "old"),
        // A refused set deletes the old value, in both.
        packet(op::SET, &store_extras(0, 0), "k", &big),
        packet(op::GET, &[], "k", ""),
        packet(op::SET, &store_extras(0, 0), "a", "old"),
        packet(op::APPEND, &[], "a", &big),
        packet(op::GET, &[], "a", ""),
    ];
    assert_same_binary(&packets, memcached.addr, kai.addr);

    // A claimed 4 GiB body: current memcached answers "Invalid arguments" and closes (its commit
    // 229cf41, "fix signed overflow in bodylen for binprot"), and so does Kai. Debian's 1.6.18
    // still reads the length as a negative int, so it is not the reference here.
    let huge = Packet {
        body_len: Some(u32::MAX),
        ..packet(op::SET, &store_extras(0, 0), "k", "")
    };
    let invalid = Answer {
        opcode: op::SET,
        status: 0x04,
        opaque: 0,
        has_cas: false,
        extras: vec![],
        key: vec![],
        value: b"Invalid arguments".to_vec(),
    };
    assert_eq!(binary_replies(kai.addr, &[huge]), vec![vec![Some(invalid), None]]);
}

/// A seeded random sequence of binary requests over a few keys.
fn generated_binary(rng: &mut StdRng, count: usize) -> Vec<Packet> {
    (0..count)
        .map(|_| {
            let op = rng.random_range(0..13);
            let key = pick_key(rng, op == 6 || op == 7, op == 4 || op == 5);
            let value = VALUES[rng.random_range(0..VALUES.len())];
            let flags = [0u32, 1, u32::MAX][rng.random_range(0..3)];
            let quiet = rng.random_bool(0.3);
            let pick = |loud: u8, q: u8| if quiet { q } else { loud };
            let store = store_extras(flags, 0);
            let mut p = match op {
                0 | 1 => packet(pick(op::SET, op::SETQ), &store, key, value),
                2 => packet(pick(op::ADD, op::ADDQ), &store, key, value),
                3 => packet(pick(op::REPLACE, op::REPLACEQ), &store, key, value),
                4 => packet(pick(op::APPEND, op::APPENDQ), &[], key, value),
                5 => packet(pick(op::PREPEND, op::PREPENDQ), &[], key, value),
                6 | 7 => {
                    let exptime = if rng.random_bool(0.5) { 0 } else { u32::MAX };
                    let extras = counter_extras(rng.random_range(0..1000), rng.random_range(0..1000), exptime);
                    let opcode = match rng.random_range(0..2) {
                        0 => pick(op::INCREMENT, op::INCREMENTQ),
                        _ => pick(op::DECREMENT, op::DECREMENTQ),
                    };
                    packet(opcode, &extras, key, "")
                }
                8 => packet(pick(op::DELETE, op::DELETEQ), &[], key, ""),
                9 => packet(op::TOUCH, &0u32.to_be_bytes(), key, ""),
                10 => {
                    let opcode = [op::GAT, op::GATQ, op::GATK, op::GATKQ][rng.random_range(0..4)];
                    packet(opcode, &0u32.to_be_bytes(), key, "")
                }
                _ => {
                    let opcode = [op::GET, op::GETQ, op::GETK, op::GETKQ][rng.random_range(0..4)];
                    packet(opcode, &[], key, "")
                }
            };
            // Writes sometimes carry a cas: the one last seen for the key, or a stale one.
            if op <= 8 && rng.random_bool(0.25) {
                if rng.random_bool(0.5) {
                    p.cas_of = Some(key.as_bytes().to_vec());
                } else {
                    p.cas = UNSEEN_CAS;
                }
            }
            p
        })
        .collect()
}

#[test]
fn generated_binary_sequences_answer_like_memcached() {
    let memcached = Memcached::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let seed = seed();
    println!("seed {seed}");
    let packets = generated_binary(&mut StdRng::seed_from_u64(seed), generated_ops());
    assert_same_binary(&packets, memcached.addr, kai.addr);
}

#[test]
fn binary_sasl_answers_like_memcached() {
    // memcached -S with Cyrus SASL offering PLAIN against a sasldb holding the same user.
    let dir = tempfile::tempdir().expect("tempdir");
    let sasldb = dir.path().join("sasldb2");
    std::fs::write(
        dir.path().join("memcached.conf"),
        format!("mech_list: plain\nsasldb_path: {}\n", sasldb.display()),
    )
    .expect("sasl config");
    let mut saslpasswd = Command::new("saslpasswd2")
        .args(["-p", "-c", "-a", "memcached", "-f"])
        .arg(&sasldb)
        .arg("alice")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("saslpasswd2 must be installed (apt-get install sasl2-bin): {e}"));
    saslpasswd
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret")
        .expect("password");
    assert!(saslpasswd.wait().expect("saslpasswd2").success());
    let memcached = Memcached::start_with_env(&["-S"], &[("SASL_CONF_PATH", dir.path())]);
    let auth_file = dir.path().join("users");
    std::fs::write(&auth_file, "alice:s3cret\n").expect("auth file");
    let kai = KaiProcess::start(
        &dir.path().join("kai"),
        &[("auth_file", auth_file.to_str().expect("utf-8 path"))],
    );
    const SASL_STEP: u8 = 0x22;
    let auth = |data: &str| packet(op::SASL_AUTH, &[], "PLAIN", data);
    let packets = vec![
        packet(op::VERSION, &[], "", ""),
        packet(op::SASL_LIST_MECHS, &[], "", ""),
        auth("\0alice\0wrong"),
        auth("alice\0s3cret"),
        packet(op::SASL_AUTH, &[], "CRAM-MD5", "x"),
        auth("\0alice\0s3cret"),
        packet(op::GET, &[], "k", ""),
        packet(op::SET, &store_extras(0, 0), "k", "v"),
        packet(op::GETK, &[], "k", ""),
        // A step (PLAIN has none) fails and, as any SASL attempt, drops the authentication.
        packet(SASL_STEP, &[], "PLAIN", "x"),
        packet(op::GET, &[], "k", ""),
        // A new connection: unauthenticated requests fail and close it.
        packet(op::GET, &[], "k", ""),
        auth("\0alice\0s3cret"),
        packet(op::DELETE, &[], "k", ""),
        packet(op::QUIT, &[], "", ""),
    ];
    assert_same_binary(&packets, memcached.addr, kai.addr);
}
