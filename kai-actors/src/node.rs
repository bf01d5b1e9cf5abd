//! Starting and stopping a node inside a running Actix system.
//!
//! [`NodeBuilder::start`] wires the actors together — Store pool, Ring, one Coordinator per worker
//! thread, Peer actors and the peer listener, the client Listener — and returns a [`NodeHandle`].
//! It never creates a `System` or calls `run()`, so an application can embed a node in its own
//! Actix system; the `kai` binary is one such application.
//!
//! Membership is dynamic: the Membership actor learns the cluster from the `seeds` by gossip
//! (nodes that all start fresh with the same seeds form a new cluster of exactly those nodes).

use crate::config::{NodeConfig, Seed, StoreBackend};
use crate::coordinator::{ClusterLink, Coordinator, CoordinatorCore, CoordinatorError, Delete, Get, Set};
use crate::fence::Fence;
use crate::flush::Flushes;
use crate::listener::{Connections, Listener, SessionShared, Worker};
use crate::membership::persist::{self, Persisted};
use crate::membership::{ClusterStatus, Leave, Membership, MembershipConfig, MembershipParts, StatusReader};
use crate::peer::{LocalIdentity, NetworkFilter, PeerDirectory, PeerListener, PeerSettings, Services};
use crate::proposers::Proposers;
use crate::quorum::TagClock;
use crate::replica::{LocalReplica, Replicas};
use crate::report::NodeInfo;
use crate::ring::{RingActor, RingReader};
use crate::shutdown::Shutdown;
use crate::stats::NodeStats;
use crate::store::{MemStore, RocksStore, Store, StoreError, StoreHandle};
use crate::sync::gate::{GateReader, SyncGate};
use crate::sync::progress::{Progress, ProgressError, ProgressFile};
use crate::sync::serve::SyncServer;
use crate::sync::{ReportTo, SyncActor, SyncConfig};
use crate::tls::{ClientTls, PeerTls, TlsError};
use crate::ConfigError;
use actix::{Actor, Addr, Arbiter, ArbiterHandle, MailboxError};
use bytes::Bytes;
use kai_proto::auth::AuthFile;
use kai_proto::cluster::RingMember;
use kai_proto::memcache::Limits;
use kai_proto::peer::{Credentials, FlushService, GossipService, ReplicaService, SyncService, UpdateService};
use kai_proto::{BucketId, Key, NodeId, Record, Tag, WriterId};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// How often [`NodeHandle::wait_ready`] looks.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// File in `data_dir` where the node remembers its cluster.
const CLUSTER_STATE_FILE: &str = "cluster.json";
/// This node's transition progress and data-dir identity, in the data directory.
const PROGRESS_FILE: &str = "progress.json";
/// The RocksDB store, in the data directory.
const STORE_DIR: &str = "store";
/// A file RocksDB keeps in every store it created: its absence means the store is new.
const ROCKSDB_MARKER: &str = "CURRENT";

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store could not be opened (another node may be using the same `data_dir`).
    #[error("cannot open the store in {path}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// The cause.
        source: StoreError,
    },
    /// The saved cluster state could not be read.
    #[error("cannot read the saved cluster state: {0}")]
    ClusterState(String),
    /// The saved transition progress could not be read or written.
    #[error(transparent)]
    Progress(#[from] ProgressError),
    /// The `auth_file` could not be read or is malformed.
    #[error("cannot use auth_file {path}: {reason}")]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never its contents).
        reason: String,
    },
    /// A TLS file (`tls_*`, `peer_tls_*`) is missing, unreadable or malformed, or a key does not
    /// match its certificate.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} (config key `{key}`)")]
    Bind {
        /// The config key of the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why an operation through a [`NodeHandle`] failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The operation failed in the cluster.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The node is shutting down.
    #[error("node is shutting down")]
    Stopped(#[from] MailboxError),
}

/// Builds and starts a node.
pub struct NodeBuilder {
    config: NodeConfig,
    client_socket: Option<std::net::TcpListener>,
    peer_socket: Option<std::net::TcpListener>,
    filter: Option<NetworkFilter>,
    check_quorum: bool,
}

impl NodeBuilder {
    /// A node configured by `config`.
    pub fn new(config: NodeConfig) -> Self {
        NodeBuilder {
            config,
            client_socket: None,
            peer_socket: None,
            filter: None,
            check_quorum: true,
        }
    }

    /// Serve memcache clients on this already-bound socket instead of binding `listen`.
    pub fn client_socket(mut self, socket: std::net::TcpListener) -> Self {
        self.client_socket = Some(socket);
        self
    }

    /// Serve peers on this already-bound socket instead of binding `peer_listen`.
    pub fn peer_socket(mut self, socket: std::net::TcpListener) -> Self {
        self.peer_socket = Some(socket);
        self
    }

    /// Route this node's requests to peers through `filter` (fault-injection tests).
    pub fn network_filter(mut self, filter: NetworkFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Skip the quorum rules (`R + W > N`, `W > N/2`). Only for demonstrating, in tests, what
    /// breaks without them: such a node is not linearizable.
    pub fn unchecked_quorum(mut self) -> Self {
        self.check_quorum = false;
        self
    }

    /// Starts the node. Must be called inside a running Actix system.
    pub async fn start(self) -> Result<NodeHandle, StartError> {
        let NodeBuilder {
            config,
            client_socket,
            peer_socket,
            filter,
            check_quorum,
        } = self;
        if check_quorum {
            config.validate_quorum()?;
        }
        config.validate_rest()?;
        let auth = load_auth_file(config.auth_file.as_deref())?;
        let client_tls = ClientTls::from_config(&config)?;
        let peer_tls = PeerTls::from_config(&config)?;
        let peer_socket = bind("peer_listen", config.peer_listen, peer_socket)?;
        let peer_addr = local_addr("peer_listen", config.peer_listen, &peer_socket)?;
        let client_socket = bind("listen", config.listen, client_socket)?;
        let client_addr = local_addr("listen", config.listen, &client_socket)?;

        let name = config.node_name(peer_addr);
        let me = Arc::new(LocalIdentity {
            id: NodeId::from_name(&name),
            name: name.clone(),
            advertise: config.advertised_address(peer_addr),
            credentials: Credentials::new(
                &config.cluster_name,
                config.cluster_settings(),
                config.cluster_secret.as_deref(),
            ),
            tls: peer_tls,
        });
        let seeds: Vec<Seed> = config
            .seed_list()?
            .into_iter()
            .filter(|s| NodeId::from_name(&s.name) != me.id && s.addr != me.advertise)
            .collect();

        let LocalState {
            store,
            flushes,
            state_file,
            saved,
            progress_file,
            progress,
        } = LocalState::open(&config).await?;
        // The fence never serves a ring older than the newest one any earlier run adopted.
        let fence = Arc::new(Fence::new(progress.adopted));
        let data_id = progress.data_id;
        let gate = GateReader::default();
        let stats = Arc::new(NodeStats::default());
        let threads = config.effective_worker_threads();
        let workers: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let lanes: Vec<ArbiterHandle> = workers.iter().map(Arbiter::handle).collect();
        let max_frame = config.max_frame();
        let peers = PeerDirectory::default();
        let peer_settings = Arc::new(PeerSettings::new(Arc::clone(&me), &config, filter, Arc::clone(&stats)));

        let shutdown = Shutdown::default();
        let sync_parts = (store.clone(), Arc::clone(&fence), Arc::clone(&gate));
        let sync_peers = (peers.clone(), progress_file, progress);
        let sync_stats = Arc::clone(&stats);
        let sync = SyncActor::create(|ctx| {
            shutdown.stop_on(ctx);
            SyncActor::new(me.id, SyncConfig::from(&config), sync_parts, sync_peers, sync_stats)
        });
        // The Ring actor hands every placement it publishes to Sync.
        let (ring_actor, ring) = RingActor::new(config.buckets, config.virtual_nodes, config.n);
        let ring_actor = ring_actor.notify(sync.clone().recipient()).start();
        let status = StatusReader::default();
        let (left_tx, left) = watch::channel(false);
        let membership_parts = MembershipParts {
            peers: peers.clone(),
            peer_settings,
            lanes: lanes.clone(),
            ring: ring_actor,
            sync: sync.clone(),
            fence: Arc::clone(&fence),
            status: Arc::clone(&status),
            left: left_tx,
            flushes: Arc::clone(&flushes),
        };
        let membership = Membership::create(|ctx| {
            shutdown.stop_on(ctx);
            let member = RingMember {
                id: me.id,
                name: name.clone(),
                addr: me.advertise.clone(),
            };
            let membership_config = MembershipConfig::new(&config, member, seeds, (state_file, data_id));
            Membership::new(membership_config, saved, membership_parts)
        });
        sync.do_send(ReportTo(membership.clone()));

        let replica = LocalReplica::new(
            store.clone(),
            Arc::clone(&fence),
            Arc::clone(&flushes),
            Arc::clone(&stats),
        );
        let peer_socket = tokio::net::TcpListener::from_std(peer_socket).map_err(|source| StartError::Bind {
            key: "peer_listen",
            addr: config.peer_listen,
            source,
        })?;

        let link = ClusterLink {
            learn: membership.clone().recipient(),
            status: Arc::clone(&status),
        };
        let replicas = (me.id, replica.clone(), peers.clone());
        let worker_handles = start_coordinators(&config, &lanes, replicas, (ring.clone(), link), &stats);
        // Each subsystem serves its part of the peer protocol.
        let mut services = Services::new();
        services
            .register::<ReplicaService>(replica.clone())
            .register::<FlushService>(replica)
            .register::<GossipService>(membership.clone())
            .register::<SyncService>(SyncServer {
                store: store.clone(),
                gate: SyncGate {
                    fence: Arc::clone(&fence),
                    view: gate,
                },
                stats: Arc::clone(&stats),
            })
            .register::<UpdateService>(Proposers::new(
                worker_handles
                    .iter()
                    .map(|w| w.coordinator.clone().recipient())
                    .collect(),
            ));
        PeerListener::create(|ctx| {
            shutdown.stop_on(ctx);
            PeerListener::new(
                peer_socket,
                lanes.clone(),
                Arc::clone(&me),
                Arc::new(services),
                max_frame,
            )
        });
        let coordinator = worker_handles[0].coordinator.clone();
        let shared = Arc::new(SessionShared {
            stats: Arc::clone(&stats),
            info: NodeInfo {
                name: name.clone(),
                id: me.id,
                quorum: (config.n, config.r, config.w),
                threads,
                max_connections: config.max_connections,
                max_value_size: config.max_value_size,
                data_dir: config.data_dir.clone(),
                listen: client_addr,
                store: store.clone(),
                ring: ring.clone(),
                cluster: Arc::clone(&status),
                membership: membership.clone(),
            },
            limits: Limits {
                max_value_size: config.max_value_size,
                ..Limits::default()
            },
            expiry: config.expiry,
            connections: Connections::default(),
            auth,
        });
        let client_socket = tokio::net::TcpListener::from_std(client_socket).map_err(|source| StartError::Bind {
            key: "listen",
            addr: config.listen,
            source,
        })?;
        let info = shared.info.clone();
        let tls = (client_tls.is_some(), me.tls.is_some());
        Listener::create(|ctx| {
            shutdown.stop_on(ctx);
            Listener::new(
                client_socket,
                worker_handles,
                shared,
                config.max_connections,
                client_tls,
            )
        });
        log::info!(
            "node {name} ({}) serving memcache{} on {client_addr}, peers{} on {peer_addr}; N:R:W = {}:{}:{}, store {}",
            me.id,
            if tls.0 { " over TLS" } else { "" },
            if tls.1 { " over mutual TLS" } else { "" },
            config.n,
            config.r,
            config.w,
            store.backend()
        );
        Ok(NodeHandle {
            info,
            id: me.id,
            name,
            client_addr,
            peer_addr,
            coordinator,
            shutdown,
            membership,
            workers,
            store,
            ring,
            stats,
            status,
            left,
        })
    }
}

/// One Coordinator per worker thread, sharing the node's tag clock and update locks; each
/// reaches other nodes through its own thread's Peer actors.
fn start_coordinators(
    config: &NodeConfig,
    lanes: &[ArbiterHandle],
    (me, replica, peers): (NodeId, LocalReplica, PeerDirectory),
    (ring, link): (RingReader, ClusterLink),
    stats: &Arc<NodeStats>,
) -> Vec<Worker> {
    let clock = Arc::new(TagClock::new(WriterId::new(me, rand::random())));
    let update_locks = Arc::new(crate::coordinator::UpdateLocks::default());
    lanes
        .iter()
        .enumerate()
        .map(|(lane, arbiter)| {
            let core = CoordinatorCore::new(
                Replicas::new(me, replica.clone(), peers.clone(), lane),
                ring.clone(),
                Arc::clone(&clock),
                Some(link.clone()),
                (config.r, config.w),
                config.request_timeout,
                Arc::clone(stats),
            )
            .with_update_locks(Arc::clone(&update_locks));
            Worker {
                arbiter: arbiter.clone(),
                coordinator: Coordinator::start_in_arbiter(arbiter, move |_| Coordinator::new(Arc::new(core))),
            }
        })
        .collect()
}

/// The users of `auth_file`, if one is configured (read once, at start).
fn load_auth_file(path: Option<&std::path::Path>) -> Result<Option<Arc<AuthFile>>, StartError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let error = |reason: String| StartError::AuthFile {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let users = AuthFile::parse(&text).map_err(|e| error(e.to_string()))?;
    Ok(Some(Arc::new(users)))
}

/// `socket` if given, else a fresh non-blocking socket bound to `addr`.
fn bind(
    key: &'static str,
    addr: SocketAddr,
    socket: Option<std::net::TcpListener>,
) -> Result<std::net::TcpListener, StartError> {
    let bound = match socket {
        Some(socket) => socket,
        None => std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { key, addr, source })?,
    };
    bound
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind { key, addr, source })?;
    Ok(bound)
}

fn local_addr(key: &'static str, addr: SocketAddr, socket: &std::net::TcpListener) -> Result<SocketAddr, StartError> {
    socket
        .local_addr()
        .map_err(|source| StartError::Bind { key, addr, source })
}

/// Starts a node from `config` with default options. Must be called inside a running Actix system.
pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
    NodeBuilder::new(config).start().await
}

/// What a node keeps in its data directory, opened at start.
struct LocalState {
    store: StoreHandle,
    flushes: Arc<Flushes>,
    /// Where the cluster view is remembered (`None` for the memory store: nothing persists).
    state_file: Option<PathBuf>,
    saved: Persisted,
    progress_file: ProgressFile,
    progress: Progress,
}

impl LocalState {
    async fn open(config: &NodeConfig) -> Result<LocalState, StartError> {
        let durable = config.store == StoreBackend::Rocksdb;
        let store_is_new = !durable || !config.data_dir.join(STORE_DIR).join(ROCKSDB_MARKER).exists();
        let store = StoreHandle::start(open_store(config).await?, config.store_threads, !config.fsync);
        let flushes = Flushes::open(store.clone(), config.request_timeout).map_err(|source| StartError::Store {
            path: config.data_dir.join(STORE_DIR),
            source,
        })?;
        let state_file = durable.then(|| config.data_dir.join(CLUSTER_STATE_FILE));
        let saved = match &state_file {
            Some(path) => persist::load(path).map_err(|e| StartError::ClusterState(e.to_string()))?,
            None => Persisted::default(),
        };
        let (progress_file, progress) =
            ProgressFile::open(durable.then(|| config.data_dir.join(PROGRESS_FILE)), store_is_new)?;
        Ok(LocalState {
            store,
            flushes,
            state_file,
            saved,
            progress_file,
            progress,
        })
    }
}

async fn open_store(config: &NodeConfig) -> Result<Arc<dyn Store>, StartError> {
    if config.store == StoreBackend::Memory {
        return Ok(Arc::new(MemStore::new(config.buckets)));
    }
    let dir = config.data_dir.join(STORE_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let (fsync, buckets) = (config.fsync, config.buckets);
    let open_dir = dir.clone();
    let opened = tokio::task::spawn_blocking(move || RocksStore::open(&open_dir, fsync, buckets))
        .await
        .unwrap_or(Err(StoreError::Unavailable));
    match opened {
        Ok(store) => Ok(Arc::new(store)),
        Err(source) => Err(StartError::Store { path: dir, source }),
    }
}

/// A running node.
pub struct NodeHandle {
    info: NodeInfo,
    id: NodeId,
    name: String,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    coordinator: Addr<Coordinator>,
    shutdown: Shutdown,
    membership: Addr<Membership>,
    workers: Vec<Arbiter>,
    store: StoreHandle,
    ring: RingReader,
    stats: Arc<NodeStats>,
    status: StatusReader,
    left: watch::Receiver<bool>,
}

impl NodeHandle {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the memcache listener is bound to.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The address the peer listener is bound to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// A coordinator to send [`Get`], [`Set`] and [`Delete`] messages to.
    pub fn coordinator(&self) -> Addr<Coordinator> {
        self.coordinator.clone()
    }

    /// The node's counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// The node's counters, to read from other threads (an admin endpoint).
    pub fn shared_stats(&self) -> Arc<NodeStats> {
        Arc::clone(&self.stats)
    }

    /// Static facts about the node and handles to its live state (ring, membership, store), for
    /// reports; [`NodeInfo::leave`] asks the node to leave. Drop every copy before
    /// [`NodeHandle::shutdown`]: the store closes only once no one else holds it.
    pub fn info(&self) -> NodeInfo {
        self.info.clone()
    }

    /// The current ring.
    pub fn ring(&self) -> RingReader {
        self.ring.clone()
    }

    /// This node's view of the cluster.
    pub fn cluster(&self) -> Arc<ClusterStatus> {
        self.status.load_full()
    }

    /// The segment digests of this node's replica of `bucket` (for inspection).
    pub fn digest(&self, bucket: BucketId) -> crate::store::merkle::BucketDigest {
        self.store.digest(bucket)
    }

    /// Asks the node to leave the cluster: it hands its buckets off, then [`NodeHandle::left`]
    /// resolves.
    pub fn leave(&self) {
        self.membership.do_send(Leave);
    }

    /// Waits (up to `timeout`) until the node serves: it knows its cluster and sees a majority of
    /// it. A fresh single node founds its cluster at once; a joining node takes a gossip round.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let cluster = self.status.load();
            if !self.ring.load().rings.is_empty() && cluster.majority {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Resolves once the node has left the cluster (after [`NodeHandle::leave`]).
    pub async fn left(&self) {
        let mut left = self.left.clone();
        let _ = left.wait_for(|gone| *gone).await;
    }

    /// The record this node's own replica holds for `key` (no quorum; for inspection).
    pub async fn local_record(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let bucket = self.ring.load().bucket_of(key.as_bytes());
        self.store.get(bucket, key.to_bytes()).await
    }

    /// The latest live value of `key` in the cluster.
    pub async fn get(&self, key: Key) -> Result<Option<Record>, NodeError> {
        Ok(self.coordinator.send(Get { key }).await??)
    }

    /// Stores `data` under `key` (no expiry); returns the version written.
    pub async fn set(&self, key: Key, flags: u32, data: Bytes) -> Result<Tag, NodeError> {
        let msg = Set {
            key,
            flags,
            expires_at: 0,
            data,
        };
        Ok(self.coordinator.send(msg).await??)
    }

    /// Deletes `key`; true if a live value was deleted.
    pub async fn delete(&self, key: Key) -> Result<bool, NodeError> {
        Ok(self.coordinator.send(Delete { key }).await??)
    }

    /// Stops accepting clients and peers (one [`Shutdown`] signal stops the listeners, Membership
    /// and Sync), stops the worker threads, then flushes and closes the store.
    ///
    /// Returns once the store is closed (every actor that used it has stopped), so a process can
    /// exit right after: RocksDB must not be closed by a thread that outlives `main`.
    pub async fn shutdown(self) {
        let NodeHandle {
            name,
            info,
            shutdown,
            workers,
            store,
            ..
        } = self;
        // It holds the store too: the store closes once it is the last user.
        drop(info);
        shutdown.trigger();
        for worker in &workers {
            worker.stop();
        }
        store.close().await;
        log::info!("node {name} stopped");
    }
}
