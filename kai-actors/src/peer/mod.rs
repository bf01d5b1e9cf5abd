//! Node-to-node transport, by service.
//!
//! - Services ([`registry`]): each subsystem implements [`Serve<S>`] for the
//!   [`Service`](kai_proto::peer::Service)s it answers (replica and flush steps, gossip, sync,
//!   forwarded updates; ping is the transport's own) and the node registers the handlers in one
//!   [`Services`] table at start.
//! - Typed clients (`call.rs`): [`PeerDirectory::call::<S>`](PeerDirectory::call) sends a request
//!   of service `S` and resolves with `Result<S::Reply, PeerError>`; answers are opened in that one
//!   place, so no caller matches on the wire enums.
//! - [`PeerActor`] (`client.rs`): one per remote node; dials it, runs the handshake, and
//!   multiplexes many requests over that one connection (request ids, a oneshot per call). It
//!   redials with exponential backoff whenever the connection drops, so a restarted peer is
//!   reconnected to within `MAX_BACKOFF` (2 s).
//! - [`PeerListener`] (`server.rs`): accepts connections from other nodes, runs the acceptor side
//!   of the handshake, and hands each request to [`Services`], many at once.
//! - [`PeerDirectory`]: the lock-free map from node id to its `PeerActor`s that callers use.
//!   A node keeps one Peer actor (one connection) per remote node *per worker thread*, so a
//!   coordinator's remote calls stay on its own thread.
//! - [`NetworkFilter`] (`filter.rs`): drop, delay or partition requests between chosen nodes, for
//!   in-process fault-injection tests.
//!
//! Invariants: every remote call ends — with the service's reply, or a [`PeerError`] after at most
//! the request timeout; every request received is answered once (a request of a service this node
//! does not serve is answered with an error naming the service, [`PeerError::Remote`] at the
//! caller); a failed or malicious connection (bad handshake, garbage, oversized frames) is closed
//! and logged once, and never affects other connections. A peer refused by the handshake (other
//! cluster, other settings, wrong secret, a certificate not signed by the cluster CA) is logged
//! once per peer ([`crate::log_once::LogOnce`]) however often it redials, on either side.
//!
//! With `peer_tls_*` set, every connection is mutual TLS ([`crate::tls::PeerTls`]) and the
//! handshake runs inside it; without, plain TCP (the connection code is generic over the
//! stream, so plain links pay nothing for TLS).

mod call;
mod client;
mod filter;
mod handshake;
pub mod registry;
mod server;
#[cfg(test)]
pub(crate) mod tests;

pub use client::{Disconnect, PeerActor, PeerSettings};
pub use filter::{NetworkFilter, Verdict};
pub use registry::{Serve, ServeError, Services};
pub use server::PeerListener;

use crate::tls::PeerTls;
use arc_swap::ArcSwap;
use client::Call;
use futures_util::SinkExt;
use kai_proto::peer::{Credentials, Frame, FrameCodec, HandshakeError, ServiceId};
use kai_proto::NodeId;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;

/// Who this node is, as told to peers.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Peer address others can reach this node at.
    pub advertise: String,
    /// Cluster name and secret.
    pub credentials: Credentials,
    /// Mutual TLS of peer links (`peer_tls_*`); `None`: plain TCP.
    pub tls: Option<PeerTls>,
}

/// The node at the other end of an established connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteIdentity {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its advertised peer address (as it says; acceptor side only).
    pub advertise: String,
}

/// A remote call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// This node has no Peer actor for that node (not a member, or not yet).
    #[error("no route to node {0}")]
    NoRoute(NodeId),
    /// No connection to the node is up.
    #[error("not connected to {0}")]
    NotConnected(String),
    /// The connection dropped before the response arrived.
    #[error("connection to {0} lost")]
    ConnectionLost(String),
    /// No response within the request timeout.
    #[error("no response from {0} in time")]
    Timeout(String),
    /// Too many requests to that node are in flight.
    #[error("too many requests in flight to {0}")]
    Overloaded(String),
    /// Connecting failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The handshake failed.
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        /// The peer address.
        addr: String,
        /// Why.
        source: HandshakeError,
    },
    /// The node at that address is not the one expected.
    #[error("{addr} is node {found}, expected {expected}")]
    WrongNode {
        /// The peer address.
        addr: String,
        /// The id expected there.
        expected: NodeId,
        /// The id found.
        found: NodeId,
    },
    /// The peer answered that it could not serve the request: it did not take effect there.
    #[error("the peer did not serve the {service} request: {reason}")]
    Remote {
        /// The service called.
        service: ServiceId,
        /// The peer's reason.
        reason: String,
    },
    /// The peer answered with another service's reply.
    #[error("the peer answered a {service} request with a {got} reply")]
    UnexpectedReply {
        /// The service called.
        service: ServiceId,
        /// The service of the reply received.
        got: &'static str,
    },
}

impl PeerError {
    /// Whether the request may have taken effect on the peer: it was sent, and no answer saying
    /// it did not came back (lost connection, timeout, garbled answer).
    pub fn maybe_served(&self) -> bool {
        matches!(
            self,
            PeerError::ConnectionLost(_) | PeerError::Timeout(_) | PeerError::UnexpectedReply { .. }
        )
    }
}

/// Node id → its Peer actors, one per lane (worker thread), readable without locks.
///
/// Each worker thread talks to a peer through its own lane's connection, so a remote call never
/// crosses threads on the coordinating node.
#[derive(Clone, Default)]
pub struct PeerDirectory(Arc<ArcSwap<HashMap<NodeId, Vec<actix::Addr<PeerActor>>>>>);

impl PeerDirectory {
    /// Sends `call` to the Peer actor of `node` for `lane`, if the node is known, without
    /// cloning its address (a clone allocates; this is on every remote replica call).
    fn send(&self, node: NodeId, lane: usize, call: Call) -> Option<actix::dev::Request<PeerActor, Call>> {
        let map = self.0.load();
        let lanes = map.get(&node)?;
        Some(lanes.get(lane % lanes.len().max(1))?.send(call))
    }

    /// Adds or replaces the Peer actors of `node`.
    pub fn insert(&self, node: NodeId, lanes: Vec<actix::Addr<PeerActor>>) {
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(node, lanes.clone());
            map
        });
    }

    /// Removes `node`, returning its Peer actors.
    pub fn remove(&self, node: NodeId) -> Vec<actix::Addr<PeerActor>> {
        let mut removed = Vec::new();
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            removed = map.remove(&node).unwrap_or_default();
            map
        });
        removed
    }
}

/// Frames queued for one connection's writer before senders are refused.
pub(crate) const WRITE_QUEUE: usize = 8192;

/// Writes frames from `queue` to `sink`, batching whatever is queued into one flush. Ends when
/// the queue closes or the connection fails.
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    mut sink: FramedWrite<W, FrameCodec>,
    mut queue: mpsc::Receiver<Frame>,
) {
    while let Some(frame) = queue.recv().await {
        if sink.feed(frame).await.is_err() {
            return;
        }
        while let Ok(frame) = queue.try_recv() {
            if sink.feed(frame).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}
