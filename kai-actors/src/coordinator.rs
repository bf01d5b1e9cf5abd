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
use crate::flush::FlushError;
use crate::membership::StatusReader;
use crate::paxos::{self, Decision, Pending};
use crate::proposers::ServeUpdate;
use crate::quorum::{decide_read, Group, Phase, Progress, QuorumError, Round, TagClock};
use crate::replica::{Forwarded, ReplicaError, Replicas};
use crate::ring::RingReader;
use crate::stats::{self, NodeStats};
use actix::{Actor, Context, Handler, Message, Recipient, ResponseFuture};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use kai_proto::change::{Answer, Change};
use kai_proto::cluster::RingId;
use kai_proto::peer::ForwardedUpdate;
use kai_proto::replica::{ReplicaOp, ReplicaReply, ReplicaRequest};
use kai_proto::{BucketId, Key, NodeId, Record, Tag};
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
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
    /// This node does not know a cluster yet (still joining).
    #[error("this node has not joined a cluster yet")]
    NoRing,
    /// A replica refused: it promised a higher ballot (a read-modify-write of the key is under
    /// way) or, for a proposal, stores a higher version.
    #[error("replicas promised a newer version ({0:?}); retry")]
    Refused(Tag),
    /// A proposal was accepted by some replicas but not a quorum (or not all answered in time).
    #[error("the update reached only some replicas")]
    PartlyAccepted,
    /// A read-modify-write lost to concurrent ones until its time ran out.
    #[error("too much contention on the key; not applied")]
    Contended,
    /// A read-modify-write's proposal may or may not have taken effect.
    #[error("the outcome of the update is unknown (a concurrent update overtook it)")]
    OutcomeUnknown,
    /// The key's proposer, to which this node forwarded the update, failed it.
    #[error("{0}")]
    Proposer(String),
    /// A `flush_all` did not reach enough owners.
    #[error(transparent)]
    Flush(#[from] FlushError),
    /// A replica is on a newer ring and this node could not learn it in time.
    #[error("the cluster moved to ring version {}; this node has not caught up yet", .0.version)]
    StaleRing(RingId),
}

/// Asks this node's membership to learn a ring at least as new as the given one; answers
/// whether it did within the request timeout.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "bool")]
pub struct LearnRing(pub RingId);

/// Everything the coordinator of one worker thread needs.
pub struct CoordinatorCore {
    replicas: Replicas,
    ring: RingReader,
    clock: Arc<TagClock>,
    cluster: Option<ClusterLink>,
    r: usize,
    w: usize,
    request_timeout: Duration,
    stats: Arc<NodeStats>,
    updates: Arc<UpdateLocks>,
}

/// Serialises this node's read-modify-writes of one key (striped by key hash), so the proposals
/// of one node never duel with each other. Shared by the coordinators of all worker threads.
pub struct UpdateLocks(Vec<tokio::sync::Mutex<()>>);

/// Stripes of [`UpdateLocks`].
const UPDATE_LOCK_STRIPES: usize = 1024;

impl Default for UpdateLocks {
    fn default() -> Self {
        UpdateLocks((0..UPDATE_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl UpdateLocks {
    async fn lock(&self, key: &Key) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize % self.0.len();
        self.0[stripe].lock().await
    }
}

/// What a coordinator uses of its node's membership.
#[derive(Clone)]
pub struct ClusterLink {
    /// Asked to learn a newer ring when a replica reports one.
    pub learn: Recipient<LearnRing>,
    /// Liveness of the nodes: replicas not heard from lately are asked last.
    pub status: StatusReader,
}

/// The owner sets of one key, in the placement its operation uses.
struct Placement {
    ring: RingId,
    bucket: BucketId,
    owners: Vec<Vec<NodeId>>,
    /// Every owner once, the local replica first.
    preference: Vec<NodeId>,
}

impl Placement {
    fn groups(&self, needed: usize) -> Vec<Group> {
        self.owners
            .iter()
            .map(|members| Group::new(members.clone(), needed))
            .collect()
    }
}

impl CoordinatorCore {
    /// A coordinator core with read quorum `r`, write quorum `w`, and `request_timeout` per
    /// round, tagging new versions with `clock`, informed by `cluster`.
    pub fn new(
        replicas: Replicas,
        ring: RingReader,
        clock: Arc<TagClock>,
        cluster: Option<ClusterLink>,
        (r, w): (usize, usize),
        request_timeout: Duration,
        stats: Arc<NodeStats>,
    ) -> Self {
        CoordinatorCore {
            replicas,
            ring,
            clock,
            cluster,
            r,
            w,
            request_timeout,
            stats,
            updates: Arc::default(),
        }
    }

    /// Shares `locks` (one per node) to serialise this node's updates of a key.
    pub fn with_update_locks(mut self, locks: Arc<UpdateLocks>) -> Self {
        self.updates = locks;
        self
    }

    /// The key's bucket and owner sets, from the current placement.
    fn placement(&self, key: &Key) -> Result<Placement, CoordinatorError> {
        let snapshot = self.ring.load();
        let bucket = snapshot.bucket_of(key.as_bytes());
        let owners = snapshot.groups(bucket);
        if owners.is_empty() {
            return Err(CoordinatorError::NoRing);
        }
        let local = self.replicas.local();
        let mut preference: Vec<NodeId> = Vec::new();
        if owners.iter().flatten().any(|n| *n == local) {
            // Ask the local replica first: it answers without a network hop.
            preference.push(local);
        }
        for node in owners.iter().flatten() {
            if !preference.contains(node) {
                preference.push(*node);
            }
        }
        if let Some(cluster) = &self.cluster {
            let status = cluster.status.load();
            if !status.unhealthy.is_empty() {
                preference.sort_by_key(|n| status.unhealthy.contains(n));
            }
        }
        Ok(Placement {
            ring: snapshot.latest_id(),
            bucket,
            owners,
            preference,
        })
    }

    fn request(&self, place: &Placement, key: &Key, op: ReplicaOp) -> ReplicaRequest {
        ReplicaRequest {
            ring: place.ring,
            bucket: place.bucket,
            key: key.clone(),
            op,
        }
    }

    /// Sends `request` to the members of `groups` (see [`Fanout`]); returns once every group
    /// reached its quorum, or fails once one cannot or the request timeout passes.
    async fn round<T: Send + 'static>(
        &self,
        phase: Phase,
        (groups, preference, fanout): (Vec<Group>, &[NodeId], Fanout),
        request: ReplicaRequest,
        extract: fn(ReplicaReply) -> Result<T, ReplicaError>,
    ) -> Result<Vec<(NodeId, T)>, CoordinatorError> {
        let mut round = Round::new(phase, groups);
        if round.progress() == Progress::Reached {
            return Ok(Vec::new());
        }
        let members = round.targets();
        if let [only] = members[..] {
            if only == self.replicas.local() {
                // A lone local replica (a single-node cluster): no fan-out, no timers.
                return match self.replicas.call(only, request).await.and_then(extract) {
                    Ok(value) => Ok(vec![(only, value)]),
                    Err(ReplicaError::StaleRing(newer)) => Err(CoordinatorError::StaleRing(newer)),
                    Err(ReplicaError::Refused(higher)) => Err(CoordinatorError::Refused(higher)),
                    Err(e) => {
                        round.fail(only, e);
                        stats::add(&self.stats.quorum_failures, 1);
                        Err(round.into_error(false).into())
                    }
                };
            }
        }
        let call = |node: NodeId| {
            let replicas = self.replicas.clone();
            let request = request.clone();
            async move { (node, replicas.call(node, request).await.and_then(extract)) }
        };
        // The round's members in preference order (local first, silent nodes last).
        let targets: Vec<NodeId> = preference
            .iter()
            .copied()
            .filter(|n| members.contains(n))
            .chain(members.iter().copied().filter(|n| !preference.contains(n)))
            .collect();
        let eager = match fanout {
            Fanout::All => targets.clone(),
            Fanout::Quorum => round.eager_targets(&targets),
        };
        let mut spares: VecDeque<NodeId> = targets.iter().copied().filter(|n| !eager.contains(n)).collect();
        let mut calls: FuturesUnordered<_> = eager.into_iter().map(call).collect();
        let hedge = tokio::time::sleep(self.request_timeout / HEDGE_FRACTION);
        let deadline = tokio::time::sleep(self.request_timeout);
        tokio::pin!(hedge, deadline);
        let mut refused: Option<Tag> = None;
        let outcome = loop {
            tokio::select! {
                next = calls.next() => match next {
                    Some((node, Ok(value))) => {
                        if round.succeed(node, value) == Progress::Reached {
                            break Ok(());
                        }
                    }
                    Some((_, Err(ReplicaError::StaleRing(newer)))) if newer > request.ring => {
                        break Err(Ended::StaleRing(newer));
                    }
                    Some((node, Err(e))) => {
                        if let ReplicaError::Refused(higher) = e {
                            refused = refused.max(Some(higher));
                        }
                        if let Some(spare) = round.replacement(node, spares.make_contiguous()) {
                            spares.retain(|n| *n != spare);
                            stats::add(&self.stats.spare_calls, 1);
                            calls.push(call(spare));
                        }
                        if round.fail(node, e) == Progress::Impossible {
                            break Err(Ended::NoQuorum { timed_out: false });
                        }
                    }
                    // Every call answered and no quorum yet: ask whoever is left.
                    None if !spares.is_empty() => {
                        stats::add(&self.stats.spare_calls, spares.len() as u64);
                        calls.extend(spares.drain(..).map(call));
                    }
                    None => break Err(Ended::NoQuorum { timed_out: false }),
                },
                () = &mut hedge, if !spares.is_empty() => {
                    stats::add(&self.stats.spare_calls, spares.len() as u64);
                    calls.extend(spares.drain(..).map(call));
                }
                () = &mut deadline => break Err(Ended::NoQuorum { timed_out: true }),
            }
        };
        let mut landed = !round.replies().is_empty();
        if phase == Phase::Accept && outcome.is_err() && !landed {
            // Whether a failed proposal landed anywhere decides how it may be retried: hear
            // every replica (until the deadline).
            loop {
                tokio::select! {
                    next = calls.next() => match next {
                        Some((_, Ok(_))) => landed = true,
                        Some(_) => {}
                        None => break,
                    },
                    () = &mut deadline => {
                        landed = true;
                        break;
                    }
                }
            }
        }
        if !calls.is_empty() {
            // Let the stragglers finish: every replica of a write should get it.
            actix_rt::spawn(async move { while calls.next().await.is_some() {} });
        }
        match outcome {
            Ok(()) => Ok(round.into_replies()),
            Err(Ended::StaleRing(newer)) => Err(CoordinatorError::StaleRing(newer)),
            Err(Ended::NoQuorum { .. }) if phase == Phase::Accept && landed => Err(CoordinatorError::PartlyAccepted),
            Err(Ended::NoQuorum { timed_out }) => match refused {
                Some(higher) => Err(CoordinatorError::Refused(higher)),
                None => {
                    stats::add(&self.stats.quorum_failures, 1);
                    Err(round.into_error(timed_out).into())
                }
            },
        }
    }

    /// Runs a cluster-wide `flush_all` now (see [`crate::flush`]).
    pub async fn flush_all(&self) -> Result<(), CoordinatorError> {
        let snapshot = self.ring.load();
        let writer = self.clock.writer();
        crate::flush::flush_all(
            &self.replicas,
            &snapshot,
            (self.w, writer, unix_now()),
            self.request_timeout,
        )
        .await?;
        Ok(())
    }

    /// The latest record of `key` (value or tombstone, expired or not) from a read quorum, after
    /// making sure a write quorum holds it.
    async fn read_latest(&self, place: &Placement, key: &Key) -> Result<Option<Record>, CoordinatorError> {
        let request = self.request(place, key, ReplicaOp::Read);
        let groups = place.groups(self.r);
        let answers = self
            .round(
                Phase::Read,
                (groups, &place.preference, Fanout::Quorum),
                request,
                expect_record,
            )
            .await?;
        let decision = decide_read(answers, &place.owners, self.w);
        if let Some((record, short)) = decision.write_back {
            stats::add(&self.stats.unreconciled_reads, 1);
            let request = self.request(place, key, ReplicaOp::Write(record));
            let written = self
                .round(
                    Phase::WriteBack,
                    (short, &place.preference, Fanout::All),
                    request,
                    expect_written,
                )
                .await?;
            stats::add(&self.stats.read_repairs, written.len() as u64);
        }
        Ok(decision.latest)
    }

    /// Writes `record` to the owners; returns once each owner set has its write quorum.
    async fn write(&self, place: &Placement, key: &Key, record: Record) -> Result<(), CoordinatorError> {
        let request = self.request(place, key, ReplicaOp::Write(record));
        let groups = place.groups(self.w);
        self.round(
            Phase::Write,
            (groups, &place.preference, Fanout::All),
            request,
            expect_written,
        )
        .await?;
        Ok(())
    }

    /// Runs `op` against the key's placement; if a replica says the cluster moved to a newer
    /// ring, learns it and runs `op` once more.
    async fn with_placement<T, F, Fut>(&self, key: &Key, op: F) -> Result<T, CoordinatorError>
    where
        F: Fn(Placement) -> Fut,
        Fut: std::future::Future<Output = Result<T, CoordinatorError>>,
    {
        match op(self.placement(key)?).await {
            Err(CoordinatorError::StaleRing(newer)) => {
                let learned = match &self.cluster {
                    Some(cluster) => cluster.learn.send(LearnRing(newer)).await.unwrap_or(false),
                    None => false,
                };
                if !learned {
                    return Err(CoordinatorError::StaleRing(newer));
                }
                stats::add(&self.stats.stale_ring_retries, 1);
                op(self.placement(key)?).await
            }
            other => other,
        }
    }

    /// The latest live record of `key`, or `None`. A read whose write-back a promise refused
    /// (a read-modify-write of the key is under way) is read again after a short pause.
    pub async fn get(&self, key: Key) -> Result<Option<Record>, CoordinatorError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let latest = loop {
            let attempt = self
                .with_placement(&key, |place| {
                    let key = key.clone();
                    async move { self.read_latest(&place, &key).await }
                })
                .await;
            match attempt {
                Err(CoordinatorError::Refused(_)) if tokio::time::Instant::now() < deadline => backoff(0).await,
                other => break other?,
            }
        };
        let now = unix_now();
        Ok(latest.filter(|r| r.is_live(now)))
    }

    /// Stores a value; returns its version.
    pub async fn set(&self, key: Key, flags: u32, expires_at: u64, data: Bytes) -> Result<Tag, CoordinatorError> {
        let minted = OnceLock::new();
        self.with_placement(&key, |place| {
            let (key, data, minted) = (key.clone(), data.clone(), &minted);
            async move {
                let record = match minted.get() {
                    // A retry after a stale ring: the first attempt's writes may have landed, so
                    // the same version is written again, never a newer one.
                    Some(record) => Record::clone(record),
                    None => {
                        let request = self.request(&place, &key, ReplicaOp::ReadVersion);
                        let groups = place.groups(self.r);
                        let versions = self
                            .round(
                                Phase::Version,
                                (groups, &place.preference, Fanout::Quorum),
                                request,
                                expect_version,
                            )
                            .await?;
                        let tag = self.clock.next_after(versions.iter().map(|(_, tag)| tag));
                        minted
                            .get_or_init(|| Record::value(tag, flags, expires_at, data))
                            .clone()
                    }
                };
                let tag = record.tag;
                self.write(&place, &key, record).await?;
                Ok(tag)
            }
        })
        .await
    }

    /// Deletes `key`: if a read quorum finds a live value, writes a newer tombstone. Returns
    /// whether a live value was found.
    pub async fn delete(&self, key: Key) -> Result<bool, CoordinatorError> {
        let minted = OnceLock::new();
        self.with_placement(&key, |place| {
            let (key, minted) = (key.clone(), &minted);
            async move {
                let tombstone = match minted.get() {
                    // A retry after a stale ring rewrites the tombstone the first attempt chose.
                    Some(tombstone) => Record::clone(tombstone),
                    None => {
                        let now = unix_now();
                        match self.read_latest(&place, &key).await? {
                            Some(latest) if latest.is_live(now) => minted
                                .get_or_init(|| Record::tombstone(self.clock.next_after([&Some(latest.tag)]), now))
                                .clone(),
                            _ => return Ok(false),
                        }
                    }
                };
                self.write(&place, &key, tombstone).await?;
                Ok(true)
            }
        })
        .await
    }

    /// Runs a read-modify-write `change` of `key` at the key's stable proposer (here, or
    /// forwarded); answers the change's answer and the key's resulting record (for `gat`). Run
    /// here if the proposer cannot be reached; if it was asked but its answer was lost, the
    /// outcome is unknown.
    pub async fn update_routed(&self, key: Key, change: Change) -> Result<(Answer, Option<Record>), CoordinatorError> {
        let place = self.placement(&key)?;
        let proposer = self.stable_proposer(&place);
        if proposer == self.replicas.local() {
            return self.update(key, change).await;
        }
        let forwarded = ForwardedUpdate {
            key: key.clone(),
            change: change.clone(),
        };
        match self.replicas.forward_update(proposer, forwarded).await {
            Forwarded::Done(result) => result.map_err(CoordinatorError::Proposer),
            Forwarded::NotRun => self.update(key, change).await,
            Forwarded::Lost => Err(CoordinatorError::OutcomeUnknown),
        }
    }

    /// The node that proposes the changes of a key placed at `place`: the first owner of its
    /// newest owner set that this node does not suspect (itself if it suspects them all). Nodes
    /// that agree on ring and health pick the same one, so updates of a hot key queue on one
    /// node's [`UpdateLocks`] instead of duelling.
    fn stable_proposer(&self, place: &Placement) -> NodeId {
        let local = self.replicas.local();
        let Some(newest) = place.owners.last() else {
            return local;
        };
        let status = self.cluster.as_ref().map(|c| c.status.load());
        let suspected = |n: &NodeId| status.as_ref().is_some_and(|s| s.unhealthy.contains(n));
        newest.iter().copied().find(|n| !suspected(n)).unwrap_or(local)
    }

    /// Runs a read-modify-write `change` of `key` as its proposer, per-key Paxos (see
    /// [`crate::paxos`]). A proposal refused by a higher ballot is retried with a higher one
    /// after a short random pause, until the request timeout.
    pub async fn update(&self, key: Key, change: Change) -> Result<(Answer, Option<Record>), CoordinatorError> {
        let _serialised = self.updates.lock(&key).await;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut seen: Option<Tag> = None;
        let mut pending: Option<Pending> = None;
        for attempt in 0u32.. {
            let place = self.placement(&key)?;
            let ballot = self.clock.next_after([&seen]);
            let failure = match self.propose(&place, &key, &change, ballot, &mut pending).await {
                Ok(done) => return Ok(done),
                Err(failure) => failure,
            };
            match failure {
                CoordinatorError::Refused(higher) => seen = seen.max(Some(higher)),
                CoordinatorError::PartlyAccepted => {}
                CoordinatorError::StaleRing(newer) => {
                    let learned = match &self.cluster {
                        Some(cluster) => cluster.learn.send(LearnRing(newer)).await.unwrap_or(false),
                        None => false,
                    };
                    if !learned {
                        return Err(CoordinatorError::StaleRing(newer));
                    }
                    stats::add(&self.stats.stale_ring_retries, 1);
                }
                other => return Err(other),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(if pending.is_some() {
                    CoordinatorError::OutcomeUnknown
                } else {
                    CoordinatorError::Contended
                });
            }
            backoff(attempt).await;
        }
        Err(CoordinatorError::Contended)
    }

    /// One attempt of [`CoordinatorCore::update`] with `ballot`. An accept that fails after it
    /// may have landed leaves its proposal in `pending` for the next attempt to judge.
    async fn propose(
        &self,
        place: &Placement,
        key: &Key,
        change: &Change,
        ballot: Tag,
        pending: &mut Option<Pending>,
    ) -> Result<(Answer, Option<Record>), CoordinatorError> {
        let request = self.request(place, key, ReplicaOp::Prepare(ballot));
        let promised = self
            .round(
                Phase::Prepare,
                (place.groups(self.w), &place.preference, Fanout::Quorum),
                request,
                expect_promised,
            )
            .await?;
        let answers = (promised, place.owners.as_slice(), self.w);
        let (record, answer) = match paxos::decide(change, ballot, answers, pending.as_ref(), unix_now()) {
            Decision::Won(answer, record) | Decision::Answer(answer, record) => return Ok((answer, record)),
            Decision::Unknown => return Err(CoordinatorError::OutcomeUnknown),
            Decision::Accept(record, answer) => (record, answer),
        };
        let request = self.request(place, key, ReplicaOp::Accept(record.clone()));
        let accepted = self
            .round(
                Phase::Accept,
                (place.groups(self.w), &place.preference, Fanout::All),
                request,
                expect_written,
            )
            .await;
        match accepted {
            Ok(_) => Ok((answer, Some(record))),
            Err(CoordinatorError::Refused(higher)) => Err(CoordinatorError::Refused(higher)),
            Err(e) => {
                // It may have landed (partly, or before a ring change): the next attempt judges it.
                *pending = Some(Pending { record, answer });
                Err(e)
            }
        }
    }
}

/// A random pause before retry `attempt` (from 0) of a refused operation, so contenders spread
/// out: up to 2 ms, doubling per attempt up to [`RETRY_PAUSE_MAX_MS`].
async fn backoff(attempt: u32) {
    let cap = (2u64 << attempt.min(8)).min(RETRY_PAUSE_MAX_MS);
    let millis = rand::random_range(1..=cap);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// Longest pause between attempts of a refused operation.
const RETRY_PAUSE_MAX_MS: u64 = 50;

/// Why a round ended without its quorum.
enum Ended {
    StaleRing(RingId),
    NoQuorum { timed_out: bool },
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

fn expect_promised(reply: ReplicaReply) -> Result<Option<Record>, ReplicaError> {
    match reply {
        ReplicaReply::Promised(r) => Ok(r),
        _ => Err(ReplicaError::UnexpectedReply("prepare")),
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

/// Run a read-modify-write command; answers its answer and the key's resulting record.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(Answer, Option<Record>), CoordinatorError>")]
pub struct Update {
    /// The key.
    pub key: Key,
    /// The command.
    pub change: Change,
}

/// Flush the whole cluster (`flush_all`), now or — with `at` in the future — at that unix time:
/// then the flush is scheduled on this node and the answer does not wait for it.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), CoordinatorError>")]
pub struct FlushAll {
    /// When the flush takes effect (unix seconds); now if not in the future.
    pub at: u64,
}

impl Handler<FlushAll> for Coordinator {
    type Result = ResponseFuture<Result<(), CoordinatorError>>;

    fn handle(&mut self, FlushAll { at }: FlushAll, _ctx: &mut Context<Self>) -> Self::Result {
        let core = Arc::clone(&self.core);
        let wait = at.saturating_sub(unix_now());
        if wait == 0 {
            return Box::pin(async move { core.flush_all().await });
        }
        log::info!("flush_all scheduled in {wait} s");
        actix_rt::spawn(async move {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            if let Err(e) = core.flush_all().await {
                log::error!("scheduled flush_all failed: {e}");
            }
        });
        Box::pin(async { Ok(()) })
    }
}

impl Handler<Update> for Coordinator {
    type Result = ResponseFuture<Result<(Answer, Option<Record>), CoordinatorError>>;

    fn handle(&mut self, msg: Update, _ctx: &mut Context<Self>) -> Self::Result {
        let core = Arc::clone(&self.core);
        Box::pin(async move { core.update_routed(msg.key, msg.change).await })
    }
}

impl Handler<ServeUpdate> for Coordinator {
    type Result = ResponseFuture<kai_proto::peer::UpdateReply>;

    fn handle(&mut self, ServeUpdate(update): ServeUpdate, _ctx: &mut Context<Self>) -> Self::Result {
        let core = Arc::clone(&self.core);
        Box::pin(async move { core.update(update.key, update.change).await.map_err(|e| e.to_string()) })
    }
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

#[cfg(test)]
mod tests;
