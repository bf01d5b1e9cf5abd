//! The project's linearizability checker must accept linearizable histories and catch the
//! anomalies a broken store produces.

mod common;

use common::linearizability::{check, Op, Operation};

fn op(client: usize, op: Op, invoked: u64, completed: Option<u64>) -> Operation {
    Operation {
        client,
        key: "k".into(),
        op,
        invoked,
        completed,
    }
}

fn set(v: &str) -> Op {
    Op::Set(v.into())
}

fn get(v: Option<&str>) -> Op {
    Op::Get(v.map(String::from))
}

#[test]
fn sequential_history_is_linearizable() {
    let h = vec![
        op(0, get(None), 0, Some(1)),
        op(0, set("a"), 2, Some(3)),
        op(1, get(Some("a")), 4, Some(5)),
        op(1, Op::Delete(Some(true)), 6, Some(7)),
        op(0, get(None), 8, Some(9)),
        op(0, Op::Delete(Some(false)), 10, Some(11)),
    ];
    assert!(check(&h).is_ok());
}

#[test]
fn stale_read_after_a_completed_write_is_caught() {
    let h = vec![
        op(0, set("a"), 0, Some(1)),
        op(0, set("b"), 2, Some(3)),
        op(1, get(Some("a")), 4, Some(5)),
    ];
    let err = check(&h).expect_err("stale read");
    assert_eq!(err.key, "k");
    assert!(err.to_string().contains("not linearizable"));
}

#[test]
fn overlapping_operations_may_take_effect_in_either_order() {
    // The read overlaps both writes, so it may see either.
    for seen in ["a", "b"] {
        let h = vec![
            op(0, set("a"), 0, Some(10)),
            op(1, set("b"), 1, Some(11)),
            op(2, get(Some(seen)), 2, Some(12)),
        ];
        assert!(check(&h).is_ok(), "{seen}");
    }
}

#[test]
fn a_value_read_then_unread_is_caught() {
    // Both reads overlap the write, but once one read returned the new value, a later read
    // (started after it finished) must not return the old one.
    let h = vec![
        op(0, set("a"), 0, Some(1)),
        op(1, set("b"), 2, Some(100)),
        op(2, get(Some("b")), 3, Some(4)),
        op(3, get(Some("a")), 5, Some(6)),
    ];
    assert!(check(&h).is_err());
}

#[test]
fn writes_with_unknown_outcome_may_apply_late_or_never() {
    let late = vec![
        op(0, set("a"), 0, None),
        op(1, get(None), 1, Some(2)),
        op(1, get(Some("a")), 3, Some(4)),
    ];
    assert!(check(&late).is_ok());
    let never = vec![op(0, set("a"), 0, None), op(1, get(None), 5, Some(6))];
    assert!(check(&never).is_ok());
    let invented = vec![op(0, set("a"), 10, None), op(1, get(Some("a")), 1, Some(2))];
    assert!(
        check(&invented).is_err(),
        "a read cannot see a write invoked after it returned"
    );
}

#[test]
fn deletes_must_report_whether_the_key_existed() {
    let wrong = vec![op(0, Op::Delete(Some(true)), 0, Some(1))];
    assert!(check(&wrong).is_err());
    let right = vec![op(0, set("a"), 0, Some(1)), op(0, Op::Delete(Some(true)), 2, Some(3))];
    assert!(check(&right).is_ok());
}

#[test]
fn keys_are_checked_independently() {
    let mut other = op(0, set("x"), 0, Some(1));
    other.key = "other".into();
    let h = vec![other, op(1, get(None), 2, Some(3))];
    assert!(check(&h).is_ok());
}

#[test]
fn long_concurrent_histories_are_checked_quickly() {
    // 4 clients, 400 operations, each overlapping its neighbours.
    let mut h = Vec::new();
    let mut value = None::<String>;
    for i in 0..400u64 {
        let t = i * 10;
        if i % 3 == 0 {
            let v = format!("v{i}");
            h.push(op((i % 4) as usize, set(&v), t, Some(t + 25)));
            value = Some(v);
        } else {
            h.push(op((i % 4) as usize, Op::Get(value.clone()), t + 26, Some(t + 30)));
        }
    }
    let started = std::time::Instant::now();
    assert!(check(&h).is_ok());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
