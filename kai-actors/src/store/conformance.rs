//! The conformance suite every [`Store`] backend must pass.

use super::{Applied, CachedRead, Counters, Guarded, Prepared, Store, WriteKind};
use bytes::Bytes;
use kai_proto::flush::FlushMark;
use kai_proto::{BucketId, Record, RecordBody, Tag, ValueState, WriterId};
use std::any::Any;

/// Buckets of the stores under test.
pub const BUCKETS: u32 = 16;

/// A fresh, empty store and whatever must outlive it (e.g. its temporary directory).
pub struct Fixture {
    store: Box<dyn Store>,
    _guard: Option<Box<dyn Any>>,
}

impl Fixture {
    /// A store with a value that must be dropped after it.
    pub fn with_guard(store: Box<dyn Store>, guard: impl Any) -> Self {
        Fixture {
            store,
            _guard: Some(Box::new(guard)),
        }
    }
}

impl From<Box<dyn Store>> for Fixture {
    fn from(store: Box<dyn Store>) -> Self {
        Fixture { store, _guard: None }
    }
}

fn tag(counter: u64, node: u64) -> Tag {
    Tag {
        counter,
        writer: WriterId(node),
    }
}

fn value(counter: u64, data: &'static [u8]) -> Record {
    Record::value(tag(counter, 1), 7, 0, Bytes::from_static(data))
}

/// Runs every check against stores made by `make`.
pub fn run_all<F: Into<Fixture>>(make: impl Fn() -> F) {
    type Check = (&'static str, fn(&dyn Store));
    let checks: [Check; 14] = [
        ("missing keys read as none", missing_keys_read_as_none),
        ("higher tags win", higher_tags_win),
        ("tombstones are records", tombstones_are_records),
        ("marked values count as values", marked_values_count_as_values),
        ("buckets are separate", buckets_are_separate),
        ("scans are ordered and paged", scans_are_ordered_and_paged),
        ("drop bucket removes only it", drop_bucket_removes_only_it),
        (
            "concurrent applies keep the highest",
            concurrent_applies_keep_the_highest,
        ),
        ("digests track contents", digests_track_contents),
        (
            "only matching tombstones are purged",
            only_matching_tombstones_are_purged,
        ),
        ("promises order ballots", promises_order_ballots),
        ("promises guard writes and accepts", promises_guard_writes_and_accepts),
        (
            "the highest counters bound every write and promise",
            highest_counters_bound_every_write_and_promise,
        ),
        ("flush marks only rise", flush_marks_only_rise),
    ];
    for (name, check) in checks {
        let fixture: Fixture = make().into();
        eprintln!("store conformance ({}): {name}", fixture.store.backend());
        check(fixture.store.as_ref());
    }
}

fn missing_keys_read_as_none(store: &dyn Store) {
    assert_eq!(store.get(BucketId(0), b"nope").expect("get"), None);
    assert_cached_matches(store, BucketId(0), b"nope");
    assert_eq!(store.value_count(), 0);
}

fn higher_tags_win(store: &dyn Store) {
    let b = BucketId(1);
    assert_eq!(
        store.apply(b, b"k", &value(2, b"two")).expect("apply"),
        Applied::Stored { previous: None }
    );
    assert_eq!(
        store.apply(b, b"k", &value(1, b"one")).expect("apply"),
        Applied::Kept { current: tag(2, 1) }
    );
    assert_eq!(
        store.apply(b, b"k", &value(2, b"dup")).expect("apply"),
        Applied::Kept { current: tag(2, 1) }
    );
    assert_eq!(store.get(b, b"k").expect("get"), Some(value(2, b"two")));
    assert_cached_matches(store, b, b"k");
    store.flush().expect("flush");
    assert_cached_matches(store, b, b"k");
    let tie_break = Record::value(tag(2, 9), 0, 0, Bytes::from_static(b"nine"));
    assert_eq!(
        store.apply(b, b"k", &tie_break).expect("apply"),
        Applied::Stored {
            previous: Some(tag(2, 1))
        }
    );
    let size = (b"k".len() + tie_break.encoded_len()) as u64;
    assert_eq!(store.get(b, b"k").expect("get"), Some(tie_break));
    assert_eq!(store.value_count(), 1);
    assert_eq!(store.value_bytes(), size, "bytes count the one value kept");
}

/// `get_cached` either gives up (needs I/O) or agrees with `get`.
fn assert_cached_matches(store: &dyn Store, bucket: BucketId, key: &[u8]) {
    match store.get_cached(bucket, key).expect("get_cached") {
        CachedRead::Done(record) => assert_eq!(record, store.get(bucket, key).expect("get")),
        CachedRead::NeedsIo => {}
    }
}

fn tombstones_are_records(store: &dyn Store) {
    let b = BucketId(2);
    store.apply(b, b"k", &value(1, b"v")).expect("apply");
    assert_eq!(store.value_count(), 1);
    assert_eq!(store.value_bytes(), (b"k".len() + value(1, b"v").encoded_len()) as u64);
    assert_eq!(store.tombstone_count(), 0);
    store.apply(b, b"k", &Record::tombstone(tag(2, 1), 123)).expect("apply");
    assert_eq!(store.value_count(), 0);
    assert_eq!(store.value_bytes(), 0, "a tombstone is not a value");
    assert_eq!(store.tombstone_count(), 1);
    let got = store.get(b, b"k").expect("get").expect("tombstone present");
    assert_eq!(got.body, RecordBody::Tombstone { deleted_at: 123 });
    assert_eq!(
        store.apply(b, b"k", &value(1, b"v")).expect("apply"),
        Applied::Kept { current: tag(2, 1) }
    );
    assert_eq!(store.value_count(), 0);
    store.apply(b, b"k", &Record::tombstone(tag(3, 1), 124)).expect("apply");
    assert_eq!(store.tombstone_count(), 1, "a tombstone replacing one");
    store.apply(b, b"k", &value(4, b"back")).expect("apply");
    assert_eq!((store.value_count(), store.tombstone_count()), (1, 0));
}

/// A value with stale-while-revalidate marks is stored in its own layout; it counts as a value
/// like any other, whatever replaces it.
fn marked_values_count_as_values(store: &dyn Store) {
    let b = BucketId(12);
    let marked = value(1, b"v").with_state(ValueState {
        stale: true,
        ..ValueState::default()
    });
    store.apply(b, b"k", &marked).expect("apply");
    let size = |r: &Record| (b"k".len() + r.encoded_len()) as u64;
    assert_eq!((store.value_count(), store.value_bytes()), (1, size(&marked)));
    store.apply(b, b"k", &value(2, b"plain")).expect("apply");
    assert_eq!(
        (store.value_count(), store.value_bytes()),
        (1, size(&value(2, b"plain")))
    );
    let marked_again = Record {
        tag: tag(3, 1),
        ..marked.clone()
    };
    store.apply(b, b"k", &marked_again).expect("apply");
    assert_eq!((store.value_count(), store.value_bytes()), (1, size(&marked_again)));
    store.apply(b, b"k", &Record::tombstone(tag(4, 1), 0)).expect("apply");
    assert_eq!((store.value_count(), store.value_bytes()), (0, 0));
    assert_eq!(store.tombstone_count(), 1);
}

fn buckets_are_separate(store: &dyn Store) {
    store.apply(BucketId(1), b"k", &value(1, b"one")).expect("apply");
    store.apply(BucketId(2), b"k", &value(1, b"two")).expect("apply");
    assert_eq!(store.get(BucketId(1), b"k").expect("get"), Some(value(1, b"one")));
    assert_eq!(store.get(BucketId(2), b"k").expect("get"), Some(value(1, b"two")));
    assert_eq!(store.get(BucketId(3), b"k").expect("get"), None);
}

fn scans_are_ordered_and_paged(store: &dyn Store) {
    for k in ["c", "a", "b", "d"] {
        store.apply(BucketId(5), k.as_bytes(), &value(1, b"v")).expect("apply");
    }
    store.apply(BucketId(4), b"z", &value(1, b"v")).expect("apply");
    store.apply(BucketId(6), b"0", &value(1, b"v")).expect("apply");
    let keys = |page: Vec<(Bytes, Record)>| page.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    let first = keys(store.scan_bucket(BucketId(5), None, 3).expect("scan"));
    assert_eq!(first, vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]);
    let rest = keys(store.scan_bucket(BucketId(5), Some(b"c"), 3).expect("scan"));
    assert_eq!(rest, vec![Bytes::from("d")]);
    assert!(store.scan_bucket(BucketId(7), None, 10).expect("scan").is_empty());
    let last_bucket = BucketId(u32::MAX);
    store.apply(last_bucket, b"end", &value(1, b"v")).expect("apply");
    assert_eq!(
        keys(store.scan_bucket(last_bucket, None, 10).expect("scan")),
        vec![Bytes::from("end")]
    );
}

fn drop_bucket_removes_only_it(store: &dyn Store) {
    for k in ["a", "b"] {
        store.apply(BucketId(8), k.as_bytes(), &value(1, b"v")).expect("apply");
    }
    store
        .apply(BucketId(8), b"t", &Record::tombstone(tag(1, 1), 0))
        .expect("apply");
    store.apply(BucketId(9), b"a", &value(1, b"v")).expect("apply");
    assert_eq!((store.value_count(), store.tombstone_count()), (3, 1));
    assert_eq!(store.drop_bucket(BucketId(8)).expect("drop"), 3);
    assert_eq!((store.value_count(), store.tombstone_count()), (1, 0));
    assert!(store.scan_bucket(BucketId(8), None, 10).expect("scan").is_empty());
    assert_eq!(store.get(BucketId(9), b"a").expect("get"), Some(value(1, b"v")));
}

fn concurrent_applies_keep_the_highest(store: &dyn Store) {
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for c in 0..200u64 {
                    let r = Record::value(tag(c, t), 0, 0, Bytes::new());
                    store.apply(BucketId(10), b"hot", &r).expect("apply");
                }
            });
        }
    });
    let got = store.get(BucketId(10), b"hot").expect("get").expect("present");
    assert_eq!(got.tag, tag(199, 3));
    assert_eq!(store.value_count(), 1);
}

fn digests_track_contents(store: &dyn Store) {
    let b = BucketId(3);
    assert_eq!(store.digest(b), [0; crate::store::merkle::SEGMENTS]);
    store.apply(b, b"k1", &value(1, b"a")).expect("apply");
    store.apply(b, b"k2", &value(1, b"b")).expect("apply");
    let two = store.digest(b);
    store.apply(b, b"k1", &value(2, b"a2")).expect("apply");
    assert_ne!(store.digest(b), two);
    store.apply(b, b"k1", &value(1, b"stale")).expect("kept");
    let expected = crate::store::merkle::Digests::new(BUCKETS);
    expected.toggle(b, b"k1", tag(2, 1));
    expected.toggle(b, b"k2", tag(1, 1));
    assert_eq!(store.digest(b), expected.get(b));
    store.drop_bucket(b).expect("drop");
    assert_eq!(store.digest(b), [0; crate::store::merkle::SEGMENTS]);
}

fn only_matching_tombstones_are_purged(store: &dyn Store) {
    let b = BucketId(4);
    store.apply(b, b"t", &Record::tombstone(tag(3, 1), 0)).expect("apply");
    store.apply(b, b"v", &value(3, b"v")).expect("apply");
    assert!(!store.purge_tombstone(b, b"t", tag(2, 1)).expect("purge"), "other tag");
    assert!(
        !store.purge_tombstone(b, b"v", tag(3, 1)).expect("purge"),
        "not a tombstone"
    );
    assert_eq!(store.tombstone_count(), 1);
    assert!(store.purge_tombstone(b, b"t", tag(3, 1)).expect("purge"));
    assert_eq!(store.get(b, b"t").expect("get"), None);
    assert_eq!((store.value_count(), store.tombstone_count()), (1, 0));
    let expected = crate::store::merkle::Digests::new(BUCKETS);
    expected.toggle(b, b"v", tag(3, 1));
    assert_eq!(store.digest(b), expected.get(b));
}

fn promises_order_ballots(store: &dyn Store) {
    let b = BucketId(11);
    assert_eq!(
        store.prepare(b, b"k", tag(5, 2)).expect("prepare"),
        Prepared::Promised(None)
    );
    assert_eq!(
        store.prepare(b, b"k", tag(5, 2)).expect("prepare"),
        Prepared::Refused(tag(5, 2)),
        "a ballot is promised once"
    );
    assert_eq!(
        store.prepare(b, b"k", tag(4, 9)).expect("prepare"),
        Prepared::Refused(tag(5, 2))
    );
    store.apply(b, b"k", &value(7, b"seven")).expect("apply");
    assert_eq!(
        store.prepare(b, b"k", tag(6, 1)).expect("prepare"),
        Prepared::Refused(tag(7, 1)),
        "a ballot must exceed the stored tag too"
    );
    assert_eq!(
        store.prepare(b, b"k", tag(8, 1)).expect("prepare"),
        Prepared::Promised(Some(value(7, b"seven")))
    );
    assert_eq!(
        store.get(b, b"k").expect("get"),
        Some(value(7, b"seven")),
        "a promise is not a record"
    );
    assert_eq!(store.value_count(), 1);
}

fn promises_guard_writes_and_accepts(store: &dyn Store) {
    let b = BucketId(12);
    let plain = |r: &Record| store.apply_guarded(b, b"k", r, WriteKind::Plain).expect("write");
    let accept = |r: &Record| store.apply_guarded(b, b"k", r, WriteKind::Accept).expect("accept");
    assert_eq!(
        plain(&value(2, b"two")),
        Guarded::Applied(Applied::Stored { previous: None })
    );
    store.prepare(b, b"k", tag(5, 1)).expect("prepare");
    assert_eq!(
        plain(&value(3, b"three")),
        Guarded::Refused(tag(5, 1)),
        "below the promise"
    );
    assert_eq!(accept(&value(4, b"four")), Guarded::Refused(tag(5, 1)));
    assert_eq!(
        accept(&value(5, b"five")),
        Guarded::Applied(Applied::Stored {
            previous: Some(tag(2, 1))
        })
    );
    assert_eq!(
        accept(&value(5, b"again")),
        Guarded::Refused(tag(5, 1)),
        "a ballot is accepted once"
    );
    // An accept without a prepare on this replica raises the promise to its ballot.
    assert_eq!(
        accept(&value(7, b"seven")),
        Guarded::Applied(Applied::Stored {
            previous: Some(tag(5, 1))
        })
    );
    assert_eq!(plain(&value(6, b"six")), Guarded::Refused(tag(7, 1)));
    assert_eq!(
        plain(&value(7, b"seven")),
        Guarded::Applied(Applied::Kept { current: tag(7, 1) })
    );
    assert_eq!(
        plain(&value(9, b"nine")),
        Guarded::Applied(Applied::Stored {
            previous: Some(tag(7, 1))
        }),
        "a plain write above the promise is stored"
    );
    assert_eq!(
        accept(&value(8, b"eight")),
        Guarded::Refused(tag(9, 1)),
        "a proposal must exceed the stored tag"
    );
    assert_eq!(store.get(b, b"k").expect("get"), Some(value(9, b"nine")));
}

fn highest_counters_bound_every_write_and_promise(store: &dyn Store) {
    let counters = |stored, promised| Counters { stored, promised };
    assert_eq!(store.highest_counters(), counters(0, 0));
    store.apply(BucketId(1), b"a", &value(40, b"x")).expect("apply");
    store.apply(BucketId(2), b"b", &value(7, b"y")).expect("apply");
    assert_eq!(store.highest_counters(), counters(40, 0));
    let accepted = Record::tombstone(tag(90, 2), 0);
    store
        .apply_guarded(BucketId(3), b"c", &accepted, WriteKind::Accept)
        .expect("accept");
    assert_eq!(store.highest_counters().stored, 90);
    // A promise counts before anything is accepted under it: a flush must outrank it.
    store.prepare(BucketId(4), b"d", tag(120, 2)).expect("prepare");
    assert_eq!(store.highest_counters(), counters(90, 120));
    assert_eq!(store.highest_counters().max(), 120);
}

fn flush_marks_only_rise(store: &dyn Store) {
    assert_eq!(store.flush_mark().expect("mark"), None);
    let mark = |counter| FlushMark {
        tag: tag(counter, 3),
        at: 100 + counter,
    };
    store.save_flush_mark(mark(10)).expect("save");
    store.save_flush_mark(mark(5)).expect("save lower");
    assert_eq!(store.flush_mark().expect("mark"), Some(mark(10)));
    store.save_flush_mark(mark(20)).expect("save higher");
    assert_eq!(store.flush_mark().expect("mark"), Some(mark(20)));
}
