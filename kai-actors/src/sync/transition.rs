//! This node's progress through ring transitions, as a plain state machine: events in
//! ([`Event`]), effects out ([`Effect`]), no I/O. The Sync actor feeds it what happened and
//! performs what it asks for; [`plan`] supplies the decisions.
//!
//! The machine walks adopt → (judge the store) → pull → synced → drop garbage for every new
//! placement:
//! - **Adopt** the newest ring once per run: record (and save) the buckets it newly owns as
//!   unpulled, unless a previous run already did for this ring, then ask for them to be wiped and
//!   the replica fence closed to older rings. Nothing else happens until [`Event::Adopted`].
//! - **Judge** the store once a gossip exchange showed what the cluster remembers of this node:
//!   a store that must refill is wiped whole and refilled before it serves.
//! - Everything below waits until this node has heard the cluster's **current** view.
//! - **Pull** the unpulled buckets that may be pulled now (see [`plan::pull_plan`]); a bucket
//!   leaves `unpulled` only when a pull of *this* placement completes it — a pull planned on an
//!   older placement may have run across a wipe, so its completions are ignored and the bucket
//!   is pulled again.
//! - Report **synced** for the newest ring once nothing owned is left to pull; this run reports
//!   only what it checked itself.
//! - **Drop garbage**: once per settled ring, buckets this node no longer owns.
//!
//! Invariants: progress is saved ([`Effect::Save`]) before any wipe it records; buckets marked
//! pulled are saved at most [`PULLS_SAVED_EVERY`] apart and always before `synced` or `Ready` is
//! claimed (a crash in between costs a second pull, never a missed one).

use super::plan;
use super::progress::{DataState, Progress};
use crate::ring::RingSnapshot;
use kai_proto::cluster::RingId;
use kai_proto::{BucketId, NodeId};
use std::sync::Arc;
use std::time::Duration;

/// Pulled buckets are saved at most this far apart during a transfer.
pub const PULLS_SAVED_EVERY: Duration = Duration::from_secs(1);

/// Something that happened to this node.
#[derive(Clone, Debug)]
pub enum Event {
    /// A new placement (active rings, settled first) was published.
    Placement(Arc<RingSnapshot>),
    /// How much of the cluster's view this node has heard: `current` (the current view, since
    /// it started or last lost sight of a majority) and `heard` (one gossip exchange at least).
    CaughtUp {
        /// Heard the current view.
        current: bool,
        /// Completed a gossip exchange.
        heard: bool,
    },
    /// Gossip shows the cluster remembers another data dir under this node's name.
    DataConflict,
    /// Every node that may coordinate has adopted this ring: new owners may pull.
    BarrierReached(RingId),
    /// The adoption wipe of this ring is done and the fence is closed to older rings.
    Adopted(RingId),
    /// The refill wipe is done.
    RefillWiped,
    /// A pull of `generation` completed `bucket` from enough owners, at `now` (the executor's
    /// clock): pulled buckets are saved once [`PULLS_SAVED_EVERY`] passed since the last save.
    Pulled {
        /// The placement generation the pull was planned in.
        generation: u64,
        /// The bucket.
        bucket: BucketId,
        /// The executor's clock.
        now: Duration,
    },
    /// The node is stopping: whatever was pulled since the last save is saved.
    Stopping,
    /// Every pull of `generation` ended (completed, or gave up because the rings changed).
    PullsEnded {
        /// The placement generation the pulls were planned in.
        generation: u64,
    },
}

/// A pull of one bucket: from `needed` of `sources`, in this order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullJob {
    /// The bucket.
    pub bucket: BucketId,
    /// Its owners to pull from.
    pub sources: Vec<NodeId>,
    /// How many of them must be read to hold every acknowledged write.
    pub needed: usize,
}

/// What the executor must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Save this progress (atomically, durably) before doing anything that follows.
    Save(Progress),
    /// Wipe these buckets, close the fence to rings older than `ring`, then send
    /// [`Event::Adopted`]. Nothing else may run meanwhile.
    Adopt {
        /// The ring adopted.
        ring: RingId,
        /// Buckets to wipe first.
        wipe: Vec<BucketId>,
    },
    /// Close (true) or open the replica fence for a store that cannot be trusted.
    Refilling(bool),
    /// Wipe the whole store, then send [`Event::RefillWiped`]. Nothing else may run meanwhile.
    WipeForRefill,
    /// Pull these buckets with requests carrying `ring`; report each completed bucket
    /// ([`Event::Pulled`]) and the end ([`Event::PullsEnded`]) with `generation`.
    Pull {
        /// The placement generation.
        generation: u64,
        /// The ring the requests carry.
        ring: RingId,
        /// The buckets.
        jobs: Vec<PullJob>,
    },
    /// Tell the membership that this run adopted `ring`.
    ReportAdopted(RingId),
    /// Tell the membership that this node holds everything it owns in `ring`.
    ReportSynced(RingId),
    /// Drop every bucket this node does not own in the settled ring.
    DropGarbage,
    /// Publish what the data-movement gate judges with (the placement, and `current`).
    PublishGate {
        /// Whether this node has heard the current view.
        current: bool,
    },
}

/// One node's transition state.
#[derive(Debug)]
pub struct Transition {
    me: NodeId,
    w: usize,
    placement: Option<Arc<RingSnapshot>>,
    /// Bumped with every placement: pulls planned before are stale.
    generation: u64,
    progress: Progress,
    /// Newest ring adopted by this run.
    adopted: RingId,
    /// An adoption or refill wipe is under way.
    wiping: bool,
    barrier: Option<RingId>,
    current: bool,
    heard: bool,
    conflict: bool,
    /// Pulls of the current generation are running.
    pulling: bool,
    /// Buckets marked pulled since the last save.
    unsaved_pulls: bool,
    /// When progress was last saved (executor time).
    saved_at: Duration,
    /// Newest ring reported synced by this run.
    reported: RingId,
    /// Settled ring whose garbage was last dropped.
    garbage_checked: Option<RingId>,
}

impl Transition {
    /// The machine of node `me` (write quorum `w`), resuming `progress` as saved.
    pub fn new(me: NodeId, w: usize, progress: Progress) -> Self {
        Transition {
            me,
            w,
            placement: None,
            generation: 0,
            progress,
            adopted: RingId::default(),
            wiping: false,
            barrier: None,
            current: false,
            heard: false,
            conflict: false,
            pulling: false,
            unsaved_pulls: false,
            saved_at: Duration::ZERO,
            reported: RingId::default(),
            garbage_checked: None,
        }
    }

    /// The progress as this node knows it (saved, or about to be).
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The settled ring, while anti-entropy may compare buckets with it: a single settled ring,
    /// this node current, nothing pulling or left to pull, and a trusted store.
    pub fn comparable(&self) -> Option<(RingId, &crate::ring::Ring)> {
        let placement = self.placement.as_deref()?;
        let [(id, settled)] = placement.rings.as_slice() else {
            return None;
        };
        let ready = self.progress.data == DataState::Ready && self.progress.unpulled.is_empty();
        (self.current && !self.pulling && !self.wiping && ready).then_some((*id, settled))
    }

    /// The placement this node moves data for, once it knows one.
    pub fn placement(&self) -> Option<&Arc<RingSnapshot>> {
        self.placement.as_ref()
    }

    /// The ring requests are planned on now (the newest).
    pub fn latest(&self) -> RingId {
        self.placement.as_ref().map(|p| p.latest_id()).unwrap_or_default()
    }

    /// Applies `event`; returns what the executor must do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            Event::Placement(placement) => {
                self.placement = Some(placement);
                self.generation += 1;
                self.pulling = false;
                effects.push(self.gate());
            }
            Event::CaughtUp { current, heard } => {
                self.current = current;
                self.heard = heard;
                if !current {
                    self.garbage_checked = None;
                }
                effects.push(self.gate());
            }
            Event::DataConflict => self.conflict = true,
            Event::BarrierReached(ring) => self.barrier = Some(ring),
            Event::Adopted(ring) => {
                self.wiping = false;
                log::info!("adopted ring version {}", ring.version);
                effects.push(Effect::ReportAdopted(ring));
            }
            Event::RefillWiped => self.wiping = false,
            Event::Pulled {
                generation,
                bucket,
                now,
            } => {
                if generation == self.generation && self.progress.unpulled.remove(&bucket.0) {
                    self.unsaved_pulls = true;
                }
                if now.saturating_sub(self.saved_at) >= PULLS_SAVED_EVERY {
                    self.saved_at = now;
                    self.save_pulls(&mut effects);
                }
                return effects;
            }
            Event::Stopping => {
                self.save_pulls(&mut effects);
                return effects;
            }
            Event::PullsEnded { generation } => {
                if generation != self.generation {
                    return effects;
                }
                self.pulling = false;
                self.save_pulls(&mut effects);
            }
        }
        self.step(&mut effects);
        effects
    }

    fn gate(&self) -> Effect {
        Effect::PublishGate { current: self.current }
    }

    fn save(&mut self, effects: &mut Vec<Effect>) {
        self.unsaved_pulls = false;
        effects.push(Effect::Save(self.progress.clone()));
    }

    fn save_pulls(&mut self, effects: &mut Vec<Effect>) {
        if self.unsaved_pulls {
            self.save(effects);
        }
    }

    /// Does whatever the placement and the progress call for now.
    fn step(&mut self, effects: &mut Vec<Effect>) {
        let Some(placement) = self.placement.clone() else {
            return;
        };
        let rings = placement.rings.as_slice();
        if rings.is_empty() || self.wiping {
            return;
        }
        let me = self.me;
        let latest = placement.latest_id();
        if latest > self.adopted {
            self.adopted = latest;
            let wipe = plan::adoption_wipe(rings, me, self.progress.adopted);
            // Saved before wiping: a crash in between still pulls them back.
            self.progress.adopted = self.progress.adopted.max(latest);
            self.progress.unpulled.extend(wipe.iter().map(|b| b.0));
            self.save(effects);
            self.wiping = true;
            effects.push(Effect::Adopt { ring: latest, wipe });
            return;
        }
        // The store is judged as soon as one exchange showed what the cluster knows of this
        // node (a refill can only be more cautious); everything else waits for the current view.
        if self.heard && self.judge_data(rings, effects) {
            return;
        }
        if !self.current {
            return;
        }
        let disowned = plan::disowned(rings, me, &self.progress);
        if !disowned.is_empty() {
            for bucket in disowned {
                self.progress.unpulled.remove(&bucket.0);
            }
            self.save(effects);
        }
        let barrier = self.barrier == Some(latest);
        if !self.pulling {
            let buckets = plan::pull_plan(rings, me, &self.progress, barrier);
            if !buckets.is_empty() {
                self.pulling = true;
                let jobs = buckets
                    .into_iter()
                    .map(|bucket| {
                        let (sources, needed) = plan::sources(rings, me, bucket, self.w);
                        PullJob {
                            bucket,
                            sources,
                            needed,
                        }
                    })
                    .collect();
                effects.push(Effect::Pull {
                    generation: self.generation,
                    ring: latest,
                    jobs,
                });
                return;
            }
        }
        if self.progress.data == DataState::Refill && plan::pull_plan(rings, me, &self.progress, false).is_empty() {
            log::info!("store refilled: serving again");
            self.progress.data = DataState::Ready;
            self.save(effects);
            effects.push(Effect::Refilling(false));
        }
        if let Some(ring) = plan::synced(rings, me, &self.progress, barrier) {
            if ring > self.reported {
                self.reported = ring;
                self.progress.synced = self.progress.synced.max(ring);
                self.save(effects);
                effects.push(Effect::ReportSynced(ring));
            }
        }
        if let [(settled, _)] = rings {
            if self.garbage_checked != Some(*settled) {
                self.garbage_checked = Some(*settled);
                effects.push(Effect::DropGarbage);
            }
        }
    }

    /// Judges whether the store can be trusted; a store that must refill is wiped whole and
    /// every owned bucket recorded unpulled. True while that wipe is under way.
    fn judge_data(&mut self, rings: &plan::Rings, effects: &mut Vec<Effect>) -> bool {
        let judged = plan::judge_data(self.progress.data, self.conflict, rings, self.me);
        self.conflict = false;
        if judged == self.progress.data {
            return false;
        }
        if judged == DataState::Ready {
            self.progress.data = DataState::Ready;
            self.save(effects);
            effects.push(Effect::Refilling(false));
            return false;
        }
        let owned = plan::owned(rings, self.me);
        log::warn!(
            "this store holds none of what the cluster expects from this node: dropping it and refilling {} bucket(s) before serving",
            owned.len()
        );
        effects.push(Effect::Refilling(true));
        self.progress.data = DataState::Refill;
        self.progress.unpulled.extend(owned.iter().map(|b| b.0));
        self.save(effects);
        self.reported = RingId::default();
        self.wiping = true;
        effects.push(Effect::WipeForRefill);
        true
    }
}

#[cfg(test)]
mod tests;
