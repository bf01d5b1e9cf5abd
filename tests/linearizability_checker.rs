//! The project's linearizability checker must accept linearizable histories and catch the
//! anomalies a broken store produces.

mod common;

use common::linearizability::{check, ArithOutcome, CasOutcome, MetaGetOutcome, Op, Operation};

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

fn add(v: &str, stored: bool) -> Op {
    Op::Add(v.into(), Some(stored))
}

fn incr(delta: i64, to: u64) -> Op {
    Op::Arith(delta, Some(ArithOutcome::Number(to)))
}

#[test]
fn two_clients_both_winning_add_is_caught() {
    let both_won = vec![
        op(0, add("a", true), 0, Some(10)),
        op(1, add("b", true), 1, Some(11)),
        op(2, get(Some("b")), 12, Some(13)),
    ];
    assert!(check(&both_won).is_err(), "two adds of one key cannot both store");
    let one_won = vec![
        op(0, add("a", true), 0, Some(10)),
        op(1, add("b", false), 1, Some(11)),
        op(2, get(Some("a")), 12, Some(13)),
    ];
    assert!(check(&one_won).is_ok());
    // An add after a delete, or after a flush, stores again.
    let readded = vec![
        op(0, add("a", true), 0, Some(1)),
        op(0, Op::Flush, 2, Some(3)),
        op(1, add("b", true), 4, Some(5)),
        op(1, get(Some("b")), 6, Some(7)),
    ];
    assert!(check(&readded).is_ok());
}

#[test]
fn a_lost_increment_is_caught() {
    // Two concurrent increments of 5 must end at 7, whatever their order.
    let lost = vec![
        op(0, set("5"), 0, Some(1)),
        op(1, incr(1, 6), 2, Some(10)),
        op(2, incr(1, 6), 3, Some(11)),
    ];
    assert!(check(&lost).is_err(), "both increments saw 5: one was lost");
    let both = vec![
        op(0, set("5"), 0, Some(1)),
        op(1, incr(1, 7), 2, Some(10)),
        op(2, incr(1, 6), 3, Some(11)),
        op(0, get(Some("7")), 12, Some(13)),
    ];
    assert!(check(&both).is_ok());
    let unread = vec![
        op(0, set("5"), 0, Some(1)),
        op(1, incr(1, 6), 2, Some(3)),
        op(0, get(Some("5")), 4, Some(5)),
    ];
    assert!(
        check(&unread).is_err(),
        "a read after an acknowledged increment must see it"
    );
}

#[test]
fn only_decimal_digits_are_a_counter() {
    // An empty value (a vivified item) with an append is `+…`: not a number for Kai.
    for value in ["+5", "", " 5", "5 ", "-1", "123456789012345678901"] {
        let h = vec![
            op(0, set(value), 0, Some(1)),
            op(0, Op::Arith(1, Some(ArithOutcome::NonNumeric)), 2, Some(3)),
        ];
        assert!(check(&h).is_ok(), "{value:?}");
    }
    let h = vec![op(0, set("007"), 0, Some(1)), op(0, incr(1, 8), 2, Some(3))];
    assert!(check(&h).is_ok());
}

#[test]
fn decr_floors_at_zero_and_incr_wraps() {
    let h = vec![
        op(0, set("2"), 0, Some(1)),
        op(0, incr(-5, 0), 2, Some(3)),
        op(0, set(&u64::MAX.to_string()), 4, Some(5)),
        op(0, incr(2, 1), 6, Some(7)),
        op(0, Op::Delete(Some(true)), 8, Some(9)),
        op(0, Op::Arith(1, Some(ArithOutcome::NotFound)), 10, Some(11)),
    ];
    assert!(check(&h).is_ok());
    let wrapped_wrong = vec![
        op(0, set(&u64::MAX.to_string()), 0, Some(1)),
        op(0, incr(2, u64::MAX), 2, Some(3)),
    ];
    assert!(check(&wrapped_wrong).is_err());
    let non_numeric = vec![
        op(0, set("x"), 0, Some(1)),
        op(0, Op::Arith(1, Some(ArithOutcome::NonNumeric)), 2, Some(3)),
    ];
    assert!(check(&non_numeric).is_ok());
}

#[test]
fn cas_stores_only_over_the_version_its_gets_saw() {
    let cas = |expected: &str, value: &str, outcome| Op::Cas {
        expected: expected.into(),
        value: value.into(),
        outcome: Some(outcome),
    };
    let ok = vec![
        op(0, set("a"), 0, Some(1)),
        op(1, get(Some("a")), 2, Some(3)),
        op(1, cas("a", "b", CasOutcome::Stored), 4, Some(5)),
        op(2, cas("a", "c", CasOutcome::Exists), 6, Some(7)),
        op(2, get(Some("b")), 8, Some(9)),
    ];
    assert!(check(&ok).is_ok());
    let both_stored = vec![
        op(0, set("a"), 0, Some(1)),
        op(1, cas("a", "b", CasOutcome::Stored), 2, Some(10)),
        op(2, cas("a", "c", CasOutcome::Stored), 3, Some(11)),
    ];
    assert!(check(&both_stored).is_err(), "two cas of one version cannot both store");
}

#[test]
fn append_needs_a_value_and_touch_reports_existence() {
    let h = vec![
        op(0, Op::Append("x".into(), Some(false)), 0, Some(1)),
        op(0, set("a"), 2, Some(3)),
        op(1, Op::Append("-1".into(), Some(true)), 4, Some(5)),
        op(1, Op::Touch(Some(true)), 6, Some(7)),
        op(0, get(Some("a-1")), 8, Some(9)),
    ];
    assert!(check(&h).is_ok());
    let wrong = vec![op(0, Op::Touch(Some(true)), 0, Some(1))];
    assert!(check(&wrong).is_err(), "touch of an absent key cannot succeed");
}

#[test]
fn a_write_acknowledged_before_a_flush_is_gone_after_it() {
    let h = vec![
        op(0, set("a"), 0, Some(1)),
        op(1, Op::Flush, 2, Some(3)),
        op(0, get(Some("a")), 4, Some(5)),
    ];
    assert!(check(&h).is_err(), "a value read back after flush_all answered");
}

#[test]
fn a_write_of_unknown_outcome_seen_only_through_an_increment_counts() {
    // The set's reply was lost, and no read returned its value, but an increment built on it.
    let h = vec![
        op(0, set("10"), 0, None),
        op(1, incr(7, 17), 5, Some(6)),
        op(1, get(Some("17")), 7, Some(8)),
    ];
    assert!(check(&h).is_ok());
}

/// `mg … v` (with `N` if `vivify`, `R` past the expiry if `recache`) answered a hit of `value`
/// with the flags in `flags` (`W`, `X`, `Z`).
fn mg_hit(vivify: bool, recache: bool, value: &str, flags: &str) -> Op {
    Op::MetaGet {
        vivify,
        recache,
        outcome: Some(MetaGetOutcome::Hit {
            value: value.into(),
            won: flags.contains('W'),
            stale: flags.contains('X'),
            win_taken: flags.contains('Z'),
        }),
    }
}

fn invalidate(found: bool) -> Op {
    Op::Invalidate(Some(found))
}

#[test]
fn the_recache_win_goes_to_one_client_per_invalidation() {
    let h = vec![
        op(0, set("a"), 0, Some(1)),
        op(1, mg_hit(false, false, "a", ""), 2, Some(3)),
        op(0, invalidate(true), 4, Some(5)),
        op(1, mg_hit(false, false, "a", "XW"), 6, Some(10)),
        op(2, mg_hit(false, false, "a", "ZX"), 7, Some(11)),
        op(2, mg_hit(false, false, "a", "ZX"), 12, Some(13)),
        op(0, invalidate(true), 14, Some(15)),
        op(2, mg_hit(false, false, "a", "XW"), 16, Some(17)),
        op(2, set("b"), 18, Some(19)),
        op(1, mg_hit(false, false, "b", ""), 20, Some(21)),
        op(1, Op::Invalidate(None), 22, None),
        op(0, Op::Delete(Some(true)), 23, Some(24)),
        op(0, invalidate(false), 25, Some(26)),
    ];
    assert!(check(&h).is_ok());
    let both_won = vec![
        op(0, set("a"), 0, Some(1)),
        op(0, invalidate(true), 2, Some(3)),
        op(1, mg_hit(false, false, "a", "XW"), 4, Some(10)),
        op(2, mg_hit(false, false, "a", "XW"), 5, Some(11)),
    ];
    assert!(check(&both_won).is_err(), "two concurrent winners of one invalidation");
    let unearned = vec![
        op(0, set("a"), 0, Some(1)),
        op(1, mg_hit(false, false, "a", "W"), 2, Some(3)),
    ];
    assert!(
        check(&unearned).is_err(),
        "a win on an item that is neither stale nor due"
    );
    let not_stale = vec![
        op(0, set("a"), 0, Some(1)),
        op(0, invalidate(true), 2, Some(3)),
        op(0, set("b"), 4, Some(5)),
        op(1, mg_hit(false, false, "b", "X"), 6, Some(7)),
    ];
    assert!(
        check(&not_stale).is_err(),
        "a write after the invalidation clears the mark"
    );
}

#[test]
fn vivify_and_recache_hand_out_one_win() {
    let h = vec![
        op(0, mg_hit(true, false, "", "W"), 0, Some(10)),
        op(1, mg_hit(true, false, "", "Z"), 1, Some(11)),
        op(
            2,
            Op::MetaGet {
                vivify: false,
                recache: false,
                outcome: Some(MetaGetOutcome::Miss),
            },
            2,
            Some(3),
        ),
        op(0, set("a"), 12, Some(13)),
        op(1, mg_hit(false, true, "a", "W"), 14, Some(15)),
        op(2, mg_hit(true, true, "a", "Z"), 16, Some(17)),
    ];
    assert!(check(&h).is_ok(), "the miss came before both vivifies");
    let both_vivified = vec![
        op(0, mg_hit(true, false, "", "W"), 0, Some(10)),
        op(1, mg_hit(true, false, "", "W"), 1, Some(11)),
    ];
    assert!(check(&both_vivified).is_err());
    let missed_after = vec![
        op(0, mg_hit(true, false, "", "W"), 0, Some(1)),
        op(
            2,
            Op::MetaGet {
                vivify: false,
                recache: false,
                outcome: Some(MetaGetOutcome::Miss),
            },
            2,
            Some(3),
        ),
    ];
    assert!(
        check(&missed_after).is_err(),
        "a vivified item is there for later reads"
    );
}

#[test]
fn an_mg_whose_answer_was_lost_may_have_taken_the_win() {
    let setup = || vec![op(0, set("a"), 0, Some(1)), op(0, invalidate(true), 2, Some(3))];
    let lost = || {
        op(
            1,
            Op::MetaGet {
                vivify: false,
                recache: false,
                outcome: None,
            },
            4,
            None,
        )
    };
    for later in ["XW", "ZX"] {
        let mut h = setup();
        h.push(lost());
        h.push(op(2, mg_hit(false, false, "a", later), 10, Some(11)));
        assert!(check(&h).is_ok(), "{later}");
    }
    // Without the lost one, nobody else can have taken it.
    let mut h = setup();
    h.push(op(2, mg_hit(false, false, "a", "ZX"), 10, Some(11)));
    assert!(check(&h).is_err());
}
