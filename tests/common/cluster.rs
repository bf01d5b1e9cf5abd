//! In-process clusters: several Kai nodes in one Actix system on loopback ephemeral ports, with
//! a shared network filter to drop, delay or partition traffic between chosen nodes.

use super::linearizability::{ArithOutcome, History, MetaGetOutcome, Op, Operation};
use kai_actors::coordinator::{Coordinator, Delete, Get, Set, Update};
use kai_actors::peer::NetworkFilter;
use kai_actors::{NodeBuilder, NodeConfig, NodeHandle, StoreBackend};
use kai_proto::change::meta::{MetaDelete, MetaGet};
use kai_proto::change::{Answer, Change, NewValue};
use kai_proto::{Key, NodeId, RecordBody};
use rand::{Rng, SeedableRng};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// Replica request deadline inside test clusters: short, so partitions fail fast.
pub const TEST_REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
/// Gossip period of test clusters.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// Silence after which test clusters remove a node.
pub const DOWN_AFTER: Duration = Duration::from_secs(2);

/// A running in-process cluster.
pub struct Cluster {
    pub nodes: Vec<NodeHandle>,
    pub filter: NetworkFilter,
    shape: (usize, usize, usize),
    unchecked: bool,
    anti_entropy: bool,
}

/// Shape of a test cluster.
pub struct Shape {
    pub nodes: usize,
    pub n: usize,
    pub r: usize,
    pub w: usize,
    /// Skip the quorum rules (to show what breaks without them).
    pub unchecked: bool,
    /// Run background anti-entropy (off where a test watches read repair alone).
    pub anti_entropy: bool,
}

impl Cluster {
    /// Starts `shape.nodes` nodes with memory stores that list each other as seeds, and waits
    /// until every node reaches every other.
    pub async fn start(shape: Shape) -> Cluster {
        let peer_sockets: Vec<TcpListener> = (0..shape.nodes)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind peer"))
            .collect();
        let seeds: Vec<String> = peer_sockets
            .iter()
            .map(|s| s.local_addr().expect("addr").to_string())
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            filter: NetworkFilter::new(),
            shape: (shape.n, shape.r, shape.w),
            unchecked: shape.unchecked,
            anti_entropy: shape.anti_entropy,
        };
        for socket in peer_sockets {
            let node = cluster.start_node(socket, seeds.clone()).await;
            cluster.nodes.push(node);
        }
        cluster.wait_connected().await;
        cluster
    }

    async fn start_node(&self, socket: TcpListener, seeds: Vec<String>) -> NodeHandle {
        let (n, r, w) = self.shape;
        let config = NodeConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            peer_listen: socket.local_addr().expect("addr"),
            seeds,
            n,
            r,
            w,
            store: StoreBackend::Memory,
            request_timeout: TEST_REQUEST_TIMEOUT,
            gossip_interval: GOSSIP_INTERVAL,
            down_after: DOWN_AFTER,
            anti_entropy_interval: if self.anti_entropy {
                Duration::from_millis(5)
            } else {
                Duration::from_secs(3600)
            },
            tombstone_grace: Duration::from_secs(1),
            worker_threads: 1,
            ..NodeConfig::default()
        };
        let mut builder = NodeBuilder::new(config)
            .peer_socket(socket)
            .network_filter(self.filter.clone());
        if self.unchecked {
            builder = builder.unchecked_quorum();
        }
        builder.start().await.expect("node starts")
    }

    /// Starts one more node that joins through node 0; returns its index.
    pub async fn add_node(&mut self) -> usize {
        let socket = TcpListener::bind("127.0.0.1:0").expect("bind peer");
        let seed = self.nodes[0].peer_addr().to_string();
        let node = self.start_node(socket, vec![seed]).await;
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Waits until each of `observers` has a single settled ring made of exactly `members`.
    pub async fn wait_settled(&self, observers: &[usize], members: &[usize], within: Duration) {
        let mut expected = self.ids(members);
        expected.sort_unstable();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let settled = observers.iter().all(|&i| {
                let placement = self.nodes[i].ring().load();
                placement.rings.len() == 1 && placement.latest().is_some_and(|r| r.nodes() == expected.as_slice())
            });
            if settled {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let views: Vec<Vec<(u64, usize)>> = observers
                    .iter()
                    .map(|&i| {
                        let placement = self.nodes[i].ring().load();
                        placement
                            .rings
                            .iter()
                            .map(|(id, r)| (id.version, r.nodes().len()))
                            .collect()
                    })
                    .collect();
                panic!("no settled ring of {members:?} within {within:?}; views (version, size): {views:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Indexes of the nodes that own `k` in node `observer`'s newest ring.
    pub fn owners(&self, observer: usize, k: &str) -> Vec<usize> {
        let placement = self.nodes[observer].ring().load();
        let bucket = placement.bucket_of(k.as_bytes());
        let owners = placement.latest().expect("a ring").preference_list(bucket).to_vec();
        (0..self.nodes.len())
            .filter(|j| owners.contains(&self.id(*j)))
            .collect()
    }

    /// True if, for every bucket, its owners (in `observer`'s settled ring) hold identical
    /// records (equal digests).
    pub fn digests_agree(&self, observer: usize) -> bool {
        let placement = self.nodes[observer].ring().load();
        let Some(ring) = placement.settled() else {
            return false;
        };
        (0..placement.buckets()).map(kai_proto::BucketId).all(|b| {
            let digests: Vec<_> = ring
                .preference_list(b)
                .iter()
                .filter_map(|id| self.nodes.iter().find(|n| n.id() == *id))
                .map(|n| n.digest(b))
                .collect();
            digests.windows(2).all(|w| w[0] == w[1])
        })
    }

    /// Waits until every node sees a majority (a node's replica refuses requests until it has
    /// had news of a majority) and a write through every node succeeds.
    async fn wait_connected(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for node in &self.nodes {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(node.wait_ready(left).await, "{} never saw a majority", node.name());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            loop {
                let key = key(&format!("probe-{i}"));
                if node.set(key, 0, "x".into()).await.is_ok() {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "cluster did not connect");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Node ids by index.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id()
    }

    /// Ids of the nodes at `indexes`.
    pub fn ids(&self, indexes: &[usize]) -> Vec<NodeId> {
        indexes.iter().map(|&i| self.id(i)).collect()
    }

    /// Cuts `group` off from every other node.
    pub fn isolate(&self, group: &[usize]) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|i| !group.contains(i)).collect();
        self.filter.partition(&self.ids(group), &self.ids(&others));
    }

    /// How many nodes hold a value (not a tombstone) for `k` in their own replica.
    pub async fn replicas_holding(&self, k: &str) -> Vec<usize> {
        let mut holders = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let record = node.local_record(&key(k)).await.expect("local read");
            if matches!(record.map(|r| r.body), Some(RecordBody::Value { .. })) {
                holders.push(i);
            }
        }
        holders
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

/// A key from a string.
pub fn key(k: &str) -> Key {
    Key::new(k.to_owned()).expect("valid key")
}

/// The answer of a read-modify-write through `node`, `None` if its outcome is unknown.
async fn update(node: &actix::Addr<Coordinator>, k: &str, change: Change) -> Option<Answer> {
    match node.send(Update { key: key(k), change }).await {
        Ok(Ok((answer, _))) => Some(answer),
        _ => None,
    }
}

/// A meta `mg` (vivifying a miss if `vivify`) through `node`: what the client is answered, `None`
/// if unknown. As in the meta session, the item shown is the one after the change.
async fn meta_get(node: &actix::Addr<Coordinator>, k: &str, vivify: bool) -> Option<MetaGetOutcome> {
    let change = Change::MetaGet(MetaGet {
        vivify: vivify.then_some(0),
        ..MetaGet::default()
    });
    match node.send(Update { key: key(k), change }).await {
        Ok(Ok((Answer::NotFound, _))) => Some(MetaGetOutcome::Miss),
        Ok(Ok((Answer::Fetched { won }, Some(record)))) => {
            let state = record.state();
            let RecordBody::Value { data, .. } = record.body else {
                return None;
            };
            Some(MetaGetOutcome::Hit {
                value: String::from_utf8_lossy(&data).into_owned(),
                won,
                stale: state.stale,
                win_taken: state.win_sent && !won,
            })
        }
        _ => None,
    }
}

/// Runs `clients` clients for `duration`, each doing random get/set/delete/add/append/incr and
/// the meta protocol's `mg` (with or without `N`) and `md … I` on `keys` keys through a random
/// node, and records everything in the returned history.
pub async fn random_workload(cluster: &Cluster, clients: usize, keys: usize, duration: Duration) -> Arc<History> {
    let history = Arc::new(History::default());
    let coordinators: Vec<actix::Addr<Coordinator>> = cluster.nodes.iter().map(NodeHandle::coordinator).collect();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (history, coordinators) = (Arc::clone(&history), coordinators.clone());
        tasks.push(actix_rt::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64);
            let end = tokio::time::Instant::now() + duration;
            let mut seq: u64 = 0;
            while tokio::time::Instant::now() < end {
                let node = &coordinators[rng.random_range(0..coordinators.len())];
                let k = format!("key-{}", rng.random_range(0..keys));
                let invoked = history.now();
                seq += 1;
                // Numeric and unique per write: a value names its version, and incr applies.
                let unique = ((client as u64 + 1) * 1_000_000_000 + seq).to_string();
                let (op, known) = match rng.random_range(0..23) {
                    0..=8 => {
                        let got = node.send(Get { key: key(&k) }).await;
                        match got {
                            Ok(Ok(record)) => {
                                let value = record.and_then(|r| match r.body {
                                    RecordBody::Value { data, .. } => Some(String::from_utf8_lossy(&data).into_owned()),
                                    RecordBody::Tombstone { .. } => None,
                                });
                                (Op::Get(value), true)
                            }
                            _ => (Op::Get(None), false),
                        }
                    }
                    9..=14 => {
                        let msg = Set {
                            key: key(&k),
                            flags: 0,
                            expires_at: 0,
                            data: unique.clone().into(),
                        };
                        let ok = matches!(node.send(msg).await, Ok(Ok(_)));
                        (Op::Set(unique), ok)
                    }
                    15 | 16 => match node.send(Delete { key: key(&k) }).await {
                        Ok(Ok(existed)) => (Op::Delete(Some(existed)), true),
                        _ => (Op::Delete(None), false),
                    },
                    17 => {
                        let value = NewValue {
                            flags: 0,
                            expires_at: 0,
                            data: unique.clone().into(),
                            ..NewValue::default()
                        };
                        let stored = update(node, &k, Change::Add(value)).await.map(|a| a == Answer::Stored);
                        (Op::Add(unique, stored), stored.is_some())
                    }
                    18 => {
                        let suffix = format!("+{unique}");
                        let change = Change::Append(suffix.clone().into());
                        let stored = update(node, &k, change).await.map(|a| a == Answer::Stored);
                        (Op::Append(suffix, stored), stored.is_some())
                    }
                    19 | 20 => {
                        let vivify = rng.random_bool(0.5);
                        let outcome = meta_get(node, &k, vivify).await;
                        (
                            Op::MetaGet {
                                vivify,
                                recache: false,
                                outcome: outcome.clone(),
                            },
                            outcome.is_some(),
                        )
                    }
                    21 => {
                        let change = Change::MetaDelete(MetaDelete {
                            invalidate: true,
                            ..MetaDelete::default()
                        });
                        let found = match update(node, &k, change).await {
                            Some(Answer::Deleted) => Some(true),
                            Some(Answer::NotFound) => Some(false),
                            _ => None,
                        };
                        (Op::Invalidate(found), found.is_some())
                    }
                    _ => {
                        let outcome = match update(node, &k, Change::Incr(3)).await {
                            Some(Answer::Number(n)) => Some(ArithOutcome::Number(n)),
                            Some(Answer::NotFound) => Some(ArithOutcome::NotFound),
                            Some(Answer::NonNumeric) => Some(ArithOutcome::NonNumeric),
                            _ => None,
                        };
                        (Op::Arith(3, outcome), outcome.is_some())
                    }
                };
                let completed = known.then(|| history.now());
                history.record(Operation {
                    client,
                    key: k,
                    op,
                    invoked,
                    completed,
                });
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    history
}
