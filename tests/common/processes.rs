//! Clusters of real `kai` processes on loopback.

use super::{reserve_port, wait_until, Client, KaiProcess};
use std::collections::BTreeMap;
use std::time::Duration;

/// Gossip period of test clusters.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);
/// Silence after which test clusters remove a node.
pub const DOWN_AFTER: Duration = Duration::from_secs(3);
/// Longest a membership change may take to settle in tests.
pub const SETTLE: Duration = Duration::from_secs(60);

/// A cluster of `kai` processes with fixed ports (so a restarted node keeps its identity).
pub struct ProcessCluster {
    pub nodes: Vec<KaiProcess>,
    peer_ports: Vec<u16>,
    quorum: (usize, usize, usize),
    extra: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

/// `kai start` arguments of a test cluster node: its addresses, the cluster's seeds and quorums,
/// a short request timeout, then `settings` (which may override).
pub fn node_args(
    listen: &str,
    peer: &str,
    seeds: &[String],
    (n, r, w): (usize, usize, usize),
    settings: &[(&str, String)],
) -> Vec<String> {
    let base = [
        ("seeds", seeds.join(",")),
        ("n", n.to_string()),
        ("r", r.to_string()),
        ("w", w.to_string()),
        ("request_timeout", "500ms".to_owned()),
    ];
    let mut args = vec![
        "--listen".to_owned(),
        listen.to_owned(),
        "--peer-listen".to_owned(),
        peer.to_owned(),
    ];
    for (key, value) in base.into_iter().chain(settings.iter().map(|(k, v)| (*k, v.clone()))) {
        args.push("--set".to_owned());
        args.push(format!("{key}={value}"));
    }
    args
}

impl ProcessCluster {
    /// Starts `count` nodes listing each other as seeds, with quorums `(n, r, w)`, and waits until
    /// they form one settled cluster.
    pub fn start(count: usize, quorum: (usize, usize, usize)) -> ProcessCluster {
        Self::start_with(count, quorum, &[])
    }

    /// Like [`ProcessCluster::start`], with extra `--set` settings for every node.
    pub fn start_with(count: usize, quorum: (usize, usize, usize), extra: &[(&str, &str)]) -> ProcessCluster {
        Self::launch(count, quorum, extra, &[])
    }

    /// Starts `count` nodes like [`ProcessCluster::start`], node `i` behind `launchers[i]` (a
    /// command prefix such as `env VAR=…`; empty for none).
    pub fn start_via(count: usize, quorum: (usize, usize, usize), launchers: &[Vec<String>]) -> ProcessCluster {
        Self::launch(count, quorum, &[], launchers)
    }

    fn launch(
        count: usize,
        quorum: (usize, usize, usize),
        extra: &[(&str, &str)],
        launchers: &[Vec<String>],
    ) -> ProcessCluster {
        let mut cluster = ProcessCluster {
            nodes: Vec::new(),
            peer_ports: (0..count).map(|_| reserve_port()).collect(),
            quorum,
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let seeds: Vec<String> = cluster.peer_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        for i in 0..count {
            let launcher: Vec<&str> = launchers
                .get(i)
                .map(|l| l.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let node = cluster.spawn_via(i, &seeds, &launcher);
            cluster.nodes.push(node);
        }
        for i in 0..count {
            cluster.wait_settled(i, count);
        }
        cluster
    }

    fn spawn(&self, i: usize, seeds: &[String]) -> KaiProcess {
        self.spawn_via(i, seeds, &[])
    }

    fn spawn_via(&self, i: usize, seeds: &[String], launcher: &[&str]) -> KaiProcess {
        let listen = format!("127.0.0.1:{}", reserve_port());
        let peer = format!("127.0.0.1:{}", self.peer_ports[i]);
        let extra: Vec<(&str, String)> = [
            ("gossip_interval", format!("{}ms", GOSSIP_INTERVAL.as_millis())),
            ("down_after", format!("{}ms", DOWN_AFTER.as_millis())),
        ]
        .into_iter()
        .chain(self.extra.iter().map(|(k, v)| (k.as_str(), v.clone())))
        .collect();
        let args = node_args(&listen, &peer, seeds, self.quorum, &extra);
        KaiProcess::start_via(launcher, &self.dir.path().join(format!("node{i}")), args)
    }

    /// Starts one more node that joins through node 0; returns its index.
    pub fn add_node(&mut self) -> usize {
        self.peer_ports.push(reserve_port());
        let i = self.peer_ports.len() - 1;
        let node = self.spawn(i, &[format!("127.0.0.1:{}", self.peer_ports[0])]);
        self.nodes.push(node);
        i
    }

    /// Waits until node `i` has one settled ring of `members` nodes, sees a majority of it (its
    /// replica refuses requests until then), is connected to all of them (from each of its worker
    /// threads), and its store serves (not new or refilling).
    pub fn wait_settled(&self, i: usize, members: usize) {
        let threads = self.stat(i, "threads");
        wait_until(SETTLE, "a node in a settled cluster of the expected size", || {
            let stats = self.client(i).stats();
            let stat = |name: &str| stats[name].parse::<u64>().expect("numeric stat");
            stat("kai_members") == members as u64
                && stat("kai_rings_active") == 1
                && stat("kai_majority") == 1
                && stat("kai_peer_connections") >= (members as u64 - 1) * threads
                && stats.get("kai_sync_refilling").is_none_or(|v| v == "0")
        });
    }

    /// Restarts node `i` (after `kill9` or `terminate`) and waits until it is settled again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_settled(i, self.nodes.len());
    }

    /// The nodes' peer addresses (`host:port`), as seeds for another node.
    pub fn peer_addrs(&self) -> Vec<String> {
        self.peer_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// A client of node `i`.
    pub fn client(&self, i: usize) -> Client {
        self.nodes[i].client()
    }

    /// A numeric stat of node `i`.
    pub fn stat(&self, i: usize, name: &str) -> u64 {
        self.client(i).stats()[name].parse().expect("numeric stat")
    }

    /// True if, among `nodes`, every bucket is owned by exactly `n` of them and all owners of a
    /// bucket report the same digest root (they hold the same records).
    pub fn replicas_converged(&self, nodes: &[usize], n: usize) -> bool {
        let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for &i in nodes {
            for (bucket, root) in self.client(i).stats_group("buckets") {
                roots.entry(bucket).or_default().push(root);
            }
        }
        roots
            .values()
            .all(|r| r.len() == n && r.windows(2).all(|w| w[0] == w[1]))
    }
}
