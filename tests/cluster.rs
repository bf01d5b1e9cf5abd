//! End-to-end: clusters of real `kai` processes on loopback, driven over the memcache protocol.

mod common;

use common::history::HistoryRun;
use common::processes::{ProcessCluster, SETTLE};
use common::wait_until;
use std::net::SocketAddr;
use std::time::Duration;

#[test]
fn memcache_behaviour_is_the_same_through_every_node() {
    let cluster = ProcessCluster::start(3, (3, 2, 2));
    let mut clients: Vec<_> = (0..3).map(|i| cluster.client(i)).collect();
    assert_eq!(clients[0].set_with("k", 7, 0, b"v1\r\nx"), "STORED\r\n");
    for c in &mut clients {
        c.send(b"gets k\r\n");
        let hits = c.values();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].1, hits[0].2.as_slice()), (7, &b"v1\r\nx"[..]));
    }
    let cas: Vec<u64> = clients
        .iter_mut()
        .map(|c| {
            c.send(b"gets k\r\n");
            c.values()[0].3.expect("cas")
        })
        .collect();
    assert!(cas.iter().all(|c| *c == cas[0]), "one version, one cas unique: {cas:?}");
    assert_eq!(clients[1].call("delete k\r\n"), "DELETED\r\n");
    assert_eq!(clients[2].call("delete k\r\n"), "NOT_FOUND\r\n");
    assert_eq!(clients[0].get("k"), None);
    clients[2].send(b"set q 0 0 1 noreply\r\nq\r\n");
    assert_eq!(clients[2].get("q"), Some(b"q".to_vec()));
    assert_eq!(clients[1].call("bogus\r\n"), "ERROR\r\n");
    let stats = clients[0].stats();
    assert_eq!(stats["kai_members"], "3");
    assert_eq!(stats["kai_quorum"], "3:2:2");
    assert_eq!(
        stats["kai_buckets_owned"], "1024",
        "with N = members every node holds every bucket"
    );
}

#[test]
fn a_refused_oversized_set_deletes_the_value_on_the_replicas() {
    let cluster = ProcessCluster::start_with(3, (3, 2, 2), &[("max_value_size", "1000")]);
    let mut clients: Vec<_> = (0..3).map(|i| cluster.client(i)).collect();
    assert_eq!(clients[0].set("session", b"old"), "STORED\r\n");
    assert_eq!(
        clients[1].set("session", &[b'x'; 5000]),
        "SERVER_ERROR object too large for cache\r\n"
    );
    // The refusal wrote a replicated tombstone through the coordinator: no node reads the old
    // value, and the key is already deleted wherever it is deleted again.
    for c in &mut clients {
        assert_eq!(c.get("session"), None);
    }
    assert_eq!(clients[2].call("delete session\r\n"), "NOT_FOUND\r\n");
}

#[test]
fn every_key_has_exactly_n_replicas() {
    let cluster = ProcessCluster::start(4, (3, 2, 2));
    let keys = 300u64;
    for i in 0..keys {
        assert_eq!(
            cluster.client((i % 4) as usize).set(&format!("rep{i}"), b"v"),
            "STORED\r\n"
        );
    }
    let expected = 3 * keys;
    let total = || (0..4).map(|i| cluster.stat(i, "curr_items")).sum::<u64>();
    wait_until(Duration::from_secs(10), "N copies of every key", || {
        let t = total();
        assert!(t <= expected, "more than N copies: {t} > {expected}");
        t == expected
    });
    let owned: u64 = (0..4).map(|i| cluster.stat(i, "kai_buckets_owned")).sum();
    assert_eq!(owned, 3 * 1024, "each bucket is owned by exactly N nodes");
}

#[test]
fn a_killed_node_does_not_stop_the_cluster_and_is_repaired_by_reads() {
    let mut cluster = ProcessCluster::start(3, (3, 2, 2));
    for i in 0..100 {
        assert_eq!(cluster.client(i % 3).set(&format!("d{i}"), b"before"), "STORED\r\n");
    }
    cluster.nodes[2].kill9();
    let mut c0 = cluster.client(0);
    let mut c1 = cluster.client(1);
    for i in 50..150 {
        assert_eq!(
            c0.set(&format!("d{i}"), b"during"),
            "STORED\r\n",
            "write with one node down"
        );
    }
    for i in 0..150 {
        let expected: &[u8] = if i < 50 { b"before" } else { b"during" };
        assert_eq!(
            c1.get(&format!("d{i}")).as_deref(),
            Some(expected),
            "read with one node down"
        );
    }
    cluster.restart(2);
    let mut c2 = cluster.client(2);
    wait_until(Duration::from_secs(20), "reads repair the restarted node", || {
        for i in 0..150 {
            let expected: &[u8] = if i < 50 { b"before" } else { b"during" };
            assert_eq!(c2.get(&format!("d{i}")).as_deref(), Some(expected));
        }
        cluster.stat(2, "curr_items") == 150
    });
    assert!(cluster.stat(2, "kai_read_repairs") > 0);
}

#[test]
fn histories_are_linearizable_while_nodes_are_killed_and_paused() {
    let mut cluster = ProcessCluster::start(3, (3, 2, 2));
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let run = HistoryRun::start(&addrs, 6);
    // Nemesis: pause a node (longer than the request timeout), then kill -9 and restart another.
    // `KAITEST_NEMESIS_ROUNDS` (default 2) sets how many times.
    let rounds: usize = std::env::var("KAITEST_NEMESIS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(500));
        let paused = round % 3;
        cluster.nodes[paused].signal("STOP");
        std::thread::sleep(Duration::from_millis(1200));
        cluster.nodes[paused].signal("CONT");
        std::thread::sleep(Duration::from_millis(500));
        let killed = (round + 1) % 3;
        cluster.nodes[killed].kill9();
        std::thread::sleep(Duration::from_millis(800));
        cluster.nodes[killed].restart();
    }
    std::thread::sleep(Duration::from_millis(500));
    let summary = run.finish();
    eprintln!(
        "process nemesis: {summary}, {} pauses and {} kills, 0 violations",
        rounds, rounds
    );
}

/// Sum of `curr_items` over `nodes`.
fn copies(cluster: &ProcessCluster, nodes: &[usize]) -> u64 {
    nodes.iter().map(|&i| cluster.stat(i, "curr_items")).sum()
}

fn load(cluster: &ProcessCluster, keys: usize) {
    let mut clients: Vec<_> = (0..cluster.nodes.len()).map(|i| cluster.client(i)).collect();
    for i in 0..keys {
        let count = clients.len();
        let c = &mut clients[i % count];
        assert_eq!(c.set(&format!("m{i}"), format!("v{i}").as_bytes()), "STORED\r\n");
    }
}

fn assert_readable(cluster: &ProcessCluster, through: usize, keys: usize) {
    let mut c = cluster.client(through);
    for i in 0..keys {
        assert_eq!(
            c.get(&format!("m{i}")),
            Some(format!("v{i}").into_bytes()),
            "m{i} through node {through}"
        );
    }
}

#[test]
fn a_join_moves_about_one_nth_of_the_data() {
    let mut cluster = ProcessCluster::start(4, (3, 2, 2));
    let keys = 3000u64;
    load(&cluster, keys as usize);
    let joiner = cluster.add_node();
    for i in 0..5 {
        cluster.wait_settled(i, 5);
    }
    let all: Vec<usize> = (0..5).collect();
    wait_until(SETTLE, "old owners to drop what moved", || {
        copies(&cluster, &all) == 3 * keys
    });
    let moved = cluster.stat(joiner, "curr_items") as f64 / (3 * keys) as f64;
    eprintln!(
        "joining the 5th node moved {:.1}% of the copies (ideal {:.1}%)",
        moved * 100.0,
        100.0 / 5.0
    );
    assert!(
        (0.5 / 5.0..=1.25 / 5.0).contains(&moved),
        "moved {moved:.3} of the copies"
    );
    assert_readable(&cluster, joiner, keys as usize);
    assert!(cluster.replicas_converged(&all, 3));
}

#[test]
fn a_killed_node_is_replaced_after_down_after_and_rejoins_when_restarted() {
    let mut cluster = ProcessCluster::start(4, (3, 2, 2));
    let keys = 1000u64;
    load(&cluster, keys as usize);
    cluster.nodes[3].kill9();
    let killed = std::time::Instant::now();
    let live = [0, 1, 2];
    for i in live {
        cluster.wait_settled(i, 3);
    }
    eprintln!(
        "killed node removed and the ring settled {:?} after the kill (down_after {:?})",
        killed.elapsed(),
        common::processes::DOWN_AFTER
    );
    wait_until(SETTLE, "N live copies of every key", || {
        copies(&cluster, &live) == 3 * keys
    });
    assert!(cluster.replicas_converged(&live, 3));
    assert_readable(&cluster, 2, keys as usize);
    // Back again: it rejoins on its own and the four converge.
    cluster.restart(3);
    let all = [0, 1, 2, 3];
    for i in all {
        cluster.wait_settled(i, 4);
    }
    wait_until(SETTLE, "the rejoined node to converge", || {
        copies(&cluster, &all) == 3 * keys && cluster.replicas_converged(&all, 3)
    });
    assert_readable(&cluster, 3, keys as usize);
}

#[test]
fn sixty_four_clients_incrementing_one_key_through_every_node_lose_no_increment() {
    const CLIENTS: usize = 64;
    const EACH: u64 = 20;
    let cluster = ProcessCluster::start(3, (3, 2, 2));
    assert_eq!(cluster.client(0).set("counter", b"0"), "STORED\r\n");
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let mut c = cluster.client(i % 3);
                s.spawn(move || (0..EACH).map(|_| c.call("incr counter 1\r\n")).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    // Every node forwards the key's updates to its one stable proposer, where they queue
    // instead of duelling: every increment is answered, each with its own value.
    let failed: Vec<&String> = replies.iter().filter(|r| r.trim().parse::<u64>().is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} increments failed: {failed:?}",
        failed.len(),
        replies.len()
    );
    let mut numbers: Vec<u64> = replies.iter().filter_map(|r| r.trim().parse().ok()).collect();
    numbers.sort_unstable();
    let expected: Vec<u64> = (1..=CLIENTS as u64 * EACH).collect();
    assert_eq!(numbers, expected, "each increment saw a different value, none lost");
    let counter = CLIENTS as u64 * EACH;
    assert_eq!(cluster.client(0).get("counter"), Some(counter.to_string().into_bytes()));
    for i in 1..3 {
        assert_eq!(
            cluster.client(i).get("counter"),
            Some(counter.to_string().into_bytes()),
            "through node {i}"
        );
    }
}

#[test]
fn of_concurrent_adds_of_one_key_at_most_one_wins_and_every_node_agrees() {
    const CLIENTS: usize = 30;
    let cluster = ProcessCluster::start(3, (3, 2, 2));
    let replies: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let mut c = cluster.client(i % 3);
                s.spawn(move || (i, c.call(&format!("add lock 0 0 {}\r\n{i}\r\n", i.to_string().len()))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    let winners: Vec<usize> = replies
        .iter()
        .filter(|(_, r)| r == "STORED\r\n")
        .map(|(i, _)| *i)
        .collect();
    // The adds queue at the key's stable proposer: exactly one wins, every other one is told
    // NOT_STORED.
    let losers = replies.iter().filter(|(_, r)| r == "NOT_STORED\r\n").count();
    assert_eq!(winners.len(), 1, "one add wins: {replies:?}");
    assert_eq!(losers, CLIENTS - 1, "replies: {replies:?}");
    let value = cluster.client(0).get("lock").expect("the winner's add took effect");
    let holder: usize = String::from_utf8_lossy(&value).parse().expect("a client number");
    assert_eq!(holder, winners[0], "replies: {replies:?}");
    for i in 1..3 {
        assert_eq!(cluster.client(i).get("lock"), Some(value.clone()), "through node {i}");
    }
}

#[test]
fn flush_all_through_one_node_empties_every_node_even_with_one_down() {
    let mut cluster = ProcessCluster::start(4, (3, 2, 2));
    let keys: Vec<String> = (0..200).map(|i| format!("flush{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(cluster.client(i % 4).set(k, b"before"), "STORED\r\n");
    }
    cluster.nodes[3].kill9();
    assert_eq!(cluster.client(1).call("flush_all\r\n"), "OK\r\n");
    let multi_get = format!("get {}\r\n", keys.join(" "));
    for node in 0..3 {
        let mut c = cluster.client(node);
        c.send(multi_get.as_bytes());
        assert_eq!(c.values(), vec![], "node {node} reads nothing stored before the flush");
    }
    assert_eq!(cluster.client(2).set("flush0", b"after"), "STORED\r\n");
    // The node that missed the flush comes back with every old value in its store: reads
    // through it still see the flush (every read quorum meets a replica that holds the mark),
    // and gossip teaches it the mark.
    cluster.restart(3);
    let mut c3 = cluster.client(3);
    wait_until(SETTLE, "node 3 serves reads again", || c3.get("flush0").is_some());
    c3.send(multi_get.as_bytes());
    let values = c3.values();
    assert_eq!(values.len(), 1, "only the write after the flush: {values:?}");
    assert_eq!(
        (values[0].0.as_str(), values[0].2.as_slice()),
        ("flush0", &b"after"[..])
    );
    wait_until(SETTLE, "node 3 learns the flush by gossip", || {
        cluster.nodes[3].log_text().contains("flush mark")
    });
}
