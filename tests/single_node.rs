//! End-to-end: one real `kai` process with RocksDB, driven over TCP by raw sockets and real
//! memcache clients.

mod common;

use common::{python, wait_until, Client, KaiProcess};
use std::process::Command;
use std::time::Duration;

fn node(dir: &tempfile::TempDir) -> KaiProcess {
    KaiProcess::start(dir.path(), &[])
}

#[test]
fn memcache_commands_behave_like_memcached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    assert_eq!(c.set_with("k", 42, 0, b"hello"), "STORED\r\n");
    c.send(b"get k\r\n");
    assert_eq!(c.values(), vec![("k".into(), 42, b"hello".to_vec(), None)]);

    c.send(b"gets k missing k\r\n");
    let hits = c.values();
    assert_eq!(hits.len(), 2, "missing keys are skipped, repeated keys repeated");
    let cas = hits[0].3.expect("gets returns a cas unique");
    assert_eq!(c.set("k", b"v2"), "STORED\r\n");
    c.send(b"gets k\r\n");
    let cas2 = c.values()[0].3.expect("cas");
    assert_ne!(cas, cas2, "a new version gets a new cas unique");

    assert_eq!(c.call("delete k\r\n"), "DELETED\r\n");
    assert_eq!(c.call("delete k\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.get("k"), None);

    assert!(c.call("version\r\n").starts_with("VERSION 1.6.0-kai.0."));
    assert_eq!(c.call("verbosity 1\r\n"), "OK\r\n");
    assert_eq!(c.call("bogus\r\n"), "ERROR\r\n");
    assert_eq!(c.call("get\r\n"), "ERROR\r\n");
    assert_eq!(
        c.call("set k abc 0 1\r\nx\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(c.call("set k 0 0 1\r\nxyz\r\n"), "CLIENT_ERROR bad data chunk\r\n");
    // The stray "z\r\n" after the bad chunk parses as an unknown command.
    assert_eq!(c.line(), "ERROR\r\n");
    let long_key = "k".repeat(251);
    assert!(c.call(&format!("get {long_key}\r\n")).starts_with("CLIENT_ERROR"));
    for cmd in ["add", "replace", "append", "prepend"] {
        let reply = c.call(&format!("{cmd} fresh 0 0 1\r\nx\r\n"));
        assert_eq!(reply, "STORED\r\n", "{cmd}");
    }
    assert_eq!(c.call("cas fresh 0 0 1 5\r\nx\r\n"), "EXISTS\r\n");
    assert_eq!(
        c.call("incr fresh 1\r\n"),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
    assert_eq!(c.call("touch fresh 10\r\n"), "TOUCHED\r\n");
    assert_eq!(c.call("flush_all\r\n"), "OK\r\n");
    assert_eq!(c.get("fresh"), None);
    assert_eq!(c.set("still", b"usable"), "STORED\r\n");
    c.send(b"quit\r\n");
    assert!(c.is_closed());
}

#[test]
fn values_are_binary_safe_and_may_be_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    let binary: Vec<u8> = (0..=255u8).chain(*b"\r\nEND\r\n\0").collect();
    assert_eq!(c.set("bin", &binary), "STORED\r\n");
    assert_eq!(c.get("bin"), Some(binary));
    assert_eq!(c.set("empty", b""), "STORED\r\n");
    assert_eq!(c.get("empty"), Some(Vec::new()));
}

#[test]
fn noreply_and_pipelined_requests_keep_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend_from_slice(format!("set p{i} 0 0 {}\r\nv{i}\r\n", format!("v{i}").len()).as_bytes());
        batch.extend_from_slice(format!("get p{i}\r\n").as_bytes());
    }
    batch.extend_from_slice(b"set quiet 0 0 1 noreply\r\nq\r\ndelete p0 noreply\r\nget quiet p0\r\n");
    // Feed it in awkward pieces.
    for chunk in batch.chunks(7) {
        c.send(chunk);
    }
    for i in 0..100 {
        assert_eq!(c.line(), "STORED\r\n");
        assert_eq!(
            c.values(),
            vec![(format!("p{i}"), 0, format!("v{i}").into_bytes(), None)]
        );
    }
    assert_eq!(c.values(), vec![("quiet".into(), 0, b"q".to_vec(), None)]);
}

#[test]
fn pipelined_requests_after_a_large_reply_are_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    let big = vec![b'x'; 70_000];
    assert_eq!(c.set("big", &big), "STORED\r\n");
    // Both requests arrive in one segment: the first reply passes the flush threshold, and the
    // second request is already buffered when it is written.
    c.send(b"get big\r\nget big\r\nversion\r\n");
    for _ in 0..2 {
        assert_eq!(c.values(), vec![("big".into(), 0, big.clone(), None)]);
    }
    assert!(c.line().starts_with("VERSION "));
}

#[test]
fn oversized_values_are_refused_and_the_connection_stays_in_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[("max_value_size", "1000")]);
    let mut c = kai.client();
    let big = vec![b'x'; 5000];
    assert_eq!(c.set("big", &big), "SERVER_ERROR object too large for cache\r\n");
    assert_eq!(c.set("ok", &big[..1000]), "STORED\r\n");
    assert_eq!(c.get("big"), None);
    assert_eq!(c.get("ok").map(|v| v.len()), Some(1000));
}

#[test]
fn a_refused_oversized_set_deletes_the_old_value_like_memcached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[("max_value_size", "1000")]);
    let mut c = kai.client();
    let big = vec![b'x'; 5000];
    assert_eq!(c.set("session", b"old"), "STORED\r\n");
    assert_eq!(c.set("session", &big), "SERVER_ERROR object too large for cache\r\n");
    assert_eq!(c.get("session"), None, "a stale value must not outlive a refused set");
    // With noreply: no reply, and the old value is gone all the same.
    assert_eq!(c.set("quiet", b"old"), "STORED\r\n");
    let mut request = b"set quiet 0 0 5000 noreply\r\n".to_vec();
    request.extend_from_slice(&big);
    request.extend_from_slice(b"\r\n");
    c.send(&request);
    assert_eq!(c.get("quiet"), None);
    // The delete is a real, replicated delete (a tombstone): the key reads as deleted.
    assert_eq!(c.call("delete session\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.stats()["store_too_large"], "2");
}

#[test]
fn exptime_is_read_like_memcached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    // 4294967295 is what libmemcached sends for -1 (Django's timeout=0, "don't cache"):
    // memcached keeps the low 32 bits, -1, "already expired", and so must Kai.
    for exptime in [4_294_967_295, 2_147_483_648, -1, -2_147_483_648, 9_999_999_999] {
        assert_eq!(c.set("k", b"cached"), "STORED\r\n");
        assert_eq!(c.set_with("k", 0, exptime, b"v"), "STORED\r\n");
        assert_eq!(c.get("k"), None, "exptime {exptime} must mean already expired");
    }
    // -4294967296 keeps 0 (never expires), -2147483649 keeps 2147483647 (2038).
    for exptime in [-4_294_967_296, -2_147_483_649] {
        assert_eq!(c.set_with("k", 0, exptime, b"v"), "STORED\r\n");
        assert_eq!(c.get("k"), Some(b"v".to_vec()), "exptime {exptime}");
    }
    assert_eq!(
        c.call("set k 0 99999999999999999999 1\r\nx\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
}

#[test]
fn odd_command_lines_are_answered_like_memcached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    // One token after <bytes> that is not "noreply" is ignored: memcached stores.
    assert_eq!(c.call("set k 0 0 1 garbage\r\nx\r\n"), "STORED\r\n");
    assert_eq!(c.get("k"), Some(b"x".to_vec()));
    // Wrong token counts are ERROR; no data block is read, so "x" is a command line too.
    assert_eq!(c.call("set k 0 0 1 a noreply\r\nx\r\n"), "ERROR\r\n");
    assert_eq!(c.line(), "ERROR\r\n");
    for line in [
        "set k 0 0",
        "incr k",
        "touch k",
        "delete",
        "delete a b c d",
        "verbosity",
        "flush_all 1 2 3",
    ] {
        assert_eq!(c.call(&format!("{line}\r\n")), "ERROR\r\n", "{line}");
    }
    assert_eq!(c.call("verbosity foo\r\n"), "CLIENT_ERROR bad command line format\r\n");
    assert_eq!(c.call("verbosity 1 2\r\n"), "OK\r\n");
    assert_eq!(
        c.call("delete a b c\r\n"),
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
    );
    // A key memcached could hold but Kai cannot store is a miss; an over-long key fails the get.
    c.send(b"get k b\x01c k\r\n");
    assert_eq!(c.values().len(), 2);
    let long = "k".repeat(251);
    assert_eq!(
        c.call(&format!("get k {long}\r\n")),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(c.get("k"), Some(b"x".to_vec()));
}

/// Sends `input` and reads as many reply lines as `expected` has, comparing each.
fn exchange(c: &mut Client, input: &[u8], expected: &[&str]) {
    c.send(input);
    for want in expected {
        assert_eq!(
            c.line(),
            format!("{want}\r\n"),
            "after {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn read_modify_write_commands_answer_like_memcached() {
    // Every expected line below is what memcached 1.6 answers to the same bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    exchange(
        &mut c,
        b"add k 5 0 1\r\nx\r\nadd k 0 0 1\r\ny\r\n",
        &["STORED", "NOT_STORED"],
    );
    exchange(
        &mut c,
        b"replace zz 0 0 1\r\ny\r\nreplace k 6 0 2\r\nab\r\n",
        &["NOT_STORED", "STORED"],
    );
    exchange(
        &mut c,
        b"append k 0 0 2\r\ncd\r\nprepend k 0 0 2\r\n<<\r\n",
        &["STORED", "STORED"],
    );
    exchange(
        &mut c,
        b"append missing 0 0 1\r\nx\r\nprepend missing 0 0 1\r\nx\r\n",
        &["NOT_STORED", "NOT_STORED"],
    );
    c.send(b"get k\r\n");
    assert_eq!(
        c.values(),
        vec![("k".into(), 6, b"<<abcd".to_vec(), None)],
        "append keeps the flags"
    );
    c.send(b"gets k\r\n");
    let unique = c.values()[0].3.expect("cas unique");
    exchange(
        &mut c,
        format!("cas k 0 0 1 {}\r\nz\r\n", unique + 1).as_bytes(),
        &["EXISTS"],
    );
    exchange(&mut c, format!("cas k 0 0 1 {unique}\r\nz\r\n").as_bytes(), &["STORED"]);
    exchange(&mut c, format!("cas k 0 0 1 {unique}\r\nw\r\n").as_bytes(), &["EXISTS"]);
    exchange(&mut c, b"cas missing 0 0 1 5\r\nx\r\n", &["NOT_FOUND"]);
    assert_eq!(c.get("k"), Some(b"z".to_vec()));

    exchange(
        &mut c,
        b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\n",
        &["STORED", "15", "0"],
    );
    exchange(&mut c, b"incr n 99\r\nincr n 1\r\n", &["99", "100"]);
    assert_eq!(c.get("n"), Some(b"100".to_vec()), "the length follows the number");
    exchange(
        &mut c,
        b"set big 0 0 20\r\n18446744073709551615\r\nincr big 2\r\n",
        &["STORED", "1"],
    );
    exchange(
        &mut c,
        b"incr n abc\r\nincr n -1\r\nincr n 18446744073709551616\r\n",
        &[
            "CLIENT_ERROR invalid numeric delta argument",
            "CLIENT_ERROR invalid numeric delta argument",
            "CLIENT_ERROR invalid numeric delta argument",
        ],
    );
    exchange(
        &mut c,
        b"set s 0 0 1\r\nx\r\nincr s 1\r\nincr missing 1\r\ndecr missing 1\r\n",
        &[
            "STORED",
            "CLIENT_ERROR cannot increment or decrement non-numeric value",
            "NOT_FOUND",
            "NOT_FOUND",
        ],
    );
    exchange(
        &mut c,
        b"touch s abc\r\ntouch s 100\r\ntouch missing 10\r\n",
        &["CLIENT_ERROR invalid exptime argument", "TOUCHED", "NOT_FOUND"],
    );
    c.send(b"gat 100 s missing\r\n");
    assert_eq!(c.values(), vec![("s".into(), 0, b"x".to_vec(), None)]);
    c.send(b"gats 100 s\r\n");
    assert!(c.values()[0].3.is_some(), "gats answers a cas unique");
    exchange(
        &mut c,
        b"gat abc s\r\nincr\r\ntouch a\r\n",
        &["CLIENT_ERROR invalid exptime argument", "ERROR", "ERROR"],
    );
    // noreply on every command: nothing answered, everything done.
    c.send(
        b"add q 0 0 1 noreply\r\n1\r\nincr q 4 noreply\r\nappend q 0 0 1 noreply\r\n0\r\n\
replace q 3 0 2 noreply\r\n77\r\ntouch q 0 noreply\r\ndecr q 7 noreply\r\nincr q x noreply\r\nincr s 1 noreply\r\n",
    );
    c.send(b"get q\r\n");
    assert_eq!(c.values(), vec![("q".into(), 3, b"70".to_vec(), None)]);
}

#[test]
fn touch_and_gat_set_the_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    exchange(
        &mut c,
        b"set a 0 0 1\r\nx\r\nset b 0 0 1\r\ny\r\n",
        &["STORED", "STORED"],
    );
    exchange(&mut c, b"touch a -1\r\n", &["TOUCHED"]);
    assert_eq!(c.get("a"), None, "a negative exptime expires at once");
    c.send(b"gat -1 b\r\n");
    assert_eq!(
        c.values(),
        vec![("b".into(), 0, b"y".to_vec(), None)],
        "gat answers the value it touched"
    );
    assert_eq!(c.get("b"), None);
    exchange(&mut c, b"add a 0 0 1\r\nz\r\n", &["STORED"]);
    assert_eq!(c.get("a"), Some(b"z".to_vec()), "an expired value is absent for add");
}

#[test]
fn flush_all_empties_the_cache_and_later_writes_survive_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kai = node(&dir);
    let mut c = kai.client();
    for k in ["a", "b", "c"] {
        assert_eq!(c.set(k, b"old"), "STORED\r\n");
    }
    assert_eq!(c.call("flush_all\r\n"), "OK\r\n");
    c.send(b"get a b c\r\n");
    assert_eq!(c.values(), vec![], "nothing stored before the flush is read");
    assert_eq!(
        c.call("add a 0 0 3\r\nnew\r\n"),
        "STORED\r\n",
        "a flushed key is absent for add"
    );
    assert_eq!(c.call("incr c 1\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.get("a"), Some(b"new".to_vec()));
    assert_eq!(c.stats()["cmd_flush"], "1");
    // The flush is durable: a crash and restart do not bring the old values back.
    kai.kill9();
    kai.restart();
    let mut c = kai.client();
    c.send(b"get a b c\r\n");
    let values = c.values();
    assert_eq!(values.len(), 1, "only the write after the flush: {values:?}");
    assert_eq!(values[0].2, b"new");
}

#[test]
fn flush_all_with_a_delay_flushes_what_is_stored_until_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    assert_eq!(c.set("early", b"v"), "STORED\r\n");
    assert_eq!(c.call("flush_all 2\r\n"), "OK\r\n");
    assert_eq!(c.set("during", b"v"), "STORED\r\n");
    assert_eq!(c.get("early"), Some(b"v".to_vec()), "not flushed before the delay");
    wait_until(Duration::from_secs(10), "the delayed flush", || {
        c.get("early").is_none()
    });
    assert_eq!(c.get("during"), None, "a value stored during the delay is flushed too");
    // memcached's answers to odd delays: negative is now, garbage is an error.
    assert_eq!(c.set("k", b"v"), "STORED\r\n");
    assert_eq!(c.call("flush_all -1\r\n"), "OK\r\n");
    assert_eq!(c.get("k"), None);
    assert_eq!(
        c.call("flush_all soon\r\n"),
        "CLIENT_ERROR invalid exptime argument\r\n"
    );
}

#[test]
fn flush_all_with_pymemcache_default_noreply_takes_effect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let script = r#"
import sys
from pymemcache.client.base import Client
c = Client((sys.argv[1], int(sys.argv[2])), connect_timeout=5, timeout=5, default_noreply=True)
c.set_many({"k1": b"v", "k2": b"v"})
assert c.get("k1") == b"v"
c.flush_all()
assert c.get_many(["k1", "k2"]) == {}, c.get_many(["k1", "k2"])
print("flushed")
"#;
    let out = python(script, &[kai.addr.ip().to_string(), kai.addr.port().to_string()]);
    assert_eq!(out.trim(), "flushed");
}

#[test]
fn stats_groups_answer_like_memcached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let stream = std::net::TcpStream::connect(kai.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let local = stream.local_addr().expect("local address");
    let mut c = Client::from_stream(stream);
    assert!(c.stats_group("items").is_empty(), "no items: only END, as memcached");
    assert_eq!(c.set("a", b"12345"), "STORED\r\n");
    let settings = c.stats_group("settings");
    assert_eq!(settings["maxconns"], "1024");
    assert_eq!(settings["item_size_max"], "1048576");
    assert_eq!(settings["tcpport"], kai.addr.port().to_string());
    let items = c.stats_group("items");
    assert_eq!(items["items:1:number"], "1");
    let slabs = c.stats_group("slabs");
    assert_eq!(slabs["active_slabs"], "1");
    assert_eq!(slabs["1:used_chunks"], "1");
    let conns = c.stats_group("conns");
    assert!(
        conns.values().any(|v| *v == format!("tcp:{local}")),
        "this connection is listed: {conns:?}"
    );
    assert!(conns.values().any(|v| v == "conn_listening"));
    assert_eq!(c.stats_group("sizes")["sizes_status"], "disabled");
    assert_eq!(c.get("a"), Some(b"12345".to_vec()));
    assert_eq!(c.call("stats reset\r\n"), "RESET\r\n");
    let after = c.stats();
    for counter in ["cmd_get", "cmd_set", "get_hits", "total_items", "total_connections"] {
        assert_eq!(after[counter], "0", "{counter} is reset");
    }
    assert_eq!(after["curr_items"], "1", "gauges are not reset");
    assert_eq!(after["curr_connections"], "1");
    assert_eq!(c.call("stats nonsense\r\n"), "ERROR\r\n");
}

#[test]
fn an_endless_line_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut other = kai.client();
    assert_eq!(other.set("a", b"1"), "STORED\r\n");
    let mut bad = kai.client();
    bad.send(&vec![b'a'; 10_000]);
    assert_eq!(bad.line(), "CLIENT_ERROR line too long\r\n");
    assert!(bad.is_closed());
    assert_eq!(other.get("a"), Some(b"1".to_vec()));
}

#[test]
fn expiry_is_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    assert_eq!(c.set_with("short", 0, 1, b"v"), "STORED\r\n");
    assert_eq!(c.set_with("gone", 0, -1, b"v"), "STORED\r\n");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let later = (now + 3600).to_string();
    assert_eq!(c.set_with("abs", 0, later.parse().expect("number"), b"v"), "STORED\r\n");
    assert_eq!(c.get("gone"), None);
    assert_eq!(c.get("abs"), Some(b"v".to_vec()));
    wait_until(Duration::from_secs(5), "relative expiry", || c.get("short").is_none());
    assert_eq!(c.call("delete short\r\n"), "NOT_FOUND\r\n");
}

#[test]
fn expiry_can_be_rejected_like_the_original_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[("expiry", "reject")]);
    let mut c = kai.client();
    assert!(c
        .set_with("k", 0, 10, b"v")
        .starts_with("CLIENT_ERROR expiry is not supported"));
    assert_eq!(c.set_with("k", 0, 0, b"v"), "STORED\r\n");
}

#[test]
fn stats_counters_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let mut c = kai.client();
    let before = c.stats();
    assert_eq!(before["kai_store"], "rocksdb");
    assert_eq!(before["kai_quorum"], "1:1:1");
    assert_eq!(before["curr_items"], "0");
    assert_eq!(before["bytes"], "0");
    c.set("a", b"1");
    c.set("b", b"2");
    c.get("a");
    c.get("zz");
    c.call("delete b\r\n");
    c.call("delete b\r\n");
    let mut other = kai.client();
    let after = other.stats();
    let delta = |k: &str| after[k].parse::<i64>().expect("number") - before[k].parse::<i64>().expect("number");
    assert_eq!(delta("cmd_set"), 2);
    assert_eq!(delta("total_items"), 2);
    assert_eq!(after["evictions"], "0");
    // One value left, "a" = "1": its key and record (an 18-byte header, 12 bytes of flags
    // and expiry, the data).
    assert_eq!(after["bytes"], (1 + 18 + 12 + 1).to_string());
    assert!(after["limit_maxbytes"].parse::<u64>().expect("number") > 0);
    for rusage in ["rusage_user", "rusage_system"] {
        let seconds: f64 = after[rusage].parse().expect("seconds");
        assert!(
            seconds >= 0.0 && after[rusage].contains('.'),
            "{rusage} = {}",
            after[rusage]
        );
    }
    assert_eq!(delta("cmd_get"), 2);
    assert_eq!(delta("get_hits"), 1);
    assert_eq!(delta("get_misses"), 1);
    assert_eq!(delta("delete_hits"), 1);
    assert_eq!(delta("delete_misses"), 1);
    assert_eq!(after["curr_items"], "1");
    assert_eq!(after["curr_connections"], "2");
    assert!(delta("total_connections") >= 1);
    assert!(delta("bytes_read") > 0 && delta("bytes_written") > 0);
    assert!(after["pid"].parse::<u32>().is_ok() && after.contains_key("uptime") && after.contains_key("threads"));
}

#[test]
fn data_survives_a_clean_restart_and_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kai = node(&dir);
    {
        let mut c = kai.client();
        for i in 0..200 {
            assert_eq!(c.set(&format!("key{i}"), format!("value{i}").as_bytes()), "STORED\r\n");
        }
        c.call("delete key7\r\n");
    }
    kai.terminate();
    kai.restart();
    {
        let mut c = kai.client();
        assert_eq!(c.get("key199"), Some(b"value199".to_vec()));
        assert_eq!(c.get("key7"), None);
        assert_eq!(c.stats()["curr_items"], "199");
        assert_eq!(c.set("after-restart", b"x"), "STORED\r\n");
    }
    kai.kill9();
    kai.restart();
    let mut c = kai.client();
    for i in (0..200).filter(|i| *i != 7) {
        assert_eq!(c.get(&format!("key{i}")), Some(format!("value{i}").into_bytes()));
    }
    assert_eq!(
        c.get("after-restart"),
        Some(b"x".to_vec()),
        "acknowledged write lost by kill -9"
    );
}

#[test]
fn two_hundred_concurrent_connections_get_correct_replies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let addr = kai.addr;
    let threads: Vec<_> = (0..200)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..50 {
                    let key = format!("c{t}-{}", i % 10);
                    let value = format!("t{t}i{i}");
                    assert_eq!(c.set(&key, value.as_bytes()), "STORED\r\n");
                    assert_eq!(c.get(&key), Some(value.into_bytes()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let mut c = kai.client();
    assert_eq!(c.stats()["curr_items"], "2000");
}

#[test]
fn connections_beyond_the_limit_are_refused_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[("max_connections", "3")]);
    let mut held: Vec<Client> = (0..3).map(|_| kai.client()).collect();
    for c in &mut held {
        assert_eq!(c.call("version\r\n").split(' ').next(), Some("VERSION"));
    }
    let mut extra = kai.client();
    assert_eq!(extra.line(), "ERROR Too many open connections\r\n");
    assert!(extra.is_closed());
    drop(held.pop());
    wait_until(Duration::from_secs(5), "a free connection slot", || {
        let mut c = kai.client();
        c.call("version\r\n").starts_with("VERSION")
    });
    assert_eq!(held[0].set("k", b"v"), "STORED\r\n");
}

#[test]
fn pymemcache_works_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let script = r#"
import sys
from pymemcache.client.base import Client
c = Client((sys.argv[1], int(sys.argv[2])), connect_timeout=5, timeout=5)
assert c.set("greeting", b"hello world")
assert c.get("greeting") == b"hello world"
c.set_many({"a": b"1", "b": b"2"})
assert c.get_many(["a", "b", "nope"]) == {"a": b"1", "b": b"2"}
value, cas = c.gets("a")
assert value == b"1" and cas is not None
assert c.delete("a") is True
assert c.get("a") is None
assert c.set("noreply", b"x", noreply=True)
assert c.get("noreply") == b"x"
assert c.version().startswith(b"1.6.0-kai.")
stats = c.stats()
assert stats[b"kai_store"] == b"rocksdb", stats
print("pymemcache ok")
"#;
    let out = python(script, &[kai.addr.ip().to_string(), kai.addr.port().to_string()]);
    assert_eq!(out.trim(), "pymemcache ok");
}

#[test]
fn libmemcached_tools_work_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let servers = format!("--servers={}:{}", kai.addr.ip(), kai.addr.port());
    let file = dir.path().join("payload.txt");
    std::fs::write(&file, b"copied by memccp\n").expect("write payload");
    let tool = |name: &str, args: &[&str]| {
        let out = Command::new(name)
            .arg(&servers)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{name} must be installed (apt-get install libmemcached-tools): {e}"));
        assert!(
            out.status.success(),
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    tool("memccp", &["payload.txt"]);
    // memccat prints a newline after the value, as it does against memcached.
    assert_eq!(tool("memccat", &["payload.txt"]), "copied by memccp\n\n");
    assert!(tool("memcstat", &[]).contains("kai_store: rocksdb"));
    tool("memcrm", &["payload.txt"]);
    let mut c = kai.client();
    assert_eq!(c.get("payload.txt"), None);
}

#[test]
fn the_rust_memcache_crate_works_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let client = memcache::connect(format!("memcache://{}?protocol=ascii", kai.addr)).expect("connect");
    client.set("rust", "client", 0).expect("set");
    assert_eq!(client.get::<String>("rust").expect("get"), Some("client".to_owned()));
    assert!(client.delete("rust").expect("delete"));
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let out = Command::new(common::kai_bin())
        .args(["start", "--set", "r=5", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run kai");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`r`"), "{stderr}");
    let out = Command::new(common::kai_bin())
        .args(["start", "--set", "buckets=1000"])
        .output()
        .expect("run kai");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`buckets`"));
}

#[test]
fn unrelated_kai_environment_variables_are_ignored_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"].map(String::from);
    let kai = KaiProcess::start_via(
        &["env", "KAI_BIN=/usr/local/bin/kai", "KAI_MAX_VALUE_SIZE=1000"],
        dir.path(),
        args.to_vec(),
    );
    let mut c = kai.client();
    assert_eq!(
        c.set("k", &[b'x'; 2000]),
        "SERVER_ERROR object too large for cache\r\n",
        "a variable naming a config key is still read"
    );
    let log = kai.log_text();
    assert!(log.contains("ignoring environment variable KAI_BIN"), "{log}");
}

#[test]
fn two_nodes_cannot_share_a_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = node(&dir);
    let out = Command::new(common::kai_bin())
        .args([
            "start",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--set",
            "admin_listen=127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run kai");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the store"));
}
