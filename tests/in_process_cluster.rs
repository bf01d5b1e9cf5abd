//! In-process clusters on loopback: replica placement, quorum behaviour under partitions, read
//! repair, and linearizability checked by the project's checker.

mod common;

use common::cluster::{key, random_workload, Cluster, Shape};
use common::linearizability::{check, MetaGetOutcome, Op};
use kai_actors::coordinator::CoordinatorError;
use kai_actors::NodeError;
use std::time::Duration;

fn shape(nodes: usize, n: usize, r: usize, w: usize) -> Shape {
    Shape {
        nodes,
        n,
        r,
        w,
        unchecked: false,
        anti_entropy: false,
    }
}

#[actix_rt::test]
async fn a_write_through_any_node_lands_on_exactly_n_replicas() {
    let cluster = Cluster::start(shape(5, 3, 2, 2)).await;
    for i in 0..40 {
        let k = format!("placed-{i}");
        cluster.nodes[i % 5].set(key(&k), 0, "v".into()).await.expect("set");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let expected: Vec<usize> = {
            let ring = cluster.nodes[0].ring().load();
            let bucket = ring.bucket_of(k.as_bytes());
            let owners = ring.latest().expect("a ring").preference_list(bucket).to_vec();
            let mut idx: Vec<usize> = (0..5).filter(|j| owners.contains(&cluster.id(*j))).collect();
            idx.sort_unstable();
            idx
        };
        assert_eq!(expected.len(), 3);
        loop {
            let holders = cluster.replicas_holding(&k).await;
            assert!(
                holders.iter().all(|h| expected.contains(h)),
                "{k} stored off its replicas: {holders:?}"
            );
            if holders == expected {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{k}: holders {holders:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn every_node_serves_every_key() {
    let cluster = Cluster::start(shape(3, 3, 2, 2)).await;
    for i in 0..30 {
        cluster.nodes[i % 3]
            .set(key(&format!("k{i}")), i as u32, format!("v{i}").into())
            .await
            .expect("set");
    }
    for node in &cluster.nodes {
        for i in 0..30 {
            let record = node.get(key(&format!("k{i}"))).await.expect("get").expect("present");
            assert_eq!(
                record.body,
                kai_proto::RecordBody::Value {
                    flags: i as u32,
                    expires_at: 0,
                    data: format!("v{i}").into(),
                    state: Default::default(),
                }
            );
        }
    }
    assert!(cluster.nodes[1].delete(key("k3")).await.expect("delete"));
    assert!(cluster.nodes[2].get(key("k3")).await.expect("get").is_none());
    assert!(!cluster.nodes[0].delete(key("k3")).await.expect("delete"));
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_partitioned_replica_does_not_stop_the_majority() {
    let cluster = Cluster::start(shape(3, 3, 2, 2)).await;
    cluster.isolate(&[2]);
    for i in 0..20 {
        cluster.nodes[i % 2]
            .set(key(&format!("p{i}")), 0, "v".into())
            .await
            .expect("majority writes");
    }
    for i in 0..20 {
        assert!(cluster.nodes[(i + 1) % 2]
            .get(key(&format!("p{i}")))
            .await
            .expect("majority reads")
            .is_some());
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_cut_off_minority_refuses_writes_its_own_owners_could_acknowledge() {
    // Nodes 0 and 1 are cut off from the other three. Keys that 0 and 1 both own could get a
    // write quorum (W = 2) on the minority side; the majority removes them after `down_after` and
    // would never see such writes. The minority fence must refuse them first.
    let cluster = Cluster::start(shape(5, 3, 2, 2)).await;
    let shared: Vec<String> = (0..500)
        .map(|i| format!("m{i}"))
        .filter(|k| {
            let owners = cluster.owners(0, k);
            owners.contains(&0) && owners.contains(&1)
        })
        .take(5)
        .collect();
    assert!(!shared.is_empty(), "no key owned by both nodes 0 and 1");
    cluster.isolate(&[0, 1]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cluster.nodes[0].cluster().majority {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 0 never noticed it lost the majority"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for k in &shared {
        let err = cluster.nodes[0]
            .set(key(k), 0, "minority".into())
            .await
            .expect_err("a minority must not acknowledge writes");
        assert!(err.to_string().contains("quorum not reached"), "{err}");
    }
    cluster.filter.heal();
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn without_a_quorum_operations_fail_instead_of_answering_stale() {
    let cluster = Cluster::start(shape(3, 3, 2, 2)).await;
    cluster.nodes[0].set(key("q"), 0, "old".into()).await.expect("set");
    cluster.isolate(&[0]);
    let err = cluster.nodes[0]
        .set(key("q"), 0, "new".into())
        .await
        .expect_err("no write quorum");
    assert!(
        matches!(err, NodeError::Coordinator(CoordinatorError::Quorum(_))),
        "{err}"
    );
    assert!(err.to_string().contains("quorum not reached"), "{err}");
    let err = cluster.nodes[0].get(key("q")).await.expect_err("no read quorum");
    assert!(
        matches!(err, NodeError::Coordinator(CoordinatorError::Quorum(_))),
        "{err}"
    );
    cluster.filter.heal();
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn reads_repair_a_replica_that_missed_writes() {
    let cluster = Cluster::start(shape(3, 3, 2, 2)).await;
    cluster.isolate(&[2]);
    for i in 0..20 {
        cluster.nodes[0]
            .set(key(&format!("r{i}")), 0, "v".into())
            .await
            .expect("set");
    }
    cluster.filter.heal();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cluster.nodes[2].cluster().majority {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 2 did not see the others again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Node 0 now cannot help: a read through node 2 sees its own stale replica and node 1's
    // value, and must write the value back before answering.
    cluster.isolate(&[0]);
    for i in 0..20 {
        let k = format!("r{i}");
        let got = cluster.nodes[2].get(key(&k)).await;
        assert!(
            got.as_ref().is_ok_and(Option::is_some),
            "read of {k} through node 2: {got:?}"
        );
        assert!(
            cluster.nodes[2].local_record(&key(&k)).await.expect("local").is_some(),
            "{k} not repaired"
        );
    }
    assert!(kai_actors::stats::get(&cluster.nodes[2].stats().read_repairs) >= 20);
    cluster.filter.heal();
    cluster.shutdown().await;
}

/// The nemesis: minority/majority partitions, a bridge (two sides that cannot talk, one node that
/// talks to both), one-way loss and slow links come and go while clients run; it returns the
/// faults injected.
async fn nemesis(cluster: &Cluster, duration: Duration) -> usize {
    let n = cluster.nodes.len();
    let end = tokio::time::Instant::now() + duration;
    let mut round = 0usize;
    while tokio::time::Instant::now() < end {
        let a = round % n;
        let b = (round + 1) % n;
        let c = (round + 2) % n;
        match round % 5 {
            0 => cluster.isolate(&[a]),
            1 => cluster.isolate(&[a, b]),
            2 => cluster.filter.partition(&cluster.ids(&[a]), &cluster.ids(&[c])),
            3 => cluster.filter.block(cluster.id(a), cluster.id(b)),
            _ => cluster
                .filter
                .delay(cluster.id(a), cluster.id(b), Duration::from_millis(40)),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        cluster.filter.heal();
        tokio::time::sleep(Duration::from_millis(50)).await;
        round += 1;
    }
    round
}

/// How long nemesis tests run: `KAITEST_NEMESIS_SECS`, default 3 s (long runs: see
/// `docs/reliability.md`).
fn nemesis_duration() -> Duration {
    let secs = std::env::var("KAITEST_NEMESIS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

#[actix_rt::test]
async fn histories_are_linearizable_under_partitions_and_delays() {
    let cluster = Cluster::start(shape(5, 3, 2, 2)).await;
    let duration = nemesis_duration();
    let (history, faults) = tokio::join!(random_workload(&cluster, 8, 3, duration), nemesis(&cluster, duration));
    let ops = history.operations();
    let completed = ops.iter().filter(|o| o.completed.is_some()).count();
    assert!(completed > 200, "too few operations completed: {completed}");
    let wins = ops
        .iter()
        .filter(|o| {
            matches!(
                o.op,
                Op::MetaGet {
                    outcome: Some(MetaGetOutcome::Hit { won: true, .. }),
                    ..
                }
            )
        })
        .count();
    assert!(wins > 0, "no client was handed a recache win");
    if let Err(violation) = check(&ops) {
        panic!("{violation}");
    }
    eprintln!(
        "in-process nemesis: {} operations ({completed} completed, {wins} recache wins), {faults} faults, 0 violations",
        ops.len()
    );
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn the_checker_catches_a_cluster_without_quorum_overlap() {
    // R = W = 1 with N = 3: writes are acknowledged by one replica and reach the others later,
    // so a read through another node can miss a completed write.
    let mut broken = shape(3, 3, 1, 1);
    broken.unchecked = true;
    let cluster = Cluster::start(broken).await;
    for from in 0..3 {
        for to in 0..3 {
            if from != to {
                cluster
                    .filter
                    .delay(cluster.id(from), cluster.id(to), Duration::from_millis(30));
            }
        }
    }
    let history = random_workload(&cluster, 6, 2, Duration::from_secs(2)).await;
    assert!(check(&history.operations()).is_err(), "the checker missed stale reads");
    cluster.filter.heal();
    cluster.shutdown().await;
}

async fn two_nodes_with_secrets(a: Option<&str>, b: Option<&str>) -> Vec<kai_actors::NodeHandle> {
    two_nodes(("kai", a), ("kai", b)).await
}

/// Two nodes listing each other as seeds, each with its `(cluster_name, cluster_secret)`.
async fn two_nodes(a: (&str, Option<&str>), b: (&str, Option<&str>)) -> Vec<kai_actors::NodeHandle> {
    two_nodes_configured([a, b], |_, _| {}).await
}

/// Like [`two_nodes`], with `configure(i, config)` changing node `i`'s configuration.
async fn two_nodes_configured(
    identities: [(&str, Option<&str>); 2],
    configure: impl Fn(usize, &mut kai_actors::NodeConfig),
) -> Vec<kai_actors::NodeHandle> {
    let sockets: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let seeds: Vec<String> = sockets
        .iter()
        .map(|s| s.local_addr().expect("addr").to_string())
        .collect();
    let mut nodes = Vec::new();
    for (i, (socket, (cluster, secret))) in sockets.into_iter().zip(identities).enumerate() {
        let mut config = kai_actors::NodeConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            peer_listen: socket.local_addr().expect("addr"),
            seeds: seeds.clone(),
            n: 2,
            r: 2,
            w: 2,
            store: kai_actors::StoreBackend::Memory,
            request_timeout: common::cluster::TEST_REQUEST_TIMEOUT,
            gossip_interval: common::cluster::GOSSIP_INTERVAL,
            down_after: common::cluster::DOWN_AFTER,
            cluster_name: cluster.to_owned(),
            cluster_secret: secret.map(String::from),
            worker_threads: 1,
            ..kai_actors::NodeConfig::default()
        };
        configure(i, &mut config);
        let node = kai_actors::NodeBuilder::new(config)
            .peer_socket(socket)
            .start()
            .await
            .expect("start");
        nodes.push(node);
    }
    nodes
}

fn peer_connections(node: &kai_actors::NodeHandle) -> u64 {
    kai_actors::stats::get(&node.stats().peer_connections)
}

#[actix_rt::test]
async fn peers_with_the_same_secret_connect_and_others_are_refused() {
    let good = two_nodes_with_secrets(Some("s3cret"), Some("s3cret")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while good.iter().any(|n| peer_connections(n) != 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes sharing a secret did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while good[0].set(key("auth"), 0, "ok".into()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes sharing a secret did not form a cluster"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for node in good {
        node.shutdown().await;
    }

    for (a, b) in [(Some("s3cret"), Some("guess")), (Some("s3cret"), None)] {
        let bad = two_nodes_with_secrets(a, b).await;
        // The nodes cannot talk, so they cannot even form a cluster.
        bad[0]
            .set(key("auth"), 0, "no".into())
            .await
            .expect_err("the other node is refused");
        assert_eq!(bad.iter().map(peer_connections).sum::<u64>(), 0);
        for node in bad {
            node.shutdown().await;
        }
    }
}

#[actix_rt::test]
async fn garbage_on_the_peer_port_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::start(shape(3, 3, 2, 2)).await;
    let target = cluster.nodes[1].peer_addr();
    let payloads: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff; 64],
        &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
        &[0, 0, 0, 9, 0, 1, 1, b'k', 0, 0xfd, 0, 0, 0],
    ];
    for payload in payloads {
        let mut stream = tokio::net::TcpStream::connect(target).await.expect("connect");
        stream.write_all(payload).await.expect("write");
        let mut buf = vec![0u8; 1024];
        // The node answers a refusal (or nothing) and closes the connection.
        let closed = tokio::time::timeout(Duration::from_secs(6), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection left open after {payload:?}");
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        node.set(key(&format!("after-garbage-{i}")), 0, "v".into())
            .await
            .expect("cluster still serves");
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn nodes_of_another_cluster_are_refused() {
    let nodes = two_nodes(("blue", None), ("green", None)).await;
    nodes[0]
        .set(key("cross"), 0, "no".into())
        .await
        .expect_err("a node of another cluster is not a peer");
    assert_eq!(nodes.iter().map(peer_connections).sum::<u64>(), 0);
    for node in nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn peers_that_disagree_on_a_cluster_setting_are_refused() {
    // Several redials (backoff 50 ms doubling) fit in this window.
    const WATCH: Duration = Duration::from_secs(2);
    // Each change keeps a valid quorum (base N:R:W = 3:2:2).
    let changes: [fn(&mut kai_actors::NodeConfig); 5] = [
        |c| c.n = 2,
        |c| c.r = 3,
        |c| c.w = 3,
        |c| c.buckets = 512,
        |c| c.virtual_nodes = 32,
    ];
    for change in changes {
        let nodes = two_nodes_configured([("kai", None), ("kai", None)], |i, config| {
            (config.n, config.r, config.w) = (3, 2, 2);
            if i == 1 {
                change(config);
            }
        })
        .await;
        let deadline = tokio::time::Instant::now() + WATCH;
        while tokio::time::Instant::now() < deadline {
            assert_eq!(
                nodes.iter().map(peer_connections).sum::<u64>(),
                0,
                "nodes that disagree on a setting connected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nodes[0]
            .set(key("mismatch"), 0, "no".into())
            .await
            .expect_err("a node with other settings is not a peer");
        for node in nodes {
            node.shutdown().await;
        }
    }
}
