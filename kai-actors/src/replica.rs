//! Executing replica operations: on the local store, or on a remote node through its Peer.
//!
//! [`serve_local`] is the one implementation of a replica; the local fast path and the peer
//! server (requests from other coordinators) both call it, so a key behaves the same whichever
//! node coordinates it.

use crate::peer::{Call, PeerDirectory, PeerError};
use crate::store::{Applied, StoreHandle};
use kai_proto::peer::{PeerRequest, PeerResponse};
use kai_proto::replica::{ReplicaOp, ReplicaReply, ReplicaRequest};
use kai_proto::NodeId;

/// Executes `request` against the local store.
pub async fn serve_local(store: &StoreHandle, request: ReplicaRequest) -> ReplicaReply {
    let ReplicaRequest { bucket, key, op } = request;
    let key = key.to_bytes();
    let result = match op {
        ReplicaOp::ReadVersion => store
            .get(bucket, key)
            .await
            .map(|r| ReplicaReply::Version(r.map(|r| r.tag))),
        ReplicaOp::Read => store.get(bucket, key).await.map(ReplicaReply::Record),
        ReplicaOp::Write(record) => {
            let tag = record.tag;
            store.apply(bucket, key, record).await.map(|applied| match applied {
                Applied::Stored { .. } => ReplicaReply::Written(tag),
                Applied::Kept { current } => ReplicaReply::Written(current),
            })
        }
    };
    result.unwrap_or_else(|e| ReplicaReply::Failed(e.to_string()))
}

/// Why a replica operation did not produce a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// No connection to that node is known.
    #[error("no route to node {0}")]
    NoRoute(NodeId),
    /// The replica answered with a failure.
    #[error("replica failed: {0}")]
    Failed(String),
    /// The replica answered something that does not match the request.
    #[error("unexpected reply to {0}")]
    UnexpectedReply(&'static str),
    /// The remote node could not be reached or did not answer.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The remote node could not serve the request.
    #[error("remote error: {0}")]
    Remote(String),
}

/// Routes replica operations to the node that must execute them.
#[derive(Clone)]
pub struct Replicas {
    me: NodeId,
    store: StoreHandle,
    peers: PeerDirectory,
    lane: usize,
}

impl Replicas {
    /// Routes for node `me`, whose own replica is `store`; other nodes through `peers`, using
    /// the connections of `lane` (the worker thread this runs on).
    pub fn new(me: NodeId, store: StoreHandle, peers: PeerDirectory, lane: usize) -> Self {
        Replicas { me, store, peers, lane }
    }

    /// The node whose replica is local.
    pub fn local(&self) -> NodeId {
        self.me
    }

    /// Executes `request` on `node`.
    pub async fn call(&self, node: NodeId, request: ReplicaRequest) -> Result<ReplicaReply, ReplicaError> {
        let reply = if node == self.me {
            serve_local(&self.store, request).await
        } else {
            let peer = self.peers.get(node, self.lane).ok_or(ReplicaError::NoRoute(node))?;
            match peer.send(Call(PeerRequest::Replica(request))).await {
                Ok(Ok(PeerResponse::Replica(reply))) => reply,
                Ok(Ok(PeerResponse::Error(e))) => return Err(ReplicaError::Remote(e)),
                Ok(Ok(_)) => return Err(ReplicaError::UnexpectedReply("replica request")),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(PeerError::ConnectionLost(node.to_string()).into()),
            }
        };
        match reply {
            ReplicaReply::Failed(reason) => Err(ReplicaError::Failed(reason)),
            reply => Ok(reply),
        }
    }
}
