//! Every decision of the Membership actor as a plain state machine: events in ([`Event`]),
//! effects out ([`Effect`]), no I/O. Time is an input (milliseconds of the executor's clock);
//! the choice of gossip partners comes from a random generator seeded by the executor.
//!
//! The engine owns this node's [`View`] of the cluster, whether it has caught up with the
//! cluster's view ([`CatchUp`]), the peers it keeps a connection to, and what it already told
//! the rest of the node. After every event it *reconciles*: makes the proposal the view asks
//! for, settles a finished transition, asks for a peer per known node, publishes (and persists)
//! new rings, sets the replica fence's majority flag, tells Sync what changed, answers the
//! coordinators waiting for a ring, notices that this node has left, forgets departed nodes and
//! publishes the status.
//!
//! Invariants:
//! - A node proposes only while *current* (it has exchanged views with a majority of its newest
//!   ring since it started and since it last lost sight of a majority), and the [`View`] only
//!   plans while it sees a majority: rings loaded from disk, or kept through a partition or a
//!   stall, change nothing before fresh news.
//! - A stall of this node (its ticks stopped for half of `down_after` or more) makes nobody down:
//!   silence it caused is forgiven, and it is no longer current ([`View::forgive_stall`]).
//! - Each new set of active rings is published and persisted once; the incarnation is persisted
//!   ([`Event::Start`]) before the node gossips.
//! - Sync hears each fact once: the barrier once per newest ring, a change of caught-up state
//!   once per change, a data conflict (gossip shows another data dir, or a run this data dir does
//!   not remember, under this node's name) once per run.
//! - The node has left once it asked to leave and no active ring contains it (reported once).
//! - A peer is asked for per known node (or seed) and address, and dropped when its node is
//!   forgotten; forgotten nodes are not brought back by old gossip ([`View::merge`]).

use super::catchup::{foreign_claim, CatchUp};
use super::persist::Persisted;
use super::status::ClusterStatus;
use super::view::{Liveness, Timeouts, View};
use kai_proto::cluster::{GossipState, Intent, NodeState, RingId, RingMember, RingState};
use kai_proto::flush::FlushMark;
use kai_proto::NodeId;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// One gossip exchange in this many goes to a node that is not known alive (or a seed), so that
/// recovered nodes and partitions that heal are noticed.
pub const PROBE_SILENT_ONE_IN: u32 = 4;
/// Silence, in gossip intervals, after which a node is suspected.
pub const SUSPECT_AFTER_INTERVALS: u32 = 5;
/// Departed nodes are forgotten after this many `down_after`.
pub const FORGET_AFTER_DOWN_AFTERS: u64 = 10;

/// How the engine is set up.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node.
    pub me: RingMember,
    /// Contacts to learn the cluster from (and, for a brand-new cluster, its first members).
    pub seeds: Vec<RingMember>,
    /// Gossip period (ms).
    pub gossip_interval_ms: u64,
    /// Silence (ms) after which a node is removed from the ring.
    pub down_after_ms: u64,
    /// Identity of this node's data dir (gossiped).
    pub data_id: u64,
}

/// Something that happened to this node.
#[derive(Clone, Debug)]
pub enum Event {
    /// The node starts: its incarnation is persisted, then it gossips at once.
    Start,
    /// A gossip period passed.
    Tick,
    /// An exchange this node started with `from` was answered with `state`.
    Answered {
        /// The node asked.
        from: NodeId,
        /// Its view.
        state: GossipState,
    },
    /// A peer started an exchange with this view; it is answered with [`MembershipEngine::gossip`].
    Received(GossipState),
    /// A coordinator needs a ring at least this new (a replica refused an older one).
    LearnRing(RingId),
    /// Sync adopted this ring (the fence now refuses older rings).
    Adopted(RingId),
    /// Sync pulled every bucket this node newly owns in this ring.
    Synced(RingId),
    /// The operator asked this node to leave the cluster.
    Leave,
    /// The node is stopping.
    Stopping,
}

/// What the Sync actor is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncNews {
    /// How much of the cluster's view this node has heard.
    CaughtUp {
        /// Heard the current view (since it started, or since it last lost sight of a majority).
        current: bool,
        /// Completed at least one gossip exchange since it started (or needs none).
        heard: bool,
    },
    /// Every node that may coordinate has adopted this ring: new owners may pull.
    BarrierReached(RingId),
    /// Gossip shows the cluster remembers another data dir under this node's name.
    DataConflict,
}

/// What the executor must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Exchange views with this node; feed the answer back as [`Event::Answered`].
    GossipWith(NodeId),
    /// Keep a connection to node `id` at `addr` (replacing one to another address).
    EnsurePeer {
        /// The node.
        id: NodeId,
        /// Its peer address.
        addr: String,
    },
    /// Close the connection to this node: it was forgotten.
    DropPeer(NodeId),
    /// Hand these active rings (settled first) to the Ring actor.
    PublishRings(Vec<RingState>),
    /// Save this durably.
    Persist(Persisted),
    /// Open (true) or close the replica fence for want of a majority.
    SetMajority(bool),
    /// Tell Sync.
    NotifySync(SyncNews),
    /// Once the Ring actor has published the active rings, answer every coordinator waiting for
    /// a ring up to this one.
    AnswerLearners(RingId),
    /// Adopt this `flush_all` mark learned by gossip if it is above this node's own.
    RaiseFlushMark(FlushMark),
    /// This node has left the cluster.
    Left,
    /// Publish this view of the cluster.
    PublishStatus(ClusterStatus),
}

/// The Membership actor's state and decisions.
#[derive(Debug)]
pub struct MembershipEngine {
    view: View,
    settings: Settings,
    catch_up: CatchUp,
    /// Time of the last tick: a much longer gap means this node stalled.
    last_tick: u64,
    /// Nodes a connection is kept to, and their addresses.
    peers: BTreeMap<NodeId, String>,
    rng: SmallRng,
    /// Active rings last published.
    published: Vec<RingId>,
    /// Majority flag last set.
    majority: Option<bool>,
    /// Caught-up state Sync was last told.
    caught_up: Option<SyncNews>,
    /// Newest ring whose barrier Sync was told of.
    barrier: Option<RingId>,
    conflict: bool,
    left: bool,
}

impl MembershipEngine {
    /// The engine of `settings.me` resuming from `saved` (what its state file held), its gossip
    /// partners chosen by a generator seeded with `seed`.
    pub fn new(settings: Settings, saved: Persisted, seed: u64) -> Self {
        let me = NodeState {
            id: settings.me.id,
            name: settings.me.name.clone(),
            addr: settings.me.addr.clone(),
            incarnation: saved.incarnation + 1,
            heartbeat: 0,
            intent: Intent::Member,
            adopted: RingId::default(),
            synced: RingId::default(),
            data_id: settings.data_id,
        };
        let timeouts = Timeouts {
            suspect_after_ms: settings.gossip_interval_ms * u64::from(SUSPECT_AFTER_INTERVALS),
            down_after_ms: settings.down_after_ms,
        };
        MembershipEngine {
            view: View::new(me, saved.rings, timeouts, 0),
            settings,
            catch_up: CatchUp::default(),
            last_tick: 0,
            peers: BTreeMap::new(),
            rng: SmallRng::seed_from_u64(seed),
            published: Vec::new(),
            majority: None,
            caught_up: None,
            barrier: None,
            conflict: false,
            left: false,
        }
    }

    /// The view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// What this node sends in a gossip exchange (the executor adds its flush mark).
    pub fn gossip(&self) -> GossipState {
        self.view.gossip()
    }

    /// Applies `event`, which happened at `now` (ms); returns what the executor must do, in order.
    pub fn handle(&mut self, event: Event, now: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            Event::Start => {
                effects.push(Effect::Persist(self.persisted()));
                for seed in self.settings.seeds.clone() {
                    self.ensure_peer(seed.id, &seed.addr, &mut effects);
                }
                self.reconcile(now, &mut effects);
                // Gossip at once: a fresh node learns (or founds) its cluster without waiting.
                self.tick(now, &mut effects);
            }
            Event::Tick => self.tick(now, &mut effects),
            Event::Answered { from, state } => {
                self.catch_up.exchanged(from);
                self.absorb(state, now, &mut effects);
            }
            Event::Received(state) => {
                self.catch_up.heard_from_someone();
                self.absorb(state, now, &mut effects);
            }
            Event::LearnRing(wanted) => match self.view.latest() {
                Some(latest) if latest.id >= wanted => effects.push(Effect::AnswerLearners(latest.id)),
                _ => {
                    let targets = self.peers.keys().copied();
                    let reachable = targets.filter(|id| self.view.liveness(*id, now) != Liveness::Down);
                    effects.extend(reachable.map(Effect::GossipWith));
                }
            },
            Event::Adopted(ring) => {
                if ring > self.view.my_state().adopted {
                    self.view.set_adopted(ring);
                    self.reconcile(now, &mut effects);
                }
            }
            Event::Synced(ring) => {
                if ring > self.view.my_state().synced {
                    log::info!("synced ring version {}", ring.version);
                    self.view.set_synced(ring);
                    self.reconcile(now, &mut effects);
                }
            }
            Event::Leave => {
                log::info!("leaving the cluster");
                self.view.set_intent(Intent::Leave);
                self.reconcile(now, &mut effects);
            }
            Event::Stopping => effects.push(Effect::Persist(self.persisted())),
        }
        effects
    }

    fn persisted(&self) -> Persisted {
        Persisted {
            incarnation: self.view.my_state().incarnation,
            rings: self.view.rings().to_vec(),
        }
    }

    fn is_current(&self) -> bool {
        self.catch_up.is_current(self.view.latest(), self.view.me())
    }

    fn ensure_peer(&mut self, id: NodeId, addr: &str, effects: &mut Vec<Effect>) {
        if id == self.view.me() || self.peers.get(&id).is_some_and(|a| a == addr) {
            return;
        }
        self.peers.insert(id, addr.to_owned());
        effects.push(Effect::EnsurePeer {
            id,
            addr: addr.to_owned(),
        });
    }

    /// A brand-new cluster: this node and its seeds, identical on every fresh node that lists
    /// the same seeds, so nodes started together agree without talking first.
    fn bootstrap_ring(&self) -> RingState {
        let mut members = vec![self.settings.me.clone()];
        members.extend(self.settings.seeds.iter().cloned());
        members.sort_by_key(|m| m.id);
        members.dedup_by_key(|m| m.id);
        let proposer = members.iter().map(|m| m.id).min().unwrap_or(self.settings.me.id);
        RingState::new(RingId { version: 1, proposer }, members)
    }

    /// If this node stalled for half of `down_after` or more (its ticks stopped: a SIGSTOP, a
    /// suspended VM), forgets what it measured meanwhile: nobody is down for a silence it caused,
    /// and it is no longer current, so it neither proposes nor moves data before it has heard a
    /// majority again.
    fn notice_stall(&mut self, now: u64) {
        let stall_after = self.settings.down_after_ms / 2;
        if self.last_tick > 0 && now.saturating_sub(self.last_tick) >= stall_after {
            log::warn!(
                "this node stalled for {} ms: waiting for fresh news before judging others",
                now - self.last_tick
            );
            self.view.forgive_stall(self.last_tick, now);
            self.catch_up.lost_majority();
            self.last_tick = now;
        }
    }

    fn tick(&mut self, now: u64, effects: &mut Vec<Effect>) {
        self.notice_stall(now);
        self.last_tick = now;
        self.view.beat(now);
        let me = self.view.me();
        if self.view.rings().is_empty() && !self.settings.seeds.iter().any(|s| s.id != me) {
            let ring = self.bootstrap_ring();
            log::info!("no seeds: starting a new single-node cluster");
            self.view.propose(ring, now);
        }
        // Catching up (after a start or a partition): ask every member of the newest ring at once.
        let catching_up: Vec<NodeId> = match self.view.latest() {
            Some(latest) if !self.is_current() => latest
                .ids()
                .into_iter()
                .filter(|id| *id != me && self.peers.contains_key(id))
                .collect(),
            _ => Vec::new(),
        };
        if catching_up.is_empty() {
            let (alive, silent): (Vec<NodeId>, Vec<NodeId>) = self
                .peers
                .keys()
                .partition(|id| self.view.liveness(**id, now) == Liveness::Alive && self.view.node(**id).is_some());
            let probe_silent = alive.is_empty() || self.rng.random_ratio(1, PROBE_SILENT_ONE_IN);
            let pool = if probe_silent && !silent.is_empty() {
                &silent
            } else {
                &alive
            };
            effects.extend(pool.choose(&mut self.rng).copied().map(Effect::GossipWith));
        } else {
            effects.extend(catching_up.into_iter().map(Effect::GossipWith));
        }
        self.reconcile(now, effects);
    }

    /// Merges a peer's view.
    fn absorb(&mut self, theirs: GossipState, now: u64, effects: &mut Vec<Effect>) {
        if let Some(mark) = theirs.flush {
            effects.push(Effect::RaiseFlushMark(mark));
        }
        let mine = self.view.my_state();
        if !self.conflict && theirs.nodes.iter().any(|n| foreign_claim(mine, n)) {
            log::warn!(
                "the cluster remembers another data dir, or a later run, under this node's name \
                 (the data dir was replaced or restored from a backup): this node will drop its \
                 store and pull what it owns before serving"
            );
            self.conflict = true;
            effects.push(Effect::NotifySync(SyncNews::DataConflict));
        }
        let fresh = self.view.rings().is_empty();
        let they_have_no_ring = theirs.rings.is_empty();
        self.view.merge(theirs, now);
        if fresh && self.view.rings().is_empty() && they_have_no_ring {
            // A seed that knows no cluster either: this is a brand-new cluster.
            let ring = self.bootstrap_ring();
            log::info!("bootstrapping a new cluster of {} node(s)", ring.members.len());
            self.view.propose(ring, now);
        }
        self.reconcile(now, effects);
    }

    /// Applies every consequence of a change of the view.
    fn reconcile(&mut self, now: u64, effects: &mut Vec<Effect>) {
        self.notice_stall(now);
        if let Some(proposal) = self.is_current().then(|| self.view.plan(now)).flatten() {
            log::info!(
                "proposing ring version {} with {} member(s)",
                proposal.id.version,
                proposal.members.len()
            );
            self.view.propose(proposal, now);
        }
        if self.view.settle() {
            log::info!(
                "ring version {} settled",
                self.view.latest().map_or(0, |r| r.id.version)
            );
        }
        self.ensure_peers(effects);
        let ids: Vec<RingId> = self.view.rings().iter().map(|r| r.id).collect();
        if ids != self.published {
            self.published = ids;
            effects.push(Effect::PublishRings(self.view.rings().to_vec()));
            effects.push(Effect::Persist(self.persisted()));
            if let Some(latest) = self.view.latest() {
                effects.push(Effect::AnswerLearners(latest.id));
            }
        }
        let single = self.view.latest().is_some_and(|r| r.members.len() == 1);
        let majority = single || self.view.majority_alive(now);
        if self.majority != Some(majority) {
            self.majority = Some(majority);
            effects.push(Effect::SetMajority(majority));
        }
        if !majority {
            self.catch_up.lost_majority();
        }
        self.tell_caught_up(effects);
        if let Some(latest) = self.view.latest().map(|r| r.id) {
            if self.barrier != Some(latest) && self.view.barrier_reached(now) {
                self.barrier = Some(latest);
                effects.push(Effect::NotifySync(SyncNews::BarrierReached(latest)));
            }
        }
        let me = self.view.me();
        let gone = self.view.my_state().intent == Intent::Leave
            && !self.view.rings().is_empty()
            && !self.view.rings().iter().any(|r| r.contains(me));
        if gone && !self.left {
            log::info!("this node has left the cluster");
            self.left = true;
            effects.push(Effect::Left);
        }
        self.forget_departed(now, effects);
        effects.push(Effect::PublishStatus(ClusterStatus::of(&self.view, now)));
    }

    /// Asks for a peer per node known, in the view or in an active ring.
    fn ensure_peers(&mut self, effects: &mut Vec<Effect>) {
        let nodes = self.view.nodes().map(|n| (n.id, n.addr.clone()));
        let members = self.view.rings().iter().flat_map(|r| r.members.iter());
        let known: Vec<(NodeId, String)> = nodes.chain(members.map(|m| (m.id, m.addr.clone()))).collect();
        for (id, addr) in known {
            self.ensure_peer(id, &addr, effects);
        }
    }

    fn tell_caught_up(&mut self, effects: &mut Vec<Effect>) {
        let current = self.is_current();
        let news = SyncNews::CaughtUp {
            current,
            heard: self.catch_up.heard_any() || current,
        };
        if self.caught_up != Some(news) {
            let was_current = matches!(self.caught_up, Some(SyncNews::CaughtUp { current: true, .. }));
            if current && !was_current {
                log::info!("caught up with the cluster's view");
            }
            self.caught_up = Some(news);
            effects.push(Effect::NotifySync(news));
        }
    }

    /// Forgets departed nodes and drops their peers.
    fn forget_departed(&mut self, now: u64, effects: &mut Vec<Effect>) {
        let forget_ms = self.settings.down_after_ms * FORGET_AFTER_DOWN_AFTERS;
        let before: Vec<NodeId> = self.view.nodes().map(|n| n.id).collect();
        self.view.forget_departed(now, forget_ms);
        for id in before {
            let in_ring = self.view.rings().iter().any(|r| r.contains(id));
            if self.view.node(id).is_none() && !in_ring && self.peers.remove(&id).is_some() {
                effects.push(Effect::DropPeer(id));
            }
        }
    }
}

#[cfg(test)]
mod tests;
