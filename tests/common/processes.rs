//! Clusters of real `kai` processes on loopback.

use super::{reserve_port, wait_until, Client, KaiProcess};
use std::time::Duration;

/// Gossip period of test clusters.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);
/// Silence after which test clusters remove a node.
pub const DOWN_AFTER: Duration = Duration::from_secs(3);

/// A cluster of `kai` processes with fixed ports (so a restarted node keeps its identity).
pub struct ProcessCluster {
    pub nodes: Vec<KaiProcess>,
    _dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts `count` nodes listing each other as seeds, with quorums `(n, r, w)`, and waits until
    /// every node can write through a quorum.
    pub fn start(count: usize, (n, r, w): (usize, usize, usize)) -> ProcessCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let peer_ports: Vec<u16> = (0..count).map(|_| reserve_port()).collect();
        let client_ports: Vec<u16> = (0..count).map(|_| reserve_port()).collect();
        let seeds = peer_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..count)
            .map(|i| {
                let args = vec![
                    "--listen".to_owned(),
                    format!("127.0.0.1:{}", client_ports[i]),
                    "--peer-listen".to_owned(),
                    format!("127.0.0.1:{}", peer_ports[i]),
                    "--set".to_owned(),
                    format!("seeds={seeds}"),
                    "--set".to_owned(),
                    format!("n={n}"),
                    "--set".to_owned(),
                    format!("r={r}"),
                    "--set".to_owned(),
                    format!("w={w}"),
                    "--set".to_owned(),
                    "request_timeout=500ms".to_owned(),
                    "--set".to_owned(),
                    format!("gossip_interval={}ms", GOSSIP_INTERVAL.as_millis()),
                    "--set".to_owned(),
                    format!("down_after={}ms", DOWN_AFTER.as_millis()),
                ];
                KaiProcess::start_with_args(&dir.path().join(format!("node{i}")), args)
            })
            .collect();
        let cluster = ProcessCluster { nodes, _dir: dir };
        for i in 0..count {
            cluster.wait_connected(i);
        }
        cluster
    }

    /// Waits until node `i` knows the whole settled cluster and is connected to every other
    /// node (from each of its worker threads).
    pub fn wait_connected(&self, i: usize) {
        let count = self.nodes.len() as u64;
        let expected = (count - 1) * self.stat(i, "threads");
        wait_until(
            Duration::from_secs(30),
            "a node in the settled cluster, connected to all",
            || {
                self.stat(i, "kai_peer_connections") == expected
                    && self.stat(i, "kai_members") == count
                    && self.stat(i, "kai_rings_active") == 1
            },
        );
    }

    /// Restarts node `i` (after `kill9` or `terminate`) and waits until it is connected again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_connected(i);
    }

    /// A client of node `i`.
    pub fn client(&self, i: usize) -> Client {
        self.nodes[i].client()
    }

    /// A numeric stat of node `i`.
    pub fn stat(&self, i: usize, name: &str) -> u64 {
        self.client(i).stats()[name].parse().expect("numeric stat")
    }
}
