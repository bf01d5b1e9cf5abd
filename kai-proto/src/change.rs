//! Change functions: the read-modify-write commands of memcached as pure functions of a key's
//! current value.
//!
//! A coordinator sends a [`Change`] (a name and its arguments, never code) through the per-key
//! Paxos round of kai-actors; the proposer applies it to the latest live value it learned
//! ([`Change::apply`]) and proposes the result. Invariants:
//! - `apply` is deterministic in its inputs (`current`, `now`): the same state gives the same
//!   answer on any node.
//! - An expired value is absent, exactly as a read would report it.
//! - A failed change ([`Effect::Keep`]) proposes nothing; its answer still depends on the state
//!   read, which the proposer makes stable before answering.
//! - Answers are memcached 1.6's: `incr` wraps at 2^64, `decr` floors at 0, a number's length
//!   changes with its digits, a non-numeric value (or one over 20 digits) is an error.
//! - The meta protocol's changes ([`meta`]) also set and read a value's stale-while-revalidate
//!   marks ([`ValueState`]); since every change is applied to the one latest state and its
//!   result written as a new version, at most one client is handed each recache win.

use crate::record::{Record, RecordBody, ValueState};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One read-modify-write command on a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Store only if the key holds no live value.
    Add(NewValue),
    /// Store only if the key holds a live value.
    Replace(NewValue),
    /// Append bytes to a live value (flags and expiry unchanged).
    Append(Bytes),
    /// Prepend bytes to a live value (flags and expiry unchanged).
    Prepend(Bytes),
    /// Store only if the live value's cas unique is `unique`.
    Cas {
        /// The new value.
        value: NewValue,
        /// The cas unique the client read with `gets`.
        unique: u64,
    },
    /// Add `delta` to a decimal value, wrapping at 2^64.
    Incr(u64),
    /// Subtract `delta` from a decimal value, flooring at 0.
    Decr(u64),
    /// Set a live value's absolute expiry (unix seconds, 0 = never).
    Touch {
        /// The new absolute expiry.
        expires_at: u64,
    },
    /// `incr`/`decr` of the binary protocol: like [`Change::Incr`]/[`Change::Decr`], but a
    /// missing key is created holding `initial` (flags 0), which is then the answer.
    Counter {
        /// Increment (else decrement).
        incr: bool,
        /// The amount.
        delta: u64,
        /// The value of a created key.
        initial: u64,
        /// Absolute expiry of a created key (unix seconds, 0 = never).
        expires_at: u64,
    },
    /// `mg` that may change the item (`N`, `R`, `T`, or a stale item to hand the win for).
    MetaGet(meta::MetaGet),
    /// `ms` with a mode other than set, a cas to compare, or `I`.
    MetaSet(meta::MetaSet),
    /// `md` with a cas to compare, `I` or `x`.
    MetaDelete(meta::MetaDelete),
    /// `ma`.
    MetaArithmetic(meta::MetaArithmetic),
}

/// A value a storage command supplies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewValue {
    /// Client flags.
    pub flags: u32,
    /// Absolute expiry, unix seconds, 0 = never.
    pub expires_at: u64,
    /// The bytes.
    pub data: Bytes,
    /// Stale-while-revalidate marks (meta protocol; default: none).
    pub state: ValueState,
}

/// What a change answers the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// `STORED`
    Stored,
    /// `NOT_STORED`
    NotStored,
    /// `EXISTS`
    Exists,
    /// `NOT_FOUND`
    NotFound,
    /// `TOUCHED`
    Touched,
    /// The new number of an `incr`/`decr`.
    Number(u64),
    /// `CLIENT_ERROR cannot increment or decrement non-numeric value`
    NonNumeric,
    /// `mg` found the item; `won`: this client was handed the recache win (`W`).
    Fetched {
        /// The win went to this client.
        won: bool,
    },
    /// `md` deleted or invalidated the item (`HD`).
    Deleted,
}

/// What the proposer does with the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Propose this new value (the tag is the ballot).
    Store(NewValue),
    /// Propose nothing; the state read stays.
    Keep,
    /// Propose a tombstone.
    Delete,
}

/// Longest decimal number memcached accepts as a counter value.
const MAX_NUMBER_DIGITS: usize = 20;

impl Change {
    /// Applies the change to `current` (the latest record, any kind, or none) at `now`.
    pub fn apply(&self, current: Option<&Record>, now: u64) -> (Effect, Answer) {
        let live = current.filter(|r| r.is_live(now)).and_then(|r| match &r.body {
            RecordBody::Value {
                flags,
                expires_at,
                data,
                state,
            } => Some(Live {
                cas: r.cas_unique(),
                flags: *flags,
                expires_at: *expires_at,
                data,
                state: *state,
            }),
            RecordBody::Tombstone { .. } => None,
        });
        match (self, live) {
            (Change::MetaGet(get), live) => get.apply(live),
            (Change::MetaSet(set), live) => set.apply(live),
            (Change::MetaDelete(delete), live) => delete.apply(live),
            (Change::MetaArithmetic(arithmetic), live) => arithmetic.apply(live),
            (Change::Add(v), None) | (Change::Replace(v), Some(_)) => (Effect::Store(v.clone()), Answer::Stored),
            (Change::Add(_), Some(_)) | (Change::Replace(_), None) => (Effect::Keep, Answer::NotStored),
            (Change::Append(_) | Change::Prepend(_), None) => (Effect::Keep, Answer::NotStored),
            (Change::Append(more), Some(l)) => {
                let joined = [l.data.as_ref(), more.as_ref()].concat();
                (store(l.flags, l.expires_at, joined), Answer::Stored)
            }
            (Change::Prepend(more), Some(l)) => {
                let joined = [more.as_ref(), l.data.as_ref()].concat();
                (store(l.flags, l.expires_at, joined), Answer::Stored)
            }
            (Change::Cas { .. }, None) => (Effect::Keep, Answer::NotFound),
            (Change::Cas { value, unique }, Some(l)) => {
                if l.cas == *unique {
                    (Effect::Store(value.clone()), Answer::Stored)
                } else {
                    (Effect::Keep, Answer::Exists)
                }
            }
            (Change::Incr(_) | Change::Decr(_), None) => (Effect::Keep, Answer::NotFound),
            (
                Change::Counter {
                    initial, expires_at, ..
                },
                None,
            ) => (
                store(0, *expires_at, initial.to_string().into_bytes()),
                Answer::Number(*initial),
            ),
            (Change::Incr(delta) | Change::Decr(delta) | Change::Counter { delta, .. }, Some(l)) => {
                let Some(number) = parse_counter(l.data) else {
                    return (Effect::Keep, Answer::NonNumeric);
                };
                let next = match self {
                    Change::Incr(_) | Change::Counter { incr: true, .. } => number.wrapping_add(*delta),
                    _ => number.saturating_sub(*delta),
                };
                (
                    store(l.flags, l.expires_at, next.to_string().into_bytes()),
                    Answer::Number(next),
                )
            }
            (Change::Touch { .. }, None) => (Effect::Keep, Answer::NotFound),
            (Change::Touch { expires_at }, Some(l)) => (
                Effect::Store(NewValue {
                    flags: l.flags,
                    expires_at: *expires_at,
                    data: l.data.clone(),
                    state: l.state,
                }),
                Answer::Touched,
            ),
        }
    }
}

/// The live value a change sees.
#[derive(Clone, Copy, Debug)]
struct Live<'a> {
    /// Its cas unique.
    cas: u64,
    flags: u32,
    expires_at: u64,
    data: &'a Bytes,
    state: ValueState,
}

fn store(flags: u32, expires_at: u64, data: Vec<u8>) -> Effect {
    Effect::Store(NewValue {
        flags,
        expires_at,
        data: data.into(),
        state: ValueState::default(),
    })
}

/// A counter value as memcached reads it: decimal digits only (memcached's `strtoull` also
/// stops at trailing spaces it wrote when a number shrank; Kai never pads), at most 20 digits,
/// within 64 bits.
pub(crate) fn parse_counter(data: &[u8]) -> Option<u64> {
    if data.is_empty() || data.len() > MAX_NUMBER_DIGITS || !data.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(data).ok()?.parse().ok()
}

pub mod meta;

#[cfg(test)]
mod tests;
