//! Starting and stopping a node inside a running Actix system.
//!
//! [`start`] wires the actors together — Store pool, Ring, one Coordinator per worker thread,
//! Listener — and returns a [`NodeHandle`]. It never creates a `System` or calls `run()`, so an
//! application can embed a node in its own Actix system; the `kai` binary is one such application.

use crate::config::{NodeConfig, StoreBackend};
use crate::coordinator::{Coordinator, CoordinatorCore, CoordinatorError, Delete, Get, Set};
use crate::listener::{Listener, SessionShared, StopListening, Worker};
use crate::replica::Replicas;
use crate::ring::{RingActor, RingReader};
use crate::stats::{NodeInfo, NodeStats};
use crate::store::{MemStore, RocksStore, Store, StoreError, StoreHandle};
use crate::ConfigError;
use actix::{Actor, Addr, Arbiter, MailboxError};
use bytes::Bytes;
use kai_proto::memcache::Limits;
use kai_proto::{Key, NodeId, Record, Tag};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store could not be opened (another node may be using the same `data_dir`).
    #[error("cannot open the store in {path}: {source}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// The cause.
        source: StoreError,
    },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} (config key `{key}`): {source}")]
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

/// A running node.
pub struct NodeHandle {
    id: NodeId,
    name: String,
    client_addr: SocketAddr,
    coordinator: Addr<Coordinator>,
    listener: Addr<Listener>,
    workers: Vec<Arbiter>,
    store: StoreHandle,
    ring: RingReader,
    stats: Arc<NodeStats>,
}

/// Starts a node from `config`. Must be called inside a running Actix system.
pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
    config.validate()?;
    let name = config.node_name();
    let id = NodeId::from_name(&name);
    let store = open_store(&config).await?;
    let store = StoreHandle::start(store, config.store_threads);
    let (ring_actor, ring) = RingActor::new(&[id], config.buckets, config.virtual_nodes, config.n);
    ring_actor.start();
    let stats = Arc::new(NodeStats::default());
    let core = Arc::new(CoordinatorCore::new(
        Replicas::new(id, store.clone()),
        ring.clone(),
        (config.r, config.w),
        config.request_timeout,
        Arc::clone(&stats),
    ));
    let threads = config.effective_worker_threads();
    let workers: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let worker_handles: Vec<Worker> = workers
        .iter()
        .map(|arbiter| {
            let core = Arc::clone(&core);
            Worker {
                arbiter: arbiter.handle(),
                coordinator: Coordinator::start_in_arbiter(&arbiter.handle(), move |_| {
                    Coordinator::new(core)
                }),
            }
        })
        .collect();
    let coordinator = worker_handles[0].coordinator.clone();
    let socket = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            key: "listen",
            addr: config.listen,
            source,
        })?;
    let client_addr = socket.local_addr().map_err(|source| StartError::Bind {
        key: "listen",
        addr: config.listen,
        source,
    })?;
    let shared = Arc::new(SessionShared {
        stats: Arc::clone(&stats),
        info: NodeInfo {
            name: name.clone(),
            id,
            quorum: (config.n, config.r, config.w),
            threads,
            max_connections: config.max_connections,
            store: store.clone(),
            ring: ring.clone(),
        },
        limits: Limits {
            max_value_size: config.max_value_size,
            ..Limits::default()
        },
        expiry: config.expiry,
    });
    let listener = Listener::new(socket, worker_handles, shared, config.max_connections).start();
    log::info!(
        "node {name} ({id}) serving memcache on {client_addr}, store {}",
        store.backend()
    );
    Ok(NodeHandle {
        id,
        name,
        client_addr,
        coordinator,
        listener,
        workers,
        store,
        ring,
        stats,
    })
}

async fn open_store(config: &NodeConfig) -> Result<Arc<dyn Store>, StartError> {
    if config.store == StoreBackend::Memory {
        return Ok(Arc::new(MemStore::new()));
    }
    let dir = config.data_dir.join("store");
    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let fsync = config.fsync;
    let open_dir = dir.clone();
    let opened = tokio::task::spawn_blocking(move || RocksStore::open(&open_dir, fsync))
        .await
        .unwrap_or(Err(StoreError::Unavailable));
    match opened {
        Ok(store) => Ok(Arc::new(store)),
        Err(source) => Err(StartError::Store { path: dir, source }),
    }
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

    /// A coordinator to send [`Get`], [`Set`] and [`Delete`] messages to.
    pub fn coordinator(&self) -> Addr<Coordinator> {
        self.coordinator.clone()
    }

    /// The node's counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// The current ring.
    pub fn ring(&self) -> RingReader {
        self.ring.clone()
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

    /// Stops accepting clients, flushes the store and stops the worker threads.
    pub async fn shutdown(self) {
        let _ = self.listener.send(StopListening).await;
        if let Err(e) = self.store.flush().await {
            log::error!("flushing the store at shutdown failed: {e}");
        }
        for worker in &self.workers {
            worker.stop();
        }
        log::info!("node {} stopped", self.name);
    }
}
