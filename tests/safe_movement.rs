//! Data movement obeys rings with real `kai` processes: a node removed while paused does not
//! bring deleted keys back after their tombstones were purged, and a node that comes back with an
//! empty data dir under its old name — or with a data dir restored from a backup — refills before
//! it answers for its buckets. (A removed node
//! restarted from its old data dir: `data_movement.rs`,
//! `deleted_keys_stay_deleted_when_a_removed_node_returns_after_gc`.)

mod common;

use common::processes::{ProcessCluster, SETTLE};
use std::time::{Duration, Instant};

/// The tests of this file run one at a time: each runs three to five nodes whose timing matters,
/// and the machines this runs on may have two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes this file's turn (a test that panicked holding it does not stop the others).
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("key-{i}")).collect()
}

/// Prints the last lines of every node's log (for a failing test).
fn print_logs(cluster: &ProcessCluster) {
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
}

/// Polls `condition` until it holds; on timeout, fails with the nodes' logs.
fn wait_until(cluster: &ProcessCluster, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !condition() {
        if Instant::now() >= deadline {
            print_logs(cluster);
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets `k` to `value`, retrying refusals (not acknowledged, so not a write) until a deadline.
fn set_retrying(client: &mut common::Client, k: &str, value: &[u8]) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let answer = client.set(k, value);
        if answer == "STORED\r\n" {
            return;
        }
        assert!(Instant::now() < deadline, "set {k}: {answer}");
        std::thread::sleep(Duration::from_millis(50));
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

/// Waits until every bucket of every node of `nodes` reports the same digest root: with every
/// key deleted, until every tombstone is purged.
fn wait_all_purged(cluster: &ProcessCluster, nodes: &[usize]) {
    wait_until(cluster, "every tombstone purged", || {
        let roots: Vec<String> = nodes
            .iter()
            .flat_map(|&i| cluster.client(i).stats_group("buckets").into_values())
            .collect();
        !roots.is_empty() && roots.windows(2).all(|w| w[0] == w[1])
    });
}

/// Keys of `keys` that read back through any of `nodes`.
fn read_back(cluster: &ProcessCluster, nodes: &[usize], keys: &[String]) -> Vec<(usize, String)> {
    let mut back = Vec::new();
    for &through in nodes {
        let mut client = cluster.client(through);
        for k in keys {
            if client.get(k).is_some() {
                back.push((through, k.clone()));
            }
        }
    }
    back
}

#[test]
fn a_paused_node_resuming_after_its_removal_cannot_push_deleted_keys_back() {
    let _turn = exclusive();
    // The paused node keeps its old ring in memory; when it resumes, its overdue anti-entropy
    // timers fire at once, before gossip tells it that it was removed: only the other
    // replicas' refusal of its stale-ring requests keeps the deleted keys deleted.
    let cluster = ProcessCluster::start_with(
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
        set_retrying(&mut clients[i % 5], k, b"old");
    }
    drop(clients);
    let p = 3;
    let survivors = [0, 1, 2, 4];
    cluster.nodes[p].signal("STOP");
    wait_ring(&cluster, &survivors, 4);
    let mut client = cluster.client(0);
    for k in &keys {
        assert_eq!(client.call(&format!("delete {k}\r\n")), "DELETED\r\n", "delete {k}");
    }
    wait_all_purged(&cluster, &survivors);
    let refused = |cluster: &ProcessCluster| -> u64 {
        survivors
            .iter()
            .filter_map(|&i| cluster.client(i).stats().get("kai_sync_refused")?.parse::<u64>().ok())
            .sum()
    };
    let refused_before = refused(&cluster);
    cluster.nodes[p].signal("CONT");
    wait_ring(&cluster, &[0, 1, 2, 3, 4], 5);
    wait_until(&cluster, "replicas converged", || {
        cluster.replicas_converged(&[0, 1, 2, 3, 4], 3)
    });
    let back = read_back(&cluster, &[0, p], &keys);
    if !back.is_empty() {
        print_logs(&cluster);
    }
    assert!(
        back.is_empty(),
        "{} deleted key(s) came back, e.g. {:?}",
        back.len(),
        &back[..back.len().min(5)]
    );
    eprintln!(
        "sync requests refused after the paused node resumed: {}",
        refused(&cluster) - refused_before
    );
}

#[test]
fn an_empty_data_dir_under_an_old_name_refills_before_it_serves() {
    let _turn = exclusive();
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

/// Copies directory `from` to `to` (which must not exist).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

#[test]
fn a_data_dir_restored_from_a_backup_refills_before_it_serves() {
    let _turn = exclusive();
    let mut cluster =
        ProcessCluster::start_with(3, (3, 2, 2), &[("down_after", "60s"), ("anti_entropy_interval", "1h")]);
    let keys = keys(300);
    let mut client = cluster.client(0);
    for k in &keys {
        assert_eq!(client.set(k, b"old"), "STORED\r\n");
    }
    // A backup of node 2, then two more runs of it that the backup does not remember.
    cluster.nodes[2].kill9();
    let backup = tempfile::tempdir().expect("tempdir").keep().join("backup");
    let data_dir = cluster.nodes[2].data_dir.clone();
    copy_dir(&data_dir, &backup);
    // Each run must be heard (a push-pull exchange with a majority) before it dies.
    let caught_up = |cluster: &ProcessCluster| {
        cluster.nodes[2]
            .log_text()
            .matches("caught up with the cluster")
            .count()
    };
    for run in 0..3 {
        let before = caught_up(&cluster);
        cluster.nodes[2].restart();
        wait_until(&cluster, "node 2 caught up", || caught_up(&cluster) > before);
        if run < 2 {
            cluster.nodes[2].kill9();
        }
    }
    // Writes acknowledged by nodes 1 and 2 only.
    cluster.nodes[0].kill9();
    let mut client = cluster.client(1);
    for k in &keys {
        set_retrying(&mut client, k, b"new");
    }
    // Node 2 is rolled back to the backup, which holds only "old".
    cluster.nodes[2].kill9();
    std::fs::remove_dir_all(&data_dir).expect("remove data dir");
    copy_dir(&backup, &data_dir);
    cluster.nodes[0].restart();
    cluster.nodes[2].restart();
    wait_ring(&cluster, &[0, 1, 2], 3);
    wait_until(&cluster, "node 2 noticed the rollback and refilled", || {
        cluster.nodes[2].log_text().contains("restored from a backup")
            && cluster
                .client(2)
                .stats()
                .get("kai_sync_refilling")
                .is_some_and(|v| v == "0")
    });
    // Only nodes 0 and 2 remain: every read needs node 2's copy.
    cluster.nodes[1].kill9();
    let mut client = cluster.client(0);
    let stale: Vec<&String> = keys
        .iter()
        .filter(|k| client.get(k).as_deref() != Some(&b"new"[..]))
        .collect();
    assert!(
        stale.is_empty(),
        "{} acknowledged write(s) lost to the rolled-back copy, e.g. {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}

#[test]
fn tombstones_are_not_purged_while_an_owner_is_unreachable() {
    let _turn = exclusive();
    // Every key lives on all three nodes. Node 2 is down (killed, but well within `down_after`:
    // still an owner) while the keys are deleted, and stays down until the
    // tombstones are past `tombstone_grace` and anti-entropy swept every bucket twice.
    // Purging then would leave node 2's old values as the only versions, and anti-entropy would
    // copy them back to the others when it resumes.
    let mut cluster = ProcessCluster::start_with(
        3,
        (3, 2, 2),
        &[
            ("down_after", "60s"),
            ("tombstone_grace", "1s"),
            ("anti_entropy_interval", "5ms"),
            // Few buckets: each comparison with the paused node waits for the request timeout.
            ("buckets", "64"),
        ],
    );
    for i in 0..3 {
        cluster.wait_settled(i, 3);
    }
    let keys = keys(300);
    let mut client = cluster.client(0);
    for k in &keys {
        set_retrying(&mut client, k, b"old");
    }
    wait_until(&cluster, "node 2 holds every key", || {
        cluster.stat(2, "curr_items") == keys.len() as u64
    });
    // Killed, not paused: a paused node still receives the deletes queued for it when it resumes.
    cluster.nodes[2].kill9();
    for k in &keys {
        assert_eq!(client.call(&format!("delete {k}\r\n")), "DELETED\r\n", "{k}");
    }
    let deleted = Instant::now();
    let compared = |cluster: &ProcessCluster, i: usize| cluster.stat(i, "kai_sync_buckets_compared");
    let before = compared(&cluster, 0);
    let buckets = cluster.stat(0, "kai_buckets");
    wait_until(
        &cluster,
        "the grace passes and anti-entropy sweeps every bucket",
        || deleted.elapsed() > Duration::from_secs(3) && compared(&cluster, 0) > before + 2 * buckets,
    );
    let purged: u64 = (0..2).map(|i| cluster.stat(i, "kai_tombstones_purged")).sum();
    assert_eq!(purged, 0, "tombstones purged while an owner was down");
    cluster.restart(2);
    wait_until(
        &cluster,
        "anti-entropy sweeps node 2's buckets after it restarts",
        || compared(&cluster, 2) > 2 * buckets,
    );
    let back = read_back(&cluster, &[0, 1, 2], &keys);
    assert!(
        back.is_empty(),
        "{} deleted keys came back, e.g. {:?}",
        back.len(),
        &back[..back.len().min(5)]
    );
}
