use super::*;
use bytes::Bytes;
use kai_proto::change::meta::MetaGet;
use kai_proto::change::NewValue;
use kai_proto::ValueState;
use kai_proto::WriterId;

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);
const NOW: u64 = 1_800_000_000;

fn tag(counter: u64) -> Tag {
    Tag {
        counter,
        writer: WriterId(7),
    }
}

fn num(counter: u64, n: &str) -> Record {
    Record::value(tag(counter), 0, 0, Bytes::copy_from_slice(n.as_bytes()))
}

fn owners() -> Vec<Vec<NodeId>> {
    vec![vec![A, B, C]]
}

#[test]
fn applies_the_change_to_the_highest_record_under_the_ballot() {
    let answers = vec![(A, Some(num(3, "4"))), (B, Some(num(5, "9")))];
    let d = decide(&Change::Incr(1), tag(6), (answers, &owners(), 2), None, NOW);
    assert_eq!(d, Decision::Accept(num(6, "10"), Answer::Number(10)));
}

#[test]
fn a_failed_change_answers_from_a_state_already_on_a_quorum() {
    let answers = vec![(A, Some(num(5, "9"))), (B, Some(num(5, "9")))];
    let add = Change::Add(NewValue {
        flags: 0,
        expires_at: 0,
        data: Bytes::from_static(b"x"),
        ..NewValue::default()
    });
    let d = decide(&add, tag(6), (answers, &owners(), 2), None, NOW);
    assert_eq!(d, Decision::Answer(Answer::NotStored, Some(num(5, "9"))));
}

#[test]
fn a_failed_change_first_makes_a_minority_state_stable() {
    let answers = vec![(A, Some(num(5, "x"))), (B, Some(num(3, "9")))];
    let d = decide(&Change::Incr(1), tag(6), (answers, &owners(), 2), None, NOW);
    let cas = num(5, "x").cas_unique();
    let kept = ValueState {
        cas: Some(cas),
        ..ValueState::default()
    };
    assert_eq!(
        d,
        Decision::Accept(num(6, "x").with_state(kept), Answer::NonNumeric),
        "the value is accepted again under the ballot, keeping its cas unique"
    );
    let Decision::Accept(record, _) = d else {
        unreachable!("asserted above")
    };
    let cas_of_version_read = Change::Cas {
        value: NewValue::default(),
        unique: cas,
    };
    assert_eq!(cas_of_version_read.apply(Some(&record), NOW).1, Answer::Stored);
    // A tombstone (a failed change of a deleted key) is accepted again as it is.
    let answers = vec![(A, Some(Record::tombstone(tag(5), NOW))), (B, Some(num(3, "9")))];
    let d = decide(&Change::Incr(1), tag(6), (answers, &owners(), 2), None, NOW);
    assert_eq!(d, Decision::Accept(Record::tombstone(tag(6), NOW), Answer::NotFound));
}

#[test]
fn an_earlier_attempt_is_never_applied_twice() {
    let pending = Pending {
        record: num(6, "10"),
        answer: Answer::Number(10),
    };
    let won = vec![(A, Some(num(6, "10"))), (B, Some(num(5, "9")))];
    assert_eq!(
        decide(&Change::Incr(1), tag(8), (won, &owners(), 2), Some(&pending), NOW),
        Decision::Won(Answer::Number(10), Some(num(6, "10")))
    );
    let overtaken = vec![(A, Some(num(7, "11"))), (B, Some(num(5, "9")))];
    assert_eq!(
        decide(&Change::Incr(1), tag(8), (overtaken, &owners(), 2), Some(&pending), NOW),
        Decision::Unknown
    );
    let lost = vec![(A, Some(num(5, "9"))), (B, Some(num(5, "9")))];
    assert_eq!(
        decide(&Change::Incr(1), tag(8), (lost, &owners(), 2), Some(&pending), NOW),
        Decision::Accept(num(8, "10"), Answer::Number(10))
    );
}

#[test]
fn a_meta_delete_proposes_a_tombstone_and_an_invalidation_marks_stale() {
    use kai_proto::change::meta::MetaDelete;
    let answers = vec![(A, Some(num(5, "9"))), (B, Some(num(5, "9")))];
    let delete = Change::MetaDelete(MetaDelete::default());
    let d = decide(&delete, tag(6), (answers.clone(), &owners(), 2), None, NOW);
    assert_eq!(d, Decision::Accept(Record::tombstone(tag(6), NOW), Answer::Deleted));
    let invalidate = Change::MetaDelete(MetaDelete {
        invalidate: true,
        ..MetaDelete::default()
    });
    let d = decide(&invalidate, tag(6), (answers, &owners(), 2), None, NOW);
    assert_eq!(d, Decision::Accept(num(6, "9").with_state(stale()), Answer::Deleted));
}

fn stale() -> ValueState {
    ValueState {
        stale: true,
        ..ValueState::default()
    }
}

fn stale_won_by(winner: Tag) -> ValueState {
    ValueState {
        stale: true,
        win_sent: true,
        winner: Some(winner),
        cas: None,
    }
}

#[test]
fn a_recache_win_is_stamped_with_its_ballot() {
    let answers = vec![
        (A, Some(num(6, "9").with_state(stale()))),
        (B, Some(num(6, "9").with_state(stale()))),
    ];
    let d = decide(
        &Change::MetaGet(MetaGet::default()),
        tag(7),
        (answers, &owners(), 2),
        None,
        NOW,
    );
    assert_eq!(
        d,
        Decision::Accept(
            num(7, "9").with_state(ValueState {
                // The win keeps the item's cas unique, as memcached's does.
                cas: Some(num(6, "9").cas_unique()),
                ..stale_won_by(tag(7))
            }),
            Answer::Fetched { won: true }
        )
    );
}

#[test]
fn an_overtaken_win_is_settled_by_its_stamp() {
    let get = Change::MetaGet(MetaGet::default());
    let ours = Pending {
        record: num(7, "9").with_state(stale_won_by(tag(7))),
        answer: Answer::Fetched { won: true },
    };
    // A later version (a write-back of ours by a reader who saw Z) still names our win: we won.
    let built_on_ours = num(9, "9").with_state(stale_won_by(tag(7)));
    let answers = vec![(A, Some(built_on_ours.clone())), (B, Some(built_on_ours.clone()))];
    let d = decide(&get, tag(10), (answers, &owners(), 2), Some(&ours), NOW);
    assert_eq!(d, Decision::Won(Answer::Fetched { won: true }, Some(built_on_ours)));
    // A later version without our stamp: a write replaced our item or cleared its marks (here
    // an invalidation, then another client's win), perhaps after others saw ours taken. Applying
    // the mg afresh would let it take effect twice: unknown.
    let theirs = num(8, "9").with_state(stale_won_by(tag(8)));
    for later in [theirs.clone(), num(8, "new"), Record::tombstone(tag(8), NOW)] {
        let answers = vec![(A, Some(later.clone())), (B, Some(later))];
        let d = decide(&get, tag(10), (answers, &owners(), 2), Some(&ours), NOW);
        assert_eq!(d, Decision::Unknown);
    }
    // An overtaken mg that won nothing (a write-back) is simply applied again.
    let write_back = Pending {
        record: num(7, "9").with_state(stale_won_by(tag(6))),
        answer: Answer::Fetched { won: false },
    };
    let answers = vec![(A, Some(theirs.clone())), (B, Some(theirs.clone()))];
    let d = decide(&get, tag(10), (answers, &owners(), 2), Some(&write_back), NOW);
    assert_eq!(d, Decision::Answer(Answer::Fetched { won: false }, Some(theirs)));
    // Other overtaken changes stay unknown.
    let incr = Pending {
        record: num(7, "10"),
        answer: Answer::Number(10),
    };
    let answers = vec![(A, Some(num(8, "3"))), (B, Some(num(8, "3")))];
    let d = decide(&Change::Incr(1), tag(10), (answers, &owners(), 2), Some(&incr), NOW);
    assert_eq!(d, Decision::Unknown);
}
