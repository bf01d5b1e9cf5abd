//! Timelines of one node's data movement through ring changes, restarts and empty data dirs,
//! driven through the machine's events exactly as the Sync actor feeds them.

use super::*;
use crate::ring::Ring;
use std::collections::BTreeSet;

const BUCKETS: u32 = 64;
const ME: NodeId = NodeId(4);
const W: usize = 2;

fn id(version: u64) -> RingId {
    RingId {
        version,
        proposer: NodeId(1),
    }
}

fn ring(version: u64, members: &[u64]) -> (RingId, Ring) {
    let ids: Vec<NodeId> = members.iter().map(|n| NodeId(*n)).collect();
    (id(version), Ring::build(&ids, BUCKETS, 32, 3))
}

fn placement(rings: Vec<(RingId, Ring)>) -> Event {
    Event::Placement(Arc::new(RingSnapshot::new(1, rings, BUCKETS)))
}

fn ready(adopted: u64) -> Progress {
    Progress {
        data: DataState::Ready,
        adopted: id(adopted),
        ..Progress::fresh(1)
    }
}

fn current() -> Event {
    Event::CaughtUp {
        current: true,
        heard: true,
    }
}

/// A node's machine, remembering what it last asked to save (what a crash would leave).
struct Node {
    machine: Transition,
    saved: Progress,
}

impl Node {
    fn new(progress: Progress) -> Self {
        Node {
            machine: Transition::new(ME, W, progress.clone()),
            saved: progress,
        }
    }

    fn on(&mut self, event: Event) -> Vec<Effect> {
        let effects = self.machine.handle(event);
        for effect in &effects {
            if let Effect::Save(progress) = effect {
                self.saved = progress.clone();
            }
        }
        effects
    }

    /// Completes every bucket of `pull` at `now`.
    fn pull_all(&mut self, pull: &(u64, Vec<BucketId>), now: Duration) -> Vec<Effect> {
        let mut effects = Vec::new();
        for bucket in &pull.1 {
            effects.extend(self.on(Event::Pulled {
                generation: pull.0,
                bucket: *bucket,
                now,
            }));
        }
        effects.extend(self.on(Event::PullsEnded { generation: pull.0 }));
        effects
    }
}

fn adoption(effects: &[Effect]) -> Option<(RingId, Vec<BucketId>)> {
    effects.iter().find_map(|e| match e {
        Effect::Adopt { ring, wipe } => Some((*ring, wipe.clone())),
        _ => None,
    })
}

fn pull(effects: &[Effect]) -> Option<(u64, Vec<BucketId>)> {
    effects.iter().find_map(|e| match e {
        Effect::Pull { generation, jobs, .. } => Some((*generation, jobs.iter().map(|j| j.bucket).collect())),
        _ => None,
    })
}

fn position(effects: &[Effect], wanted: impl Fn(&Effect) -> bool) -> usize {
    effects.iter().position(wanted).expect("effect present")
}

fn buckets(set: &BTreeSet<u32>) -> Vec<BucketId> {
    set.iter().map(|b| BucketId(*b)).collect()
}

#[test]
fn a_joining_node_records_its_wipe_before_wiping_pulls_after_the_barrier_and_then_reports_synced() {
    let mut node = Node::new(ready(2));
    let effects = node.on(placement(vec![ring(2, &[1, 2, 3]), ring(3, &[1, 2, 3, 4])]));
    let (ring, wipe) = adoption(&effects).expect("adopts the new ring");
    assert_eq!(ring, id(3));
    assert!(!wipe.is_empty(), "the joining node owns buckets new to it");
    assert!(
        position(&effects, |e| matches!(e, Effect::Save(_)))
            < position(&effects, |e| matches!(e, Effect::Adopt { .. })),
        "the wipe is saved before it is made"
    );
    assert_eq!(buckets(&node.saved.unpulled), wipe);
    assert!(
        node.on(current())
            .iter()
            .all(|e| matches!(e, Effect::PublishGate { .. })),
        "nothing else runs during the wipe"
    );
    let effects = node.on(Event::Adopted(ring));
    assert_eq!(effects.first(), Some(&Effect::ReportAdopted(ring)));
    assert_eq!(pull(&effects), None, "new buckets wait for the barrier");

    let planned = pull(&node.on(Event::BarrierReached(ring))).expect("pulls after the barrier");
    assert_eq!(planned.1, wipe);
    let (half, rest) = planned.1.split_at(planned.1.len() / 2);
    for bucket in half {
        let effects = node.on(Event::Pulled {
            generation: planned.0,
            bucket: *bucket,
            now: Duration::from_millis(10),
        });
        assert!(effects.is_empty(), "pulled buckets are saved in batches");
    }
    assert_eq!(buckets(&node.saved.unpulled), wipe, "a crash now pulls them again");
    let effects = node.pull_all(&(planned.0, rest.to_vec()), Duration::from_secs(2));
    let synced = position(&effects, |e| *e == Effect::ReportSynced(ring));
    let saved = position(&effects, |e| matches!(e, Effect::Save(p) if p.unpulled.is_empty()));
    assert!(saved < synced, "synced is claimed only once the pulls are saved");
    assert_eq!(node.saved.synced, ring);
}

#[test]
fn a_restart_during_a_ring_change_wipes_nothing_again_and_pulls_only_what_is_left() {
    let rings = vec![ring(2, &[1, 2, 3]), ring(3, &[1, 2, 3, 4])];
    let mut first = Node::new(ready(2));
    let (ring3, wipe) = adoption(&first.on(placement(rings.clone()))).expect("adopts");
    first.on(Event::Adopted(ring3));
    first.on(current());
    let planned = pull(&first.on(Event::BarrierReached(ring3))).expect("pulls");
    let (done, left) = planned.1.split_at(planned.1.len() / 2);
    for (i, bucket) in done.iter().enumerate() {
        // Far enough apart that each completion is saved.
        first.on(Event::Pulled {
            generation: planned.0,
            bucket: *bucket,
            now: PULLS_SAVED_EVERY * (i as u32 + 1),
        });
    }
    // The process dies; the next run starts from what was saved.
    let mut second = Node::new(first.saved.clone());
    let effects = second.on(placement(rings));
    assert_eq!(
        adoption(&effects),
        Some((ring3, Vec::new())),
        "adopting again wipes nothing"
    );
    second.on(Event::Adopted(ring3));
    assert_eq!(pull(&second.on(current())), None, "still waits for the barrier");
    let replanned = pull(&second.on(Event::BarrierReached(ring3))).expect("pulls the rest");
    assert_eq!(replanned.1, left);
    assert!(replanned.1.len() < wipe.len());
    let effects = second.pull_all(&replanned, Duration::from_secs(6));
    assert!(effects.contains(&Effect::ReportSynced(ring3)));
}

#[test]
fn a_pull_planned_on_an_older_placement_completes_nothing() {
    let mut node = Node::new(ready(2));
    let (ring3, _) = adoption(&node.on(placement(vec![ring(2, &[1, 2, 3]), ring(3, &[1, 2, 3, 4])]))).expect("adopts");
    node.on(Event::Adopted(ring3));
    node.on(current());
    let stale = pull(&node.on(Event::BarrierReached(ring3))).expect("pulls");
    // Another node joins before the pull ends: the bucket may be wiped again by this adoption.
    let effects = node.on(placement(vec![
        ring(2, &[1, 2, 3]),
        ring(3, &[1, 2, 3, 4]),
        ring(4, &[1, 2, 3, 4, 5]),
    ]));
    let (ring4, _) = adoption(&effects).expect("adopts ring 4");
    node.on(Event::Adopted(ring4));
    let bucket = stale.1[0];
    let late = node.on(Event::Pulled {
        generation: stale.0,
        bucket,
        now: Duration::from_secs(10),
    });
    assert!(late.is_empty());
    assert!(
        node.machine.progress().is_unpulled(bucket),
        "a stale completion is ignored"
    );
    assert!(node.on(Event::PullsEnded { generation: stale.0 }).is_empty());
    let fresh = pull(&node.on(Event::BarrierReached(ring4))).expect("pulls again");
    assert!(fresh.0 > stale.0);
    if crate::sync::plan::owned(&[ring(4, &[1, 2, 3, 4, 5])], ME).contains(&bucket) {
        assert!(fresh.1.contains(&bucket), "the bucket is pulled again");
    }
}

#[test]
fn an_empty_data_dir_under_a_known_name_refills_everything_before_serving() {
    let mut node = Node::new(Progress::fresh(9));
    let (ring3, wipe) = adoption(&node.on(placement(vec![ring(3, &[1, 2, 3, 4])]))).expect("adopts");
    assert!(wipe.is_empty(), "a settled ring has nothing new to wipe");
    node.on(Event::Adopted(ring3));
    let effects = node.on(Event::CaughtUp {
        current: false,
        heard: true,
    });
    assert!(effects.contains(&Effect::Refilling(true)));
    assert!(effects.contains(&Effect::WipeForRefill));
    assert_eq!(node.saved.data, DataState::Refill);
    let owned = crate::sync::plan::owned(&[ring(3, &[1, 2, 3, 4])], ME);
    assert_eq!(buckets(&node.saved.unpulled), owned);
    assert!(
        node.on(Event::RefillWiped).is_empty(),
        "nothing moves before the node is current"
    );
    let planned = pull(&node.on(current())).expect("refills");
    assert_eq!(planned.1, owned);
    let effects = node.pull_all(&planned, Duration::from_secs(1));
    let ready = position(&effects, |e| *e == Effect::Refilling(false));
    let synced = position(&effects, |e| *e == Effect::ReportSynced(ring3));
    assert!(ready < synced);
    assert_eq!(node.saved.data, DataState::Ready);
}

#[test]
fn a_node_that_has_not_heard_the_current_view_neither_pulls_nor_drops_garbage() {
    let settled = vec![ring(3, &[1, 2, 3, 4])];
    let mut progress = ready(3);
    progress
        .unpulled
        .extend(crate::sync::plan::owned(&settled, ME).iter().take(2).map(|b| b.0));
    let mut node = Node::new(progress);
    let (ring3, _) = adoption(&node.on(placement(settled))).expect("adopts");
    let effects = node.on(Event::Adopted(ring3));
    assert_eq!(effects, vec![Effect::ReportAdopted(ring3)]);
    let planned = pull(&node.on(current())).expect("current: it pulls");
    let effects = node.pull_all(&planned, Duration::from_secs(1));
    assert!(
        effects.contains(&Effect::DropGarbage),
        "settled and current: it drops garbage"
    );
    assert!(
        node.machine.comparable().is_some(),
        "and compares with the other owners"
    );
    let again = node.on(current());
    assert!(
        !again.contains(&Effect::DropGarbage),
        "garbage is dropped once per settled ring"
    );
    node.on(Event::CaughtUp {
        current: false,
        heard: true,
    });
    assert!(node.machine.comparable().is_none(), "no anti-entropy while not current");
}

#[test]
fn stopping_saves_the_pulls_not_saved_yet() {
    let mut node = Node::new(ready(2));
    let (ring3, _) = adoption(&node.on(placement(vec![ring(2, &[1, 2, 3]), ring(3, &[1, 2, 3, 4])]))).expect("adopts");
    node.on(Event::Adopted(ring3));
    node.on(current());
    let planned = pull(&node.on(Event::BarrierReached(ring3))).expect("pulls");
    node.on(Event::Pulled {
        generation: planned.0,
        bucket: planned.1[0],
        now: Duration::ZERO,
    });
    assert!(node.saved.is_unpulled(planned.1[0]));
    node.on(Event::Stopping);
    assert!(!node.saved.is_unpulled(planned.1[0]));
}
