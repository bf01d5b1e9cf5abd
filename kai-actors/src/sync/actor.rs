//! The Sync actor: moves buckets when ownership changes, and repairs replicas in the background.
//!
//! Its decisions come from [`plan`](super::plan) over the active rings and this node's persisted
//! [`Progress`]; the actor performs them.
//!
//! - **Adoption** of a newer ring: record (durably) every bucket this node newly owns as
//!   unpulled, drop its local copy (it may be arbitrarily stale, e.g. after being removed and
//!   coming back; a fresh pull replaces it) — unless this node already did so for this ring in a
//!   previous run — then close the replica fence to older rings, then report `Adopted`.
//! - **Handoff**: unpulled buckets are pulled page by page from enough of their settled owners to
//!   cover every acknowledged write (`owners − W + 1`): those this node owns in the settled ring
//!   at once, those new in the newest ring once the barrier is reached (every coordinator
//!   adopted it). Each pulled bucket is recorded durably. `Synced` is reported, by this run only,
//!   once nothing owned is left to pull. Rate-limited.
//! - **Identity**: a store the cluster expects data from but that is new or not the one the
//!   cluster knows refuses every replica request and refills every bucket it owns first.
//! - **Garbage**: once settled, buckets this node does not own are dropped.
//! - **Anti-entropy**, while settled: a few owned buckets at a time, compare digests with each
//!   other owner; exchange the records of differing segments, newer tag wins, both ways. When
//!   every owner agrees, tombstones older than `tombstone_grace` are purged on all of them
//!   together, so their digests stay equal. Rate-limited; pauses between buckets only while
//!   nothing needs repair, so a node that missed writes catches up at full speed.
//! - Garbage drops, anti-entropy, GC and pulls wait until this node has heard the cluster's
//!   current view ([`CaughtUp`]); every request carries the ring it was planned on, and other
//!   replicas refuse it if that ring is outdated or this node owns no copy of the bucket
//!   ([`gate`](super::gate)).

use super::gate::{GateReader, GateView};
use super::merkle::differing_segments;
use super::mover::{MoveError, Mover, PullProgress};
use super::plan;
use super::progress::{DataState, Progress, ProgressStore};
use super::rate::TokenBucket;
use crate::fence::Fence;
use crate::membership::{Adopted, Membership, Synced};
use crate::peer::PeerDirectory;
use crate::ring::Ring;
use crate::stats::{self, NodeStats};
use crate::store::StoreHandle;
use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use futures_util::StreamExt;
use kai_proto::cluster::{RingId, RingState};
use kai_proto::{BucketId, NodeId};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buckets pulled at once.
const PULL_CONCURRENCY: usize = 4;
/// Buckets compared (and repaired) at once by anti-entropy.
const ANTI_ENTROPY_LOOPS: usize = 4;

/// How the Sync actor is set up.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Buckets.
    pub buckets: u32,
    /// Ring points per node.
    pub virtual_nodes: u32,
    /// Replicas per key.
    pub n: usize,
    /// Write quorum.
    pub w: usize,
    /// Background data movement limit, records per second.
    pub rate: u64,
    /// Pause between anti-entropy comparisons while everything agrees.
    pub anti_entropy_pause: Duration,
    /// Age after which tombstones every replica holds are purged; `None` keeps them.
    pub tombstone_grace: Option<Duration>,
}

/// Moves and repairs data.
pub struct SyncActor {
    mover: Mover,
    config: SyncConfig,
    fence: Arc<Fence>,
    gate: GateReader,
    membership: Option<Addr<Membership>>,
    /// Active rings, settled first.
    rings: Vec<(RingId, Ring)>,
    /// Newest ring adopted by this run (fence closed to older ones, reported).
    adopted: RingId,
    /// Newest ring whose pull barrier was reached.
    barrier: Option<RingId>,
    /// This node has heard the cluster's current view.
    current: bool,
    /// This node has completed a gossip exchange (its identity could be judged).
    heard: bool,
    /// Gossip showed the cluster remembers other data under this node's name.
    conflict: bool,
    /// A pull is running (for the rings of this generation).
    pulling: bool,
    /// Newest ring reported synced by this run.
    reported: RingId,
    /// Settled ring whose garbage was last dropped.
    garbage_checked: Option<RingId>,
    cursor: u32,
}

impl SyncActor {
    /// A Sync actor for node `me` over `store`, resuming `progress`. A store that cannot be
    /// trusted yet closes the replica `fence` at once.
    pub fn new(
        me: NodeId,
        config: SyncConfig,
        (store, fence, gate): (StoreHandle, Arc<Fence>, GateReader),
        (peers, progress): (PeerDirectory, ProgressStore),
        stats: Arc<NodeStats>,
    ) -> Self {
        let limiter = Rc::new(RefCell::new(TokenBucket::new(config.rate, Instant::now())));
        let untrusted = progress.get().data != DataState::Ready;
        fence.set_refilling(untrusted);
        stats.sync.refilling.store(u64::from(untrusted), Ordering::Relaxed);
        SyncActor {
            mover: Mover {
                me,
                ring: RingId::default(),
                store,
                peers,
                limiter,
                stats,
                progress: Rc::new(RefCell::new(progress)),
                generation: Rc::new(Cell::new(0)),
            },
            config,
            fence,
            gate,
            membership: None,
            rings: Vec::new(),
            adopted: RingId::default(),
            barrier: None,
            current: false,
            heard: false,
            conflict: false,
            pulling: false,
            reported: RingId::default(),
            garbage_checked: None,
            cursor: 0,
        }
    }

    fn me(&self) -> NodeId {
        self.mover.me
    }

    fn latest_id(&self) -> Option<RingId> {
        self.rings.last().map(|(id, _)| *id)
    }

    fn progress(&self) -> Progress {
        self.mover.progress.borrow().get().clone()
    }

    fn update_progress(&self, change: impl FnOnce(&mut Progress)) {
        self.mover.progress.borrow_mut().update(change);
    }

    /// A mover whose requests carry the newest ring.
    fn mover(&self) -> Mover {
        Mover {
            ring: self.latest_id().unwrap_or_default(),
            ..self.mover.clone()
        }
    }

    /// Closes (or opens) the replica fence while the store cannot be trusted.
    fn set_refilling(&self, refilling: bool) {
        self.fence.set_refilling(refilling);
        self.mover
            .stats
            .sync
            .refilling
            .store(u64::from(refilling), Ordering::Relaxed);
    }

    fn publish_gate(&self) {
        self.gate.store(Arc::new(GateView {
            rings: self.rings.clone(),
            current: self.current,
        }));
    }

    fn report<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Membership: Handler<M>,
    {
        if let Some(membership) = &self.membership {
            membership.do_send(msg);
        }
    }

    /// Does whatever the rings and the progress call for now.
    fn step(&mut self, ctx: &mut Context<Self>) {
        if self.rings.is_empty() {
            return;
        }
        if self.adopt(ctx) {
            return;
        }
        // The store is judged as soon as one exchange showed what the cluster knows of this
        // node (a refill can only be more cautious); everything else waits for the current view.
        if self.heard && self.judge_data(ctx) {
            return;
        }
        if !self.current {
            return;
        }
        let me = self.me();
        let disowned = plan::disowned(&self.rings, me, &self.progress());
        if !disowned.is_empty() {
            self.update_progress(|p| {
                for bucket in disowned {
                    p.unpulled.remove(&bucket.0);
                }
            });
        }
        let barrier = self.barrier.is_some() && self.barrier == self.latest_id();
        if !self.pulling {
            let buckets = plan::pull_plan(&self.rings, me, &self.progress(), barrier);
            if !buckets.is_empty() {
                self.pull(buckets, ctx);
                return;
            }
        }
        let progress = self.progress();
        if progress.data == DataState::Refill && plan::pull_plan(&self.rings, me, &progress, false).is_empty() {
            log::info!("store refilled: serving again");
            self.update_progress(|p| p.data = DataState::Ready);
            self.set_refilling(false);
        }
        if let Some(ring) = plan::synced(&self.rings, me, &self.progress(), barrier) {
            if ring > self.reported {
                self.reported = ring;
                self.update_progress(|p| p.synced = p.synced.max(ring));
                self.report(Synced(ring));
            }
        }
        self.drop_garbage(ctx);
    }

    /// Adopts the newest ring if this run has not: wipe what it newly owns (unless a previous
    /// run did), close the fence, report. True while an adoption is under way.
    fn adopt(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(ring) = self.latest_id() else {
            return false;
        };
        if ring <= self.adopted {
            return false;
        }
        self.adopted = ring;
        let wipe = plan::adoption_wipe(&self.rings, self.me(), self.progress().adopted);
        // Recorded before wiping: a crash in between still pulls them back.
        self.update_progress(|p| {
            p.adopted = p.adopted.max(ring);
            p.unpulled.extend(wipe.iter().map(|b| b.0));
        });
        let (store, fence) = (self.mover.store.clone(), Arc::clone(&self.fence));
        let work = async move {
            for bucket in wipe {
                if let Err(e) = store.drop_bucket(bucket).await {
                    log::error!("cannot drop stale bucket {bucket} before pulling it: {e}");
                }
            }
            fence.adopt(ring).await;
        };
        ctx.wait(work.into_actor(self).map(move |(), act, ctx| {
            log::info!("adopted ring version {}", ring.version);
            act.report(Adopted(ring));
            act.step(ctx);
        }));
        true
    }

    /// Decides, once current, whether the store can be trusted; a store that must refill drops
    /// everything and records every owned bucket unpulled. True while the wipe is under way.
    fn judge_data(&mut self, ctx: &mut Context<Self>) -> bool {
        let progress = self.progress();
        let judged = plan::judge_data(progress.data, self.conflict, &self.rings, self.me());
        self.conflict = false;
        if judged == progress.data {
            return false;
        }
        if judged == DataState::Ready {
            self.update_progress(|p| p.data = DataState::Ready);
            self.set_refilling(false);
            return false;
        }
        self.set_refilling(true);
        let owned = plan::owned(&self.rings, self.me());
        log::warn!(
            "this store holds none of what the cluster expects from this node: dropping it and refilling {} bucket(s) before serving",
            owned.len()
        );
        self.update_progress(|p| {
            p.data = DataState::Refill;
            p.unpulled.extend(owned.iter().map(|b| b.0));
        });
        self.reported = RingId::default();
        let store = self.mover.store.clone();
        let buckets = self.config.buckets;
        let work = async move {
            for bucket in (0..buckets).map(BucketId) {
                if store.digest(bucket).iter().any(|d| *d != 0) {
                    if let Err(e) = store.drop_bucket(bucket).await {
                        log::error!("cannot drop bucket {bucket} before refilling: {e}");
                    }
                }
            }
        };
        ctx.wait(work.into_actor(self).map(|(), act, ctx| act.step(ctx)));
        true
    }

    /// Pulls `buckets` (each recorded as pulled when done), then steps again.
    fn pull(&mut self, buckets: Vec<BucketId>, ctx: &mut Context<Self>) {
        self.pulling = true;
        let (me, w) = (self.me(), self.config.w);
        let jobs: Vec<(BucketId, Vec<NodeId>, usize)> = buckets
            .into_iter()
            .map(|b| {
                let (sources, needed) = plan::sources(&self.rings, me, b, w);
                (b, sources, needed)
            })
            .collect();
        let total = jobs.len();
        let ring = self.latest_id().unwrap_or_default();
        self.mover
            .stats
            .sync
            .buckets_pending
            .store(total as u64, Ordering::Relaxed);
        log::info!("pulling {total} bucket(s) for ring version {}", ring.version);
        let mover = self.mover();
        let generation = mover.generation.get();
        let work = async move {
            let started = Instant::now();
            let mut progress = PullProgress::new(total, started);
            let mut pulls = futures_util::stream::iter(jobs)
                .map(|(bucket, sources, needed)| {
                    let mover = mover.clone();
                    async move { mover.pull_from_enough(bucket, &sources, needed).await }
                })
                .buffer_unordered(PULL_CONCURRENCY);
            while let Some(moved) = pulls.next().await {
                if let Some(moved) = moved {
                    progress.bucket_done(moved, &mover.stats);
                }
            }
            (progress.moved, started.elapsed())
        };
        ctx.spawn(work.into_actor(self).map(move |(moved, took), act, ctx| {
            let rate = moved as f64 / took.as_secs_f64().max(0.001);
            log::info!(
                "pulled {moved} record(s) for ring version {} in {took:.1?} ({rate:.0}/s)",
                ring.version
            );
            if act.mover.generation.get() == generation {
                act.pulling = false;
                act.step(ctx);
            }
        }));
    }

    /// Drops buckets this node does not own in the settled ring, once per settled ring.
    fn drop_garbage(&mut self, ctx: &mut Context<Self>) {
        let [(settled_id, settled)] = self.rings.as_slice() else {
            return;
        };
        if self.garbage_checked == Some(*settled_id) {
            return;
        }
        self.garbage_checked = Some(*settled_id);
        let me = self.me();
        let store = self.mover.store.clone();
        let garbage: Vec<BucketId> = (0..self.config.buckets)
            .map(BucketId)
            .filter(|b| !settled.preference_list(*b).contains(&me) && store.digest(*b).iter().any(|d| *d != 0))
            .collect();
        if garbage.is_empty() {
            return;
        }
        log::info!("dropping {} bucket(s) this node no longer owns", garbage.len());
        let stats = Arc::clone(&self.mover.stats);
        ctx.spawn(
            async move {
                for bucket in garbage {
                    match store.drop_bucket(bucket).await {
                        Ok(_) => stats::add(&stats.sync.buckets_dropped, 1),
                        Err(e) => log::error!("cannot drop bucket {bucket}: {e}"),
                    }
                }
            }
            .into_actor(self),
        );
    }

    /// True while anti-entropy may run: settled, current, nothing left to pull, store trusted.
    fn may_compare(&self) -> bool {
        let progress = self.progress();
        self.rings.len() == 1
            && self.current
            && !self.pulling
            && progress.data == DataState::Ready
            && progress.unpulled.is_empty()
    }

    /// Compares the next owned bucket with its other owners and repairs differences; schedules
    /// the next comparison right away if something was repaired.
    fn anti_entropy(&mut self, ctx: &mut Context<Self>) {
        let pause = self.config.anti_entropy_pause;
        let settled = match self.rings.first() {
            Some((_, ring)) if self.may_compare() => ring,
            _ => {
                ctx.run_later(pause, |act, ctx| act.anti_entropy(ctx));
                return;
            }
        };
        let me = self.me();
        let buckets = self.config.buckets;
        let next = (0..buckets)
            .map(|i| BucketId((self.cursor + i) % buckets))
            .find(|b| settled.preference_list(*b).contains(&me));
        let Some(bucket) = next else {
            ctx.run_later(pause, |act, ctx| act.anti_entropy(ctx));
            return;
        };
        let others: Vec<NodeId> = settled
            .preference_list(bucket)
            .iter()
            .copied()
            .filter(|n| *n != me)
            .collect();
        self.cursor = (bucket.0 + 1) % buckets;
        let (mover, grace) = (self.mover(), self.config.tombstone_grace);
        let work = async move {
            let mut repaired = 0;
            let mut all_equal = true;
            for peer in &others {
                stats::add(&mover.stats.sync.buckets_compared, 1);
                let theirs = mover.digest_of(*peer, bucket).await?;
                let differing = differing_segments(&mover.store.digest(bucket), &theirs);
                if differing != 0 {
                    all_equal = false;
                    repaired += mover.repair(bucket, *peer, differing).await?;
                }
            }
            if let (true, Some(grace)) = (all_equal, grace) {
                mover.purge_tombstones(bucket, &others, grace).await?;
            }
            Ok::<u64, MoveError>(repaired)
        };
        ctx.spawn(work.into_actor(self).map(move |result, _act, ctx| {
            let delay = match result {
                Ok(0) => pause,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    log::debug!("anti-entropy of bucket {bucket}: {e}");
                    pause
                }
            };
            ctx.run_later(delay, |act, ctx| act.anti_entropy(ctx));
        }));
    }
}

impl Actor for SyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Several comparison loops share the bucket cursor, so a node that missed many writes
        // is repaired several buckets at a time.
        for _ in 0..ANTI_ENTROPY_LOOPS {
            ctx.run_later(self.config.anti_entropy_pause, |act, ctx| act.anti_entropy(ctx));
        }
    }
}

/// Connects the Sync actor to the Membership actor it reports to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportTo(pub Addr<Membership>);

impl Handler<ReportTo> for SyncActor {
    type Result = ();

    fn handle(&mut self, ReportTo(membership): ReportTo, _ctx: &mut Context<Self>) {
        self.membership = Some(membership);
    }
}

/// The active rings changed (settled first).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RingsChanged(pub Vec<RingState>);

impl Handler<RingsChanged> for SyncActor {
    type Result = ();

    fn handle(&mut self, RingsChanged(rings): RingsChanged, ctx: &mut Context<Self>) {
        let (buckets, vnodes, n) = (self.config.buckets, self.config.virtual_nodes, self.config.n);
        self.rings = rings
            .into_iter()
            .map(|state| (state.id, Ring::build(&state.ids(), buckets, vnodes, n)))
            .collect();
        // Pulls planned on the previous rings give up their retries; the next step replans.
        self.mover.generation.set(self.mover.generation.get() + 1);
        self.pulling = false;
        self.publish_gate();
        self.step(ctx);
    }
}

/// How much of the cluster's view this node has heard.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct CaughtUp {
    /// Heard the current view (since it started, or since it last lost sight of a majority).
    pub current: bool,
    /// Completed at least one gossip exchange since it started (or needs none: alone).
    pub heard: bool,
}

impl Handler<CaughtUp> for SyncActor {
    type Result = ();

    fn handle(&mut self, CaughtUp { current, heard }: CaughtUp, ctx: &mut Context<Self>) {
        self.current = current;
        self.heard = heard;
        if !current {
            self.garbage_checked = None;
        }
        self.publish_gate();
        self.step(ctx);
    }
}

/// Gossip shows the cluster remembers another data dir under this node's name.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DataConflict;

impl Handler<DataConflict> for SyncActor {
    type Result = ();

    fn handle(&mut self, _msg: DataConflict, ctx: &mut Context<Self>) {
        self.conflict = true;
        self.step(ctx);
    }
}

/// Every node that may coordinate has adopted `ring`: new owners may pull.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BarrierReached(pub RingId);

impl Handler<BarrierReached> for SyncActor {
    type Result = ();

    fn handle(&mut self, BarrierReached(ring): BarrierReached, ctx: &mut Context<Self>) {
        self.barrier = Some(ring);
        self.step(ctx);
    }
}

/// Stop all background work (the node is shutting down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for SyncActor {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
