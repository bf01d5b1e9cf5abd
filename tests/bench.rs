//! End-to-end: `kai bench` against real `kai` processes and a real memcached — every protocol
//! dialect runs every workload without errors against both, its figures count only answered
//! operations, failures are reported apart and fail the run, and its hot-counter check sees
//! every increment through a 3-node cluster.

mod common;

use common::memcached::Memcached;
use common::processes::ProcessCluster;
use common::{kai_bin, KaiProcess};
use std::process::Command;

/// The dialects of `kai bench --protocol`.
const PROTOCOLS: [&str; 3] = ["text", "meta", "binary"];
/// Keys per request of the multi-get workload.
const MULTIGET: u64 = 8;

/// Runs `kai bench --json --quiet <args>`; returns its exit success and JSON result.
fn bench(args: &[&str]) -> (bool, serde_json::Value) {
    let out = Command::new(kai_bin())
        .args(["bench", "--json", "--quiet", "--warmup", "0s"])
        .args(args)
        .output()
        .expect("run kai bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no JSON result ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

#[test]
fn every_mix_runs_without_errors_against_one_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let addr = kai.addr.to_string();
    for mix in ["get-set", "add", "incr", "cas", "hot-incr"] {
        let (ok, r) = bench(&[
            "--target",
            &addr,
            "--mix",
            mix,
            "--duration",
            "1s",
            "--connections",
            "4",
            "--keys",
            "500",
            "--zipf",
            "0.9",
            "--value-size",
            "10:3,3000:1",
        ]);
        assert!(ok, "{mix}: {r}");
        assert_eq!(r["errors"], 0, "{mix}: {r}");
        assert!(r["ops"].as_u64().expect("ops") > 0, "{mix}: {r}");
        if mix == "hot-incr" {
            assert_eq!(r["lost_increments"], 0, "{r}");
            assert_eq!(r["hot_counter"], r["increments_acknowledged"], "{r}");
        }
    }
    let (ok, r) = bench(&[
        "--target",
        &addr,
        "--duration",
        "1s",
        "--connections",
        "4",
        "--rate",
        "400",
        "--series",
        "250ms",
    ]);
    assert!(ok, "{r}");
    let offered = 400.0;
    let achieved = r["ops_per_sec"].as_f64().expect("ops/s");
    assert!(
        (achieved - offered).abs() < offered * 0.1,
        "open loop offers its rate: {r}"
    );
    let series = r["series"].as_array().expect("series");
    assert_eq!(series.len(), 4, "{r}");
    let slot_ops: u64 = series.iter().map(|s| s["ops"].as_u64().expect("ops")).sum();
    assert_eq!(slot_ops, r["ops"].as_u64().expect("ops"));
}

#[test]
fn every_protocol_runs_every_workload_against_kai_and_memcached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = KaiProcess::start(dir.path(), &[]);
    let memcached = Memcached::start(&[]);
    let multiget = MULTIGET.to_string();
    let workloads: [(&str, Vec<&str>); 6] = [
        ("get-set", vec!["--zipf", "0.9", "--value-size", "10:3,3000:1"]),
        ("multi-get", vec!["--multiget", &multiget, "--get-ratio", "1"]),
        ("add", vec!["--mix", "add"]),
        ("incr", vec!["--mix", "incr"]),
        ("cas", vec!["--mix", "cas"]),
        ("hot-incr", vec!["--mix", "hot-incr"]),
    ];
    for (server, addr) in [("kai", kai.addr.to_string()), ("memcached", memcached.addr.to_string())] {
        for protocol in PROTOCOLS {
            for (workload, args) in &workloads {
                let what = format!("{server} --protocol {protocol} {workload}");
                let mut all = vec!["--target", &addr, "--protocol", protocol, "--duration", "500ms"];
                all.extend(["--connections", "4", "--keys", "500"]);
                all.extend(args);
                let (ok, r) = bench(&all);
                assert!(ok, "{what}: {r}");
                assert_eq!(r["errors"], 0, "{what}: {r}");
                assert!(r["ops_per_sec"].as_f64().expect("ops/s") > 0.0, "{what}: {r}");
                let ops = r["ops"].as_u64().expect("ops");
                match *workload {
                    "multi-get" => {
                        assert_eq!(r["keys_read_or_written"], ops * MULTIGET, "{what}: {r}");
                        assert_eq!(r["hits"], ops * MULTIGET, "{what}: every key was stored: {r}");
                    }
                    "hot-incr" => {
                        assert_eq!(r["lost_increments"], 0, "{what}: {r}");
                        assert_eq!(r["hot_counter"], r["increments_acknowledged"], "{what}: {r}");
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn refused_requests_are_errors_not_throughput_and_fail_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Values above the node's limit are refused: every set of 2 KiB fails, in every dialect.
    let kai = KaiProcess::start(dir.path(), &[("max_value_size", "1024")]);
    let addr = kai.addr.to_string();
    for (protocol, error) in [
        ("text", "SERVER_ERROR"),
        ("meta", "SERVER_ERROR"),
        ("binary", "status 0x0003"),
    ] {
        let (ok, r) = bench(&[
            "--target",
            &addr,
            "--protocol",
            protocol,
            "--duration",
            "1s",
            "--connections",
            "2",
            "--get-ratio",
            "0.5",
            "--value-size",
            "2048",
            "--no-prefill",
        ]);
        assert!(!ok, "{protocol}: a run with 50% errors must fail: {r}");
        let (ops, errors) = (r["ops"].as_u64().expect("ops"), r["errors"].as_u64().expect("errors"));
        assert!(errors > 0 && ops > 0, "{protocol}: {r}");
        let error_rate = r["error_rate"].as_f64().expect("rate");
        assert!(
            (error_rate - 0.5).abs() < 0.1,
            "{protocol}: about half the operations are sets: {r}"
        );
        assert!(
            r["error_samples"][0].as_str().expect("sample").contains(error),
            "{protocol}: {r}"
        );
    }
}

#[test]
fn sixty_four_connections_incrementing_one_key_through_three_nodes_lose_nothing() {
    let cluster = ProcessCluster::start(3, (3, 2, 2));
    let targets: Vec<String> = cluster.nodes.iter().map(|n| n.addr.to_string()).collect();
    let (ok, r) = bench(&[
        "--target",
        &targets.join(","),
        "--mix",
        "hot-incr",
        "--duration",
        "2s",
        "--connections",
        "64",
        // Contention may leave some outcomes unknown (errors); none may be lost.
        "--max-error-rate",
        "1",
    ]);
    assert!(ok, "{r}");
    assert_eq!(r["lost_increments"], 0, "{r}");
    assert!(r["increments_acknowledged"].as_u64().expect("acks") > 0, "{r}");
}
