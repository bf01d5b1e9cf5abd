use super::*;

fn node(i: u64) -> NodeId {
    NodeId(i)
}

fn rings(members: &[u64]) -> Vec<(RingId, Ring)> {
    let nodes: Vec<NodeId> = members.iter().copied().map(node).collect();
    let id = RingId {
        version: 1,
        proposer: node(members[0]),
    };
    vec![(id, Ring::build(&nodes, 64, 8, 3))]
}

fn answered(nodes: &[u64]) -> BTreeSet<NodeId> {
    nodes.iter().copied().map(node).collect()
}

#[test]
fn every_bucket_needs_w_of_its_owners() {
    let rings = rings(&[1, 2, 3, 4, 5]);
    assert_eq!(
        members(&rings),
        answered(&[1, 2, 3, 4, 5]).into_iter().collect::<Vec<_>>()
    );
    assert_eq!(check_coverage(&rings, &answered(&[1, 2, 3, 4, 5]), 2), Ok(()));
    // One node down: every bucket still has two of its three owners.
    assert_eq!(check_coverage(&rings, &answered(&[1, 2, 3, 4]), 2), Ok(()));
    // Three down: some bucket is owned by them and has at most one answer.
    let short = check_coverage(&rings, &answered(&[1, 2]), 2);
    assert!(
        matches!(short, Err(FlushError::Uncovered { needed: 2, .. })),
        "{short:?}"
    );
}

#[test]
fn every_active_ring_counts() {
    let mut both = rings(&[1, 2, 3]);
    let next = rings(&[4, 5, 6]).remove(0);
    both.push(next);
    assert!(check_coverage(&both, &answered(&[1, 2, 3]), 2).is_err());
    assert_eq!(check_coverage(&both, &answered(&[1, 2, 4, 5]), 2), Ok(()));
}

#[test]
fn small_clusters_cap_the_quorum_at_their_size() {
    let one = rings(&[7]);
    assert_eq!(check_coverage(&one, &answered(&[7]), 2), Ok(()));
    assert!(check_coverage(&one, &answered(&[]), 2).is_err());
}

#[test]
fn the_mark_exceeds_every_reported_counter_and_mark() {
    let earlier = FlushMark {
        tag: Tag {
            counter: 500,
            writer: WriterId(1),
        },
        at: 10,
    };
    let replies = [
        FlushReply::Bound {
            counter: 40,
            mark: None,
        },
        FlushReply::Bound {
            counter: 90,
            mark: Some(earlier),
        },
        FlushReply::Failed,
    ];
    let mark = choose_mark(&replies, WriterId(3), 77);
    assert_eq!(
        mark.tag,
        Tag {
            counter: 500 + MARK_MARGIN,
            writer: WriterId(3)
        }
    );
    assert_eq!(mark.at, 77);
    let later = [FlushReply::Bound {
        counter: 900,
        mark: Some(earlier),
    }];
    assert_eq!(choose_mark(&later, WriterId(3), 77).tag.counter, 900 + MARK_MARGIN);
}

fn mark(counter: u64) -> FlushMark {
    FlushMark {
        tag: Tag {
            counter,
            writer: WriterId(5),
        },
        at: 1,
    }
}

#[actix_rt::test]
async fn between_the_steps_read_modify_writes_are_frozen() {
    let store = crate::store::StoreHandle::start(Arc::new(crate::store::MemStore::new(4)), 1, false);
    let flushes = Flushes::open(store.clone(), Duration::from_secs(5)).expect("open");
    let ballot = Tag {
        counter: 50,
        writer: WriterId(1),
    };
    store
        .prepare(kai_proto::BucketId(1), bytes::Bytes::from_static(b"k"), ballot)
        .await
        .expect("prepare");
    assert!(flushes.admit_update().await.is_some());
    let bound = flushes.serve(FlushStep::Bound).await;
    assert_eq!(
        bound,
        FlushReply::Bound {
            counter: 50,
            mark: None
        },
        "promises count"
    );
    assert!(flushes.admit_update().await.is_none(), "frozen until the mark");
    let chosen = choose_mark(&[bound], WriterId(5), 1);
    assert_eq!(chosen, mark(50 + MARK_MARGIN));
    assert_eq!(flushes.serve(FlushStep::Mark(chosen)).await, FlushReply::Marked);
    assert!(flushes.admit_update().await.is_some(), "the mark unfreezes");
    let old = Record::value(ballot, 0, 0, bytes::Bytes::from_static(b"v"));
    assert_eq!(flushes.mask(Some(old)), Some(Record::tombstone(chosen.tag, 1)));
}

#[actix_rt::test]
async fn a_freeze_ends_by_itself_when_the_mark_never_comes() {
    let store = crate::store::StoreHandle::start(Arc::new(crate::store::MemStore::new(4)), 1, false);
    let flushes = Flushes::open(store, Duration::from_millis(20)).expect("open");
    flushes.serve(FlushStep::Bound).await;
    assert!(flushes.admit_update().await.is_none());
    tokio::time::sleep(Duration::from_millis(20) * FREEZE_TIMEOUTS).await;
    assert!(flushes.admit_update().await.is_some());
    assert_eq!(flushes.current(), None);
}
