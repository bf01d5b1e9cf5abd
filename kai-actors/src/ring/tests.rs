use super::*;
use proptest::prelude::*;

fn nodes(count: u64) -> Vec<NodeId> {
    (0..count).map(|i| NodeId::from_name(&format!("node-{i}"))).collect()
}

/// Fraction of (bucket, replica) slots whose node differs between two rings of the same shape.
fn moved_fraction(before: &Ring, after: &Ring) -> f64 {
    let mut moved = 0usize;
    for b in 0..before.buckets() {
        let old = before.preference_list(BucketId(b));
        moved += after
            .preference_list(BucketId(b))
            .iter()
            .filter(|n| !old.contains(n))
            .count();
    }
    moved as f64 / (before.buckets() as usize * after.replicas()) as f64
}

#[test]
fn preference_lists_are_distinct_nodes() {
    let ring = Ring::build(&nodes(5), 1024, 128, 3);
    for b in 0..1024 {
        let list = ring.preference_list(BucketId(b));
        assert_eq!(list.len(), 3);
        assert!(list[0] != list[1] && list[1] != list[2] && list[0] != list[2]);
    }
}

#[test]
fn replicas_are_capped_by_membership() {
    let ring = Ring::build(&nodes(2), 64, 16, 3);
    assert_eq!(ring.replicas(), 2);
    assert_eq!(ring.preference_list(BucketId(5)).len(), 2);
    let single = Ring::build(&nodes(1), 64, 16, 1);
    assert!((0..64).all(|b| single.preference_list(BucketId(b)) == [nodes(1)[0]]));
    assert!(Ring::build(&[], 64, 16, 3).preference_list(BucketId(0)).is_empty());
}

#[test]
fn member_order_does_not_matter() {
    let mut shuffled = nodes(7);
    shuffled.reverse();
    assert_eq!(Ring::build(&nodes(7), 256, 32, 3), Ring::build(&shuffled, 256, 32, 3));
}

/// Balance bound: with 128 virtual nodes and 1024 buckets, the busiest node holds at most twice
/// the replica slots of the idlest, for 3..=64 nodes.
#[test]
fn buckets_are_balanced() {
    for count in 3..=64u64 {
        let ring = Ring::build(&nodes(count), 1024, 128, 3);
        let loads: Vec<usize> = ring.nodes().iter().map(|n| ring.buckets_of(*n).count()).collect();
        let (min, max) = (
            loads.iter().min().copied().unwrap_or(0),
            loads.iter().max().copied().unwrap_or(0),
        );
        assert!(
            min > 0 && max as f64 / min as f64 <= 2.0,
            "{count} nodes: min {min} max {max}"
        );
    }
}

/// The seed's Fig. 3 claim, measured: one node joining or leaving a ring of n moves at most
/// 1.25/n of the replica slots.
#[test]
fn adding_or_removing_one_node_moves_about_one_nth() {
    for n in 3..=32u64 {
        let before = Ring::build(&nodes(n), 1024, 128, 3);
        let grown = Ring::build(&nodes(n + 1), 1024, 128, 3);
        let shrunk = Ring::build(&nodes(n - 1), 1024, 128, 3);
        let added = moved_fraction(&before, &grown);
        let removed = moved_fraction(&before, &shrunk);
        let bound = 1.25 / n as f64;
        assert!(added <= bound, "join {n}→{}: moved {added:.4} > {bound:.4}", n + 1);
        assert!(
            removed <= bound.max(1.25 / (n - 1) as f64),
            "leave {n}→{}: moved {removed:.4}",
            n - 1
        );
        assert!(added > 0.5 / n as f64, "join must move something: {added}");
    }
}

proptest! {
    #[test]
    fn any_member_set_gives_n_distinct_replicas(ids in proptest::collection::btree_set(any::<u64>(), 1..12), n in 1usize..5) {
        let members: Vec<NodeId> = ids.iter().map(|&i| NodeId(i)).collect();
        let ring = Ring::build(&members, 128, 8, n);
        for b in 0..128 {
            let list = ring.preference_list(BucketId(b));
            prop_assert_eq!(list.len(), n.min(members.len()));
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), list.len());
            prop_assert!(list.iter().all(|x| members.contains(x)));
        }
    }
}
