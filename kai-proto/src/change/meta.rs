//! The meta protocol's read-modify-writes, memcached 1.6's semantics as pure functions.
//!
//! Invariants (besides [`super`]'s):
//! - Times are absolute unix seconds computed by the coordinator when the request arrived, so
//!   [`Change::apply`](super::Change::apply) stays deterministic.
//! - The recache win (`W`) is handed out only when the applied state has no `win_sent` mark,
//!   and the stored result always has it set: of all clients racing for one key, exactly one
//!   is told it won until the item is invalidated again or replaced. The proposer stamps the
//!   win with its ballot (`ValueState::winner`, see `kai_actors::paxos`).
//! - A cas of 0 (`C0`) follows memcached: `ms` in set/replace mode compares it (and, since no
//!   item has cas 0, never matches, stale or not); append/prepend, `ma` ignore it; `md` compares it.
//! - These changes also serve the binary protocol's append/prepend, incr/decr and delete when
//!   their header carries a cas (`crate::binary::change`): one compare-and-swap for both.

use super::{parse_counter, Answer, Effect, Live, NewValue};
use crate::meta::SetMode;
use crate::record::ValueState;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// `mg` with `N` (vivify on miss), `R` (recache below a TTL), `T` (touch), or on a stale item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaGet {
    /// `N`: on a miss, create an empty item expiring then (0 = never) and win.
    pub vivify: Option<u64>,
    /// `R`: win if the item expires (not never) before this time.
    pub recache: Option<u64>,
    /// `T`: the item's new expiry.
    pub touch: Option<u64>,
    /// `E`: the cas unique of a modified item (else a modified hit keeps its cas, as in
    /// memcached, where neither a touch nor a win changes it).
    pub new_cas: Option<u64>,
}

impl MetaGet {
    pub(super) fn apply(&self, live: Option<Live<'_>>) -> (Effect, Answer) {
        let Some(item) = live else {
            return match self.vivify {
                Some(expires_at) => (
                    Effect::Store(NewValue {
                        expires_at,
                        state: ValueState {
                            win_sent: true,
                            cas: self.new_cas,
                            ..ValueState::default()
                        },
                        ..NewValue::default()
                    }),
                    Answer::Fetched { won: true },
                ),
                None => (Effect::Keep, Answer::NotFound),
            };
        };
        let recache = self
            .recache
            .is_some_and(|limit| item.expires_at != 0 && item.expires_at < limit);
        let won = !item.state.win_sent && (recache || item.state.stale);
        if !won && self.touch.is_none() {
            return (Effect::Keep, Answer::Fetched { won });
        }
        let state = ValueState {
            win_sent: item.state.win_sent || won,
            cas: Some(self.new_cas.unwrap_or(item.cas)),
            ..item.state
        };
        let value = NewValue {
            flags: item.flags,
            expires_at: self.touch.unwrap_or(item.expires_at),
            data: item.data.clone(),
            state,
        };
        (Effect::Store(value), Answer::Fetched { won })
    }
}

/// `ms` with a mode, `C`, `I` or `E` (a plain `ms` is a plain set). `E` is the stored value's
/// `state.cas`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaSet {
    /// The mode.
    pub mode: SetMode,
    /// The value (flags from `F`, expiry from `T`).
    pub value: NewValue,
    /// `C`: store only if the item's cas unique is this.
    pub compare: Option<u64>,
    /// `I` with `C`: a different cas stores the value anyway, marked stale, keeping the item's
    /// expiry and win mark (memcached accepts only a *lower* cas; Kai's cas uniques are not
    /// ordered, so any other version counts as older).
    pub invalidate: bool,
    /// `N` in append/prepend mode: on a miss, create the item with the data, expiring then.
    pub vivify: Option<u64>,
}

impl MetaSet {
    pub(super) fn apply(&self, live: Option<Live<'_>>) -> (Effect, Answer) {
        let stored = |value: NewValue| (Effect::Store(value), Answer::Stored);
        let Some(item) = live else {
            return match (self.mode, self.compare, self.vivify) {
                (SetMode::Add, ..) | (SetMode::Set, None, _) => stored(self.value.clone()),
                (SetMode::Set | SetMode::Replace, Some(_), _) => (Effect::Keep, Answer::NotFound),
                (SetMode::Append | SetMode::Prepend, _, Some(expires_at)) => stored(NewValue {
                    expires_at,
                    ..self.value.clone()
                }),
                _ => (Effect::Keep, Answer::NotStored),
            };
        };
        let matches = self.compare.is_none_or(|cas| cas == item.cas);
        match self.mode {
            SetMode::Add => (Effect::Keep, Answer::NotStored),
            SetMode::Set | SetMode::Replace if matches => stored(self.value.clone()),
            SetMode::Set | SetMode::Replace if self.invalidate && self.compare != Some(0) => stored(NewValue {
                expires_at: item.expires_at,
                state: ValueState {
                    stale: true,
                    cas: self.value.state.cas,
                    ..item.state
                },
                ..self.value.clone()
            }),
            SetMode::Set | SetMode::Replace => (Effect::Keep, Answer::Exists),
            SetMode::Append | SetMode::Prepend if !matches && self.compare != Some(0) => (Effect::Keep, Answer::Exists),
            SetMode::Append | SetMode::Prepend => {
                let (new, old) = (self.value.data.as_ref(), item.data.as_ref());
                let joined = match self.mode {
                    SetMode::Append => [old, new].concat(),
                    _ => [new, old].concat(),
                };
                stored(NewValue {
                    flags: item.flags,
                    expires_at: item.expires_at,
                    data: joined.into(),
                    state: ValueState {
                        cas: self.value.state.cas,
                        ..ValueState::default()
                    },
                })
            }
        }
    }
}

/// `md` with `C`, `I` or `x` (a plain `md` is a plain delete).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaDelete {
    /// `C`: only if the item's cas unique is this.
    pub compare: Option<u64>,
    /// `I`: mark stale (and clear the win mark) instead of deleting.
    pub invalidate: bool,
    /// `T` with `I`: the item's new expiry.
    pub touch: Option<u64>,
    /// `x`: replace the item by an empty value with `flags` and `expires_at` below.
    pub strip: Option<NewValue>,
    /// `E`: the cas unique of the invalidated or emptied item (else a new one).
    pub new_cas: Option<u64>,
}

impl MetaDelete {
    pub(super) fn apply(&self, live: Option<Live<'_>>) -> (Effect, Answer) {
        let Some(item) = live else {
            return (Effect::Keep, Answer::NotFound);
        };
        if self.compare.is_some_and(|cas| cas != item.cas) {
            return (Effect::Keep, Answer::Exists);
        }
        let mut value = match &self.strip {
            Some(empty) => empty.clone(),
            None if self.invalidate => NewValue {
                flags: item.flags,
                expires_at: item.expires_at,
                data: item.data.clone(),
                state: item.state,
            },
            None => return (Effect::Delete, Answer::Deleted),
        };
        if self.invalidate {
            value.expires_at = self.touch.unwrap_or(value.expires_at);
            value.state = ValueState {
                stale: true,
                ..ValueState::default()
            };
        }
        value.state.cas = self.new_cas;
        (Effect::Store(value), Answer::Deleted)
    }
}

/// `ma`: increment or decrement a decimal value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaArithmetic {
    /// Increment (wrapping) or decrement (flooring at 0).
    pub incr: bool,
    /// `D`: the delta (default 1).
    pub delta: u64,
    /// `C`: only if the item's cas unique is this (0: no comparison).
    pub compare: Option<u64>,
    /// `N` (with `J`): on a miss, create the item with this expiry and initial number.
    pub vivify: Option<(u64, u64)>,
    /// `T`: the item's new expiry on success.
    pub touch: Option<u64>,
    /// `E`: the cas unique of the new number (else a new one).
    pub new_cas: Option<u64>,
}

impl MetaArithmetic {
    pub(super) fn apply(&self, live: Option<Live<'_>>) -> (Effect, Answer) {
        let number = |expires_at: u64, flags: u32, n: u64| {
            let value = NewValue {
                flags,
                expires_at: self.touch.unwrap_or(expires_at),
                data: Bytes::from(n.to_string()),
                state: ValueState {
                    cas: self.new_cas,
                    ..ValueState::default()
                },
            };
            (Effect::Store(value), Answer::Number(n))
        };
        let Some(item) = live else {
            return match self.vivify {
                Some((expires_at, initial)) => number(expires_at, 0, initial),
                None => (Effect::Keep, Answer::NotFound),
            };
        };
        // memcached refuses an empty value before it compares the cas.
        if item.data.is_empty() {
            return (Effect::Keep, Answer::NonNumeric);
        }
        if self.compare.is_some_and(|cas| cas != 0 && cas != item.cas) {
            return (Effect::Keep, Answer::Exists);
        }
        let Some(current) = parse_counter(item.data) else {
            return (Effect::Keep, Answer::NonNumeric);
        };
        let next = if self.incr {
            current.wrapping_add(self.delta)
        } else {
            current.saturating_sub(self.delta)
        };
        number(item.expires_at, item.flags, next)
    }
}

#[cfg(test)]
mod tests;
