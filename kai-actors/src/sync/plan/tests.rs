//! Timelines of one node's data movement through ring changes, restarts and empty data dirs.

use super::*;
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

fn ready() -> Progress {
    Progress {
        data: DataState::Ready,
        ..Progress::fresh(1)
    }
}

/// What the actor does at adoption: record the wipe, then wipe.
fn adopt(rings: &Rings, progress: &mut Progress) -> Vec<BucketId> {
    let wipe = adoption_wipe(rings, ME, progress.adopted);
    let latest = rings.last().expect("a ring").0;
    progress.adopted = progress.adopted.max(latest);
    progress.unpulled.extend(wipe.iter().map(|b| b.0));
    wipe
}

fn pulled(progress: &mut Progress, buckets: &[BucketId]) {
    for b in buckets {
        progress.unpulled.remove(&b.0);
    }
}

#[test]
fn a_restart_during_a_ring_change_neither_wipes_again_nor_forgets_what_to_pull() {
    // Node 4 joins nodes 1, 2, 3.
    let rings = vec![ring(2, &[1, 2, 3]), ring(3, &[1, 2, 3, 4])];
    let mut progress = ready();
    progress.adopted = id(2);
    let wiped = adopt(&rings, &mut progress);
    assert!(!wiped.is_empty(), "the joining node owns buckets");
    assert!(
        pull_plan(&rings, ME, &progress, false).is_empty(),
        "nothing before the barrier"
    );
    let plan = pull_plan(&rings, ME, &progress, true);
    assert_eq!(plan, wiped);
    let (done, left) = plan.split_at(plan.len() / 2);
    pulled(&mut progress, done);
    assert_eq!(synced(&rings, ME, &progress, true), None, "half pulled is not synced");

    // Restart: the persisted progress comes back, the adoption runs again.
    let mut restarted = progress.clone();
    assert!(
        adopt(&rings, &mut restarted).is_empty(),
        "what was pulled is not wiped again"
    );
    assert_eq!(pull_plan(&rings, ME, &restarted, true), left, "only the rest is pulled");
    pulled(&mut restarted, left);
    assert_eq!(synced(&rings, ME, &restarted, true), Some(id(3)));
}

#[test]
fn a_wiped_bucket_is_pulled_back_even_after_the_transition_settled() {
    let mut rings = vec![ring(2, &[1, 2, 3]), ring(3, &[1, 2, 3, 4])];
    let mut progress = ready();
    let wiped = adopt(&rings, &mut progress);
    // The node stops; meanwhile the transition settles (on a claim of a previous run).
    rings.remove(0);
    assert!(adopt(&rings, &mut progress).is_empty());
    assert_eq!(
        pull_plan(&rings, ME, &progress, false),
        wiped,
        "settled-ring buckets are pulled at once"
    );
    assert_eq!(synced(&rings, ME, &progress, false), None);
    let (sources, needed) = sources(&rings, ME, wiped[0], W);
    assert!(!sources.contains(&ME));
    assert_eq!(needed, 2, "its own copy was wiped: both other owners are read");
    pulled(&mut progress, &wiped);
    assert_eq!(synced(&rings, ME, &progress, false), Some(id(3)));
}

#[test]
fn a_removed_node_that_rejoins_wipes_everything_it_owns() {
    let progress_before = Progress {
        adopted: id(2),
        ..ready()
    };
    // Removed in ring 3 while away, added again in ring 4.
    let rings = vec![ring(3, &[1, 2, 3, 5]), ring(4, &[1, 2, 3, 4, 5])];
    let mut progress = progress_before;
    let wiped = adopt(&rings, &mut progress);
    assert_eq!(wiped, owned(&rings, ME), "nothing of its old copies survives");
    assert_eq!(pull_plan(&rings, ME, &progress, true).len(), wiped.len());
    // Learning only the ring that removed it: it owns nothing, no unpulled bucket stays.
    let removed = vec![ring(3, &[1, 2, 3, 5])];
    assert_eq!(
        disowned(&removed, ME, &progress).len(),
        progress.unpulled.len(),
        "buckets it no longer owns are not pulled"
    );
    assert_eq!(
        synced(&removed, ME, &ready(), false),
        None,
        "not a member: never synced"
    );
}

#[test]
fn an_empty_store_under_a_known_name_refills_before_serving() {
    let with_me = vec![ring(3, &[1, 2, 4])];
    let without_me = vec![ring(3, &[1, 2, 3])];
    let bootstrap = vec![ring(1, &[1, 2, 4])];
    assert_eq!(judge_data(DataState::Fresh, false, &with_me, ME), DataState::Refill);
    assert_eq!(
        judge_data(DataState::Fresh, false, &bootstrap, ME),
        DataState::Ready,
        "a brand-new cluster starts empty everywhere"
    );
    assert_eq!(
        judge_data(DataState::Fresh, true, &bootstrap, ME),
        DataState::Refill,
        "unless the cluster remembers another data dir under this name"
    );
    assert_eq!(
        judge_data(DataState::Fresh, false, &without_me, ME),
        DataState::Ready,
        "a new member gets its buckets by pulls"
    );
    assert_eq!(judge_data(DataState::Ready, true, &with_me, ME), DataState::Refill);
    assert_eq!(judge_data(DataState::Ready, false, &with_me, ME), DataState::Ready);
    assert_eq!(judge_data(DataState::Refill, false, &with_me, ME), DataState::Refill);

    // Refilling: every owned bucket is unpulled, pulled at once from all other owners.
    let mut progress = Progress {
        data: DataState::Refill,
        adopted: id(3),
        unpulled: owned(&with_me, ME).iter().map(|b| b.0).collect::<BTreeSet<u32>>(),
        ..Progress::fresh(2)
    };
    let plan = pull_plan(&with_me, ME, &progress, false);
    assert_eq!(plan, owned(&with_me, ME));
    for b in &plan {
        let (sources, needed) = sources(&with_me, ME, *b, W);
        assert_eq!((sources.len(), needed), (2, 2), "bucket {b}");
    }
    pulled(&mut progress, &plan);
    assert_eq!(
        synced(&with_me, ME, &progress, false),
        None,
        "not trusted until marked ready"
    );
    progress.data = DataState::Ready;
    assert_eq!(synced(&with_me, ME, &progress, false), Some(id(3)));
}
