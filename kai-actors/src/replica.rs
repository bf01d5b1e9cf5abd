//! Executing replica operations: on the local store, or on a remote node through its Peer.
//!
//! [`LocalReplica::serve`] is the one implementation of a replica; the local fast path and the
//! peer server (requests from other coordinators) both call it, so a key behaves the same
//! whichever node coordinates it.

use crate::fence::{Fence, Refusal};
use crate::peer::{Call, PeerDirectory, PeerError};
use crate::stats::{self, NodeStats, ReplicaCall};
use crate::store::{Applied, Guarded, Prepared, StoreHandle, WriteKind};
use kai_proto::cluster::RingId;
use kai_proto::peer::{PeerRequest, PeerResponse};
use kai_proto::replica::{ReplicaOp, ReplicaReply, ReplicaRequest};
use kai_proto::NodeId;
use std::sync::Arc;

/// This node's replica of its keys: the store behind the [`Fence`].
#[derive(Clone)]
pub struct LocalReplica {
    store: StoreHandle,
    fence: Arc<Fence>,
    stats: Arc<NodeStats>,
}

impl LocalReplica {
    /// The replica over `store`, guarded by `fence`, counting refusals and calls in `stats`.
    pub fn new(store: StoreHandle, fence: Arc<Fence>, stats: Arc<NodeStats>) -> Self {
        LocalReplica { store, fence, stats }
    }

    /// Executes `request`; the one implementation of a replica, for local and remote coordinators.
    pub async fn serve(&self, request: ReplicaRequest) -> ReplicaReply {
        let ReplicaRequest { ring, bucket, key, op } = request;
        let _admitted = match self.fence.admit(ring).await {
            Ok(guard) => guard,
            Err(Refusal::StaleRing(adopted)) => {
                stats::add(&self.stats.fence_stale_ring, 1);
                return ReplicaReply::StaleRing(adopted);
            }
            Err(Refusal::Minority) => {
                stats::add(&self.stats.fence_minority, 1);
                return ReplicaReply::Failed("replica cannot see a majority of the cluster".to_owned());
            }
            Err(Refusal::Refilling) => {
                stats::add(&self.stats.fence_refilling, 1);
                return ReplicaReply::Failed("replica is refilling its store".to_owned());
            }
        };
        let store = &self.store;
        let key = key.to_bytes();
        let result = match op {
            ReplicaOp::ReadVersion => store
                .get(bucket, key)
                .await
                .map(|r| ReplicaReply::Version(r.map(|r| r.tag))),
            ReplicaOp::Read => store.get(bucket, key).await.map(ReplicaReply::Record),
            ReplicaOp::Write(record) => guarded(store, bucket, key, record, WriteKind::Plain).await,
            ReplicaOp::Accept(record) => guarded(store, bucket, key, record, WriteKind::Accept).await,
            ReplicaOp::Prepare(ballot) => store.prepare(bucket, key, ballot).await.map(|p| match p {
                Prepared::Promised(record) => ReplicaReply::Promised(record),
                Prepared::Refused(higher) => ReplicaReply::Refused(higher),
            }),
        };
        result.unwrap_or_else(|e| ReplicaReply::Failed(e.to_string()))
    }
}

async fn guarded(
    store: &StoreHandle,
    bucket: kai_proto::BucketId,
    key: bytes::Bytes,
    record: kai_proto::Record,
    kind: WriteKind,
) -> Result<ReplicaReply, crate::store::StoreError> {
    let tag = record.tag;
    Ok(match store.apply_guarded(bucket, key, record, kind).await? {
        Guarded::Applied(Applied::Stored { .. }) => ReplicaReply::Written(tag),
        Guarded::Applied(Applied::Kept { current }) => ReplicaReply::Written(current),
        Guarded::Refused(higher) => ReplicaReply::Refused(higher),
    })
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
    /// The replica promised, or stores, a higher tag than the write, prepare or accept carried.
    #[error("replica refused: it promised or stores {0:?}")]
    Refused(kai_proto::Tag),
    /// The replica adopted a newer ring than the coordinator used.
    #[error("replica is on a newer ring ({0:?})")]
    StaleRing(RingId),
}

/// Routes replica operations to the node that must execute them.
#[derive(Clone)]
pub struct Replicas {
    me: NodeId,
    local: LocalReplica,
    peers: PeerDirectory,
    lane: usize,
}

impl Replicas {
    /// Routes for node `me`, whose own replica is `local`; other nodes through `peers`, using
    /// the connections of `lane` (the worker thread this runs on).
    pub fn new(me: NodeId, local: LocalReplica, peers: PeerDirectory, lane: usize) -> Self {
        Replicas { me, local, peers, lane }
    }

    /// The node whose replica is local.
    pub fn local(&self) -> NodeId {
        self.me
    }

    /// Executes `request` on `node`, counting it in the node's replica call statistics.
    pub async fn call(&self, node: NodeId, request: ReplicaRequest) -> Result<ReplicaReply, ReplicaError> {
        let kind = match &request.op {
            ReplicaOp::ReadVersion => ReplicaCall::ReadVersion,
            ReplicaOp::Read => ReplicaCall::Read,
            ReplicaOp::Write(_) => ReplicaCall::Write,
            ReplicaOp::Prepare(_) => ReplicaCall::Prepare,
            ReplicaOp::Accept(_) => ReplicaCall::Accept,
        };
        let started = std::time::Instant::now();
        let result = self.execute(node, request).await;
        let timed = self.local.stats.replica_calls.of(kind, node != self.me);
        timed.record(started.elapsed(), result.is_err());
        result
    }

    async fn execute(&self, node: NodeId, request: ReplicaRequest) -> Result<ReplicaReply, ReplicaError> {
        let reply = if node == self.me {
            self.local.serve(request).await
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
            ReplicaReply::StaleRing(ring) => Err(ReplicaError::StaleRing(ring)),
            ReplicaReply::Refused(higher) => Err(ReplicaError::Refused(higher)),
            reply => Ok(reply),
        }
    }
}
