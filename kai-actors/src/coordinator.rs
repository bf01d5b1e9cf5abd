//! The Coordinator: runs one client operation against the replicas of its key.
//!
//! Any node coordinates any key. For each operation the coordinator reads the current ring
//! snapshot (no message round trip), fans out to the key's preference list in parallel — the local
//! replica directly, remote ones through their Peer — and drives the quorum rounds of
//! [`crate::quorum`]. Requests to replicas that are still outstanding when a round reaches its
//! quorum keep running in the background, so every replica of a write receives it.
//!
//! One Coordinator actor runs on each worker thread; its handlers return futures, so a slow
//! operation never holds up the mailbox.

use crate::clock::unix_now;
use crate::quorum::{decide_read, Phase, Progress, QuorumError, Round, TagClock};
use crate::replica::{ReplicaError, Replicas};
use crate::ring::RingReader;
use crate::stats::{self, NodeStats};
use actix::{Actor, Context, Handler, Message, ResponseFuture};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use kai_proto::replica::{ReplicaOp, ReplicaReply, ReplicaRequest};
use kai_proto::{BucketId, Key, NodeId, Record, Tag};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// How many replicas a round asks at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fanout {
    /// Every target at once: writes must reach every replica.
    All,
    /// Only as many as needed (local first); another target is asked when one fails, and all
    /// the rest once [`HEDGE_FRACTION`] of the request timeout passed without a quorum.
    Quorum,
}

/// A read round asks spare replicas after `request_timeout / HEDGE_FRACTION`.
const HEDGE_FRACTION: u32 = 8;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// A round did not reach its quorum in time.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    /// The ring has no members.
    #[error("the ring has no members")]
    EmptyRing,
}

/// Everything the coordinator of one worker thread needs.
pub struct CoordinatorCore {
    replicas: Replicas,
    ring: RingReader,
    clock: Arc<TagClock>,
    r: usize,
    w: usize,
    request_timeout: Duration,
    stats: Arc<NodeStats>,
}

impl CoordinatorCore {
    /// A coordinator core with read quorum `r`, write quorum `w`, and `request_timeout` per
    /// round, tagging new versions with `clock`.
    pub fn new(
        replicas: Replicas,
        ring: RingReader,
        clock: Arc<TagClock>,
        (r, w): (usize, usize),
        request_timeout: Duration,
        stats: Arc<NodeStats>,
    ) -> Self {
        CoordinatorCore {
            replicas,
            ring,
            clock,
            r,
            w,
            request_timeout,
            stats,
        }
    }

    /// The key's bucket and replicas, from the current ring.
    fn placement(&self, key: &Key) -> Result<(BucketId, Vec<NodeId>), CoordinatorError> {
        let snapshot = self.ring.load();
        let bucket = snapshot.ring.bucket_of(key.as_bytes());
        let mut replicas = snapshot.ring.preference_list(bucket).to_vec();
        if replicas.is_empty() {
            return Err(CoordinatorError::EmptyRing);
        }
        // Ask the local replica first: it answers without a network hop.
        if let Some(local) = replicas.iter().position(|n| *n == self.replicas.local()) {
            replicas[..=local].rotate_right(1);
        }
        Ok((bucket, replicas))
    }

    /// Quorums capped by the replicas that exist (a ring smaller than N).
    fn quorums(&self, replicas: usize) -> (usize, usize) {
        (self.r.min(replicas), self.w.min(replicas))
    }

    /// Sends `request` to the nodes in `targets` (see [`Fanout`]); returns once `needed`
    /// succeeded, or fails once that cannot happen or the request timeout passes.
    async fn round<T: Send + 'static>(
        &self,
        phase: Phase,
        (targets, fanout): (&[NodeId], Fanout),
        needed: usize,
        request: ReplicaRequest,
        extract: fn(ReplicaReply) -> Result<T, ReplicaError>,
    ) -> Result<Vec<(NodeId, T)>, QuorumError> {
        let mut round = Round::new(phase, needed, targets.len());
        if round.progress() == Progress::Reached {
            return Ok(Vec::new());
        }
        let call = |node: NodeId| {
            let replicas = self.replicas.clone();
            let request = request.clone();
            async move { (node, replicas.call(node, request).await.and_then(extract)) }
        };
        let eager = match fanout {
            Fanout::All => targets.len(),
            Fanout::Quorum => needed,
        };
        let mut calls: FuturesUnordered<_> = targets[..eager].iter().map(|&node| call(node)).collect();
        let mut spares: VecDeque<NodeId> = targets[eager..].iter().copied().collect();
        let hedge = tokio::time::sleep(self.request_timeout / HEDGE_FRACTION);
        let deadline = tokio::time::sleep(self.request_timeout);
        tokio::pin!(hedge, deadline);
        let outcome = loop {
            tokio::select! {
                next = calls.next() => match next {
                    Some((node, Ok(value))) => {
                        if round.succeed(node, value) == Progress::Reached {
                            break Ok(());
                        }
                    }
                    Some((node, Err(e))) => {
                        if let Some(spare) = spares.pop_front() {
                            calls.push(call(spare));
                        }
                        if round.fail(node, e) == Progress::Impossible {
                            break Err(false);
                        }
                    }
                    None => break Err(false),
                },
                () = &mut hedge, if !spares.is_empty() => calls.extend(spares.drain(..).map(call)),
                () = &mut deadline => break Err(true),
            }
        };
        if !calls.is_empty() {
            // Let the stragglers finish: every replica of a write should get it.
            actix_rt::spawn(async move { while calls.next().await.is_some() {} });
        }
        match outcome {
            Ok(()) => Ok(round.into_replies()),
            Err(timed_out) => {
                stats::add(&self.stats.quorum_failures, 1);
                Err(round.into_error(timed_out))
            }
        }
    }

    /// The latest record of `key` (value or tombstone, expired or not) from a read quorum, after
    /// making sure a write quorum holds it.
    async fn read_latest(
        &self,
        bucket: BucketId,
        key: &Key,
        replicas: &[NodeId],
    ) -> Result<Option<Record>, CoordinatorError> {
        let (r, w) = self.quorums(replicas.len());
        let request = ReplicaRequest {
            bucket,
            key: key.clone(),
            op: ReplicaOp::Read,
        };
        let answers = self
            .round(Phase::Read, (replicas, Fanout::Quorum), r, request, expect_record)
            .await?;
        let decision = decide_read(answers, replicas, w);
        if let Some(write_back) = decision.write_back {
            stats::add(&self.stats.unreconciled_reads, 1);
            let request = ReplicaRequest {
                bucket,
                key: key.clone(),
                op: ReplicaOp::Write(write_back.record),
            };
            let written = self
                .round(
                    Phase::WriteBack,
                    (&write_back.targets, Fanout::All),
                    write_back.needed,
                    request,
                    expect_written,
                )
                .await?;
            stats::add(&self.stats.read_repairs, written.len() as u64);
        }
        Ok(decision.latest)
    }

    /// Writes `record` to the replicas; returns once W acknowledged.
    async fn write(
        &self,
        bucket: BucketId,
        key: Key,
        replicas: &[NodeId],
        record: Record,
    ) -> Result<(), CoordinatorError> {
        let (_, w) = self.quorums(replicas.len());
        let request = ReplicaRequest {
            bucket,
            key,
            op: ReplicaOp::Write(record),
        };
        self.round(Phase::Write, (replicas, Fanout::All), w, request, expect_written)
            .await?;
        Ok(())
    }

    /// The latest live record of `key`, or `None`.
    pub async fn get(&self, key: Key) -> Result<Option<Record>, CoordinatorError> {
        let (bucket, replicas) = self.placement(&key)?;
        let latest = self.read_latest(bucket, &key, &replicas).await?;
        let now = unix_now();
        Ok(latest.filter(|r| r.is_live(now)))
    }

    /// Stores a value; returns its version.
    pub async fn set(&self, key: Key, flags: u32, expires_at: u64, data: Bytes) -> Result<Tag, CoordinatorError> {
        let (bucket, replicas) = self.placement(&key)?;
        let (r, _) = self.quorums(replicas.len());
        let request = ReplicaRequest {
            bucket,
            key: key.clone(),
            op: ReplicaOp::ReadVersion,
        };
        let versions = self
            .round(Phase::Version, (&replicas, Fanout::Quorum), r, request, expect_version)
            .await?;
        let tag = self.clock.next_after(versions.iter().map(|(_, tag)| tag));
        self.write(bucket, key, &replicas, Record::value(tag, flags, expires_at, data))
            .await?;
        Ok(tag)
    }

    /// Deletes `key`: if a read quorum finds a live value, writes a newer tombstone. Returns
    /// whether a live value was found.
    pub async fn delete(&self, key: Key) -> Result<bool, CoordinatorError> {
        let (bucket, replicas) = self.placement(&key)?;
        let now = unix_now();
        match self.read_latest(bucket, &key, &replicas).await? {
            Some(latest) if latest.is_live(now) => {
                let tombstone = Record::tombstone(self.clock.next_after([&Some(latest.tag)]), now);
                self.write(bucket, key, &replicas, tombstone).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn expect_record(reply: ReplicaReply) -> Result<Option<Record>, ReplicaError> {
    match reply {
        ReplicaReply::Record(r) => Ok(r),
        _ => Err(ReplicaError::UnexpectedReply("read")),
    }
}

fn expect_version(reply: ReplicaReply) -> Result<Option<Tag>, ReplicaError> {
    match reply {
        ReplicaReply::Version(v) => Ok(v),
        _ => Err(ReplicaError::UnexpectedReply("read-version")),
    }
}

fn expect_written(reply: ReplicaReply) -> Result<Tag, ReplicaError> {
    match reply {
        ReplicaReply::Written(t) => Ok(t),
        _ => Err(ReplicaError::UnexpectedReply("write")),
    }
}

/// The Coordinator actor of one worker thread.
pub struct Coordinator {
    core: Arc<CoordinatorCore>,
}

impl Coordinator {
    /// A coordinator over `core`.
    pub fn new(core: Arc<CoordinatorCore>) -> Self {
        Coordinator { core }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

/// Messages a coordinator may hold before senders wait.
const MAILBOX_CAPACITY: usize = 4096;

/// Read a key: the latest live record, or `None`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<Record>, CoordinatorError>")]
pub struct Get {
    /// The key.
    pub key: Key,
}

/// Store a value.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Tag, CoordinatorError>")]
pub struct Set {
    /// The key.
    pub key: Key,
    /// Client flags.
    pub flags: u32,
    /// Absolute expiry in unix seconds, 0 = never.
    pub expires_at: u64,
    /// The value.
    pub data: Bytes,
}

/// Delete a key; answers whether a live value was deleted.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, CoordinatorError>")]
pub struct Delete {
    /// The key.
    pub key: Key,
}

impl Handler<Get> for Coordinator {
    type Result = ResponseFuture<Result<Option<Record>, CoordinatorError>>;

    fn handle(&mut self, msg: Get, _ctx: &mut Context<Self>) -> Self::Result {
        let core = Arc::clone(&self.core);
        Box::pin(async move { core.get(msg.key).await })
    }
}

impl Handler<Set> for Coordinator {
    type Result = ResponseFuture<Result<Tag, CoordinatorError>>;

    fn handle(&mut self, msg: Set, _ctx: &mut Context<Self>) -> Self::Result {
        let core = Arc::clone(&self.core);
        Box::pin(async move { core.set(msg.key, msg.flags, msg.expires_at, msg.data).await })
    }
}

impl Handler<Delete> for Coordinator {
    type Result = ResponseFuture<Result<bool, CoordinatorError>>;

    fn handle(&mut self, msg: Delete, _ctx: &mut Context<Self>) -> Self::Result {
        let core = Arc::clone(&self.core);
        Box::pin(async move { core.delete(msg.key).await })
    }
}
