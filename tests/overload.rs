//! Overload and hostile clients against one real node: thousands of connections, slow senders,
//! a client that never reads its replies, maximum-size values in a pipeline. The node must keep
//! answering a fresh client and keep its memory bounded.

mod common;

use common::{Client, KaiProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib / 1024
}

/// A fresh client still gets answers: a set and a get round trip.
fn assert_responsive(kai: &KaiProcess, what: &str) -> Duration {
    let started = Instant::now();
    let mut c = kai.client();
    assert_eq!(c.set("fresh", b"client"), "STORED\r\n", "{what}");
    assert_eq!(c.get("fresh"), Some(b"client".to_vec()), "{what}");
    started.elapsed()
}

#[test]
fn five_thousand_connections_are_served_with_bounded_memory() {
    rlimit::increase_nofile_limit(20_000).expect("raise the open file limit");
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[("max_connections", "6000")]);
    let before = rss_mib(kai.pid());
    let mut conns: Vec<TcpStream> = (0..5000)
        .map(|_| TcpStream::connect(kai.addr).expect("connect"))
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(format!("set c{i} 0 0 1\r\nx\r\n").as_bytes())
            .expect("write");
    }
    let mut buf = [0u8; 8];
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        c.read_exact(&mut buf).expect("STORED");
        assert_eq!(&buf, b"STORED\r\n");
    }
    let took = assert_responsive(&kai, "with 5,000 connections open");
    let stats = kai.client().stats();
    assert!(stats["curr_connections"].parse::<u64>().expect("number") >= 5001);
    let after = rss_mib(kai.pid());
    eprintln!("5,000 connections: RSS {before} MiB → {after} MiB; fresh client answered in {took:?}");
    assert!(
        after < before + 256,
        "5,000 idle connections grew RSS from {before} to {after} MiB"
    );
}

#[test]
fn slow_senders_do_not_hold_up_other_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let request = b"get slowloris\r\n";
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(kai.addr).expect("connect"))
        .collect();
    // Each slow client sends its request one byte at a time; other clients keep being served.
    for byte in request {
        for c in &mut slow {
            c.write_all(&[*byte]).expect("write one byte");
        }
        assert_responsive(&kai, "while 500 clients trickle their requests");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut reply = [0u8; 5];
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        c.read_exact(&mut reply).expect("reply");
        assert_eq!(&reply, b"END\r\n", "the slow request is answered when complete");
    }
}

#[test]
fn a_client_that_never_reads_cannot_make_the_node_buffer_its_replies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let big = vec![b'v'; 512 * 1024];
    assert_eq!(kai.client().set("big", &big), "STORED\r\n");
    let before = rss_mib(kai.pid());
    let mut greedy = TcpStream::connect(kai.addr).expect("connect");
    // 4,000 gets of 512 KiB = 2 GiB of replies, never read.
    let requests = b"get big\r\n".repeat(4000);
    greedy.set_write_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let _ = greedy.write_all(&requests);
    std::thread::sleep(Duration::from_millis(500));
    let took = assert_responsive(&kai, "while a client ignores 2 GiB of replies");
    let after = rss_mib(kai.pid());
    eprintln!("unread replies: RSS {before} MiB → {after} MiB; fresh client answered in {took:?}");
    assert!(
        after < before + 64,
        "unread replies grew RSS from {before} to {after} MiB"
    );
    drop(greedy);
    assert_responsive(&kai, "after the greedy client left");
}

#[test]
fn maximum_size_values_in_a_pipeline_are_all_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let max = 1024 * 1024;
    let mut c: Client = kai.client();
    let mut pipeline = Vec::new();
    for i in 0..20u8 {
        pipeline.extend_from_slice(format!("set max{i} 0 0 {max}\r\n").as_bytes());
        pipeline.extend(std::iter::repeat_n(b'a' + i, max));
        pipeline.extend_from_slice(b"\r\n");
    }
    pipeline.extend_from_slice(format!("set over 0 0 {}\r\n", max + 1).as_bytes());
    pipeline.extend(std::iter::repeat_n(b'z', max + 1));
    pipeline.extend_from_slice(b"\r\n");
    c.send(&pipeline);
    for _ in 0..20 {
        assert_eq!(c.line(), "STORED\r\n");
    }
    assert_eq!(c.line(), "SERVER_ERROR object too large for cache\r\n");
    for i in 0..20u8 {
        let value = c.get(&format!("max{i}")).expect("stored");
        assert!(value.len() == max && value.iter().all(|b| *b == b'a' + i));
    }
}
