//! The Sync actor: moves buckets when ownership changes, and repairs replicas in the background.
//!
//! What to move and when is decided by the [`Transition`] state machine; this actor feeds it
//! events (a new placement from the Ring actor, news from Membership, the end of its own wipes
//! and pulls) and performs the effects it returns: saving the progress, wiping buckets, closing
//! the replica fence, pulling page by page from enough owners (rate-limited), reporting
//! `Adopted`/`Synced` to Membership, dropping garbage, publishing the [`gate`](super::gate)'s view.
//! It keeps no transition state of its own.
//!
//! **Anti-entropy**, while the machine says the node may compare ([`Transition::comparable`]):
//! a few owned buckets at a time, compare digests with each other owner; exchange the records of
//! differing segments, newer tag wins, both ways. When every owner agrees, tombstones older than
//! `tombstone_grace` are purged on all of them together, so their digests stay equal.
//! Rate-limited; pauses between buckets only while nothing needs repair, so a node that missed
//! writes catches up at full speed. Every request carries the ring it was planned on, and other
//! replicas refuse it if that ring is outdated or this node owns no copy of the bucket.

use super::gate::{GateReader, GateView};
use super::mover::{MoveError, Mover, PullProgress};
use super::progress::{DataState, Progress, ProgressFile};
use super::rate::TokenBucket;
use super::transition::{Effect, Event, PullJob, Transition};
use crate::fence::Fence;
use crate::membership::{Adopted, Membership, Synced};
use crate::peer::PeerDirectory;
use crate::ring::PlacementChanged;
use crate::stats::{self, NodeStats};
use crate::store::merkle::differing_segments;
use crate::store::StoreHandle;
use actix::fut::ActorStreamExt;
use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, SpawnHandle, WrapFuture};
use futures_util::StreamExt;
use kai_proto::cluster::RingId;
use kai_proto::{BucketId, NodeId};
use std::cell::RefCell;
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
    /// Write quorum.
    pub w: usize,
    /// Background data movement limit, records per second.
    pub rate: u64,
    /// Pause between anti-entropy comparisons while everything agrees.
    pub anti_entropy_pause: Duration,
    /// Age after which tombstones every replica holds are purged; `None` keeps them.
    pub tombstone_grace: Option<Duration>,
}

impl From<&crate::config::NodeConfig> for SyncConfig {
    fn from(config: &crate::config::NodeConfig) -> Self {
        SyncConfig {
            buckets: config.buckets,
            w: config.w,
            rate: config.sync_rate,
            anti_entropy_pause: config.anti_entropy_interval,
            tombstone_grace: (!config.tombstone_grace.is_zero()).then_some(config.tombstone_grace),
        }
    }
}

/// Moves and repairs data.
pub struct SyncActor {
    transition: Transition,
    mover: Mover,
    config: SyncConfig,
    file: ProgressFile,
    fence: Arc<Fence>,
    gate: GateReader,
    membership: Option<Addr<Membership>>,
    /// The running pulls, dropped when the placement changes.
    pulls: Option<SpawnHandle>,
    started: Instant,
    /// Next bucket anti-entropy looks at.
    cursor: u32,
}

impl SyncActor {
    /// A Sync actor for node `me` over `store`, resuming `progress` (saved in `file`). A store
    /// that cannot be trusted yet closes the replica `fence` at once.
    pub fn new(
        me: NodeId,
        config: SyncConfig,
        (store, fence, gate): (StoreHandle, Arc<Fence>, GateReader),
        (peers, file, progress): (PeerDirectory, ProgressFile, Progress),
        stats: Arc<NodeStats>,
    ) -> Self {
        let limiter = Rc::new(RefCell::new(TokenBucket::new(config.rate, Instant::now())));
        let untrusted = progress.data != DataState::Ready;
        fence.set_refilling(untrusted);
        stats.sync.refilling.store(u64::from(untrusted), Ordering::Relaxed);
        SyncActor {
            transition: Transition::new(me, config.w, progress),
            mover: Mover {
                me,
                ring: RingId::default(),
                store,
                peers,
                limiter,
                stats,
            },
            config,
            file,
            fence,
            gate,
            membership: None,
            pulls: None,
            started: Instant::now(),
            cursor: 0,
        }
    }

    fn me(&self) -> NodeId {
        self.mover.me
    }

    /// A mover whose requests carry the newest ring.
    fn mover(&self) -> Mover {
        Mover {
            ring: self.transition.latest(),
            ..self.mover.clone()
        }
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

    /// Feeds `event` to the machine and performs what it asks for.
    fn apply(&mut self, event: Event, ctx: &mut Context<Self>) {
        if matches!(event, Event::Placement(_)) {
            // Pulls planned on the previous placement give up; the machine plans again.
            if let Some(pulls) = self.pulls.take() {
                ctx.cancel_future(pulls);
            }
        }
        for effect in self.transition.handle(event) {
            self.perform(effect, ctx);
        }
    }

    fn perform(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        match effect {
            Effect::Save(progress) => {
                if let Err(e) = self.file.save(&progress) {
                    log::error!("cannot save transition progress: {e}");
                }
            }
            Effect::Adopt { ring, wipe } => self.adopt(ring, wipe, ctx),
            Effect::Refilling(refilling) => {
                self.fence.set_refilling(refilling);
                let gauge = &self.mover.stats.sync.refilling;
                gauge.store(u64::from(refilling), Ordering::Relaxed);
            }
            Effect::WipeForRefill => self.wipe_for_refill(ctx),
            Effect::Pull { generation, ring, jobs } => self.pull(generation, ring, jobs, ctx),
            Effect::ReportAdopted(ring) => self.report(Adopted(ring)),
            Effect::ReportSynced(ring) => self.report(Synced(ring)),
            Effect::DropGarbage => self.drop_garbage(ctx),
            Effect::PublishGate { current } => self.gate.store(Arc::new(GateView {
                placement: self.transition.placement().cloned(),
                current,
            })),
        }
    }

    /// Wipes what adopting `ring` newly owns and closes the fence to older rings; nothing else
    /// runs meanwhile.
    fn adopt(&mut self, ring: RingId, wipe: Vec<BucketId>, ctx: &mut Context<Self>) {
        let (store, fence) = (self.mover.store.clone(), Arc::clone(&self.fence));
        let work = async move {
            for bucket in wipe {
                if let Err(e) = store.drop_bucket(bucket).await {
                    log::error!("cannot drop stale bucket {bucket} before pulling it: {e}");
                }
            }
            fence.adopt(ring).await;
        };
        ctx.wait(
            work.into_actor(self)
                .map(move |(), act, ctx| act.apply(Event::Adopted(ring), ctx)),
        );
    }

    /// Drops every bucket of a store that must refill; nothing else runs meanwhile.
    fn wipe_for_refill(&mut self, ctx: &mut Context<Self>) {
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
        ctx.wait(
            work.into_actor(self)
                .map(|(), act, ctx| act.apply(Event::RefillWiped, ctx)),
        );
    }

    /// Pulls `jobs` with requests carrying `ring`, reporting each completed bucket to the machine.
    fn pull(&mut self, generation: u64, ring: RingId, jobs: Vec<PullJob>, ctx: &mut Context<Self>) {
        let total = jobs.len();
        let stats = Arc::clone(&self.mover.stats);
        stats.sync.buckets_pending.store(total as u64, Ordering::Relaxed);
        log::info!("pulling {total} bucket(s) for ring version {}", ring.version);
        let mover = Mover {
            ring,
            ..self.mover.clone()
        };
        let started = Instant::now();
        let mut progress = PullProgress::new(total, started);
        let pulls = futures_util::stream::iter(jobs)
            .map(move |job| {
                let mover = mover.clone();
                async move {
                    let moved = mover.pull_from_enough(job.bucket, &job.sources, job.needed).await;
                    (job.bucket, moved)
                }
            })
            .buffer_unordered(PULL_CONCURRENCY);
        let work = actix::fut::wrap_stream::<_, Self>(pulls)
            .map(move |(bucket, moved), act, ctx| {
                progress.bucket_done(moved, &act.mover.stats);
                let now = act.started.elapsed();
                act.apply(
                    Event::Pulled {
                        generation,
                        bucket,
                        now,
                    },
                    ctx,
                );
                progress.moved
            })
            .fold(0, |_, moved, _act, _ctx| actix::fut::ready(moved))
            .map(move |moved, act: &mut Self, ctx: &mut Context<Self>| {
                let took = started.elapsed();
                let rate = moved as f64 / took.as_secs_f64().max(0.001);
                log::info!(
                    "pulled {moved} record(s) for ring version {} in {took:.1?} ({rate:.0}/s)",
                    ring.version
                );
                act.pulls = None;
                act.apply(Event::PullsEnded { generation }, ctx);
            });
        self.pulls = Some(ctx.spawn(work));
    }

    /// Drops buckets this node does not own in the settled ring.
    fn drop_garbage(&mut self, ctx: &mut Context<Self>) {
        let Some(settled) = self.transition.placement().and_then(|p| p.settled()).cloned() else {
            return;
        };
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

    /// Compares the next owned bucket with its other owners and repairs differences; schedules
    /// the next comparison right away if something was repaired.
    fn anti_entropy(&mut self, ctx: &mut Context<Self>) {
        let pause = self.config.anti_entropy_pause;
        let settled = match self.transition.comparable() {
            Some((_, ring)) => ring,
            None => {
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

    fn stopping(&mut self, ctx: &mut Context<Self>) -> actix::Running {
        // Buckets pulled since the last batch need not be pulled again after the restart.
        self.apply(Event::Stopping, ctx);
        actix::Running::Stop
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

impl Handler<PlacementChanged> for SyncActor {
    type Result = ();

    fn handle(&mut self, PlacementChanged(placement): PlacementChanged, ctx: &mut Context<Self>) {
        self.apply(Event::Placement(placement), ctx);
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
        self.apply(Event::CaughtUp { current, heard }, ctx);
    }
}

/// Gossip shows the cluster remembers another data dir under this node's name.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DataConflict;

impl Handler<DataConflict> for SyncActor {
    type Result = ();

    fn handle(&mut self, _msg: DataConflict, ctx: &mut Context<Self>) {
        self.apply(Event::DataConflict, ctx);
    }
}

/// Every node that may coordinate has adopted `ring`: new owners may pull.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BarrierReached(pub RingId);

impl Handler<BarrierReached> for SyncActor {
    type Result = ();

    fn handle(&mut self, BarrierReached(ring): BarrierReached, ctx: &mut Context<Self>) {
        self.apply(Event::BarrierReached(ring), ctx);
    }
}
