//! A node's view of the cluster, and every membership decision, without I/O.
//!
//! Invariants:
//! - `rings` is ordered by [`RingId`], oldest first. `rings[0]` is the *settled* ring: its owners
//!   hold every bucket's data. Newer rings are transitions in progress; while there are any,
//!   operations need quorums in the owner sets of every active ring.
//! - A transition settles (only the newest ring stays) once every member of the newest ring says
//!   it has synced that ring ([`View::settle`]).
//! - New owners pull data only after every node that may still coordinate has adopted the newest
//!   ring ([`View::barrier_reached`]): from then on every write reaches the new owners too, and
//!   replicas refuse requests made with older rings.
//! - Ring changes are proposed by one node — the lowest-id live member of the newest ring — and only
//!   while it sees a majority of that ring alive ([`View::plan`]); a node that has not heard from
//!   for `down_after` is removed, and a node that wants in and is alive is added.
//! - A node counts as heard *now* only on news that is newer than anything known or forgotten about
//!   it, or that it sent itself. Second-hand news of a node this view knows nothing of proves
//!   nothing about whether it still runs (a peer may be gossiping the last state of a departed
//!   node): it is kept, but does not make the node alive. Departed nodes that are forgotten leave
//!   a tombstone (their last incarnation and heartbeat) for as long again, so their old state
//!   gossiped back by a peer that has not forgotten them yet is ignored ([`View::merge`]).
//! - A majority is counted from news only: the grace given to ring members never heard of (a
//!   restarted node, a new ring) keeps them from being declared down, not from being counted
//!   ([`View::majority_alive`]).

use kai_proto::cluster::{GossipState, Intent, NodeState, RingId, RingMember, RingState};
use kai_proto::NodeId;
use std::collections::{BTreeMap, HashMap};

/// Forgotten nodes remembered at most (the oldest are dropped first).
pub const MAX_FORGOTTEN: usize = 1024;

/// How fresh a node's heartbeat is, as seen from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Heard from within the suspicion timeout.
    Alive,
    /// Silent for longer than the suspicion timeout: probably dead, still in the ring.
    Suspect,
    /// Silent for longer than `down_after`: to be removed from the ring.
    Down,
}

/// Failure-detection timeouts, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Silence after which a node is suspected.
    pub suspect_after_ms: u64,
    /// Silence after which a node is removed from the ring.
    pub down_after_ms: u64,
}

/// When a node was last heard of.
#[derive(Debug, Clone, Copy)]
struct Heard {
    /// Local time (ms).
    at: u64,
    /// True if news of the node arrived then; false for the grace given to a ring member not
    /// heard of yet.
    news: bool,
}

/// What is remembered of a forgotten node: its last news, and when it was forgotten.
#[derive(Debug, Clone, Copy)]
struct Forgotten {
    incarnation: u64,
    heartbeat: u64,
    at: u64,
}

/// A node's view of the cluster.
#[derive(Debug, Clone)]
pub struct View {
    me: NodeId,
    timeouts: Timeouts,
    rings: Vec<RingState>,
    nodes: BTreeMap<NodeId, NodeState>,
    /// When each node's news last got newer (or the grace of a ring member).
    heard: HashMap<NodeId, Heard>,
    /// Tombstones of forgotten nodes, at most [`MAX_FORGOTTEN`].
    forgotten: HashMap<NodeId, Forgotten>,
}

impl View {
    /// A view of node `me` (described by `state`) knowing `rings` (possibly none yet), at `now` ms.
    pub fn new(state: NodeState, rings: Vec<RingState>, timeouts: Timeouts, now: u64) -> Self {
        let me = state.id;
        let mut view = View {
            me,
            timeouts,
            rings: Vec::new(),
            nodes: BTreeMap::from([(me, state)]),
            heard: HashMap::from([(me, Heard { at: now, news: true })]),
            forgotten: HashMap::new(),
        };
        for ring in rings {
            view.add_ring(ring, now);
        }
        view
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// This node's own state.
    pub fn my_state(&self) -> &NodeState {
        &self.nodes[&self.me]
    }

    fn my_state_mut(&mut self) -> &mut NodeState {
        self.nodes.get_mut(&self.me).expect("a view always holds its own node")
    }

    /// Active rings, settled first.
    pub fn rings(&self) -> &[RingState] {
        &self.rings
    }

    /// The newest ring, if the node knows any.
    pub fn latest(&self) -> Option<&RingState> {
        self.rings.last()
    }

    /// Every node known.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes.values()
    }

    /// What is known of `node`.
    pub fn node(&self, node: NodeId) -> Option<&NodeState> {
        self.nodes.get(&node)
    }

    /// Milliseconds since `node`'s news last got newer.
    pub fn silence(&self, node: NodeId, now: u64) -> Option<u64> {
        self.heard.get(&node).map(|h| now.saturating_sub(h.at))
    }

    /// Milliseconds since news of `node` last arrived (`None` if none has).
    fn news_silence(&self, node: NodeId, now: u64) -> Option<u64> {
        let heard = self.heard.get(&node).filter(|h| h.news)?;
        Some(now.saturating_sub(heard.at))
    }

    fn hear(&mut self, node: NodeId, now: u64) {
        self.heard.insert(node, Heard { at: now, news: true });
    }

    /// How alive `node` looks at `now`.
    pub fn liveness(&self, node: NodeId, now: u64) -> Liveness {
        if node == self.me {
            return Liveness::Alive;
        }
        match self.silence(node, now) {
            Some(s) if s < self.timeouts.suspect_after_ms => Liveness::Alive,
            Some(s) if s < self.timeouts.down_after_ms => Liveness::Suspect,
            _ => Liveness::Down,
        }
    }

    /// After this node itself stalled (paused, suspended, starved) the silence it measured says
    /// nothing about the others: every node not heard from since `stalled_at` is made merely
    /// suspect and not visible — silent for half of `down_after`, so no majority and no fence
    /// opening before fresh news — but not down (no removal for a silence this node caused).
    pub fn forgive_stall(&mut self, stalled_at: u64, now: u64) {
        let silence = (self.timeouts.down_after_ms / 2).max(self.timeouts.suspect_after_ms + 1);
        let suspect = now.saturating_sub(silence);
        for (id, heard) in self.heard.iter_mut() {
            if *id != self.me && heard.at <= stalled_at {
                heard.at = heard.at.max(suspect);
            }
        }
    }

    /// Advances this node's heartbeat (once per gossip interval).
    pub fn beat(&mut self, now: u64) {
        self.my_state_mut().heartbeat += 1;
        self.hear(self.me, now);
    }

    /// Changes this node's own state; the heartbeat doubles as its version, so the change wins
    /// wherever it is gossiped.
    fn update_mine(&mut self, change: impl FnOnce(&mut NodeState)) {
        let state = self.my_state_mut();
        change(state);
        state.heartbeat += 1;
    }

    /// Records that this node has adopted `ring` (it refuses older ones from now on).
    pub fn set_adopted(&mut self, ring: RingId) {
        self.update_mine(|s| s.adopted = ring);
    }

    /// Records that this node has synced `ring`.
    pub fn set_synced(&mut self, ring: RingId) {
        self.update_mine(|s| s.synced = ring);
    }

    /// Sets this node's intent.
    pub fn set_intent(&mut self, intent: Intent) {
        self.update_mine(|s| s.intent = intent);
    }

    /// What this node sends in a gossip exchange.
    pub fn gossip(&self) -> GossipState {
        GossipState {
            from: self.me,
            rings: self.rings.clone(),
            nodes: self.nodes.values().cloned().collect(),
            flush: None,
        }
    }

    /// Inserts `ring` in order unless it is known or older than the settled ring. Members not
    /// heard of yet get a grace from `now` before they can be declared down: news of a ring can
    /// arrive before news of its members.
    fn add_ring(&mut self, ring: RingState, now: u64) -> bool {
        let known = self.rings.iter().any(|r| r.id == ring.id);
        let stale = self.rings.first().is_some_and(|settled| ring.id < settled.id);
        if known || stale {
            return false;
        }
        for member in &ring.members {
            self.heard.entry(member.id).or_insert(Heard { at: now, news: false });
        }
        let at = self.rings.partition_point(|r| r.id < ring.id);
        self.rings.insert(at, ring);
        true
    }

    /// Merges what a peer sent; returns true if the active rings changed.
    ///
    /// News of a node makes it heard `now` only if it is newer than what this view knows or
    /// forgot of it, or comes from the node itself; old news of a forgotten node is dropped.
    pub fn merge(&mut self, incoming: GossipState, now: u64) -> bool {
        let from = incoming.from;
        for state in incoming.nodes {
            if state.id == self.me {
                // Only this node speaks for itself; if a previous run of it spread newer news
                // (a restart without a state file), continue above it. Its own state gossiped
                // back is never newer.
                if state.newer_than(self.my_state()) {
                    self.my_state_mut().incarnation = state.incarnation + 1;
                }
                continue;
            }
            match self.nodes.get(&state.id) {
                Some(known) if state.newer_than(known) => {
                    self.hear(state.id, now);
                    self.nodes.insert(state.id, state);
                }
                Some(_) => {}
                None => {
                    let forgotten = self.forgotten.get(&state.id);
                    let old =
                        forgotten.is_some_and(|f| (state.incarnation, state.heartbeat) <= (f.incarnation, f.heartbeat));
                    if old {
                        continue;
                    }
                    if forgotten.is_some() || state.id == from {
                        self.hear(state.id, now);
                    }
                    self.forgotten.remove(&state.id);
                    self.nodes.insert(state.id, state);
                }
            }
        }
        let mut changed = false;
        if let Some(theirs) = incoming.rings.first() {
            if self.rings.first().is_none_or(|ours| theirs.id > ours.id) {
                // The peer settled a newer ring: our older transitions are over.
                let before = self.rings.len();
                self.rings.retain(|r| r.id >= theirs.id);
                changed |= self.rings.len() != before;
                changed |= self.add_ring(theirs.clone(), now);
            }
        }
        for ring in incoming.rings {
            if self.latest().is_none_or(|latest| ring.id > latest.id) {
                changed |= self.add_ring(ring, now);
            }
        }
        changed
    }

    /// Adds a ring this node proposed (or bootstrapped) at `now`.
    pub fn propose(&mut self, ring: RingState, now: u64) -> bool {
        let newer = self.latest().is_none_or(|l| ring.id > l.id);
        newer && self.add_ring(ring, now)
    }

    /// Members of the active rings that may still coordinate operations with an older ring: every
    /// member of the newest ring, silent or not (a Down node may be merely cut off, not dead), and
    /// every member of an older one unless the newest ring removed it and it is Down. A removed
    /// node is no danger: every node waited for refuses its older rings, so it cannot gather a
    /// quorum with them.
    fn barrier_set(&self, now: u64) -> Vec<NodeId> {
        let Some(latest) = self.latest() else {
            return Vec::new();
        };
        let removed_and_down = |id: NodeId| !latest.contains(id) && self.liveness(id, now) == Liveness::Down;
        let mut set: Vec<NodeId> = self
            .rings
            .iter()
            .flat_map(|r| r.members.iter().map(|m| m.id))
            .filter(|id| !removed_and_down(*id))
            .collect();
        set.sort_unstable();
        set.dedup();
        set
    }

    /// True once every node that may coordinate has adopted the newest ring: new owners may pull.
    pub fn barrier_reached(&self, now: u64) -> bool {
        let Some(latest) = self.latest() else {
            return false;
        };
        self.barrier_set(now)
            .iter()
            .all(|id| self.nodes.get(id).is_some_and(|n| n.adopted >= latest.id))
    }

    /// Ends the transition if every member of the newest ring synced it; true if it did.
    pub fn settle(&mut self) -> bool {
        let Some(latest) = self.latest() else {
            return false;
        };
        if self.rings.len() < 2 {
            return false;
        }
        let synced = latest
            .members
            .iter()
            .all(|m| self.nodes.get(&m.id).is_some_and(|n| n.synced >= latest.id));
        if synced {
            let latest = self.rings.pop().expect("checked above");
            self.rings = vec![latest];
        }
        synced
    }

    /// True if this node has had news of a majority of the newest ring's members within half of
    /// `down_after` (itself included). A restarted node sees no majority until news arrives.
    pub fn majority_alive(&self, now: u64) -> bool {
        let Some(latest) = self.latest() else {
            return false;
        };
        // Visible: heard from within half of `down_after`. A node cut off from the majority thus
        // stops serving well before the majority removes it, without reacting to every
        // suspicion.
        let horizon = self.timeouts.down_after_ms / 2;
        let visible = latest
            .members
            .iter()
            .filter(|m| m.id == self.me || self.news_silence(m.id, now).is_some_and(|s| s < horizon))
            .count();
        visible * 2 > latest.members.len()
    }

    /// The ring change this node should propose now, if it is the proposer and a change is due.
    pub fn plan(&self, now: u64) -> Option<RingState> {
        let latest = self.latest()?;
        let proposer = latest
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| self.liveness(*id, now) == Liveness::Alive)
            .min()?;
        if proposer != self.me || !self.majority_alive(now) {
            return None;
        }
        // One transition at a time, except that dead members may always be removed: a
        // transition waiting for a dead node to sync would never end.
        let settled = self.rings.len() == 1;
        let keep = |m: &&RingMember| {
            let leaving = self.nodes.get(&m.id).is_some_and(|s| s.intent == Intent::Leave);
            self.liveness(m.id, now) != Liveness::Down && !(settled && leaving)
        };
        let mut members: Vec<RingMember> = latest.members.iter().filter(keep).cloned().collect();
        if settled {
            for state in self.nodes.values() {
                let wants_in = state.intent == Intent::Member && !latest.contains(state.id);
                if wants_in && self.liveness(state.id, now) == Liveness::Alive {
                    members.push(RingMember {
                        id: state.id,
                        name: state.name.clone(),
                        addr: state.addr.clone(),
                    });
                }
            }
        }
        let proposal = RingState::new(
            RingId {
                version: latest.id.version + 1,
                proposer: self.me,
            },
            members,
        );
        let changed = proposal.members != latest.members && !proposal.members.is_empty();
        changed.then_some(proposal)
    }

    /// Forgets nodes that are in no active ring and have been silent for `forget_after_ms` (or
    /// were never heard of), keeping a tombstone of each for `forget_after_ms`.
    pub fn forget_departed(&mut self, now: u64, forget_after_ms: u64) {
        let in_ring = |id: NodeId, rings: &[RingState]| rings.iter().any(|r| r.contains(id));
        let departed: Vec<NodeId> = self
            .nodes
            .keys()
            .copied()
            .filter(|id| *id != self.me && !in_ring(*id, &self.rings))
            .filter(|id| self.silence(*id, now).is_none_or(|s| s > forget_after_ms))
            .collect();
        for id in departed {
            self.heard.remove(&id);
            if let Some(state) = self.nodes.remove(&id) {
                let tombstone = Forgotten {
                    incarnation: state.incarnation,
                    heartbeat: state.heartbeat,
                    at: now,
                };
                self.forgotten.insert(id, tombstone);
            }
        }
        self.forgotten
            .retain(|_, f| now.saturating_sub(f.at) <= forget_after_ms);
        while self.forgotten.len() > MAX_FORGOTTEN {
            let Some(oldest) = self.forgotten.iter().min_by_key(|(_, f)| f.at).map(|(id, _)| *id) else {
                break;
            };
            self.forgotten.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests;
