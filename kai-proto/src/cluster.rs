//! Cluster state exchanged by gossip.
//!
//! Two kinds of state, with different merge rules:
//! - [`RingState`]: which nodes are in the ring. Changed rarely, by one proposer at a time, and
//!   merged last-writer-wins by [`RingId`] `(version, proposer)` — a total order, so every node
//!   picks the same winner. A proposal that loses is simply proposed again.
//! - [`NodeState`]: what one node says about itself (liveness heartbeat, whether it wants to be a
//!   member, which ring it has adopted and which it has finished syncing). Only that node writes
//!   it; copies are merged by `(incarnation, heartbeat)`, so newer news wins.

use crate::tag::NodeId;
use serde::{Deserialize, Serialize};

/// Identity and order of a ring proposal: higher wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RingId {
    /// One more than the version of the ring it replaces.
    pub version: u64,
    /// The node that proposed it (breaks ties between concurrent proposals).
    pub proposer: NodeId,
}

/// A node in a ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMember {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its peer address.
    pub addr: String,
}

/// The members of one ring version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    /// Which proposal this is.
    pub id: RingId,
    /// Members, sorted by id.
    pub members: Vec<RingMember>,
}

impl RingState {
    /// A ring of `members` (sorted and deduplicated here) with identity `id`.
    pub fn new(id: RingId, mut members: Vec<RingMember>) -> Self {
        members.sort_by_key(|m| m.id);
        members.dedup_by_key(|m| m.id);
        RingState { id, members }
    }

    /// True if `node` is a member.
    pub fn contains(&self, node: NodeId) -> bool {
        self.members.iter().any(|m| m.id == node)
    }

    /// Member ids.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.iter().map(|m| m.id).collect()
    }
}

/// What a node wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    /// To be (or stay) a member of the ring.
    Member,
    /// To leave the ring (`kai leave`): hand its data off, then stop.
    Leave,
}

/// What one node says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its peer address.
    pub addr: String,
    /// Increases on every start of the node (and to refute being declared removed).
    pub incarnation: u64,
    /// Increases every gossip interval while the node runs.
    pub heartbeat: u64,
    /// Member or leaving.
    pub intent: Intent,
    /// Newest ring this node has adopted: as a replica it refuses requests made with older rings.
    pub adopted: RingId,
    /// Newest ring for which this node has pulled every bucket it newly owns.
    pub synced: RingId,
    /// Identity of the node's data directory, random, created with its store: a node that
    /// comes back under the same name with another one (an empty or replaced data dir) holds
    /// none of what the old one acknowledged.
    pub data_id: u64,
}

impl NodeState {
    /// True if `self` is newer news than `other` about the same node.
    pub fn newer_than(&self, other: &NodeState) -> bool {
        (self.incarnation, self.heartbeat) > (other.incarnation, other.heartbeat)
    }
}

/// One side's view, sent in both directions of a push-pull gossip exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipState {
    /// The sender: its own state in `nodes` is first-hand news, the rest second-hand.
    pub from: NodeId,
    /// The sender's active rings, oldest (settled) first, newest last.
    pub rings: Vec<RingState>,
    /// Every node the sender knows about.
    pub nodes: Vec<NodeState>,
    /// The highest `flush_all` mark the sender knows (spread so every node learns it).
    pub flush: Option<crate::flush::FlushMark>,
}
