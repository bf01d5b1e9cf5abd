use super::*;
use bytes::Bytes;
use kai_proto::change::NewValue;
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
    });
    let d = decide(&add, tag(6), (answers, &owners(), 2), None, NOW);
    assert_eq!(d, Decision::Answer(Answer::NotStored, Some(num(5, "9"))));
}

#[test]
fn a_failed_change_first_makes_a_minority_state_stable() {
    let answers = vec![(A, Some(num(5, "x"))), (B, Some(num(3, "9")))];
    let d = decide(&Change::Incr(1), tag(6), (answers, &owners(), 2), None, NOW);
    assert_eq!(d, Decision::Accept(num(6, "x"), Answer::NonNumeric));
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
