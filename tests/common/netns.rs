//! Real `kai` processes, each in its own network namespace, joined by a bridge — so partitions
//! between them are real packet loss (iptables DROP inside the namespaces). Needs root; the
//! caller skips with a notice when [`NetnsCluster::start`] returns `None`.

use super::processes::node_args;
use super::KaiProcess;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

/// Runs a command, returning whether it succeeded.
fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command inside namespace `ns`.
fn in_ns(ns: &str, args: &[&str]) -> bool {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// A cluster of nodes in network namespaces.
pub struct NetnsCluster {
    pub nodes: Vec<KaiProcess>,
    namespaces: Vec<String>,
    ips: Vec<Ipv4Addr>,
    bridge: String,
    _dir: tempfile::TempDir,
}

impl NetnsCluster {
    /// Starts `count` nodes with quorums `(n, r, w)`; `None` if namespaces cannot be made here.
    pub fn start(count: usize, (n, r, w): (usize, usize, usize)) -> Option<NetnsCluster> {
        let tag = std::process::id() % 10_000;
        let subnet = (std::process::id() % 250) as u8;
        let bridge = format!("kb{tag}");
        if !sh(&["ip", "link", "add", &bridge, "type", "bridge"]) {
            return None;
        }
        let mut cluster = NetnsCluster {
            nodes: Vec::new(),
            namespaces: Vec::new(),
            ips: Vec::new(),
            bridge: bridge.clone(),
            _dir: tempfile::tempdir().expect("tempdir"),
        };
        let gateway = format!("10.77.{subnet}.254/24");
        // Hosts running Docker set the FORWARD policy to DROP and filter bridged traffic:
        // let our bridge forward between its ports.
        let ok = sh(&["ip", "addr", "add", &gateway, "dev", &bridge])
            && sh(&["ip", "link", "set", &bridge, "up"])
            && sh(&[
                "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
            ]);
        if !ok {
            return None;
        }
        for i in 1..=count {
            let ns = format!("kn{tag}-{i}");
            let veth = format!("kv{tag}-{i}");
            let ip = Ipv4Addr::new(10, 77, subnet, i as u8);
            cluster.namespaces.push(ns.clone());
            let cidr = format!("{ip}/24");
            let ok = sh(&["ip", "netns", "add", &ns])
                && sh(&[
                    "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ])
                && sh(&["ip", "link", "set", &veth, "master", &bridge, "up"])
                && in_ns(&ns, &["ip", "addr", "add", &cidr, "dev", "eth0"])
                && in_ns(&ns, &["ip", "link", "set", "eth0", "up"])
                && in_ns(&ns, &["ip", "link", "set", "lo", "up"])
                && in_ns(&ns, &["iptables", "-L"]);
            if !ok {
                return None;
            }
            cluster.ips.push(ip);
        }
        let seeds: Vec<String> = cluster.ips.iter().map(|ip| format!("{ip}:11011")).collect();
        let timings = [
            ("gossip_interval", "200ms".to_owned()),
            ("down_after", "30s".to_owned()),
        ];
        for i in 0..count {
            let (listen, peer) = (format!("{}:11211", cluster.ips[i]), format!("{}:11011", cluster.ips[i]));
            let args = node_args(&listen, &peer, &seeds, (n, r, w), &timings);
            let launcher = ["ip", "netns", "exec", cluster.namespaces[i].as_str()];
            let dir = cluster._dir.path().join(format!("node{i}"));
            cluster.nodes.push(KaiProcess::start_via(&launcher, &dir, args));
        }
        Some(cluster)
    }

    /// Client addresses of the nodes.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Drops all packets between node `a` and node `b` (both directions).
    pub fn cut(&self, a: usize, b: usize) {
        self.drop_from(a, b);
        self.drop_from(b, a);
    }

    /// Drops packets node `from` sends to node `to` (one way).
    pub fn drop_from(&self, from: usize, to: usize) {
        let ip = self.ips[to].to_string();
        assert!(in_ns(
            &self.namespaces[from],
            &["iptables", "-A", "OUTPUT", "-d", &ip, "-j", "DROP"]
        ));
    }

    /// Cuts `group` off from every other node.
    pub fn isolate(&self, group: &[usize]) {
        for &a in group {
            for b in (0..self.nodes.len()).filter(|b| !group.contains(b)) {
                self.cut(a, b);
            }
        }
    }

    /// Removes every rule.
    pub fn heal(&self) {
        for ns in &self.namespaces {
            assert!(in_ns(ns, &["iptables", "-F"]));
        }
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        for ns in &self.namespaces {
            sh(&["ip", "netns", "del", ns]);
        }
        sh(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ]);
        sh(&["ip", "link", "del", &self.bridge]);
    }
}
