//! Clock jumps: one node's wall clock jumps hours ahead and a day back (libfaketime) while
//! clients run. Version tags are logical, so histories stay linearizable; only expiry follows
//! each node's own clock. Skipped with a notice where libfaketime is not installed
//! (`apt-get install faketime`).

mod common;

use common::history::HistoryRun;
use common::processes::ProcessCluster;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[test]
fn histories_stay_linearizable_when_a_node_clock_jumps() {
    if !Path::new(LIBFAKETIME).exists() {
        eprintln!("NOTICE: libfaketime not installed; skipping the clock-jump test");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let offset = dir.path().join("offset");
    std::fs::write(&offset, "+0").expect("write offset");
    let faked = vec![
        "env".to_owned(),
        format!("LD_PRELOAD={LIBFAKETIME}"),
        format!("FAKETIME_TIMESTAMP_FILE={}", offset.display()),
        "FAKETIME_NO_CACHE=1".to_owned(),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".to_owned(),
    ];
    let cluster = ProcessCluster::start_via(3, (3, 2, 2), &[Vec::new(), Vec::new(), faked]);
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let run = HistoryRun::start(&addrs, 6);
    let jumps = ["+2h", "-1d", "+30d", "+0"];
    for jump in jumps {
        std::fs::write(&offset, jump).expect("jump the clock");
        std::thread::sleep(Duration::from_millis(1500));
    }
    let summary = run.finish();
    eprintln!(
        "clock jumps: {summary}, {} jumps of node 3's clock, 0 violations",
        jumps.len()
    );
    // Expiry follows each node's own clock: a value with a one-hour lifetime has expired for a
    // node whose clock runs two hours ahead, and not for the others.
    assert_eq!(cluster.client(0).set_with("ttl", 0, 3600, b"v"), "STORED\r\n");
    std::fs::write(&offset, "+2h").expect("jump the clock");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(cluster.client(1).get("ttl"), Some(b"v".to_vec()));
    assert_eq!(cluster.client(2).get("ttl"), None);
}
