//! The Membership actor: runs gossip around the [`MembershipEngine`], which takes every decision.
//!
//! It feeds the engine what happens — its start and stop, a timer every `gossip_interval`,
//! gossip exchanges answered or received, a coordinator asking for a newer ring, Sync's
//! `Adopted`/`Synced`, the operator's `Leave` — with the time since the actor started, and
//! performs the effects it returns: exchanges with peers, Peer actors per known node (one per
//! lane), rings handed to the Ring actor, the state file, the replica fence's majority flag,
//! news for Sync, answers to coordinators waiting for a ring, the `flush_all` mark learned by
//! gossip, the `left` signal and the published status. It keeps only I/O handles: the Peer
//! actors, the coordinators' reply channels and the flush mark (shared with `flush_all`).

use super::engine::{Effect, Event, MembershipEngine, Settings, SyncNews};
use super::persist::{self, Persisted};
use super::status::StatusReader;
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
use kai_proto::cluster::{GossipState, RingId, RingMember};
use kai_proto::peer::GossipService;
use kai_proto::NodeId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

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

impl MembershipConfig {
    /// The membership of node `me` configured by `config`, which learns the cluster from
    /// `seeds` and remembers it in `state_file`; `data_id` identifies its data dir.
    pub fn new(
        config: &crate::config::NodeConfig,
        me: RingMember,
        seeds: Vec<Seed>,
        (state_file, data_id): (Option<PathBuf>, u64),
    ) -> Self {
        MembershipConfig {
            me,
            seeds,
            gossip_interval: config.gossip_interval,
            down_after: config.down_after,
            request_timeout: config.request_timeout,
            state_file,
            data_id,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            me: self.me.clone(),
            seeds: self
                .seeds
                .iter()
                .map(|s| RingMember {
                    id: NodeId::from_name(&s.name),
                    name: s.name.clone(),
                    addr: s.addr.clone(),
                })
                .collect(),
            gossip_interval_ms: self.gossip_interval.as_millis() as u64,
            down_after_ms: self.down_after.as_millis() as u64,
            data_id: self.data_id,
        }
    }
}

/// Performs the membership engine's effects.
pub struct Membership {
    engine: MembershipEngine,
    config: MembershipConfig,
    started: Instant,
    peers: PeerDirectory,
    peer_settings: Arc<PeerSettings>,
    lanes: Vec<ArbiterHandle>,
    ring: Addr<RingActor>,
    sync: Addr<SyncActor>,
    fence: Arc<Fence>,
    flushes: Arc<Flushes>,
    /// Coordinators waiting for a ring at least this new.
    learners: Vec<(RingId, oneshot::Sender<bool>)>,
    status: StatusReader,
    left: watch::Sender<bool>,
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
        Membership {
            engine: MembershipEngine::new(config.settings(), saved, rand::random()),
            config,
            started: Instant::now(),
            peers: parts.peers,
            peer_settings: parts.peer_settings,
            lanes: parts.lanes,
            ring: parts.ring,
            sync: parts.sync,
            fence: parts.fence,
            flushes: parts.flushes,
            learners: Vec::new(),
            status: parts.status,
            left: parts.left,
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Feeds `event` to the engine and performs what it asks for.
    fn apply(&mut self, event: Event, ctx: &mut Context<Self>) {
        let now = self.now();
        for effect in self.engine.handle(event, now) {
            self.perform(effect, ctx);
        }
    }

    fn perform(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        match effect {
            Effect::GossipWith(target) => self.gossip_with(target, ctx),
            Effect::EnsurePeer { id, addr } => self.connect(id, &addr),
            Effect::DropPeer(id) => {
                for old in self.peers.remove(id) {
                    old.do_send(Disconnect);
                }
            }
            // The Ring actor publishes the placement and hands it to the Sync actor.
            Effect::PublishRings(rings) => self.ring.do_send(SetRings(rings)),
            Effect::Persist(state) => self.persist(&state),
            Effect::SetMajority(majority) => self.fence.set_majority(majority),
            Effect::NotifySync(SyncNews::CaughtUp { current, heard }) => self.sync.do_send(CaughtUp { current, heard }),
            Effect::NotifySync(SyncNews::BarrierReached(ring)) => self.sync.do_send(BarrierReached(ring)),
            Effect::NotifySync(SyncNews::DataConflict) => self.sync.do_send(DataConflict),
            Effect::AnswerLearners(latest) => self.answer_learners(latest),
            Effect::RaiseFlushMark(mark) => {
                if self.flushes.current().is_none_or(|ours| ours < mark) {
                    let flushes = Arc::clone(&self.flushes);
                    actix::spawn(async move {
                        if let Err(e) = flushes.raise(mark).await {
                            log::error!("saving a flush mark learned by gossip failed: {e}");
                        }
                    });
                }
            }
            Effect::Left => {
                let _ = self.left.send(true);
            }
            Effect::PublishStatus(status) => self.status.store(Arc::new(status)),
        }
    }

    fn persist(&self, state: &Persisted) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        if let Err(e) = persist::save(path, state) {
            log::error!("cannot save cluster state: {e}");
        }
    }

    /// Starts a Peer actor per lane for `id` at `addr`, replacing those it had.
    fn connect(&mut self, id: NodeId, addr: &str) {
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
    }

    /// Answers the coordinators waiting for a ring up to `latest` once the placement is
    /// published (the coordinator reads it right after); forgets those that gave up.
    fn answer_learners(&mut self, latest: RingId) {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.learners)
            .into_iter()
            .filter(|(_, reply)| !reply.is_closed())
            .partition(|(wanted, _)| *wanted <= latest);
        self.learners = waiting;
        if ready.is_empty() {
            return;
        }
        let published = self.ring.send(SetRings(self.engine.view().rings().to_vec()));
        actix_rt::spawn(async move {
            let ok = published.await.is_ok();
            for (_, reply) in ready {
                let _ = reply.send(ok);
            }
        });
    }

    /// What this node sends in a gossip exchange: its view and its flush mark.
    fn gossip(&self) -> GossipState {
        GossipState {
            flush: self.flushes.current(),
            ..self.engine.gossip()
        }
    }

    /// Exchanges views with `target`; feeds the answer to the engine.
    fn gossip_with(&mut self, target: NodeId, ctx: &mut Context<Self>) {
        let exchange = self.peers.call::<GossipService>(target, 0, self.gossip());
        ctx.spawn(exchange.into_actor(self).map(move |reply, act, ctx| match reply {
            Ok(state) => act.apply(Event::Answered { from: target, state }, ctx),
            Err(e) => log::debug!("gossip with {target} failed: {e}"),
        }));
    }
}

impl Actor for Membership {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.apply(Event::Start, ctx);
        ctx.run_interval(self.config.gossip_interval, |act, ctx| act.apply(Event::Tick, ctx));
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) -> actix::Running {
        self.apply(Event::Stopping, ctx);
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

    fn handle(&mut self, Exchange(theirs): Exchange, ctx: &mut Context<Self>) -> Self::Result {
        self.apply(Event::Received(theirs), ctx);
        actix::MessageResult(self.gossip())
    }
}

impl Handler<LearnRing> for Membership {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, LearnRing(wanted): LearnRing, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.learners.retain(|(_, reply)| !reply.is_closed());
        self.learners.push((wanted, tx));
        self.apply(Event::LearnRing(wanted), ctx);
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

    fn handle(&mut self, Adopted(ring): Adopted, ctx: &mut Context<Self>) {
        self.apply(Event::Adopted(ring), ctx);
    }
}

/// The Sync actor pulled every bucket this node newly owns in `ring`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Synced(pub RingId);

impl Handler<Synced> for Membership {
    type Result = ();

    fn handle(&mut self, Synced(ring): Synced, ctx: &mut Context<Self>) {
        self.apply(Event::Synced(ring), ctx);
    }
}

/// Leave the cluster: hand this node's data off, then report it left.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for Membership {
    type Result = ();

    fn handle(&mut self, _msg: Leave, ctx: &mut Context<Self>) {
        self.apply(Event::Leave, ctx);
    }
}
