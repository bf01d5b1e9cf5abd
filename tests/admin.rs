//! The admin HTTP endpoint of real `kai` processes: metrics, probes and the JSON API; `leave`
//! only through it and only with the token; bad HTTP refused without harm to the data path.

mod common;

use common::admin::{get, json, post};
use common::processes::ProcessCluster;
use common::{wait_until, KaiProcess};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "test-token-5e1f";

/// Sends raw bytes to `addr` and returns whatever comes back before the server closes (or a
/// second passes quietly).
fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect admin");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the unlabelled metric `name` in a scrape of `/metrics`.
fn metric(admin: SocketAddr, name: &str) -> Option<u64> {
    let (code, text) = get(admin, "/metrics");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn kai_cli(args: &[&str]) -> std::process::Output {
    Command::new(common::kai_bin())
        .args(args)
        .env_remove("KAI_ADMIN_TOKEN")
        .output()
        .expect("run kai")
}

#[test]
fn metrics_probes_and_status_describe_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let mut c = kai.client();
    assert_eq!(c.set("k", b"v"), "STORED\r\n");
    assert_eq!(c.get("k").as_deref(), Some(&b"v"[..]));
    assert_eq!(c.get("missing"), None);
    // A binary-protocol get counts like a text one.
    let mut binary = std::net::TcpStream::connect(kai.addr).expect("connect");
    let mut request = vec![0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    request.extend_from_slice(&[0; 12]);
    request.push(b'k');
    std::io::Write::write_all(&mut binary, &request).expect("send");
    let mut reply = [0u8; 29];
    std::io::Read::read_exact(&mut binary, &mut reply).expect("binary reply");
    assert_eq!((reply[0], reply[7], reply[28]), (0x81, 0, b'v'), "a hit: {reply:?}");

    assert_eq!(get(kai.admin, "/health"), (200, "ok\n".to_owned()));
    assert_eq!(get(kai.admin, "/ready").0, 200);

    let (code, metrics) = get(kai.admin, "/metrics");
    assert_eq!(code, 200);
    for line in [
        "kai_get_hits_total 2",
        "kai_get_misses_total 1",
        "kai_ready 1",
        "kai_items 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
    assert!(metrics.contains("# TYPE kai_quorum_failures counter"), "{metrics}");
    // Per-command and per-replica-call latency histograms, and RocksDB's own figures.
    for prefix in [
        "kai_command_seconds_count{command=\"get\"} 3",
        "kai_command_seconds_count{command=\"set\"} 1",
        "kai_command_seconds_bucket{le=\"+Inf\",command=\"get\"} 3",
        "kai_command_errors_total{command=\"get\"} 0",
        "kai_replica_call_seconds_count{call=\"read\",replica=\"local\"}",
        "kai_fence_refusals_total{reason=\"minority\"} 0",
        "kai_spare_calls_total ",
        "kai_store_sst_bytes ",
        "kai_store_block_cache_hits_total ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(prefix)),
            "no `{prefix}…` in:\n{metrics}"
        );
    }
    assert!(metrics.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");

    let status = json(kai.admin, "/api/v1/status");
    assert_eq!(status["node"], "single");
    assert_eq!(status["ready"], true);
    assert_eq!(status["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(status["members"][0]["status"], "up");
    let ring = json(kai.admin, "/api/v1/ring");
    let buckets = ring["buckets"].as_u64().expect("buckets");
    assert_eq!(ring["placement"].as_array().map(Vec::len), Some(buckets as usize));
    assert_eq!(ring["nodes"][0]["primary"].as_u64(), Some(buckets));
    assert!(json(kai.admin, "/api/v1/transfers")["buckets_pending"].is_u64());
    assert_eq!(json(kai.admin, "/api/v1/members")[0]["name"], "single");
    assert_eq!(json(kai.admin, "/api/v1/stats")["get_hits"], "2");
    assert_eq!(get(kai.admin, "/api/v1/nothing").0, 404);

    let admin = kai.admin.to_string();
    let out = kai_cli(&["status", "--admin", &admin, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    assert_eq!(printed["node"], "single");
    let out = kai_cli(&["status", "--admin", &admin]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("sees a majority"));
    // `--watch --json`: one document per second until stopped.
    let mut watch = Command::new(common::kai_bin())
        .args(["status", "--admin", &admin, "--watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run kai status --watch");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().expect("stdout")));
    for _ in 0..2 {
        let line = lines.next().expect("a line").expect("read");
        let doc: serde_json::Value = serde_json::from_str(&line).expect("each line is JSON");
        assert_eq!(doc["node"], "single");
    }
    watch.kill().expect("stop the watch");
    let _ = watch.wait();
    assert!(kai_cli(&["healthcheck", "--admin", &admin, "--ready"]).status.success());
    assert!(kai_cli(&["ring", "--admin", &admin]).status.success());
    assert!(kai_cli(&["stats", "--admin", &admin]).status.success());
}

#[test]
fn the_tombstone_gauge_counts_deletes_until_garbage_collection_removes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    // First with the default grace (a day): nothing is collected while the count is read.
    let mut kai = KaiProcess::start(dir.path(), &[]);
    let mut c = kai.client();
    for k in ["a", "b", "c"] {
        assert_eq!(c.set(k, b"v"), "STORED\r\n");
    }
    assert_eq!(metric(kai.admin, "kai_tombstones"), Some(0));
    for k in ["a", "b"] {
        assert_eq!(c.call(&format!("delete {k}\r\n")), "DELETED\r\n");
    }
    assert_eq!(c.call("delete never-set\r\n"), "NOT_FOUND\r\n");
    assert_eq!(metric(kai.admin, "kai_tombstones"), Some(2));
    assert_eq!(metric(kai.admin, "kai_items"), Some(1));
    assert_eq!(json(kai.admin, "/api/v1/status")["tombstones"], 2);
    // A set over a tombstone replaces it.
    assert_eq!(c.set("a", b"again"), "STORED\r\n");
    assert_eq!(metric(kai.admin, "kai_tombstones"), Some(1));
    kai.terminate();

    // Restarted with a one-second grace: the tombstone left is collected and the gauge follows.
    let kai = KaiProcess::start(
        dir.path(),
        &[("tombstone_grace", "1s"), ("anti_entropy_interval", "5ms")],
    );
    wait_until(Duration::from_secs(30), "the tombstone to be collected", || {
        metric(kai.admin, "kai_tombstones") == Some(0)
    });
    assert_eq!(metric(kai.admin, "kai_tombstones_purged_total"), Some(1));
    assert_eq!(metric(kai.admin, "kai_items"), Some(2));
}

#[test]
fn kai_leave_is_an_unknown_command_on_the_memcache_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let mut c = kai.client();
    assert_eq!(c.call("kai_leave\r\n"), "ERROR\r\n");
    assert_eq!(c.set("still", b"here"), "STORED\r\n");
    assert_eq!(json(kai.admin, "/api/v1/status")["members"][0]["status"], "up");
}

#[test]
fn a_reachable_admin_address_without_a_token_refuses_to_start() {
    let out = kai_cli(&[
        "start",
        "--listen",
        "127.0.0.1:0",
        "--peer-listen",
        "127.0.0.1:0",
        "--set",
        "store=memory",
        "--set",
        "admin_listen=0.0.0.0:0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`admin_token`"), "{stderr}");
}

#[test]
fn bad_admin_requests_are_refused_and_logged_once_without_harming_the_data_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[("admin_token", TOKEN)]);
    let mut c = kai.client();
    assert_eq!(c.set("k", b"before"), "STORED\r\n");

    for _ in 0..5 {
        let (code, body) = post(kai.admin, "/api/v1/leave", Some("wrong"));
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("wrong bearer token"), "{body}");
    }
    let (code, body) = post(kai.admin, "/api/v1/leave", None);
    assert_eq!((code, body.contains("missing bearer token")), (401, true), "{body}");
    assert_eq!(get(kai.admin, "/api/v1/leave").0, 405, "leave is a POST");

    let garbage = raw_http(
        kai.admin,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    );
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");
    let mut huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 256 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let answer = raw_http(kai.admin, &huge);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw_http(
        kai.admin,
        format!("GET /health HTTP/1.1\r\n{many_headers}\r\n").as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // Again and again: answered each time, logged once per kind.
    for _ in 0..5 {
        assert!(raw_http(kai.admin, b"\x00\xff garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(raw_http(kai.admin, b"GET /health HTTP/9.9\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(raw_http(kai.admin, &huge).starts_with("HTTP/1.1 431"));
    }

    // The node is still a member, serving, and said each kind of refusal once.
    assert_eq!(get(kai.admin, "/health").0, 200);
    assert_eq!(json(kai.admin, "/api/v1/status")["members"][0]["status"], "up");
    assert_eq!(c.get("k").as_deref(), Some(&b"before"[..]));
    assert_eq!(c.set("k", b"after"), "STORED\r\n");
    let malformed = "admin connection from 127.0.0.1 refused with 400 Bad Request";
    let too_large = "admin connection from 127.0.0.1 refused with 431 Request Header Fields Too Large";
    wait_until(Duration::from_secs(10), "the refusals in the log", || {
        let log = kai.log_text();
        log.contains(malformed) && log.contains(too_large)
    });
    let log = kai.log_text();
    assert_eq!(log.matches("/api/v1/leave from 127.0.0.1 refused").count(), 1, "{log}");
    assert_eq!(log.matches(malformed).count(), 1, "{log}");
    assert_eq!(log.matches(too_large).count(), 1, "{log}");
    assert!(
        !log.contains("stream error"),
        "actix-http's own line per connection: {log}"
    );
}

#[test]
fn leave_with_the_token_hands_off_and_stops_the_node() {
    let mut cluster = ProcessCluster::start_with(3, (2, 2, 2), &[("admin_token", TOKEN)]);
    let mut c = cluster.client(0);
    for i in 0..100 {
        assert_eq!(c.set(&format!("k{i}"), b"v"), "STORED\r\n");
    }
    let leaving = cluster.nodes[2].admin.to_string();
    let out = kai_cli(&["leave", "--admin", &leaving]);
    assert!(!out.status.success(), "no token, no leave");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = kai_cli(&["leave", "--admin", &leaving, "--token", TOKEN]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("has left the cluster"));
    wait_until(Duration::from_secs(30), "the node to exit", || {
        !cluster.nodes[2].is_running()
    });
    wait_until(Duration::from_secs(60), "a settled ring of two", || {
        let s = json(cluster.nodes[0].admin, "/api/v1/status");
        s["ring_members"] == 2 && s["rings_active"] == 1
    });
    for i in 0..100 {
        assert_eq!(c.get(&format!("k{i}")).as_deref(), Some(&b"v"[..]), "k{i}");
    }
}
