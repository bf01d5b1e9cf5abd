use super::*;
use crate::tag::{Tag, WriterId};

const NOW: u64 = 1_800_000_000;

fn tag(counter: u64) -> Tag {
    Tag {
        counter,
        writer: WriterId(3),
    }
}

fn value(data: &'static [u8]) -> Record {
    Record::value(tag(5), 9, 0, Bytes::from_static(data))
}

fn new(data: &'static [u8]) -> NewValue {
    NewValue {
        flags: 1,
        expires_at: 0,
        data: Bytes::from_static(data),
        state: ValueState::default(),
    }
}

fn stored(flags: u32, expires_at: u64, data: &str) -> Effect {
    Effect::Store(NewValue {
        flags,
        expires_at,
        data: Bytes::copy_from_slice(data.as_bytes()),
        state: ValueState::default(),
    })
}

#[test]
fn add_stores_only_when_absent_expired_or_deleted() {
    let add = Change::Add(new(b"x"));
    assert_eq!(add.apply(None, NOW), (Effect::Store(new(b"x")), Answer::Stored));
    let expired = Record::value(tag(5), 0, NOW, Bytes::from_static(b"old"));
    assert_eq!(add.apply(Some(&expired), NOW).1, Answer::Stored);
    let tombstone = Record::tombstone(tag(5), NOW);
    assert_eq!(add.apply(Some(&tombstone), NOW).1, Answer::Stored);
    assert_eq!(add.apply(Some(&value(b"v")), NOW), (Effect::Keep, Answer::NotStored));
}

#[test]
fn replace_append_prepend_need_a_live_value() {
    assert_eq!(
        Change::Replace(new(b"x")).apply(None, NOW),
        (Effect::Keep, Answer::NotStored)
    );
    assert_eq!(
        Change::Replace(new(b"x")).apply(Some(&value(b"v")), NOW),
        (Effect::Store(new(b"x")), Answer::Stored)
    );
    let more = Bytes::from_static(b"++");
    assert_eq!(
        Change::Append(more.clone()).apply(None, NOW),
        (Effect::Keep, Answer::NotStored)
    );
    assert_eq!(
        Change::Prepend(more.clone()).apply(None, NOW),
        (Effect::Keep, Answer::NotStored)
    );
    assert_eq!(
        Change::Append(more.clone()).apply(Some(&value(b"v")), NOW),
        (stored(9, 0, "v++"), Answer::Stored),
        "flags and expiry are kept"
    );
    assert_eq!(
        Change::Prepend(more).apply(Some(&value(b"v")), NOW),
        (stored(9, 0, "++v"), Answer::Stored)
    );
}

#[test]
fn cas_compares_the_unique_of_the_live_version() {
    let current = value(b"v");
    let unique = current.tag.cas_unique();
    let cas = |unique| Change::Cas {
        value: new(b"x"),
        unique,
    };
    assert_eq!(
        cas(unique).apply(Some(&current), NOW),
        (Effect::Store(new(b"x")), Answer::Stored)
    );
    assert_eq!(
        cas(unique + 1).apply(Some(&current), NOW),
        (Effect::Keep, Answer::Exists)
    );
    assert_eq!(cas(unique).apply(None, NOW), (Effect::Keep, Answer::NotFound));
    let expired = Record::value(tag(5), 0, NOW - 1, Bytes::from_static(b"v"));
    assert_eq!(cas(unique).apply(Some(&expired), NOW), (Effect::Keep, Answer::NotFound));
}

#[test]
fn incr_wraps_decr_floors_and_lengths_follow_the_number() {
    let n = |s: &'static [u8]| Some(value(s));
    assert_eq!(
        Change::Incr(1).apply(n(b"99").as_ref(), NOW),
        (stored(9, 0, "100"), Answer::Number(100))
    );
    assert_eq!(
        Change::Decr(1).apply(n(b"100").as_ref(), NOW),
        (stored(9, 0, "99"), Answer::Number(99))
    );
    assert_eq!(Change::Decr(5).apply(n(b"3").as_ref(), NOW).1, Answer::Number(0));
    assert_eq!(
        Change::Incr(2).apply(n(b"18446744073709551615").as_ref(), NOW).1,
        Answer::Number(1)
    );
    assert_eq!(Change::Incr(1).apply(None, NOW), (Effect::Keep, Answer::NotFound));
    for bad in [
        &b"abc"[..],
        b"",
        b"1 ",
        b"-1",
        b"18446744073709551616",
        b"000000000000000000001",
    ] {
        let current = Record::value(tag(5), 0, 0, Bytes::copy_from_slice(bad));
        assert_eq!(
            Change::Incr(1).apply(Some(&current), NOW),
            (Effect::Keep, Answer::NonNumeric),
            "{bad:?}"
        );
    }
}

#[test]
fn touch_sets_the_expiry_of_a_live_value_only() {
    let touch = Change::Touch { expires_at: NOW + 10 };
    assert_eq!(
        touch.apply(Some(&value(b"v")), NOW),
        (stored(9, NOW + 10, "v"), Answer::Touched)
    );
    assert_eq!(touch.apply(None, NOW), (Effect::Keep, Answer::NotFound));
}

#[test]
fn counter_creates_a_missing_key_with_its_initial_value() {
    let incr = Change::Counter {
        incr: true,
        delta: 5,
        initial: 10,
        expires_at: NOW + 60,
    };
    assert_eq!(incr.apply(None, NOW), (stored(0, NOW + 60, "10"), Answer::Number(10)));
    let tombstone = Record::tombstone(tag(5), NOW);
    assert_eq!(incr.apply(Some(&tombstone), NOW).1, Answer::Number(10));
    assert_eq!(
        incr.apply(Some(&value(b"7")), NOW),
        (stored(9, 0, "12"), Answer::Number(12))
    );
    let decr = Change::Counter {
        incr: false,
        delta: 9,
        initial: 0,
        expires_at: 0,
    };
    assert_eq!(decr.apply(Some(&value(b"7")), NOW).1, Answer::Number(0));
    assert_eq!(decr.apply(Some(&value(b"x")), NOW), (Effect::Keep, Answer::NonNumeric));
}
