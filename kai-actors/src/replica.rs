//! Executing replica operations: on the local store, or on a remote node through its Peer.
//!
//! [`serve_local`] is the one implementation of a replica; the local fast path and the peer
//! server (requests from other coordinators) both call it, so a key behaves the same whichever
//! node coordinates it.

use crate::clock::unix_now;
use crate::store::{Applied, StoreHandle};
use kai_proto::replica::{ReplicaOp, ReplicaReply, ReplicaRequest, VersionInfo};
use kai_proto::NodeId;

/// Executes `request` against the local store.
pub async fn serve_local(store: &StoreHandle, request: ReplicaRequest) -> ReplicaReply {
    let ReplicaRequest { bucket, key, op } = request;
    let key = key.to_bytes();
    let result = match op {
        ReplicaOp::ReadVersion => store.get(bucket, key).await.map(|record| {
            let now = unix_now();
            ReplicaReply::Version(record.map(|r| VersionInfo {
                tag: r.tag,
                live: r.is_live(now),
            }))
        }),
        ReplicaOp::Read => store.get(bucket, key).await.map(ReplicaReply::Record),
        ReplicaOp::Write(record) => {
            let tag = record.tag;
            store
                .apply(bucket, key, record)
                .await
                .map(|applied| match applied {
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
}

/// Routes replica operations to the node that must execute them.
#[derive(Clone)]
pub struct Replicas {
    me: NodeId,
    store: StoreHandle,
}

impl Replicas {
    /// Routes for node `me`, whose own replica is `store`.
    pub fn new(me: NodeId, store: StoreHandle) -> Self {
        Replicas { me, store }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Executes `request` on `node`.
    pub async fn call(
        &self,
        node: NodeId,
        request: ReplicaRequest,
    ) -> Result<ReplicaReply, ReplicaError> {
        if node != self.me {
            return Err(ReplicaError::NoRoute(node));
        }
        match serve_local(&self.store, request).await {
            ReplicaReply::Failed(reason) => Err(ReplicaError::Failed(reason)),
            reply => Ok(reply),
        }
    }
}
