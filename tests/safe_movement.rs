//! Data movement obeys rings with real `kai` processes: a node removed while away does not bring
//! deleted keys back after their tombstones were purged, and a node that comes back with an empty
//! data dir under its old name refills before it answers for its buckets.

mod common;

use common::processes::{ProcessCluster, SETTLE};
use std::time::{Duration, Instant};

fn keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("key-{i}")).collect()
}

/// Polls `condition` until it holds; on timeout, fails with the nodes' logs.
fn wait_until(cluster: &ProcessCluster, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !condition() {
        if Instant::now() >= deadline {
            for (i, node) in cluster.nodes.iter().enumerate() {
                let log = node.log_text();
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains("sources answered") && !l.contains("peer::client"))
                    .rev()
                    .take(40)
                    .collect();
                eprintln!("--- node {i} ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every node of `observers` has one settled ring of `members` members.
fn wait_ring(cluster: &ProcessCluster, observers: &[usize], members: u64) {
    wait_until(cluster, &format!("a settled ring of {members} members"), || {
        observers.iter().all(|&i| {
            let stats = cluster.client(i).stats();
            stats["kai_members"] == members.to_string() && stats["kai_rings_active"] == "1"
        })
    });
}

#[test]
fn a_removed_node_returning_with_its_old_data_brings_no_deleted_key_back() {
    // Short grace, fast anti-entropy: tombstones are purged soon after the deletes, and the
    // returning node would push its old copies at once, long before gossip (every second)
    // tells it the ring moved on, if nothing stopped it.
    let mut cluster = ProcessCluster::start_with(
        5,
        (3, 2, 2),
        &[
            ("gossip_interval", "1s"),
            ("down_after", "6s"),
            ("tombstone_grace", "1s"),
            ("anti_entropy_interval", "5ms"),
        ],
    );
    let keys = keys(1000);
    let mut clients: Vec<_> = (0..5).map(|i| cluster.client(i)).collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(clients[i % 5].set(k, b"old"), "STORED\r\n");
    }
    drop(clients);
    let survivors = [0, 1, 2];
    // Node 3 dies and is removed; then node 4, so the survivors hold a ring without both.
    cluster.nodes[3].kill9();
    wait_ring(&cluster, &[0, 1, 2, 4], 4);
    cluster.nodes[4].kill9();
    wait_ring(&cluster, &survivors, 3);
    let mut client = cluster.client(0);
    for k in &keys {
        let answer = client.call(&format!("delete {k}\r\n"));
        assert!(answer == "DELETED\r\n", "delete {k}: {answer}");
    }
    // The fault takes effect: every tombstone is garbage-collected on the survivors, so every
    // bucket is empty and reports the same digest root (`kai_tombstones_purged` can undercount:
    // a tombstone removed at another owner's request is counted by neither).
    wait_until(&cluster, "every tombstone purged", || {
        let roots: Vec<String> = survivors
            .iter()
            .flat_map(|&i| cluster.client(i).stats_group("buckets").into_values())
            .collect();
        !roots.is_empty() && roots.windows(2).all(|w| w[0] == w[1])
    });
    assert!(
        survivors
            .iter()
            .map(|&i| cluster.stat(i, "kai_tombstones_purged"))
            .sum::<u64>()
            > 0
    );
    // Node 3 comes back with its old data dir and its old ring on disk.
    cluster.nodes[3].restart();
    wait_ring(&cluster, &[0, 1, 2, 3], 4);
    wait_until(&cluster, "replicas converged", || {
        cluster.replicas_converged(&[0, 1, 2, 3], 3)
    });
    let mut back = Vec::new();
    for through in [0, 3] {
        let mut client = cluster.client(through);
        for k in &keys {
            if client.get(k).is_some() {
                back.push((through, k.clone()));
            }
        }
    }
    assert!(
        back.is_empty(),
        "{} deleted key(s) came back, e.g. {:?}",
        back.len(),
        &back[..back.len().min(5)]
    );
}

#[test]
fn an_empty_data_dir_under_an_old_name_refills_before_it_serves() {
    // No removal and no anti-entropy: the wiped node stays an owner, and only its refill can
    // give it what it acknowledged.
    let mut cluster =
        ProcessCluster::start_with(3, (3, 2, 2), &[("down_after", "60s"), ("anti_entropy_interval", "1h")]);
    let keys = keys(300);
    let mut client = cluster.client(0);
    for k in &keys {
        assert_eq!(client.set(k, b"old"), "STORED\r\n");
    }
    // Writes acknowledged by nodes 1 and 2 only.
    cluster.nodes[0].kill9();
    let mut client = cluster.client(1);
    for k in &keys {
        assert_eq!(client.set(k, b"new"), "STORED\r\n");
    }
    cluster.restart(0);
    // Node 2 loses its data dir and comes back empty under its old name.
    cluster.nodes[2].kill9();
    let data_dir = cluster.nodes[2].data_dir.clone();
    for entry in std::fs::read_dir(&data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove store");
        } else if path.extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(&path).expect("remove state");
        }
    }
    cluster.nodes[2].restart();
    wait_ring(&cluster, &[0, 1, 2], 3);
    wait_until(&cluster, "node 2 refilled (or never refilling)", || {
        cluster
            .client(2)
            .stats()
            .get("kai_sync_refilling")
            .is_none_or(|v| v == "0")
    });
    // Only nodes 0 and 2 remain: every read needs node 2's copy.
    cluster.nodes[1].kill9();
    let mut client = cluster.client(0);
    let mut stale = Vec::new();
    for k in &keys {
        let value = client.get(k);
        if value.as_deref() != Some(&b"new"[..]) {
            stale.push((k.clone(), value.map(|v| String::from_utf8_lossy(&v).into_owned())));
        }
    }
    assert!(
        stale.is_empty(),
        "{} acknowledged write(s) lost, e.g. {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    assert!(
        cluster.nodes[2].log_text().contains("refilling"),
        "node 2 noticed it came back empty"
    );
}
