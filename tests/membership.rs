//! Living membership on in-process clusters: joins, leaves, failures, handoff, anti-entropy and
//! tombstone garbage collection, with the linearizability checker running across transitions.

mod common;

use common::cluster::{key, random_workload, Cluster, Shape, DOWN_AFTER};
use common::linearizability::check;
use kai_proto::RecordBody;
use std::time::Duration;

/// Generous bound for membership changes to settle in tests (gossip every 100 ms).
const SETTLE: Duration = Duration::from_secs(20);

fn shape(nodes: usize) -> Shape {
    Shape {
        nodes,
        n: 3,
        r: 2,
        w: 2,
        unchecked: false,
        anti_entropy: true,
    }
}

async fn load(cluster: &Cluster, keys: usize) {
    for i in 0..keys {
        cluster.nodes[i % cluster.nodes.len()]
            .set(key(&format!("k{i}")), 0, format!("v{i}").into())
            .await
            .expect("set");
    }
}

async fn assert_readable(cluster: &Cluster, through: usize, keys: usize) {
    for i in 0..keys {
        let record = cluster.nodes[through]
            .get(key(&format!("k{i}")))
            .await
            .expect("get")
            .expect("present");
        assert!(matches!(record.body, RecordBody::Value { ref data, .. } if *data == format!("v{i}").as_bytes()));
    }
}

/// Polls until every key is held (as a value) by exactly its owners among `live`.
async fn assert_exactly_owners_hold(cluster: &Cluster, live: &[usize], keys: usize) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    for i in 0..keys {
        let k = format!("k{i}");
        loop {
            let owners = cluster.owners(live[0], &k);
            let holders: Vec<usize> = cluster
                .replicas_holding(&k)
                .await
                .into_iter()
                .filter(|h| live.contains(h))
                .collect();
            if holders == owners && owners.len() == 3 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{k}: held by {holders:?}, owned by {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[actix_rt::test]
async fn a_new_node_joins_through_a_seed_and_takes_its_share() {
    let mut cluster = Cluster::start(shape(3)).await;
    load(&cluster, 300).await;
    let joiner = cluster.add_node().await;
    cluster
        .wait_settled(&[0, 1, 2, joiner], &[0, 1, 2, joiner], SETTLE)
        .await;
    assert_readable(&cluster, joiner, 300).await;
    assert_exactly_owners_hold(&cluster, &[0, 1, 2, joiner], 300).await;
    let owned = cluster.nodes[joiner]
        .ring()
        .load()
        .latest()
        .map(|r| r.buckets_of(cluster.id(joiner)).count());
    assert!(owned.is_some_and(|o| o > 0));
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_leaving_node_hands_off_its_data_then_leaves() {
    let cluster = Cluster::start(shape(4)).await;
    load(&cluster, 300).await;
    cluster.nodes[3].leave();
    tokio::time::timeout(SETTLE, cluster.nodes[3].left())
        .await
        .expect("node 3 left");
    cluster.wait_settled(&[0, 1, 2], &[0, 1, 2], SETTLE).await;
    assert_readable(&cluster, 0, 300).await;
    assert_exactly_owners_hold(&cluster, &[0, 1, 2], 300).await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_dead_node_is_removed_after_down_after_and_its_data_re_replicated() {
    let cluster = Cluster::start(shape(4)).await;
    load(&cluster, 300).await;
    cluster.isolate(&[3]);
    // Removal happens only after down_after of silence.
    tokio::time::sleep(DOWN_AFTER / 2).await;
    assert_eq!(
        cluster.nodes[0].ring().load().latest().map(|r| r.nodes().len()),
        Some(4)
    );
    cluster.wait_settled(&[0, 1, 2], &[0, 1, 2], SETTLE).await;
    assert_exactly_owners_hold(&cluster, &[0, 1, 2], 300).await;
    assert_readable(&cluster, 1, 300).await;
    // The isolated node refuses to serve: it cannot see a majority.
    assert!(cluster.nodes[3].get(key("k1")).await.is_err());
    // Healed, it rejoins automatically and catches up.
    cluster.filter.heal();
    cluster.wait_settled(&[0, 1, 2, 3], &[0, 1, 2, 3], SETTLE).await;
    assert_exactly_owners_hold(&cluster, &[0, 1, 2, 3], 300).await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn anti_entropy_repairs_replicas_that_missed_writes() {
    let cluster = Cluster::start(shape(3)).await;
    // Node 2 misses these writes (W = 2 is met without it) but stays a member.
    cluster.isolate(&[2]);
    for i in 0..300 {
        cluster.nodes[i % 2]
            .set(key(&format!("k{i}")), 0, format!("v{i}").into())
            .await
            .expect("set");
    }
    cluster.filter.heal();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !cluster.digests_agree(0) {
        assert!(tokio::time::Instant::now() < deadline, "replicas did not converge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..300 {
        let local = cluster.nodes[2]
            .local_record(&key(&format!("k{i}")))
            .await
            .expect("local read");
        assert!(local.is_some(), "k{i} not repaired on node 2");
    }
    let repaired: u64 = cluster
        .nodes
        .iter()
        .map(|n| kai_actors::stats::get(&n.stats().sync.keys_repaired))
        .sum();
    assert!(repaired >= 300, "anti-entropy moved {repaired} records");
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn tombstones_are_purged_once_every_replica_holds_them() {
    let cluster = Cluster::start(shape(3)).await;
    load(&cluster, 50).await;
    for i in 0..50 {
        assert!(cluster.nodes[0].delete(key(&format!("k{i}"))).await.expect("delete"));
    }
    // tombstone_grace is 1 s in test clusters.
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let mut remaining = 0;
        for node in &cluster.nodes {
            for i in 0..50 {
                remaining += usize::from(node.local_record(&key(&format!("k{i}"))).await.expect("read").is_some());
            }
        }
        if remaining == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{remaining} tombstones left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.digests_agree(0));
    for i in 0..50 {
        assert!(cluster.nodes[1]
            .get(key(&format!("k{i}")))
            .await
            .expect("get")
            .is_none());
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn histories_stay_linearizable_while_nodes_join_and_leave() {
    let mut cluster = Cluster::start(shape(4)).await;
    let joiner = cluster.add_node().await;
    cluster.nodes[3].leave();
    let workload = random_workload(&cluster, 6, 4, Duration::from_secs(4));
    let history = workload.await;
    cluster
        .wait_settled(&[0, 1, 2, joiner], &[0, 1, 2, joiner], SETTLE)
        .await;
    let ops = history.operations();
    let completed = ops.iter().filter(|o| o.completed.is_some()).count();
    assert!(completed > 200, "too few operations completed: {completed}");
    if let Err(violation) = check(&ops) {
        panic!("{violation}");
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn gossip_forms_a_cluster_of_twelve_from_one_seed() {
    let mut cluster = Cluster::start(Shape {
        nodes: 1,
        n: 3,
        r: 2,
        w: 2,
        unchecked: false,
        anti_entropy: true,
    })
    .await;
    let started = std::time::Instant::now();
    for _ in 1..12 {
        cluster.add_node().await;
    }
    let all: Vec<usize> = (0..12).collect();
    cluster.wait_settled(&all, &all, Duration::from_secs(60)).await;
    eprintln!("12 nodes agreed on one settled ring after {:?}", started.elapsed());
    load(&cluster, 100).await;
    assert_readable(&cluster, 11, 100).await;
    cluster.shutdown().await;
}

/// Departed nodes are forgotten after this many `down_after` (the Membership actor's rule).
const FORGET_AFTER_DOWN_AFTERS: u32 = 10;

fn knows(cluster: &Cluster, observer: usize, node: kai_proto::NodeId) -> bool {
    let status = cluster.nodes[observer].cluster();
    status.members.iter().any(|m| m.id == node)
}

/// Milliseconds since `observer` last had news of `node`.
fn silence(cluster: &Cluster, observer: usize, node: kai_proto::NodeId) -> Option<u64> {
    let status = cluster.nodes[observer].cluster();
    status.members.iter().find(|m| m.id == node).map(|m| m.silent_ms)
}

async fn poll(what: &str, within: Duration, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_stopped_departed_node_is_forgotten_and_never_reappears() {
    let mut cluster = Cluster::start(shape(4)).await;
    let gone = cluster.id(3);
    // Node 0 is cut off while node 3 stops, and hears node 3's last heartbeat (relayed) only
    // once healed, a second after the others: it forgets node 3 that much later than nodes 1
    // and 2, and in between gossips node 3's last state to them.
    // (Node 0 is isolated for about a second, less than down_after: it stays a member.)
    cluster.isolate(&[0]);
    poll("node 1 has news of node 3 that node 0 misses", SETTLE, || {
        let (s0, s1) = (silence(&cluster, 0, gone), silence(&cluster, 1, gone));
        s0.zip(s1).is_some_and(|(s0, s1)| s0 >= 300 && s1 < 200)
    })
    .await;
    let stopped = cluster.nodes.pop().expect("a fourth node");
    stopped.shutdown().await;
    poll("node 1 notices node 3 is silent", SETTLE, || {
        silence(&cluster, 1, gone).is_some_and(|s| s >= 800)
    })
    .await;
    cluster.filter.heal();
    poll("node 0 hears node 3's last news well after node 1", SETTLE, || {
        let (s0, s1) = (silence(&cluster, 0, gone), silence(&cluster, 1, gone));
        s0.zip(s1).is_some_and(|(s0, s1)| s0 + 500 < s1)
    })
    .await;
    cluster.wait_settled(&[0, 1, 2], &[0, 1, 2], SETTLE).await;
    // Every node forgets it after FORGET_AFTER_DOWN_AFTERS × down_after of silence.
    poll(
        "every node forgets the stopped node",
        DOWN_AFTER * FORGET_AFTER_DOWN_AFTERS + SETTLE,
        || (0..3).all(|i| !knows(&cluster, i, gone)),
    )
    .await;
    // It stays out of every member list and every ring for several down_after periods.
    let watch_until = tokio::time::Instant::now() + DOWN_AFTER * 4;
    while tokio::time::Instant::now() < watch_until {
        for i in 0..3 {
            assert!(!knows(&cluster, i, gone), "node {i} lists the stopped node again");
            let placement = cluster.nodes[i].ring().load();
            assert!(
                placement.rings.iter().all(|(_, r)| !r.nodes().contains(&gone)),
                "node {i} put the stopped node back in a ring"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn the_adopted_ring_is_persisted_for_the_fence_of_the_next_run() {
    use kai_actors::sync::progress::ProgressFile;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || kai_actors::NodeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        peer_listen: "127.0.0.1:0".parse().expect("addr"),
        name: Some("solo".to_owned()),
        store: kai_actors::StoreBackend::Rocksdb,
        data_dir: dir.path().to_owned(),
        gossip_interval: common::cluster::GOSSIP_INTERVAL,
        worker_threads: 1,
        ..kai_actors::NodeConfig::default()
    };
    // The Sync actor's progress file holds the newest adopted ring (written before the fence
    // adopts it).
    let state = dir.path().join("progress.json");
    let adopted = || ProgressFile::open(Some(state.clone()), false).map(|(_, p)| p.adopted);
    let node = kai_actors::start(config()).await.expect("start");
    assert!(node.wait_ready(SETTLE).await);
    let ring = node.ring().load().latest_id();
    assert!(ring.version >= 1);
    poll("the node adopts its ring and saves it", SETTLE, || {
        adopted().is_ok_and(|saved| saved == ring)
    })
    .await;
    node.shutdown().await;
    // The next run starts its fence there; it keeps it saved until it adopts a newer ring.
    let node = kai_actors::start(config()).await.expect("restart");
    assert_eq!(
        adopted().expect("progress"),
        ring,
        "a restart does not forget the adopted ring"
    );
    assert!(node.wait_ready(SETTLE).await);
    node.shutdown().await;
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `within`.
async fn wait_for(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn histories_stay_linearizable_when_a_node_is_cut_off_past_down_after_and_returns() {
    // The fault outlasts everything it targets: the cut-off node's minority fence (half of
    // `down_after`), its removal (`down_after`), tombstone GC among the others (grace 1 s), and
    // its return as a rejoining member — all while clients run get/set/delete through every node.
    // Keys deleted while it is away must stay deleted after it returns with their old values.
    let cluster = Cluster::start(shape(5)).await;
    let (all, rest) = ([0, 1, 2, 3, 4], [0, 1, 2, 3]);
    let purged = || -> u64 {
        let nodes = cluster.nodes.iter();
        nodes
            .map(|n| kai_actors::stats::get(&n.stats().sync.tombstones_purged))
            .sum()
    };
    let gone: Vec<String> = (0..20).map(|i| format!("gone-{i}")).collect();
    for k in &gone {
        cluster.nodes[0].set(key(k), 0, "old".into()).await.expect("set");
    }
    let purged_before = purged();
    let fault = async {
        tokio::time::sleep(DOWN_AFTER / 4).await;
        cluster.isolate(&[4]);
        for k in &gone {
            assert!(cluster.nodes[0].delete(key(k)).await.expect("delete"), "{k} existed");
        }
        wait_for("the cut-off node fences itself", DOWN_AFTER, || {
            !cluster.nodes[4].cluster().majority
        })
        .await;
        cluster.wait_settled(&rest, &rest, SETTLE).await;
        wait_for("tombstones are purged while it is away", SETTLE, || {
            purged() > purged_before
        })
        .await;
        cluster.filter.heal();
        cluster.wait_settled(&all, &all, SETTLE).await;
    };
    let (history, ()) = tokio::join!(random_workload(&cluster, 6, 3, DOWN_AFTER * 5), fault);
    let ops = history.operations();
    let completed = ops.iter().filter(|o| o.completed.is_some()).count();
    let failed = ops.len() - completed;
    assert!(completed > 200, "too few operations completed: {completed}");
    assert!(failed > 0, "no operation failed: the cut-off node kept answering");
    if let Err(violation) = check(&ops) {
        panic!("{violation}");
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        for k in &gone {
            let got = node.get(key(k)).await.expect("get");
            assert!(got.is_none(), "{k} came back through node {i}: {got:?}");
        }
    }
    eprintln!(
        "cut off past down_after: {} operations, {failed} failed, 0 violations",
        ops.len()
    );
    cluster.shutdown().await;
}
