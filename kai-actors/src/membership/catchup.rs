//! Whether this node has heard the cluster's current view, and whether the cluster remembers
//! this node with other data than it has.
//!
//! Invariants:
//! - A node is *current* once, since it started and since it last lost sight of a majority, it
//!   has completed gossip exchanges with a majority of its newest ring's members (itself
//!   counting if it is one). Rings only change with a majority of the newest ring alive, and
//!   settled rings are known to all their members, so such a node knows the settled ring: rings
//!   loaded from disk, or kept through a long partition, are not trusted before that.
//! - The cluster remembers another data dir under this node's name if gossip carries this node's
//!   state with another data-dir identity. (Incarnations cannot tell a rolled-back data dir:
//!   a node raises its incarnation whenever gossip echoes its own state, without persisting it.)

use kai_proto::cluster::{NodeState, RingState};
use kai_proto::NodeId;
use std::collections::BTreeSet;

/// Tracks the gossip exchanges completed since the node (re)started or lost sight of a majority.
#[derive(Clone, Debug, Default)]
pub struct CatchUp {
    exchanged: BTreeSet<NodeId>,
    heard_any: bool,
}

impl CatchUp {
    /// A gossip exchange with `node` completed (its view was merged).
    pub fn exchanged(&mut self, node: NodeId) {
        self.exchanged.insert(node);
        self.heard_any = true;
    }

    /// A peer's view arrived in an exchange it started (the sender is not known here, so it
    /// does not count towards the majority, but its view of this node was seen).
    pub fn heard_from_someone(&mut self) {
        self.heard_any = true;
    }

    /// True once any exchange completed since the node started: any gossip about this node's
    /// name the peer had has been seen.
    pub fn heard_any(&self) -> bool {
        self.heard_any
    }

    /// This node lost sight of a majority: what it heard before no longer counts.
    pub fn lost_majority(&mut self) {
        self.exchanged.clear();
    }

    /// True if this node has exchanged views with a majority of `latest`'s members.
    pub fn is_current(&self, latest: Option<&RingState>, me: NodeId) -> bool {
        let Some(latest) = latest else {
            return false;
        };
        let heard = latest
            .members
            .iter()
            .filter(|m| m.id == me || self.exchanged.contains(&m.id))
            .count();
        heard * 2 > latest.members.len()
    }
}

/// True if `theirs`, gossip about this node, shows that the cluster expects other data from it
/// than this data dir holds: it comes from another data dir than `mine` (this node's own state),
/// or it is newer than `mine` — a run this data dir does not remember, so the data dir was
/// rolled back (restored from a backup). A run saves its incarnation before it gossips, so news
/// of an earlier run of the same data dir is always older, and this run's own state gossiped back
/// is never newer. (A later run that lived only a few gossip intervals can go unnoticed: the
/// incarnation it saved is the one this run starts with, and its heartbeat stayed low.)
pub fn foreign_claim(mine: &NodeState, theirs: &NodeState) -> bool {
    theirs.id == mine.id && (theirs.data_id != mine.data_id || theirs.newer_than(mine))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_proto::cluster::{Intent, RingId, RingMember};

    fn ring(members: &[u64]) -> RingState {
        RingState::new(
            RingId {
                version: 2,
                proposer: NodeId(1),
            },
            members
                .iter()
                .map(|n| RingMember {
                    id: NodeId(*n),
                    name: format!("n{n}"),
                    addr: String::new(),
                })
                .collect(),
        )
    }

    #[test]
    fn current_after_exchanges_with_a_majority_and_again_after_losing_it() {
        let five = ring(&[1, 2, 3, 4, 5]);
        let mut catch_up = CatchUp::default();
        assert!(!catch_up.is_current(None, NodeId(4)), "no ring: nothing known");
        assert!(
            !catch_up.is_current(Some(&five), NodeId(4)),
            "a ring from disk is not enough"
        );
        catch_up.exchanged(NodeId(5));
        assert!(!catch_up.is_current(Some(&five), NodeId(4)), "two of five");
        catch_up.exchanged(NodeId(1));
        assert!(catch_up.is_current(Some(&five), NodeId(4)));
        catch_up.lost_majority();
        assert!(
            !catch_up.is_current(Some(&five), NodeId(4)),
            "a partition makes it stale again"
        );
        assert!(catch_up.heard_any(), "but what was heard about this node stays heard");
        let without_me = ring(&[1, 2, 3]);
        catch_up.exchanged(NodeId(1));
        assert!(
            !catch_up.is_current(Some(&without_me), NodeId(4)),
            "a removed node counts only others"
        );
        catch_up.exchanged(NodeId(2));
        assert!(catch_up.is_current(Some(&without_me), NodeId(4)));
        assert!(CatchUp::default().is_current(Some(&ring(&[4])), NodeId(4)), "alone");
    }

    #[test]
    fn gossip_from_another_data_dir_is_foreign() {
        let mine = NodeState {
            id: NodeId(4),
            name: "n4".into(),
            addr: String::new(),
            incarnation: 3,
            heartbeat: 10,
            intent: Intent::Member,
            adopted: RingId::default(),
            synced: RingId::default(),
            data_id: 77,
        };
        assert!(!foreign_claim(&mine, &mine), "its own state gossiped back");
        let older = NodeState {
            incarnation: 2,
            heartbeat: 900,
            ..mine.clone()
        };
        assert!(!foreign_claim(&mine, &older), "a previous run of this data dir");
        let other_dir = NodeState {
            data_id: 78,
            incarnation: 2,
            ..mine.clone()
        };
        assert!(foreign_claim(&mine, &other_dir), "another data dir under this name");
        let echoed = NodeState {
            heartbeat: 9,
            ..mine.clone()
        };
        assert!(!foreign_claim(&mine, &echoed), "its own state, gossiped back late");
        let later_run = NodeState {
            incarnation: 4,
            heartbeat: 2,
            ..mine.clone()
        };
        assert!(
            foreign_claim(&mine, &later_run),
            "a run this data dir does not remember: it was restored from a backup"
        );
        let other_node = NodeState {
            id: NodeId(5),
            data_id: 1,
            ..mine.clone()
        };
        assert!(!foreign_claim(&mine, &other_node));
    }
}
