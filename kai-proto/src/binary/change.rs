//! Binary writes as read-modify-write [`Change`]s, and their [`Answer`]s as binary statuses.
//!
//! Invariants:
//! - A non-zero cas in the header makes a write a compare-and-swap, as in memcached 1.6
//!   (`proto_bin.c`): set/add/replace become [`Change::Cas`]; append/prepend, incr/decr and
//!   delete run the meta protocol's changes with the cas to compare (`ms` in append/prepend
//!   mode, `ma`, `md` with `C`), so every protocol shares one compare-and-swap.
//! - Without a cas, writes run the text protocol's changes; a plain set and a plain delete need
//!   none (`None`: the caller runs the plain operation).
//! - Statuses are memcached's: a cas that differs is `Key exists`, a missing key is `Not found`
//!   (but a failed append/prepend is `Not stored`, a failed add `Key exists`), a counter that is
//!   not a number `Non-numeric`. A missing counter with an expiry other than
//!   [`COUNTER_NO_CREATE`] is created, cas or not.

use super::header::Status;
use super::request::{absolute_expiry, StoreMode, COUNTER_NO_CREATE};
use crate::change::meta::{MetaArithmetic, MetaDelete, MetaSet};
use crate::change::{Answer, Change, NewValue};
use crate::meta::SetMode;
use bytes::Bytes;

/// The change of a set/add/replace of `value` with header cas `cas`; `None` for a plain set.
pub fn store(mode: StoreMode, value: NewValue, cas: u64) -> Option<Change> {
    match mode {
        _ if cas != 0 => Some(Change::Cas { value, unique: cas }),
        StoreMode::Set => None,
        StoreMode::Add => Some(Change::Add(value)),
        StoreMode::Replace => Some(Change::Replace(value)),
    }
}

/// The change of an append (else prepend) of `data` with header cas `cas`.
pub fn concat(append: bool, data: Bytes, cas: u64) -> Change {
    match (cas, append) {
        (0, true) => Change::Append(data),
        (0, false) => Change::Prepend(data),
        (cas, append) => Change::MetaSet(MetaSet {
            mode: if append { SetMode::Append } else { SetMode::Prepend },
            value: NewValue {
                data,
                ..NewValue::default()
            },
            compare: Some(cas),
            invalidate: false,
            vivify: None,
        }),
    }
}

/// The arguments of an increment or decrement request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// Increment (else decrement).
    pub incr: bool,
    /// The amount.
    pub delta: u64,
    /// The value a missing key is created with.
    pub initial: u64,
    /// Expiry of a created key; [`COUNTER_NO_CREATE`]: a missing key is not created.
    pub exptime: u32,
}

/// The change of an incr/decr received at `now` with header cas `cas`.
pub fn counter(request: Counter, cas: u64, now: u64) -> Change {
    let Counter {
        incr,
        delta,
        initial,
        exptime,
    } = request;
    let create = (exptime != COUNTER_NO_CREATE).then(|| absolute_expiry(exptime, now));
    match (cas, create) {
        (0, None) if incr => Change::Incr(delta),
        (0, None) => Change::Decr(delta),
        (0, Some(expires_at)) => Change::Counter {
            incr,
            delta,
            initial,
            expires_at,
        },
        (cas, create) => Change::MetaArithmetic(MetaArithmetic {
            incr,
            delta,
            compare: Some(cas),
            vivify: create.map(|expires_at| (expires_at, initial)),
            touch: None,
            new_cas: None,
        }),
    }
}

/// The change of a delete with header cas `cas`; `None` for a plain delete.
pub fn delete(cas: u64) -> Option<Change> {
    (cas != 0).then(|| {
        Change::MetaDelete(MetaDelete {
            compare: Some(cas),
            ..MetaDelete::default()
        })
    })
}

/// The status of `answer` to `change`.
pub fn status(change: &Change, answer: &Answer) -> Status {
    match answer {
        Answer::Stored | Answer::Touched | Answer::Number(_) | Answer::Deleted => Status::Success,
        Answer::NotStored => match change {
            Change::Add(_) => Status::KeyExists,
            Change::Replace(_) => Status::KeyNotFound,
            _ => Status::NotStored,
        },
        Answer::Exists => Status::KeyExists,
        Answer::NotFound => Status::KeyNotFound,
        Answer::NonNumeric => Status::NonNumeric,
        // Only a meta `mg` answers this; no binary request runs one.
        Answer::Fetched { .. } => Status::InternalError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Effect;
    use crate::record::Record;
    use crate::tag::{Tag, WriterId};

    const NOW: u64 = 1_800_000_000;

    fn item(data: &'static [u8]) -> Record {
        let tag = Tag {
            counter: 5,
            writer: WriterId(3),
        };
        Record::value(tag, 9, NOW + 60, Bytes::from_static(data))
    }

    /// The status `change` answers on `current`, and what it stores (`None`: nothing).
    fn run(change: &Change, current: Option<&Record>) -> (Status, Option<Bytes>) {
        let (effect, answer) = change.apply(current, NOW);
        let stored = match effect {
            Effect::Store(value) => Some(value.data),
            Effect::Delete => Some(Bytes::from_static(b"<deleted>")),
            Effect::Keep => None,
        };
        (status(change, &answer), stored)
    }

    #[test]
    fn a_cas_turns_every_store_mode_into_a_cas() {
        let value = NewValue {
            data: Bytes::from_static(b"new"),
            ..NewValue::default()
        };
        assert_eq!(store(StoreMode::Set, value.clone(), 0), None);
        let current = item(b"v");
        let cas = current.cas_unique();
        for mode in [StoreMode::Set, StoreMode::Add, StoreMode::Replace] {
            let change = store(mode, value.clone(), cas).expect("a cas");
            assert_eq!(
                run(&change, Some(&current)),
                (Status::Success, Some(value.data.clone()))
            );
            let wrong = store(mode, value.clone(), cas + 1).expect("a cas");
            assert_eq!(run(&wrong, Some(&current)), (Status::KeyExists, None));
            assert_eq!(run(&wrong, None), (Status::KeyNotFound, None));
        }
        let add = store(StoreMode::Add, value.clone(), 0).expect("an add");
        assert_eq!(run(&add, Some(&current)), (Status::KeyExists, None));
        let replace = store(StoreMode::Replace, value, 0).expect("a replace");
        assert_eq!(run(&replace, None), (Status::KeyNotFound, None));
    }

    #[test]
    fn append_and_prepend_compare_a_cas() {
        let current = item(b"v");
        let cas = current.cas_unique();
        let more = || Bytes::from_static(b"+");
        for cas in [0, cas] {
            assert_eq!(
                run(&concat(true, more(), cas), Some(&current)),
                (Status::Success, Some(Bytes::from_static(b"v+")))
            );
            assert_eq!(
                run(&concat(false, more(), cas), Some(&current)),
                (Status::Success, Some(Bytes::from_static(b"+v")))
            );
            assert_eq!(run(&concat(true, more(), cas), None), (Status::NotStored, None));
        }
        assert_eq!(
            run(&concat(true, more(), cas + 1), Some(&current)),
            (Status::KeyExists, None)
        );
        assert_eq!(
            run(&concat(false, more(), cas + 1), None),
            (Status::NotStored, None),
            "a miss is not stored, whatever the cas"
        );
        // The flags and expiry of the item are kept.
        let (effect, _) = concat(true, more(), cas).apply(Some(&current), NOW);
        assert!(matches!(effect, Effect::Store(v) if v.flags == 9 && v.expires_at == NOW + 60));
    }

    fn incr(delta: u64, initial: u64, exptime: u32) -> Counter {
        Counter {
            incr: true,
            delta,
            initial,
            exptime,
        }
    }

    #[test]
    fn counters_compare_a_cas_and_create_a_missing_key_anyway() {
        let current = item(b"10");
        let cas = current.cas_unique();
        let eleven = Some(Bytes::from_static(b"11"));
        for cas in [0, cas] {
            assert_eq!(
                run(&counter(incr(1, 0, 0), cas, NOW), Some(&current)),
                (Status::Success, eleven.clone())
            );
            assert_eq!(
                run(&counter(incr(1, 0, COUNTER_NO_CREATE), cas, NOW), None),
                (Status::KeyNotFound, None)
            );
        }
        assert_eq!(
            run(&counter(incr(1, 0, 0), cas + 1, NOW), Some(&current)),
            (Status::KeyExists, None)
        );
        let decr = Counter {
            incr: false,
            ..incr(3, 0, 0)
        };
        assert_eq!(
            run(&counter(decr, cas, NOW), Some(&current)),
            (Status::Success, Some(Bytes::from_static(b"7")))
        );
        // A miss creates the initial value, expiring as asked, even with a cas (memcached 1.6).
        let (effect, answer) = counter(incr(1, 42, 60), 77, NOW).apply(None, NOW);
        assert_eq!(answer, Answer::Number(42));
        assert!(matches!(effect, Effect::Store(v) if v.data == "42" && v.expires_at == NOW + 60 && v.flags == 0));
        assert_eq!(
            run(&counter(incr(1, 0, 0), cas + 1, NOW), Some(&item(b""))),
            (Status::NonNumeric, None),
            "an empty value is non-numeric before the cas is compared"
        );
        assert_eq!(
            run(&counter(incr(1, 0, 0), cas, NOW), Some(&item(b"x"))),
            (Status::NonNumeric, None)
        );
    }

    #[test]
    fn a_delete_with_a_cas_deletes_only_that_version() {
        assert_eq!(delete(0), None);
        let current = item(b"v");
        let cas = current.cas_unique();
        let deleted = Some(Bytes::from_static(b"<deleted>"));
        assert_eq!(
            run(&delete(cas).expect("a cas"), Some(&current)),
            (Status::Success, deleted)
        );
        assert_eq!(
            run(&delete(cas + 1).expect("a cas"), Some(&current)),
            (Status::KeyExists, None)
        );
        assert_eq!(run(&delete(cas).expect("a cas"), None), (Status::KeyNotFound, None));
    }
}
