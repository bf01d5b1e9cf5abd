//! The Membership actor: runs the gossip protocol around the pure [`View`].
//!
//! Every `gossip_interval` it advances its heartbeat and exchanges views (push-pull) with one
//! random live node — sometimes with a silent one, so a recovered node is noticed. After every
//! change it reconciles: publishes new rings (to the Ring and Sync actors, and to disk), makes
//! the proposals the view asks for, settles finished transitions, keeps a Peer per known node,
//! updates the replica fence's majority flag, and tells Sync when the pull barrier is reached,
//! when this node has caught up with the cluster's view ([`CatchUp`]), and when gossip shows the
//! cluster remembers other data under this node's name.

use super::catchup::{foreign_claim, CatchUp};
use super::persist::{self, Persisted};
use super::view::{Liveness, Timeouts, View};
use crate::config::Seed;
use crate::coordinator::LearnRing;
use crate::fence::Fence;
use crate::flush::Flushes;
use crate::peer::{Disconnect, PeerActor, PeerDirectory, PeerSettings, Serve, ServeError};
use crate::ring::{RingActor, SetRings};
use crate::sync::{BarrierReached, CaughtUp, DataConflict, SyncActor};
use actix::{
    Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message, ResponseActFuture, WrapFuture,
};
use arc_swap::ArcSwap;
use kai_proto::cluster::{GossipState, Intent, NodeState, RingId, RingMember, RingState};
use kai_proto::peer::GossipService;
use kai_proto::NodeId;
use rand::seq::IndexedRandom;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// One gossip exchange in this many goes to a node that is not known alive (or a seed), so that
/// recovered nodes and partitions that heal are noticed.
const PROBE_SILENT_ONE_IN: u32 = 4;
/// Silence, in gossip intervals, after which a node is suspected.
const SUSPECT_AFTER_INTERVALS: u32 = 5;
/// Departed nodes are forgotten after this many `down_after`.
const FORGET_AFTER_DOWN_AFTERS: u64 = 10;

/// How the Membership actor is set up.
pub struct MembershipConfig {
    /// This node.
    pub me: RingMember,
    /// Contacts to learn the cluster from (and, for a brand-new cluster, its first members).
    pub seeds: Vec<Seed>,
    /// Gossip period.
    pub gossip_interval: Duration,
    /// Silence after which a node is removed from the ring.
    pub down_after: Duration,
    /// Deadline of one exchange.
    pub request_timeout: Duration,
    /// Where to remember the cluster across restarts (`None`: nothing persists).
    pub state_file: Option<PathBuf>,
    /// Identity of this node's data dir (gossiped).
    pub data_id: u64,
}

/// A member as `kai status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Name.
    pub name: String,
    /// Peer address.
    pub addr: String,
    /// `up`, `suspect`, `down`, `joining`, `leaving`, or `unheard` (in the ring, no news yet).
    pub status: &'static str,
    /// Milliseconds since it was last heard from.
    pub silent_ms: u64,
}

/// A node's view, for stats and `kai status`.
#[derive(Clone, Debug, Default)]
pub struct ClusterStatus {
    /// Active rings (versions), settled first.
    pub rings: Vec<RingId>,
    /// Every known node.
    pub members: Vec<MemberStatus>,
    /// Whether this node sees a majority of the ring.
    pub majority: bool,
    /// Nodes not heard from lately (suspect or down): coordinators ask them last.
    pub unhealthy: Vec<NodeId>,
}

impl ClusterStatus {
    /// The name of node `id`, or its id if this node knows no member by it.
    pub fn name_of(&self, id: NodeId) -> String {
        self.members
            .iter()
            .find(|m| m.id == id)
            .map_or_else(|| id.to_string(), |m| m.name.clone())
    }
}

/// Lock-free access to the latest [`ClusterStatus`].
pub type StatusReader = Arc<ArcSwap<ClusterStatus>>;

/// Runs gossip and membership decisions.
pub struct Membership {
    view: View,
    config: MembershipConfig,
    started: Instant,
    /// Local time (ms) of the last gossip tick: a much longer gap means this node stalled.
    last_tick: u64,
    peers: PeerDirectory,
    peer_settings: Arc<PeerSettings>,
    lanes: Vec<ArbiterHandle>,
    addresses: HashMap<NodeId, String>,
    ring: Addr<RingActor>,
    sync: Addr<SyncActor>,
    fence: Arc<Fence>,
    flushes: Arc<Flushes>,
    published: Vec<RingId>,
    barrier_sent: Option<RingId>,
    learners: Vec<(RingId, oneshot::Sender<bool>)>,
    status: StatusReader,
    left: watch::Sender<bool>,
    catch_up: CatchUp,
    current_sent: Option<CaughtUp>,
    conflict_sent: bool,
}

/// What the Membership actor needs from the rest of the node.
pub struct MembershipParts {
    /// Peer actors by node.
    pub peers: PeerDirectory,
    /// Settings for new Peer actors.
    pub peer_settings: Arc<PeerSettings>,
    /// Worker threads (one Peer actor per node per worker).
    pub lanes: Vec<ArbiterHandle>,
    /// The Ring actor.
    pub ring: Addr<RingActor>,
    /// The Sync actor.
    pub sync: Addr<SyncActor>,
    /// The replica fence.
    pub fence: Arc<Fence>,
    /// Where the status is published.
    pub status: StatusReader,
    /// Set to true once this node has left the cluster.
    pub left: watch::Sender<bool>,
    /// This node's `flush_all` mark, spread by gossip.
    pub flushes: Arc<Flushes>,
}

impl Membership {
    /// A Membership actor for `config`, resuming from `saved` (what its state file held).
    pub fn new(config: MembershipConfig, saved: Persisted, parts: MembershipParts) -> Self {
        let me = NodeState {
            id: config.me.id,
            name: config.me.name.clone(),
            addr: config.me.addr.clone(),
            incarnation: saved.incarnation + 1,
            heartbeat: 0,
            intent: Intent::Member,
            adopted: RingId::default(),
            synced: RingId::default(),
            data_id: config.data_id,
        };
        let interval_ms = config.gossip_interval.as_millis() as u64;
        let timeouts = Timeouts {
            suspect_after_ms: interval_ms * u64::from(SUSPECT_AFTER_INTERVALS),
            down_after_ms: config.down_after.as_millis() as u64,
        };
        let view = View::new(me, saved.rings, timeouts, 0);
        let membership = Membership {
            view,
            config,
            started: Instant::now(),
            last_tick: 0,
            peers: parts.peers,
            peer_settings: parts.peer_settings,
            lanes: parts.lanes,
            addresses: HashMap::new(),
            ring: parts.ring,
            sync: parts.sync,
            fence: parts.fence,
            flushes: parts.flushes,
            published: Vec::new(),
            barrier_sent: None,
            learners: Vec::new(),
            status: parts.status,
            left: parts.left,
            catch_up: CatchUp::default(),
            current_sent: None,
            conflict_sent: false,
        };
        membership.persist();
        membership
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn persist(&self) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        let state = Persisted {
            incarnation: self.view.my_state().incarnation,
            rings: self.view.rings().to_vec(),
        };
        if let Err(e) = persist::save(path, &state) {
            log::error!("cannot save cluster state: {e}");
        }
    }

    /// Makes sure there is a Peer actor (one per lane) for `id` at `addr`.
    fn ensure_peer(&mut self, id: NodeId, addr: &str) {
        if id == self.view.me() || self.addresses.get(&id).is_some_and(|a| a == addr) {
            return;
        }
        for old in self.peers.remove(id) {
            old.do_send(Disconnect);
        }
        let lanes = self
            .lanes
            .iter()
            .map(|lane| {
                let peer = PeerActor::new(Arc::clone(&self.peer_settings), addr.to_owned(), Some(id));
                PeerActor::start_in_arbiter(lane, |_| peer)
            })
            .collect();
        self.peers.insert(id, lanes);
        self.addresses.insert(id, addr.to_owned());
    }

    fn drop_peer(&mut self, id: NodeId) {
        self.addresses.remove(&id);
        for old in self.peers.remove(id) {
            old.do_send(Disconnect);
        }
    }

    /// A brand-new cluster: this node and its seeds, identical on every fresh node that lists
    /// the same seeds, so nodes started together agree without talking first.
    fn bootstrap_ring(&self) -> RingState {
        let mut members = vec![self.config.me.clone()];
        members.extend(self.config.seeds.iter().map(|s| RingMember {
            id: NodeId::from_name(&s.name),
            name: s.name.clone(),
            addr: s.addr.clone(),
        }));
        let members: Vec<RingMember> = {
            let mut m = members;
            m.sort_by_key(|m| m.id);
            m.dedup_by_key(|m| m.id);
            m
        };
        let proposer = members.iter().map(|m| m.id).min().unwrap_or(self.config.me.id);
        RingState::new(RingId { version: 1, proposer }, members)
    }

    /// If this node stalled for half of `down_after` or more (its ticks stopped: a SIGSTOP, a
    /// suspended VM), forgets what it measured meanwhile: nobody is down for a silence it caused,
    /// and it is no longer current, so it neither proposes nor moves data before it has heard a
    /// majority again.
    fn notice_stall(&mut self, now: u64) {
        let stall_after = self.config.down_after.as_millis() as u64 / 2;
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

    /// Applies every consequence of a change of the view.
    fn reconcile(&mut self) {
        let now = self.now();
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
        let known: Vec<(NodeId, String)> = self
            .view
            .nodes()
            .map(|n| (n.id, n.addr.clone()))
            .chain(
                self.view
                    .rings()
                    .iter()
                    .flat_map(|r| r.members.iter().map(|m| (m.id, m.addr.clone()))),
            )
            .collect();
        for (id, addr) in known {
            self.ensure_peer(id, &addr);
        }
        let ids: Vec<RingId> = self.view.rings().iter().map(|r| r.id).collect();
        if ids != self.published {
            self.published = ids;
            // The Ring actor publishes the placement and hands it to the Sync actor.
            self.ring.do_send(SetRings(self.view.rings().to_vec()));
            self.persist();
        }
        let single = self.view.latest().is_some_and(|r| r.members.len() == 1);
        let majority = single || self.view.majority_alive(now);
        self.fence.set_majority(majority);
        if !majority {
            self.catch_up.lost_majority();
        }
        let caught_up = CaughtUp {
            current: self.is_current(),
            heard: self.catch_up.heard_any() || self.is_current(),
        };
        if self.current_sent != Some(caught_up) {
            if caught_up.current && self.current_sent.is_none_or(|c| !c.current) {
                log::info!("caught up with the cluster's view");
            }
            self.current_sent = Some(caught_up);
            self.sync.do_send(caught_up);
        }
        if let Some(latest) = self.view.latest().map(|r| r.id) {
            if self.barrier_sent != Some(latest) && self.view.barrier_reached(now) {
                self.barrier_sent = Some(latest);
                self.sync.do_send(BarrierReached(latest));
            }
            let learners = std::mem::take(&mut self.learners);
            for (wanted, reply) in learners {
                if latest >= wanted {
                    // Answer once the placement is published: the coordinator reads it right after.
                    let published = self.ring.send(SetRings(self.view.rings().to_vec()));
                    actix_rt::spawn(async move {
                        let _ = reply.send(published.await.is_ok());
                    });
                } else if !reply.is_closed() {
                    self.learners.push((wanted, reply));
                }
            }
        }
        let me = self.view.me();
        let gone = self.view.my_state().intent == Intent::Leave
            && !self.view.rings().is_empty()
            && !self.view.rings().iter().any(|r| r.contains(me));
        if gone && !*self.left.borrow() {
            log::info!("this node has left the cluster");
            let _ = self.left.send(true);
        }
        let forget_ms = self.config.down_after.as_millis() as u64 * FORGET_AFTER_DOWN_AFTERS;
        let before: Vec<NodeId> = self.view.nodes().map(|n| n.id).collect();
        self.view.forget_departed(now, forget_ms);
        for id in before {
            let in_ring = self.view.rings().iter().any(|r| r.contains(id));
            if self.view.node(id).is_none() && !in_ring {
                self.drop_peer(id);
            }
        }
        self.publish_status(now);
    }

    fn publish_status(&self, now: u64) {
        let latest = self.view.latest();
        let members: Vec<MemberStatus> = self
            .view
            .nodes()
            .map(|n| {
                let in_ring = latest.is_some_and(|r| r.contains(n.id));
                let status = match (self.view.liveness(n.id, now), n.intent, in_ring) {
                    (Liveness::Down, _, _) => "down",
                    (Liveness::Suspect, _, _) => "suspect",
                    (_, Intent::Leave, _) => "leaving",
                    (_, Intent::Member, false) => "joining",
                    (_, Intent::Member, true) => "up",
                };
                MemberStatus {
                    id: n.id,
                    name: n.name.clone(),
                    addr: n.addr.clone(),
                    status,
                    silent_ms: self.view.silence(n.id, now).unwrap_or(u64::MAX),
                }
            })
            .collect();
        let heard: Vec<NodeId> = self.view.nodes().map(|n| n.id).collect();
        let unheard = latest
            .into_iter()
            .flat_map(|r| r.members.iter())
            .filter(|m| !heard.contains(&m.id))
            .map(|m| MemberStatus {
                id: m.id,
                name: m.name.clone(),
                addr: m.addr.clone(),
                status: "unheard",
                silent_ms: u64::MAX,
            });
        let members: Vec<MemberStatus> = members.into_iter().chain(unheard).collect();
        let unhealthy = self
            .view
            .nodes()
            .map(|n| n.id)
            .filter(|id| self.view.liveness(*id, now) != Liveness::Alive)
            .collect();
        self.status.store(Arc::new(ClusterStatus {
            rings: self.view.rings().iter().map(|r| r.id).collect(),
            members,
            majority: self.view.majority_alive(now),
            unhealthy,
        }));
    }

    /// Exchanges views with `target`; merges the answer.
    fn gossip_with(&mut self, target: NodeId, ctx: &mut Context<Self>) {
        let exchange = self.peers.call::<GossipService>(target, 0, self.gossip());
        ctx.spawn(exchange.into_actor(self).map(move |reply, act, _ctx| match reply {
            Ok(theirs) => {
                act.catch_up.exchanged(target);
                act.absorb(theirs);
            }
            Err(e) => log::debug!("gossip with {target} failed: {e}"),
        }));
    }

    fn is_current(&self) -> bool {
        self.catch_up.is_current(self.view.latest(), self.view.me())
    }

    /// What this node sends in a gossip exchange: its view and its flush mark.
    fn gossip(&self) -> GossipState {
        GossipState {
            flush: self.flushes.current(),
            ..self.view.gossip()
        }
    }

    fn absorb(&mut self, theirs: GossipState) {
        if let Some(mark) = theirs
            .flush
            .filter(|m| self.flushes.current().is_none_or(|ours| ours < *m))
        {
            let flushes = Arc::clone(&self.flushes);
            actix::spawn(async move {
                if let Err(e) = flushes.raise(mark).await {
                    log::error!("saving a flush mark learned by gossip failed: {e}");
                }
            });
        }
        let mine = self.view.my_state();
        if !self.conflict_sent && theirs.nodes.iter().any(|n| foreign_claim(mine, n)) {
            log::warn!(
                "the cluster remembers another data dir, or a later run, under this node's name \
                 (the data dir was replaced or restored from a backup): this node will drop its \
                 store and pull what it owns before serving"
            );
            self.conflict_sent = true;
            self.sync.do_send(DataConflict);
        }
        let fresh = self.view.rings().is_empty();
        let now = self.now();
        let they_have_no_ring = theirs.rings.is_empty();
        self.view.merge(theirs, now);
        if fresh && self.view.rings().is_empty() && they_have_no_ring {
            // A seed that knows no cluster either: this is a brand-new cluster.
            let ring = self.bootstrap_ring();
            log::info!("bootstrapping a new cluster of {} node(s)", ring.members.len());
            self.view.propose(ring, now);
        }
        self.reconcile();
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        self.notice_stall(now);
        self.last_tick = now;
        self.view.beat(now);
        let me = self.view.me();
        if self.view.rings().is_empty() && !self.config.seeds.iter().any(|s| NodeId::from_name(&s.name) != me) {
            let ring = self.bootstrap_ring();
            log::info!("no seeds: starting a new single-node cluster");
            self.view.propose(ring, now);
        }
        let mut alive = Vec::new();
        let mut silent = Vec::new();
        for id in self.addresses.keys().copied() {
            if self.view.liveness(id, now) == Liveness::Alive && self.view.node(id).is_some() {
                alive.push(id);
            } else {
                silent.push(id);
            }
        }
        let mut rng = rand::rng();
        let probe_silent = alive.is_empty() || rand::random_ratio(1, PROBE_SILENT_ONE_IN);
        let pool = if probe_silent && !silent.is_empty() {
            &silent
        } else {
            &alive
        };
        // Catching up (after a start or a partition): ask every member of the newest ring at once.
        let catching_up: Vec<NodeId> = match self.view.latest() {
            Some(latest) if !self.is_current() => latest
                .ids()
                .into_iter()
                .filter(|id| *id != me && self.addresses.contains_key(id))
                .collect(),
            _ => Vec::new(),
        };
        if !catching_up.is_empty() {
            for target in catching_up {
                self.gossip_with(target, ctx);
            }
        } else if let Some(target) = pool.choose(&mut rng).copied() {
            self.gossip_with(target, ctx);
        }
        self.reconcile();
    }
}

impl Actor for Membership {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for seed in self.config.seeds.clone() {
            self.ensure_peer(NodeId::from_name(&seed.name), &seed.addr);
        }
        self.reconcile();
        // Gossip at once: a fresh node learns (or founds) its cluster without waiting an interval.
        self.tick(ctx);
        ctx.run_interval(self.config.gossip_interval, |act, ctx| act.tick(ctx));
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> actix::Running {
        self.persist();
        actix::Running::Stop
    }
}

/// A peer's gossip: merge it and answer with this node's view.
#[derive(Message, Debug)]
#[rtype(result = "GossipState")]
struct Exchange(GossipState);

/// The gossip service: other nodes' push-pull exchanges, answered with this node's view.
impl Serve<GossipService> for Addr<Membership> {
    async fn serve(&self, _from: NodeId, theirs: GossipState) -> Result<GossipState, ServeError> {
        (self.send(Exchange(theirs)).await).map_err(|_| ServeError::ShuttingDown("membership"))
    }
}

impl Handler<Exchange> for Membership {
    type Result = actix::MessageResult<Exchange>;

    fn handle(&mut self, Exchange(theirs): Exchange, _ctx: &mut Context<Self>) -> Self::Result {
        self.catch_up.heard_from_someone();
        self.absorb(theirs);
        actix::MessageResult(self.gossip())
    }
}

impl Handler<LearnRing> for Membership {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, LearnRing(wanted): LearnRing, ctx: &mut Context<Self>) -> Self::Result {
        if self.view.latest().is_some_and(|r| r.id >= wanted) {
            // Answer once the placement is published: the coordinator reads it right after.
            let published = self.ring.send(SetRings(self.view.rings().to_vec()));
            return Box::pin(async move { published.await.is_ok() }.into_actor(self));
        }
        let now = self.now();
        let targets: Vec<NodeId> = self
            .addresses
            .keys()
            .copied()
            .filter(|id| self.view.liveness(*id, now) != Liveness::Down)
            .collect();
        for target in targets {
            self.gossip_with(target, ctx);
        }
        let (tx, rx) = oneshot::channel();
        self.learners.push((wanted, tx));
        let timeout = self.config.request_timeout;
        Box::pin(async move { matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(true))) }.into_actor(self))
    }
}

/// The Sync actor adopted `ring` (the fence now refuses older rings).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Adopted(pub RingId);

impl Handler<Adopted> for Membership {
    type Result = ();

    fn handle(&mut self, Adopted(ring): Adopted, _ctx: &mut Context<Self>) {
        if ring > self.view.my_state().adopted {
            self.view.set_adopted(ring);
            self.reconcile();
        }
    }
}

/// The Sync actor pulled every bucket this node newly owns in `ring`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Synced(pub RingId);

impl Handler<Synced> for Membership {
    type Result = ();

    fn handle(&mut self, Synced(ring): Synced, _ctx: &mut Context<Self>) {
        if ring > self.view.my_state().synced {
            log::info!("synced ring version {}", ring.version);
            self.view.set_synced(ring);
            self.reconcile();
        }
    }
}

/// Leave the cluster: hand this node's data off, then report it left.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for Membership {
    type Result = ();

    fn handle(&mut self, _msg: Leave, _ctx: &mut Context<Self>) {
        log::info!("leaving the cluster");
        self.view.set_intent(Intent::Leave);
        self.reconcile();
    }
}
