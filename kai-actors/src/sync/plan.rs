//! What this node's data movement must do next, as plain functions of the active rings and its
//! persisted [`Progress`]: which buckets to wipe when adopting a ring, which to pull and from
//! whom, when it may report `synced`, and whether its store can be trusted at all.
//!
//! Invariants:
//! - A bucket is wiped at most once per ring adoption, even across restarts ([`adoption_wipe`]
//!   compares with the persisted `adopted`).
//! - A wiped bucket stays `unpulled` until it is pulled back, whatever the rings do meanwhile
//!   ([`pull_plan`] pulls buckets owned in the settled ring at once and buckets new in the newest
//!   ring once the barrier is reached); only a bucket the node no longer owns in any active
//!   ring leaves `unpulled` unpulled ([`disowned`]).
//! - A node reports `synced` only with nothing owned left unpulled and a trusted store
//!   ([`synced`]).
//! - A store created anew under a name the cluster expects data from (it owns buckets in a
//!   settled ring past the bootstrap one, or gossip shows another identity for its name) must
//!   refill everything it owns before it serves ([`judge_data`]).

use super::progress::{DataState, Progress};
use crate::ring::Ring;
use kai_proto::cluster::RingId;
use kai_proto::{BucketId, NodeId};

/// The active rings as placements, settled first.
pub type Rings = [(RingId, Ring)];

fn owns(ring: &Ring, bucket: BucketId, me: NodeId) -> bool {
    ring.preference_list(bucket).contains(&me)
}

fn all_buckets(rings: &Rings) -> impl Iterator<Item = BucketId> {
    let buckets = rings.first().map_or(0, |(_, r)| r.buckets());
    (0..buckets).map(BucketId)
}

/// Buckets `me` owns in the newest ring but not in the settled one.
pub fn new_buckets(rings: &Rings, me: NodeId) -> Vec<BucketId> {
    let (Some((_, settled)), Some((_, latest))) = (rings.first(), rings.last()) else {
        return Vec::new();
    };
    if rings.len() < 2 {
        return Vec::new();
    }
    all_buckets(rings)
        .filter(|b| owns(latest, *b, me) && !owns(settled, *b, me))
        .collect()
}

/// Buckets to wipe when adopting the newest ring, given the newest ring whose adoption wipe
/// was already made (in this run or a previous one): none if that is this ring.
pub fn adoption_wipe(rings: &Rings, me: NodeId, already_adopted: RingId) -> Vec<BucketId> {
    match rings.last() {
        Some((latest, _)) if *latest > already_adopted => new_buckets(rings, me),
        _ => Vec::new(),
    }
}

/// Buckets `me` owns in some active ring.
pub fn owned(rings: &Rings, me: NodeId) -> Vec<BucketId> {
    all_buckets(rings)
        .filter(|b| rings.iter().any(|(_, r)| owns(r, *b, me)))
        .collect()
}

/// Unpulled buckets `me` owns in no active ring: there is nothing to pull back.
pub fn disowned(rings: &Rings, me: NodeId, progress: &Progress) -> Vec<BucketId> {
    progress
        .unpulled
        .iter()
        .map(|b| BucketId(*b))
        .filter(|b| !rings.iter().any(|(_, r)| owns(r, *b, me)))
        .collect()
}

/// The unpulled buckets to pull now: those `me` owns in the settled ring at once (the settled
/// owners receive every write), those new in the newest ring once `barrier` is reached for it.
pub fn pull_plan(rings: &Rings, me: NodeId, progress: &Progress, barrier: bool) -> Vec<BucketId> {
    let Some((_, settled)) = rings.first() else {
        return Vec::new();
    };
    let latest = rings.last().map(|(_, r)| r);
    progress
        .unpulled
        .iter()
        .map(|b| BucketId(*b))
        .filter(|b| owns(settled, *b, me) || (barrier && latest.is_some_and(|l| owns(l, *b, me))))
        .collect()
}

/// Where to pull `bucket` from: its settled owners other than `me`, those still in the newest
/// ring first (the others are leaving or dead), and how many of them must be read to hold every
/// acknowledged write: `owners − W + 1`, the owners counting `me` if its copy was wiped.
pub fn sources(rings: &Rings, me: NodeId, bucket: BucketId, w: usize) -> (Vec<NodeId>, usize) {
    let (Some((_, settled)), Some((_, latest))) = (rings.first(), rings.last()) else {
        return (Vec::new(), 0);
    };
    let owners = settled.preference_list(bucket);
    let mut sources: Vec<NodeId> = owners.iter().copied().filter(|n| *n != me).collect();
    sources.sort_by_key(|n| !latest.nodes().contains(n));
    let needed = (owners.len() - w.min(owners.len()) + 1).min(sources.len());
    (sources, needed)
}

/// The ring `me` may report synced now: the newest, if it is a member, its store is trusted,
/// nothing it owns is left to pull, and either the ring is settled or its barrier was reached.
pub fn synced(rings: &Rings, me: NodeId, progress: &Progress, barrier: bool) -> Option<RingId> {
    let (latest, ring) = rings.last()?;
    let trusted = progress.data == DataState::Ready && progress.adopted >= *latest;
    let member = ring.nodes().contains(&me);
    let complete = owned(rings, me).iter().all(|b| !progress.is_unpulled(*b));
    (trusted && member && complete && (rings.len() == 1 || barrier)).then_some(*latest)
}

/// Whether the store can be trusted, judged once this node has completed a gossip exchange
/// (which shows any identity the cluster remembers for its name):
/// `conflict` says gossip showed another data-dir identity for this node's name. A store the cluster expects data from — this node owns buckets in the settled ring —
/// that is new (past the bootstrap ring, which starts empty everywhere) or in conflict must
/// refill; otherwise it is ready (a node outside the settled ring gets its buckets by pulls).
pub fn judge_data(state: DataState, conflict: bool, rings: &Rings, me: NodeId) -> DataState {
    let Some((settled_id, settled)) = rings.first() else {
        return state;
    };
    let owner = settled.nodes().contains(&me);
    match state {
        DataState::Refill => DataState::Refill,
        _ if owner && conflict => DataState::Refill,
        DataState::Fresh if owner && settled_id.version > 1 => DataState::Refill,
        _ => DataState::Ready,
    }
}

#[cfg(test)]
mod tests;
