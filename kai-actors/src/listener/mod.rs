//! The Listener: accepts memcache connections and spreads them over the worker threads.
//!
//! Each accepted connection becomes a lightweight session task (`session.rs`) on the next
//! worker Arbiter, round-robin, so every core serves clients. A session whose first byte is the
//! binary protocol's request magic (0x80) speaks binary (`binary.rs`), as in memcached; with an
//! `auth_file`, a text session first authenticates (`auth.rs`). At most `max_connections` sessions
//! run at once; a connection beyond that gets memcached's `ERROR Too many open connections` and
//! is closed, without affecting the others. Open connections are listed in [`Connections`]
//! (`stats conns`). With TLS configured ([`ClientTls`]), a session starts after its TLS
//! handshake, on the worker thread; a failed handshake ends that connection only.

mod auth;
mod binary;
mod connections;
mod meta;
mod session;
mod stats_command;
mod wire;

pub use connections::{Connection, Connections};

use crate::accept::accept_stream;
use crate::config::ExpiryPolicy;
use crate::coordinator::Coordinator;
use crate::report::NodeInfo;
use crate::stats::{self, NodeStats};
use crate::tls::ClientTls;
use actix::{Actor, Addr, ArbiterHandle, AsyncContext, Context, StreamHandler};
use kai_proto::auth::AuthFile;
use kai_proto::memcache::Limits;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// The reply memcached gives a connection over its limit.
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// What every session of a node shares.
pub struct SessionShared {
    /// Counters.
    pub stats: Arc<NodeStats>,
    /// Facts for `stats`.
    pub info: NodeInfo,
    /// Parser limits.
    pub limits: Limits,
    /// Expiry policy.
    pub expiry: ExpiryPolicy,
    /// The open client connections.
    pub connections: Connections,
    /// The users clients must authenticate as (`auth_file`); `None`: no authentication.
    pub auth: Option<Arc<AuthFile>>,
}

/// What a session needs: its thread's coordinator and the shared state.
#[derive(Clone)]
pub(crate) struct SessionContext {
    coordinator: Addr<Coordinator>,
    shared: Arc<SessionShared>,
    connection: Arc<Connection>,
}

/// One worker thread able to run sessions.
pub struct Worker {
    /// The worker's Arbiter.
    pub arbiter: ArbiterHandle,
    /// The coordinator running on it.
    pub coordinator: Addr<Coordinator>,
}

/// Accepts client connections.
pub struct Listener {
    socket: Option<TcpListener>,
    workers: Vec<Worker>,
    next_worker: usize,
    shared: Arc<SessionShared>,
    max_connections: u64,
    tls: Option<ClientTls>,
}

impl Listener {
    /// A listener on `socket` placing sessions on `workers`; with `tls`, every connection speaks
    /// TLS.
    pub fn new(
        socket: TcpListener,
        workers: Vec<Worker>,
        shared: Arc<SessionShared>,
        max_connections: usize,
        tls: Option<ClientTls>,
    ) -> Self {
        Listener {
            socket: Some(socket),
            workers,
            next_worker: 0,
            shared,
            max_connections: max_connections as u64,
            tls,
        }
    }

    fn refuse(&self, stream: TcpStream, peer: SocketAddr) {
        stats::add(&self.shared.stats.rejected_connections, 1);
        log::warn!(
            "refusing client {peer}: max_connections ({}) reached",
            self.max_connections
        );
        // Best effort: the socket is fresh, so the short line fits its send buffer.
        let _ = stream.try_write(TOO_MANY_CONNECTIONS);
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(socket) = self.socket.take() {
            ctx.add_stream(accept_stream(socket));
        }
    }
}

impl StreamHandler<io::Result<(TcpStream, SocketAddr)>> for Listener {
    fn handle(&mut self, accepted: io::Result<(TcpStream, SocketAddr)>, _ctx: &mut Context<Self>) {
        let Ok((stream, peer)) = accepted else {
            return;
        };
        let stats = &self.shared.stats;
        if stats::get(&stats.curr_connections) >= self.max_connections {
            self.refuse(stream, peer);
            return;
        }
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot hand over client {peer}: {e}");
                return;
            }
        };
        stats::add(&stats.curr_connections, 1);
        stats::add(&stats.total_connections, 1);
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        let ctx = SessionContext {
            coordinator: worker.coordinator.clone(),
            shared: Arc::clone(&self.shared),
            connection: self.shared.connections.open(peer),
        };
        let open = OpenConnection {
            shared: Arc::clone(&self.shared),
            id: ctx.connection.id,
        };
        let tls = self.tls.clone();
        let spawned = worker.arbiter.spawn(async move {
            let _open = open;
            let stream = match TcpStream::from_std(std_stream) {
                Ok(stream) => stream,
                Err(e) => return log::warn!("cannot adopt client {peer}: {e}"),
            };
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("set_nodelay failed: {e}");
            }
            match tls {
                None => session::serve(stream, ctx).await,
                Some(tls) => {
                    if let Some(stream) = tls.accept(stream, peer).await {
                        session::serve(stream, ctx).await;
                    }
                }
            }
        });
        if !spawned {
            log::warn!("worker thread is gone; dropped client {peer}");
        }
    }
}

/// Counts and lists a session as open until dropped (with the session task, or with the task's
/// future if it never ran).
struct OpenConnection {
    shared: Arc<SessionShared>,
    id: u64,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.shared.stats.curr_connections.fetch_sub(1, Ordering::Relaxed);
        self.shared.connections.close(self.id);
    }
}
