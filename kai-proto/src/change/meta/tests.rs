use super::*;
use crate::change::Change;
use crate::record::Record;
use crate::tag::{Tag, WriterId};

const NOW: u64 = 1_800_000_000;

fn record(data: &'static [u8], expires_at: u64, state: ValueState) -> Record {
    let tag = Tag {
        counter: 5,
        writer: WriterId(3),
    };
    Record::value(tag, 9, expires_at, Bytes::from_static(data)).with_state(state)
}

fn plain(data: &'static [u8]) -> Record {
    record(data, 0, ValueState::default())
}

const STALE: ValueState = ValueState {
    stale: true,
    win_sent: false,
    winner: None,
    cas: None,
};
const WON: ValueState = ValueState {
    stale: false,
    win_sent: true,
    winner: None,
    cas: None,
};
const STALE_WON: ValueState = ValueState {
    stale: true,
    win_sent: true,
    winner: None,
    cas: None,
};

/// `state` with the cas unique a hit keeps when an `mg` changes it.
fn keeping(state: ValueState, record: &Record) -> ValueState {
    ValueState {
        cas: Some(record.cas_unique()),
        ..state
    }
}

fn value(flags: u32, expires_at: u64, data: &'static [u8], state: ValueState) -> NewValue {
    NewValue {
        flags,
        expires_at,
        data: Bytes::from_static(data),
        state,
    }
}

fn get(vivify: Option<u64>, recache: Option<u64>, touch: Option<u64>) -> Change {
    Change::MetaGet(MetaGet {
        vivify,
        recache,
        touch,
        new_cas: None,
    })
}

#[test]
fn mg_vivifies_a_miss_once_and_hands_the_win_to_that_client() {
    let vivify = get(Some(NOW + 30), None, None);
    let (effect, answer) = vivify.apply(None, NOW);
    assert_eq!(answer, Answer::Fetched { won: true });
    assert_eq!(effect, Effect::Store(value(0, NOW + 30, b"", WON)));
    // The next client finds the stub with the win taken: no second win, nothing to store.
    let stub = record(b"", NOW + 30, WON);
    assert_eq!(
        vivify.apply(Some(&stub), NOW),
        (Effect::Keep, Answer::Fetched { won: false })
    );
    assert_eq!(get(None, None, None).apply(None, NOW), (Effect::Keep, Answer::NotFound));
}

#[test]
fn mg_wins_a_recache_below_the_threshold_only_once() {
    let expiring = record(b"v", NOW + 5, ValueState::default());
    let recache = get(None, Some(NOW + 10), None);
    assert_eq!(
        recache.apply(Some(&expiring), NOW),
        (
            Effect::Store(value(9, NOW + 5, b"v", keeping(WON, &expiring))),
            Answer::Fetched { won: true }
        )
    );
    let taken = record(b"v", NOW + 5, WON);
    assert_eq!(
        recache.apply(Some(&taken), NOW),
        (Effect::Keep, Answer::Fetched { won: false })
    );
    let later = get(None, Some(NOW + 2), None);
    assert_eq!(
        later.apply(Some(&expiring), NOW),
        (Effect::Keep, Answer::Fetched { won: false })
    );
    let forever = plain(b"v");
    assert_eq!(
        recache.apply(Some(&forever), NOW),
        (Effect::Keep, Answer::Fetched { won: false }),
        "an item that never expires is never recached"
    );
}

#[test]
fn mg_of_a_stale_item_hands_out_one_win_and_touch_keeps_marks() {
    let stale = record(b"old", 0, STALE);
    let plain_get = get(None, None, None);
    assert_eq!(
        plain_get.apply(Some(&stale), NOW),
        (
            Effect::Store(value(9, 0, b"old", keeping(STALE_WON, &stale))),
            Answer::Fetched { won: true }
        )
    );
    let stale_won = record(b"old", 0, STALE_WON);
    assert_eq!(
        plain_get.apply(Some(&stale_won), NOW),
        (Effect::Keep, Answer::Fetched { won: false })
    );
    let touch = get(None, None, Some(NOW + 60));
    assert_eq!(
        touch.apply(Some(&stale_won), NOW),
        (
            Effect::Store(value(9, NOW + 60, b"old", keeping(STALE_WON, &stale_won))),
            Answer::Fetched { won: false }
        )
    );
}

fn set(mode: SetMode, compare: Option<u64>, invalidate: bool, vivify: Option<u64>) -> Change {
    Change::MetaSet(MetaSet {
        mode,
        value: value(1, NOW + 100, b"new", ValueState::default()),
        compare,
        invalidate,
        vivify,
    })
}

#[test]
fn ms_modes_follow_memcached() {
    let current = plain(b"old");
    let cas = current.tag.cas_unique();
    let new = || Effect::Store(value(1, NOW + 100, b"new", ValueState::default()));
    // Add
    assert_eq!(
        set(SetMode::Add, None, false, None).apply(None, NOW),
        (new(), Answer::Stored)
    );
    assert_eq!(
        set(SetMode::Add, None, false, None).apply(Some(&current), NOW),
        (Effect::Keep, Answer::NotStored)
    );
    // Replace
    assert_eq!(
        set(SetMode::Replace, None, false, None).apply(None, NOW),
        (Effect::Keep, Answer::NotStored)
    );
    assert_eq!(
        set(SetMode::Replace, None, false, None).apply(Some(&current), NOW),
        (new(), Answer::Stored)
    );
    // Set with a cas
    assert_eq!(
        set(SetMode::Set, Some(cas), false, None).apply(Some(&current), NOW),
        (new(), Answer::Stored)
    );
    assert_eq!(
        set(SetMode::Set, Some(cas + 1), false, None).apply(Some(&current), NOW),
        (Effect::Keep, Answer::Exists)
    );
    assert_eq!(
        set(SetMode::Set, Some(cas), false, None).apply(None, NOW),
        (Effect::Keep, Answer::NotFound)
    );
    // C0 never matches in set/replace mode (not even as stale) and is ignored by append.
    assert_eq!(
        set(SetMode::Set, Some(0), true, None).apply(Some(&current), NOW),
        (Effect::Keep, Answer::Exists)
    );
    assert_eq!(
        set(SetMode::Replace, Some(0), false, None).apply(None, NOW),
        (Effect::Keep, Answer::NotFound)
    );
    assert_eq!(
        set(SetMode::Append, Some(0), false, None).apply(Some(&current), NOW).1,
        Answer::Stored
    );
    // Append and prepend keep flags and expiry, and respect a cas.
    assert_eq!(
        set(SetMode::Append, None, false, None).apply(Some(&current), NOW),
        (
            Effect::Store(value(9, 0, b"oldnew", ValueState::default())),
            Answer::Stored
        )
    );
    assert_eq!(
        set(SetMode::Prepend, Some(cas), false, None).apply(Some(&current), NOW),
        (
            Effect::Store(value(9, 0, b"newold", ValueState::default())),
            Answer::Stored
        )
    );
    assert_eq!(
        set(SetMode::Append, Some(cas + 1), true, None).apply(Some(&current), NOW),
        (Effect::Keep, Answer::Exists)
    );
    assert_eq!(
        set(SetMode::Append, None, false, None).apply(None, NOW),
        (Effect::Keep, Answer::NotStored)
    );
    assert_eq!(
        set(SetMode::Append, None, false, Some(NOW + 7)).apply(None, NOW),
        (
            Effect::Store(value(1, NOW + 7, b"new", ValueState::default())),
            Answer::Stored
        ),
        "N vivifies an append miss with the data and N's TTL"
    );
}

#[test]
fn ms_invalidate_stores_an_outdated_write_as_stale() {
    let current = record(b"old", NOW + 50, WON);
    let cas = current.tag.cas_unique();
    assert_eq!(
        set(SetMode::Set, Some(cas + 1), true, None).apply(Some(&current), NOW),
        (Effect::Store(value(1, NOW + 50, b"new", STALE_WON)), Answer::Stored),
        "the value is replaced, the TTL and the win mark kept, and it is marked stale"
    );
    assert_eq!(
        set(SetMode::Set, Some(cas), true, None).apply(Some(&current), NOW),
        (
            Effect::Store(value(1, NOW + 100, b"new", ValueState::default())),
            Answer::Stored
        ),
        "a matching cas is an ordinary store that clears the marks"
    );
}

fn delete(compare: Option<u64>, invalidate: bool, touch: Option<u64>, strip: Option<NewValue>) -> Change {
    Change::MetaDelete(MetaDelete {
        compare,
        invalidate,
        touch,
        strip,
        new_cas: None,
    })
}

#[test]
fn md_deletes_invalidates_or_strips() {
    let current = record(b"v", NOW + 50, WON);
    let cas = current.tag.cas_unique();
    assert_eq!(
        delete(None, false, None, None).apply(Some(&current), NOW),
        (Effect::Delete, Answer::Deleted)
    );
    assert_eq!(
        delete(None, false, None, None).apply(None, NOW),
        (Effect::Keep, Answer::NotFound)
    );
    assert_eq!(
        delete(Some(cas + 1), false, None, None).apply(Some(&current), NOW),
        (Effect::Keep, Answer::Exists)
    );
    assert_eq!(
        delete(Some(cas), false, None, None).apply(Some(&current), NOW),
        (Effect::Delete, Answer::Deleted)
    );
    assert_eq!(
        delete(None, true, Some(NOW + 5), None).apply(Some(&current), NOW),
        (Effect::Store(value(9, NOW + 5, b"v", STALE)), Answer::Deleted),
        "invalidation marks stale, clears the win mark so the next reader wins, and applies T"
    );
    let empty = value(3, 0, b"", ValueState::default());
    assert_eq!(
        delete(None, false, None, Some(empty.clone())).apply(Some(&current), NOW),
        (Effect::Store(empty.clone()), Answer::Deleted)
    );
    assert_eq!(
        delete(None, true, None, Some(empty)).apply(Some(&current), NOW),
        (Effect::Store(value(3, 0, b"", STALE)), Answer::Deleted)
    );
}

fn arith(incr: bool, delta: u64, compare: Option<u64>, vivify: Option<(u64, u64)>, touch: Option<u64>) -> Change {
    Change::MetaArithmetic(MetaArithmetic {
        incr,
        delta,
        compare,
        vivify,
        touch,
        new_cas: None,
    })
}

#[test]
fn ma_counts_vivifies_and_compares() {
    let current = plain(b"10");
    let cas = current.tag.cas_unique();
    let number = |flags, expires_at, data| Effect::Store(value(flags, expires_at, data, ValueState::default()));
    assert_eq!(
        arith(true, 5, None, None, None).apply(Some(&current), NOW),
        (number(9, 0, b"15"), Answer::Number(15))
    );
    assert_eq!(
        arith(false, 50, Some(cas), None, Some(NOW + 9)).apply(Some(&current), NOW),
        (number(9, NOW + 9, b"0"), Answer::Number(0))
    );
    assert_eq!(
        arith(true, 1, Some(cas + 1), None, None).apply(Some(&current), NOW),
        (Effect::Keep, Answer::Exists)
    );
    assert_eq!(
        arith(true, 1, Some(0), None, None).apply(Some(&current), NOW).1,
        Answer::Number(11),
        "C0 compares nothing"
    );
    assert_eq!(
        arith(true, 1, None, None, None).apply(None, NOW),
        (Effect::Keep, Answer::NotFound)
    );
    assert_eq!(
        arith(true, 1, None, Some((NOW + 3, 42)), None).apply(None, NOW),
        (number(0, NOW + 3, b"42"), Answer::Number(42)),
        "a vivified counter starts at J without applying the delta"
    );
    assert_eq!(
        arith(true, 1, None, None, None).apply(Some(&plain(b"x")), NOW),
        (Effect::Keep, Answer::NonNumeric)
    );
    assert_eq!(
        arith(true, 1, Some(cas + 1), None, None).apply(Some(&plain(b"")), NOW),
        (Effect::Keep, Answer::NonNumeric),
        "an empty value is refused before the cas is compared, as in memcached"
    );
    assert_eq!(
        arith(true, 1, None, None, None).apply(Some(&plain(b"18446744073709551615")), NOW),
        (number(9, 0, b"0"), Answer::Number(0)),
        "incr wraps"
    );
}

#[test]
fn e_sets_the_cas_of_what_a_change_stores() {
    let current = plain(b"5");
    let with_cas = |cas| ValueState {
        cas: Some(cas),
        ..ValueState::default()
    };
    let vivify = Change::MetaGet(MetaGet {
        vivify: Some(0),
        new_cas: Some(77),
        ..MetaGet::default()
    });
    let (effect, _) = vivify.apply(None, NOW);
    assert_eq!(
        effect,
        Effect::Store(value(
            0,
            0,
            b"",
            ValueState {
                win_sent: true,
                ..with_cas(77)
            }
        ))
    );
    let touch = Change::MetaGet(MetaGet {
        touch: Some(NOW + 1),
        new_cas: Some(78),
        ..MetaGet::default()
    });
    assert_eq!(
        touch.apply(Some(&current), NOW).0,
        Effect::Store(value(9, NOW + 1, b"5", with_cas(78)))
    );
    let mut set_value = value(1, 0, b"x", with_cas(79));
    let set = Change::MetaSet(MetaSet {
        mode: SetMode::Append,
        value: set_value.clone(),
        compare: None,
        invalidate: false,
        vivify: None,
    });
    assert_eq!(
        set.apply(Some(&current), NOW).0,
        Effect::Store(value(9, 0, b"5x", with_cas(79)))
    );
    set_value.state = ValueState::default();
    let invalidate = Change::MetaDelete(MetaDelete {
        invalidate: true,
        new_cas: Some(80),
        ..MetaDelete::default()
    });
    assert_eq!(
        invalidate.apply(Some(&current), NOW).0,
        Effect::Store(value(
            9,
            0,
            b"5",
            ValueState {
                stale: true,
                ..with_cas(80)
            }
        ))
    );
    let incr = Change::MetaArithmetic(MetaArithmetic {
        incr: true,
        delta: 1,
        compare: None,
        vivify: None,
        touch: None,
        new_cas: Some(81),
    });
    assert_eq!(
        incr.apply(Some(&current), NOW).0,
        Effect::Store(value(9, 0, b"6", with_cas(81)))
    );
    // A chosen cas is what C compares with.
    let chosen = plain(b"5").with_state(with_cas(81));
    assert_eq!(
        arith(true, 1, Some(81), None, None).apply(Some(&chosen), NOW).1,
        Answer::Number(6)
    );
}
