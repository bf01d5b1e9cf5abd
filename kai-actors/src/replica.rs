//! Executing replica operations: on the local store, or on a remote node through its Peer.
//!
//! [`LocalReplica::serve`] is the one implementation of a replica; the local fast path and the
//! peer server (requests from other coordinators) both call it, so a key behaves the same
//! whichever node coordinates it.
//!
//! A replica answers through this node's `flush_all` mark ([`Flushes`]): versions below it, and
//! missing keys, read as the mark's tombstone; writes, prepares and accepts below it are answered
//! as if that tombstone were stored. Between a flush's two steps, prepares and accepts are
//! refused (with their own ballot: the proposer retries a little later).

use crate::fence::{Fence, Refusal};
use crate::flush::Flushes;
use crate::peer::{PeerDirectory, PeerError, Serve, ServeError};
use crate::stats::{self, NodeStats, ReplicaCall};
use crate::store::{Applied, Guarded, Prepared, StoreHandle, WriteKind};
use kai_proto::cluster::RingId;
use kai_proto::flush::{FlushReply, FlushStep};
use kai_proto::peer::{FlushService, ForwardedUpdate, ReplicaService, UpdateReply, UpdateService};
use kai_proto::replica::{ReplicaOp, ReplicaReply, ReplicaRequest};
use kai_proto::NodeId;
use std::sync::Arc;

/// This node's replica of its keys: the store behind the [`Fence`].
#[derive(Clone)]
pub struct LocalReplica {
    store: StoreHandle,
    fence: Arc<Fence>,
    flushes: Arc<Flushes>,
    stats: Arc<NodeStats>,
}

impl LocalReplica {
    /// The replica over `store`, guarded by `fence`, answering through `flushes`, counting
    /// refusals and calls in `stats`.
    pub fn new(store: StoreHandle, fence: Arc<Fence>, flushes: Arc<Flushes>, stats: Arc<NodeStats>) -> Self {
        LocalReplica {
            store,
            fence,
            flushes,
            stats,
        }
    }

    /// The mark's tag if it is at or above `tag`.
    fn flushed_at_or_above(&self, tag: kai_proto::Tag) -> Option<kai_proto::Tag> {
        self.flushes.current().map(|mark| mark.tag).filter(|f| *f >= tag)
    }

    /// This node's part in a `flush_all` coordinated anywhere.
    /// A refilling store cannot bound the versions it is meant to hold, so it reports none.
    pub async fn serve_flush(&self, step: FlushStep) -> FlushReply {
        if step == FlushStep::Bound && self.fence.is_refilling() {
            return FlushReply::Failed;
        }
        self.flushes.serve(step).await
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
                .map(|r| ReplicaReply::Version(self.flushes.mask_tag(r.map(|r| r.tag)))),
            ReplicaOp::Read => store
                .get(bucket, key)
                .await
                .map(|r| ReplicaReply::Record(self.flushes.mask(r))),
            // At or below the mark: as if the mark's tombstone were stored (kept / refused).
            ReplicaOp::Write(record) => match self.flushed_at_or_above(record.tag) {
                Some(mark) => Ok(ReplicaReply::Written(mark)),
                None => guarded(store, bucket, key, record, WriteKind::Plain).await,
            },
            ReplicaOp::Accept(record) => {
                let Some(_admitted) = self.flushes.admit_update().await else {
                    return ReplicaReply::Refused(record.tag);
                };
                match self.flushed_at_or_above(record.tag) {
                    Some(mark) => Ok(ReplicaReply::Refused(mark)),
                    None => guarded(store, bucket, key, record, WriteKind::Accept).await,
                }
            }
            ReplicaOp::Prepare(ballot) => {
                let Some(_admitted) = self.flushes.admit_update().await else {
                    return ReplicaReply::Refused(ballot);
                };
                match self.flushed_at_or_above(ballot) {
                    Some(mark) => Ok(ReplicaReply::Refused(mark)),
                    None => store.prepare(bucket, key, ballot).await.map(|p| match p {
                        Prepared::Promised(record) => ReplicaReply::Promised(self.flushes.mask(record)),
                        Prepared::Refused(higher) => ReplicaReply::Refused(higher),
                    }),
                }
            }
        };
        result.unwrap_or_else(|e| ReplicaReply::Failed(e.to_string()))
    }
}

/// Other coordinators' replica operations on this node.
impl Serve<ReplicaService> for LocalReplica {
    async fn serve(&self, _from: NodeId, request: ReplicaRequest) -> Result<ReplicaReply, ServeError> {
        Ok(LocalReplica::serve(self, request).await)
    }
}

/// This node's part in `flush_all`s coordinated elsewhere.
impl Serve<FlushService> for LocalReplica {
    async fn serve(&self, _from: NodeId, step: FlushStep) -> Result<FlushReply, ServeError> {
        Ok(self.serve_flush(step).await)
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
    /// The replica answered with a failure.
    #[error("replica failed: {0}")]
    Failed(String),
    /// The replica answered something that does not match the request.
    #[error("unexpected reply to {0}")]
    UnexpectedReply(&'static str),
    /// The remote node could not be reached, did not answer, or did not serve the request.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The replica promised, or stores, a higher tag than the write, prepare or accept carried.
    #[error("replica refused: it promised or stores {0:?}")]
    Refused(kai_proto::Tag),
    /// The replica adopted a newer ring than the coordinator used.
    #[error("replica is on a newer ring ({0:?})")]
    StaleRing(RingId),
}

/// The outcome of [`Replicas::forward_update`].
#[derive(Debug)]
pub enum Forwarded {
    /// The proposer ran it: its answer and the key's record, or its error.
    Done(UpdateReply),
    /// It certainly did not run there (not connected, refused before running).
    NotRun,
    /// Sent, but no answer came back: it may or may not have run.
    Lost,
}

/// Routes replica operations to the node that must execute them.
///
/// Cloned for every replica call of a round, so it is one `Arc`: cloning an actix address
/// allocates (two `Arc`s per `AddressSender`), which the instruction profile of the replicated
/// path showed among its top costs.
#[derive(Clone)]
pub struct Replicas(Arc<Routes>);

struct Routes {
    me: NodeId,
    local: LocalReplica,
    peers: PeerDirectory,
    lane: usize,
}

impl Replicas {
    /// Routes for node `me`, whose own replica is `local`; other nodes through `peers`, using
    /// the connections of `lane` (the worker thread this runs on).
    pub fn new(me: NodeId, local: LocalReplica, peers: PeerDirectory, lane: usize) -> Self {
        Replicas(Arc::new(Routes { me, local, peers, lane }))
    }

    /// The node whose replica is local.
    pub fn local(&self) -> NodeId {
        self.0.me
    }

    /// Executes a step of a `flush_all` on `node`.
    pub async fn flush(&self, node: NodeId, step: FlushStep) -> Result<FlushReply, ReplicaError> {
        let routes = &self.0;
        if node == routes.me {
            return Ok(routes.local.serve_flush(step).await);
        }
        Ok(routes.peers.call::<FlushService>(node, routes.lane, step).await?)
    }

    /// Runs `update` on `node`, its key's proposer: the proposer's result, or how it failed to
    /// get one.
    pub async fn forward_update(&self, node: NodeId, update: ForwardedUpdate) -> Forwarded {
        let routes = &self.0;
        match routes.peers.call::<UpdateService>(node, routes.lane, update).await {
            Ok(result) => Forwarded::Done(result),
            // Sent, and then the answer was lost (or garbled, or the Peer actor stopped).
            Err(e) if e.maybe_served() => Forwarded::Lost,
            // Never sent (no connection, overloaded queue), or refused before running.
            Err(_) => Forwarded::NotRun,
        }
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
        let timed = self.0.local.stats.replica_calls.of(kind, node != self.0.me);
        timed.record(started.elapsed(), result.is_err());
        result
    }

    async fn execute(&self, node: NodeId, request: ReplicaRequest) -> Result<ReplicaReply, ReplicaError> {
        let routes = &self.0;
        let reply = if node == routes.me {
            routes.local.serve(request).await
        } else {
            (routes.peers)
                .call::<ReplicaService>(node, routes.lane, request)
                .await?
        };
        match reply {
            ReplicaReply::Failed(reason) => Err(ReplicaError::Failed(reason)),
            ReplicaReply::StaleRing(ring) => Err(ReplicaError::StaleRing(ring)),
            ReplicaReply::Refused(higher) => Err(ReplicaError::Refused(higher)),
            reply => Ok(reply),
        }
    }
}
