//! Real partitions between real processes: five `kai` processes in their own network
//! namespaces, packets dropped with iptables — a minority cut off, the cluster split 2/3, a
//! bridge (two nodes that cannot talk while both talk to the rest), one-way loss — while clients
//! record a history that the checker verifies. Needs root (network namespaces); skipped with a
//! notice otherwise. `KAITEST_NETNS_ROUNDS` (default 1) repeats the fault sequence.

mod common;

use common::history::HistoryRun;
use common::netns::NetnsCluster;
use common::wait_until;
use std::time::Duration;

/// How long each fault lasts.
const FAULT: Duration = Duration::from_millis(1500);
/// Pause after healing.
const HEALED: Duration = Duration::from_millis(700);

#[test]
fn histories_are_linearizable_across_real_network_partitions() {
    let Some(cluster) = NetnsCluster::start(5, (3, 2, 2)) else {
        eprintln!("NOTICE: cannot create network namespaces here (needs root); skipping the netns partition test");
        return;
    };
    for i in 0..5 {
        let mut c = cluster.nodes[i].client();
        wait_until(Duration::from_secs(60), "a settled five-node cluster", || {
            let stats = c.stats();
            stats["kai_members"] == "5" && stats["kai_rings_active"] == "1"
        });
    }
    let run = HistoryRun::start(&cluster.addrs(), 10);
    let rounds: usize = std::env::var("KAITEST_NETNS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut faults = 0;
    for round in 0..rounds {
        let a = round % 5;
        let (b, c) = ((a + 1) % 5, (a + 2) % 5);
        let steps: [&dyn Fn(); 4] = [
            &|| cluster.isolate(&[a]),
            &|| cluster.isolate(&[a, b]),
            &|| cluster.cut(a, c),
            &|| cluster.drop_from(a, b),
        ];
        for step in steps {
            step();
            std::thread::sleep(FAULT);
            cluster.heal();
            std::thread::sleep(HEALED);
            faults += 1;
        }
    }
    let summary = run.finish();
    eprintln!("netns partitions: {summary}, {faults} faults, 0 violations");
}
