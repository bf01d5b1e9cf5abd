//! Which data-movement requests this replica accepts: the rules that make handoff, anti-entropy
//! and tombstone GC obey rings like client traffic does (the replica [`Fence`] is checked too).
//!
//! A request is refused when
//! - this node has not heard the cluster's current view since it started or lost sight of a
//!   majority ([`GateView::current`]): its own rings may be out of date, so it can judge nothing;
//! - it was planned on a ring older than this node's settled one, or newer than any it knows;
//! - this node's view says the sender owns no copy of the bucket in any active ring (e.g. a node
//!   that was removed while away, pushing its old copies back).
//!
//! Together with the sender-side rule (no anti-entropy, GC or garbage drop before the node is
//! current) this keeps a node that returns after its removal from pushing, applying or purging
//! anything before it has learned that it is no longer an owner.

use crate::fence::{Fence, Refusal};
use crate::ring::RingSnapshot;
use arc_swap::ArcSwap;
use kai_proto::cluster::RingId;
use kai_proto::{BucketId, NodeId};
use std::sync::Arc;

/// What the gate judges with, published by the Sync actor.
#[derive(Clone, Debug, Default)]
pub struct GateView {
    /// The placement Sync works on (the one coordinators use), once it knows one.
    pub placement: Option<Arc<RingSnapshot>>,
    /// True once this node has heard the cluster's current view.
    pub current: bool,
}

/// Lock-free access to the latest [`GateView`].
pub type GateReader = Arc<ArcSwap<GateView>>;

/// Why a sync request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncRefusal {
    /// This node has not caught up with the cluster's view.
    #[error("replica has not heard the cluster's current view yet")]
    NotCurrent,
    /// The sender planned on a ring this node has moved past.
    #[error("request made with ring {sender:?}, older than this replica's {ours:?}")]
    StaleRing {
        /// The sender's ring.
        sender: RingId,
        /// This node's settled or adopted ring.
        ours: RingId,
    },
    /// The sender knows a ring this node does not know yet.
    #[error("request made with ring {0:?}, newer than any this replica knows")]
    UnknownRing(RingId),
    /// The sender owns no copy of the bucket.
    #[error("node {from:?} owns no copy of bucket {bucket} in this replica's active rings")]
    NotOwner {
        /// The sender.
        from: NodeId,
        /// The bucket.
        bucket: BucketId,
    },
    /// This node cannot see a majority of the cluster.
    #[error("replica cannot see a majority of the cluster")]
    Minority,
    /// This node's store is being refilled and cannot answer for its buckets.
    #[error("replica is refilling its store")]
    Refilling,
}

impl SyncRefusal {
    /// The refusal of a request made with `sender` that the replica fence refused.
    pub fn from_fence(refusal: Refusal, sender: RingId) -> Self {
        match refusal {
            Refusal::StaleRing(ours) => SyncRefusal::StaleRing { sender, ours },
            Refusal::Minority => SyncRefusal::Minority,
            Refusal::Refilling => SyncRefusal::Refilling,
        }
    }
}

impl GateView {
    /// Whether a request about `bucket` from `from`, planned on `ring`, may be served.
    pub fn check(&self, from: NodeId, ring: RingId, bucket: BucketId) -> Result<(), SyncRefusal> {
        if !self.current {
            return Err(SyncRefusal::NotCurrent);
        }
        let rings = self.placement.as_ref().map_or(&[][..], |p| p.rings.as_slice());
        let (Some((settled, _)), Some((latest, _))) = (rings.first(), rings.last()) else {
            return Err(SyncRefusal::NotCurrent);
        };
        if ring < *settled {
            return Err(SyncRefusal::StaleRing {
                sender: ring,
                ours: *settled,
            });
        }
        if ring > *latest {
            return Err(SyncRefusal::UnknownRing(ring));
        }
        if !rings.iter().any(|(_, r)| r.preference_list(bucket).contains(&from)) {
            return Err(SyncRefusal::NotOwner { from, bucket });
        }
        Ok(())
    }
}

/// The fence and the gate view, checked together in front of the store for sync requests.
#[derive(Clone)]
pub struct SyncGate {
    /// The replica fence (adopted ring, majority, refilling).
    pub fence: Arc<Fence>,
    /// The Sync actor's published view.
    pub view: GateReader,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    fn view(rings: Vec<(RingId, Ring)>) -> GateView {
        GateView {
            placement: Some(Arc::new(RingSnapshot::new(1, rings, 16))),
            current: true,
        }
    }

    fn ring_id(version: u64) -> RingId {
        RingId {
            version,
            proposer: NodeId(1),
        }
    }

    fn placement(version: u64, members: &[u64]) -> (RingId, Ring) {
        let ids: Vec<NodeId> = members.iter().map(|n| NodeId(*n)).collect();
        (ring_id(version), Ring::build(&ids, 16, 16, 3))
    }

    /// Five nodes; node 4 was removed in ring 3.
    fn after_removal() -> GateView {
        view(vec![placement(3, &[1, 2, 3, 5])])
    }

    #[test]
    fn a_removed_node_cannot_push_or_purge() {
        let gate = after_removal();
        for b in 0..16 {
            assert_eq!(
                gate.check(NodeId(4), ring_id(3), BucketId(b)),
                Err(SyncRefusal::NotOwner {
                    from: NodeId(4),
                    bucket: BucketId(b)
                }),
                "even with the current ring, a non-owner is refused"
            );
        }
        assert!(matches!(
            gate.check(NodeId(4), ring_id(2), BucketId(0)),
            Err(SyncRefusal::StaleRing { .. })
        ));
    }

    #[test]
    fn owners_on_the_current_ring_are_served_and_others_wait() {
        let gate = after_removal();
        let ring = gate.placement.as_ref().and_then(|p| p.settled()).expect("a ring");
        let bucket = BucketId(5);
        let owner = ring.preference_list(bucket)[0];
        assert_eq!(gate.check(owner, ring_id(3), bucket), Ok(()));
        assert_eq!(
            gate.check(owner, ring_id(2), bucket),
            Err(SyncRefusal::StaleRing {
                sender: ring_id(2),
                ours: ring_id(3)
            })
        );
        assert_eq!(
            gate.check(owner, ring_id(4), bucket),
            Err(SyncRefusal::UnknownRing(ring_id(4)))
        );
        let behind = GateView {
            current: false,
            ..gate.clone()
        };
        assert_eq!(behind.check(owner, ring_id(3), bucket), Err(SyncRefusal::NotCurrent));
    }

    #[test]
    fn a_new_owner_of_the_newest_ring_may_pull() {
        let gate = view(vec![placement(3, &[1, 2, 3]), placement(4, &[1, 2, 3, 6])]);
        let newest = gate.placement.as_ref().and_then(|p| p.latest()).expect("a ring");
        let bucket = (0..16)
            .map(BucketId)
            .find(|b| newest.preference_list(*b).contains(&NodeId(6)))
            .expect("node 6 owns a bucket");
        assert_eq!(gate.check(NodeId(6), ring_id(4), bucket), Ok(()));
    }
}
