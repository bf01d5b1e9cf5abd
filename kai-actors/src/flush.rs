//! Cluster-wide `flush_all`: a [`FlushMark`] above every stored version, made durable on a
//! write quorum of every key's owners, masks everything older (docs/design.md §3, "flush_all").
//!
//! Invariants:
//! - A node's mark only rises, and is saved in its store before the node acknowledges it.
//! - A flush answers OK only once, for every bucket of every active ring, at least `w` of the
//!   bucket's owners hold the mark durably. Any read or prepare quorum of any key then includes
//!   a replica that masks the key's older versions with the mark's tombstone (`R + W > N`), so
//!   no read after the OK returns a value stored before the flush began, and every tag minted
//!   after it (above what its version round saw) is above the mark.
//! - The mark is [`MARK_MARGIN`] above the highest counter reported by `w` owners of every
//!   bucket — stored tags and promised ballots: every acknowledged write and every proposal that
//!   may still be accepted is below it, and no node's clock counts up to it during the flush.
//! - Between the two steps a replica is *frozen* for read-modify-writes (prepares and accepts
//!   are refused, to be retried), so no proposal can be promised on a quorum that read the
//!   unmasked state and then be accepted above the mark: a frozen replica unfreezes only with
//!   the mark in effect, or after [`FREEZE_TIMEOUTS`] request timeouts if the flush died.
//! - No scan: the flush is two messages per member; masking is one comparison per replica read.

use crate::replica::Replicas;
use crate::ring::{Ring, RingSnapshot};
use crate::store::{StoreError, StoreHandle};
use futures_util::future::join_all;
use kai_proto::cluster::RingId;
use kai_proto::flush::{FlushMark, FlushReply, FlushStep};
use kai_proto::{NodeId, Record, Tag, WriterId};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node's mark is at least this far above every counter the flush saw, so that clocks
/// counting up from what they saw never reach it during the flush.
pub const MARK_MARGIN: u64 = 1 << 32;

/// A replica frozen by a flush's first step unfreezes by itself after this many request
/// timeouts (the coordinator died, or gave up).
pub const FREEZE_TIMEOUTS: u32 = 2;

/// This node's flush mark: loaded from the store, raised by flushes and gossip; and whether a
/// flush in progress froze read-modify-writes on this replica.
pub struct Flushes {
    mark: std::sync::RwLock<Option<FlushMark>>,
    /// Read-held by a prepare or accept from its freeze check to its answer; write-held by the
    /// flush steps, so a step never falls between a check and the store operation it admits.
    gate: tokio::sync::RwLock<Option<Instant>>,
    freeze: Duration,
    store: StoreHandle,
}

/// A prepare or accept admitted by [`Flushes::admit_update`]: no flush step runs on this node
/// until it is dropped.
pub struct Admitted<'a> {
    _gate: tokio::sync::RwLockReadGuard<'a, Option<Instant>>,
}

impl Flushes {
    /// The mark saved in `store`, if any; a freeze lasts [`FREEZE_TIMEOUTS`] × `request_timeout`.
    pub fn open(store: StoreHandle, request_timeout: Duration) -> Result<Arc<Self>, StoreError> {
        let mark = store.flush_mark()?;
        Ok(Arc::new(Flushes {
            mark: std::sync::RwLock::new(mark),
            gate: tokio::sync::RwLock::new(None),
            freeze: request_timeout * FREEZE_TIMEOUTS,
            store,
        }))
    }

    /// The node's current mark.
    pub fn current(&self) -> Option<FlushMark> {
        *self.mark.read().unwrap_or_else(|p| p.into_inner())
    }

    /// `record` as this node's replica answers it (see [`FlushMark::mask`]).
    pub fn mask(&self, record: Option<Record>) -> Option<Record> {
        kai_proto::flush::masked(self.current(), record)
    }

    /// The tag this node's replica reports for a key stored with tag `stored`.
    pub fn mask_tag(&self, stored: Option<Tag>) -> Option<Tag> {
        match self.current() {
            Some(mark) => Some(mark.mask_tag(stored)),
            None => stored,
        }
    }

    /// Admits a prepare or accept unless a flush froze this replica (`None`: refuse it, to be
    /// retried). Hold the guard until the answer is built.
    pub async fn admit_update(&self) -> Option<Admitted<'_>> {
        let gate = self.gate.read().await;
        match *gate {
            Some(until) if Instant::now() < until => None,
            _ => Some(Admitted { _gate: gate }),
        }
    }

    /// Adopts `mark` if it is above the current one: saved durably first, then in effect.
    /// Returns whether it was new.
    pub async fn raise(&self, mark: FlushMark) -> Result<bool, StoreError> {
        if self.current().is_some_and(|m| m >= mark) {
            return Ok(false);
        }
        self.store.save_flush_mark(mark).await?;
        let mut current = self.mark.write().unwrap_or_else(|p| p.into_inner());
        let raised = current.is_none_or(|m| m < mark);
        if raised {
            *current = Some(mark);
            log::info!("flush mark {:?} in effect: older versions read as deleted", mark.tag);
        }
        Ok(raised)
    }

    /// This node's answer to a step of a flush coordinated anywhere.
    pub async fn serve(&self, step: FlushStep) -> FlushReply {
        let mut frozen = self.gate.write().await;
        match step {
            FlushStep::Bound => {
                *frozen = Some(Instant::now() + self.freeze);
                FlushReply::Bound {
                    counter: self.store.highest_counters().max(),
                    mark: self.current(),
                }
            }
            FlushStep::Mark(mark) => {
                if let Err(e) = self.raise(mark).await {
                    log::error!("saving flush mark failed: {e}");
                    return FlushReply::Failed;
                }
                *frozen = None;
                FlushReply::Marked
            }
        }
    }
}

/// Why a flush did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// This node does not know a cluster yet.
    #[error("this node has not joined a cluster yet")]
    NoRing,
    /// Too few owners of some bucket answered a step.
    #[error("flush_all needs {needed} owners of every key range; only {got} of {owners:?} answered")]
    Uncovered {
        /// The owners of the bucket that fell short.
        owners: Vec<NodeId>,
        /// How many had to answer.
        needed: usize,
        /// How many did.
        got: usize,
    },
}

/// Every member of the active rings.
pub fn members(rings: &[(RingId, Ring)]) -> Vec<NodeId> {
    let all: BTreeSet<NodeId> = rings
        .iter()
        .flat_map(|(_, ring)| ring.nodes().iter().copied())
        .collect();
    all.into_iter().collect()
}

/// Checks that `answered` holds `w` (capped at the set's size) owners of every bucket of every
/// active ring.
pub fn check_coverage(rings: &[(RingId, Ring)], answered: &BTreeSet<NodeId>, w: usize) -> Result<(), FlushError> {
    for (_, ring) in rings {
        for bucket in 0..ring.buckets() {
            let owners = ring.preference_list(kai_proto::BucketId(bucket));
            let needed = w.min(owners.len());
            let got = owners.iter().filter(|n| answered.contains(n)).count();
            if got < needed {
                return Err(FlushError::Uncovered {
                    owners: owners.to_vec(),
                    needed,
                    got,
                });
            }
        }
    }
    Ok(())
}

/// The mark of a flush by `writer` at `now`: [`MARK_MARGIN`] above every reported counter and
/// mark.
pub fn choose_mark<'a>(replies: impl IntoIterator<Item = &'a FlushReply>, writer: WriterId, now: u64) -> FlushMark {
    let mut highest = 0;
    for reply in replies {
        if let FlushReply::Bound { counter, mark } = reply {
            highest = highest.max(*counter).max(mark.map_or(0, |m| m.tag.counter));
        }
    }
    FlushMark {
        tag: Tag {
            counter: highest.saturating_add(MARK_MARGIN),
            writer,
        },
        at: now,
    }
}

/// Runs a flush over the placement `snapshot`: asks every member for its bound, then makes the
/// chosen mark durable on them. Each step must cover every bucket with `w` owners within
/// `timeout`.
pub async fn flush_all(
    replicas: &Replicas,
    snapshot: &RingSnapshot,
    (w, writer, now): (usize, WriterId, u64),
    timeout: Duration,
) -> Result<FlushMark, FlushError> {
    let members = members(&snapshot.rings);
    if members.is_empty() {
        return Err(FlushError::NoRing);
    }
    let bounds = ask_all(replicas, &members, FlushStep::Bound, timeout).await;
    let answered: BTreeSet<NodeId> = bounds
        .iter()
        .filter(|(_, r)| matches!(r, FlushReply::Bound { .. }))
        .map(|(n, _)| *n)
        .collect();
    check_coverage(&snapshot.rings, &answered, w)?;
    let mark = choose_mark(bounds.iter().map(|(_, r)| r), writer, now);
    let marked = ask_all(replicas, &members, FlushStep::Mark(mark), timeout).await;
    let answered: BTreeSet<NodeId> = marked
        .iter()
        .filter(|(_, r)| *r == FlushReply::Marked)
        .map(|(n, _)| *n)
        .collect();
    check_coverage(&snapshot.rings, &answered, w)?;
    Ok(mark)
}

/// `step`'s replies from those of `members` that answered within `timeout`.
async fn ask_all(
    replicas: &Replicas,
    members: &[NodeId],
    step: FlushStep,
    timeout: Duration,
) -> Vec<(NodeId, FlushReply)> {
    let calls = members.iter().map(|node| async move {
        match tokio::time::timeout(timeout, replicas.flush(*node, step)).await {
            Ok(Ok(reply)) => Some((*node, reply)),
            Ok(Err(e)) => {
                log::warn!("flush step {step:?} on {node} failed: {e}");
                None
            }
            Err(_) => {
                log::warn!("flush step {step:?} on {node} timed out");
                None
            }
        }
    });
    join_all(calls).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests;
