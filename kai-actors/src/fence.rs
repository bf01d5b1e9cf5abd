//! The replica fence: which requests this node's replica still accepts.
//!
//! Invariants:
//! - A request made with a ring older than the one this node adopted is refused (the coordinator
//!   must learn the newer ring and retry). Adopting takes the write lock, which waits for every
//!   request already admitted under the old ring to finish: once [`Fence::adopt`] returns, no
//!   operation of an older ring can still change this replica. This is what lets new owners pull
//!   a bucket without missing writes.
//! - A node that cannot see a majority of the ring refuses all requests: on the minority side of
//!   a partition it must not acknowledge writes the majority may never see.
//! - A fence starts closed: it refuses everything as [`Refusal::Minority`] until membership has
//!   heard from a majority, and refuses rings older than the newest one adopted by any earlier
//!   run of the node (persisted), so a restarted node never serves an old ring, nor anything while
//!   it may be cut off.
//! - A node whose store cannot be trusted (new, or being refilled after it came back with an
//!   empty or replaced data dir) refuses all requests until it has pulled its buckets: answering
//!   from an empty store would break the intersection of read and write quorums.

use kai_proto::cluster::RingId;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{RwLock, RwLockReadGuard};

/// Gate in front of the local replica.
pub struct Fence {
    ring: RwLock<RingId>,
    majority: AtomicBool,
    refilling: AtomicBool,
}

/// Why the fence refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request's ring is older than the adopted one.
    StaleRing(RingId),
    /// This node cannot see a majority of the cluster.
    Minority,
    /// This node's store is new or being refilled: it holds none of what it owes.
    Refilling,
}

impl Fence {
    /// A closed fence: refuses everything until [`Fence::set_majority`] opens it, and rings older
    /// than `adopted` (the newest ring this node adopted before it restarted) for good.
    pub fn new(adopted: RingId) -> Self {
        Fence {
            ring: RwLock::new(adopted),
            majority: AtomicBool::new(false),
            refilling: AtomicBool::new(false),
        }
    }

    /// Admits a request made with `ring`; the returned guard holds off adoptions until dropped.
    pub async fn admit(&self, ring: RingId) -> Result<RwLockReadGuard<'_, RingId>, Refusal> {
        let adopted = self.ring.read().await;
        if ring < *adopted {
            return Err(Refusal::StaleRing(*adopted));
        }
        if !self.majority.load(Ordering::Relaxed) {
            return Err(Refusal::Minority);
        }
        if self.refilling.load(Ordering::Relaxed) {
            return Err(Refusal::Refilling);
        }
        Ok(adopted)
    }

    /// Refuses requests older than `ring` from now on, once those admitted before are done.
    pub async fn adopt(&self, ring: RingId) {
        let mut adopted = self.ring.write().await;
        if ring > *adopted {
            *adopted = ring;
        }
    }

    /// Whether this node sees a majority of the ring.
    pub fn set_majority(&self, visible: bool) {
        self.majority.store(visible, Ordering::Relaxed);
    }

    /// Whether this node's store is new or being refilled (it refuses everything meanwhile).
    pub fn set_refilling(&self, refilling: bool) {
        self.refilling.store(refilling, Ordering::Relaxed);
    }

    /// Whether the store is refilling (it may lack versions it is meant to hold).
    pub fn is_refilling(&self) -> bool {
        self.refilling.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_proto::NodeId;
    use std::sync::Arc;
    use std::time::Duration;

    fn ring(version: u64) -> RingId {
        RingId {
            version,
            proposer: NodeId(1),
        }
    }

    #[actix_rt::test]
    async fn older_rings_and_minorities_are_refused() {
        let fence = Fence::new(RingId::default());
        fence.set_majority(true);
        assert!(fence.admit(ring(0)).await.is_ok());
        fence.adopt(ring(2)).await;
        assert_eq!(fence.admit(ring(1)).await.err(), Some(Refusal::StaleRing(ring(2))));
        assert!(
            fence.admit(ring(3)).await.is_ok(),
            "a replica behind the coordinator serves"
        );
        fence.adopt(ring(1)).await;
        assert!(fence.admit(ring(2)).await.is_ok(), "adoption never goes backwards");
        fence.set_majority(false);
        assert_eq!(fence.admit(ring(2)).await.err(), Some(Refusal::Minority));
        fence.set_majority(true);
        fence.set_refilling(true);
        assert_eq!(fence.admit(ring(2)).await.err(), Some(Refusal::Refilling));
        fence.set_refilling(false);
        assert!(fence.admit(ring(2)).await.is_ok());
    }

    #[actix_rt::test]
    async fn a_new_fence_refuses_until_a_majority_is_seen_and_never_serves_an_older_ring() {
        let fence = Fence::new(ring(4));
        assert_eq!(fence.admit(ring(4)).await.err(), Some(Refusal::Minority));
        fence.set_majority(true);
        assert!(fence.admit(ring(4)).await.is_ok());
        assert_eq!(fence.admit(ring(3)).await.err(), Some(Refusal::StaleRing(ring(4))));
    }

    #[actix_rt::test]
    async fn adoption_waits_for_admitted_requests() {
        let fence = Arc::new(Fence::new(RingId::default()));
        fence.set_majority(true);
        let guard = fence.admit(ring(1)).await.expect("admitted");
        let adopting = {
            let fence = Arc::clone(&fence);
            actix_rt::spawn(async move { fence.adopt(ring(2)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!adopting.is_finished(), "adoption must wait for the admitted request");
        drop(guard);
        adopting.await.expect("adopted");
        assert!(fence.admit(ring(1)).await.is_err());
    }
}
