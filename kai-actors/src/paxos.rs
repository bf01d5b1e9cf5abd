//! The proposer's decisions in the per-key Paxos of read-modify-write commands, without I/O.
//!
//! A proposer (any coordinator) runs [`Change`]s as CASPaxos rounds with a ballot that is a
//! fresh [`Tag`]: prepare on a write quorum of every owner set, take the highest-tag record,
//! apply the change, accept `(ballot, result)` on a write quorum of every owner set. Decisions:
//! - After a prepare ([`decide`]): if an earlier attempt of the *same* operation may have
//!   been accepted somewhere (`pending`), its fate decides: the highest record carries its ballot
//!   → it won, answer it (never apply the change twice); the highest record is newer than it →
//!   another proposal may or may not have built on it, so the outcome is unknown; older → it
//!   never took effect, so the change is applied afresh.
//! - A change that stores nothing still answers from the state read, so that state must be on a
//!   write quorum before the answer: if the prepare quorum shows it on fewer, the proposer
//!   accepts it again under its ballot (same value, new tag). The version keeps its cas unique
//!   (`ValueState::cas`): nothing changed it, so a client's `cas` with it must still succeed.
//! - A meta `mg` that hands out the recache win stamps the stored value with its ballot
//!   (`ValueState::winner`, kept by every version built on the win: write-backs, other `mg`s,
//!   touches). So an earlier attempt overtaken by a newer version that still carries its stamp
//!   won. One that does not carry it was written over by a write that replaced the item or
//!   cleared its marks — possibly after other clients saw the win taken (`Z`), so applying the
//!   `mg` afresh would make it take effect twice: its outcome is unknown, as for any other
//!   change. An `mg` that won nothing is idempotent and is applied afresh.

use crate::quorum::decide_read;
use kai_proto::change::{Answer, Change, Effect};
use kai_proto::{NodeId, Record, Tag, ValueState};

/// An accept that failed after it may have reached some replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The record proposed (its tag is the ballot).
    pub record: Record,
    /// What the operation answers if that record won.
    pub answer: Answer,
}

/// What the proposer does after a successful prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The earlier attempt won: answer this, propose nothing.
    Won(Answer, Option<Record>),
    /// Whether the earlier attempt took effect cannot be known.
    Unknown,
    /// Accept this record (tag = ballot) on a write quorum, then answer.
    Accept(Record, Answer),
    /// Answer from the state read; it is on a write quorum already.
    Answer(Answer, Option<Record>),
}

/// The answers of a prepare round (node, stored record), the owner sets it covered and the
/// write quorum.
pub type PrepareAnswers<'a> = (Vec<(NodeId, Option<Record>)>, &'a [Vec<NodeId>], usize);

/// Decides after the prepare of `ballot` got `answers` (node, stored record) from owner sets
/// `owners` with write quorum `w`, at time `now`.
pub fn decide(
    change: &Change,
    ballot: Tag,
    (answers, owners, w): PrepareAnswers<'_>,
    pending: Option<&Pending>,
    now: u64,
) -> Decision {
    let read = decide_read(answers, owners, w);
    let latest_tag = read.latest.as_ref().map(|r| r.tag);
    if let Some(pending) = pending {
        match latest_tag {
            Some(tag) if tag == pending.record.tag => {
                return Decision::Won(pending.answer.clone(), Some(pending.record.clone()))
            }
            Some(tag) if tag > pending.record.tag => match pending.answer {
                // A recache win is stamped with its ballot and kept by the versions built on
                // it: if the latest still names it, it won.
                Answer::Fetched { won: true }
                    if read.latest.as_ref().and_then(|r| r.state().winner) == Some(pending.record.tag) =>
                {
                    return Decision::Won(pending.answer.clone(), read.latest);
                }
                // An `mg` that won nothing only rewrote the value (a write-back, or a touch to
                // an absolute time): applying it again is harmless.
                Answer::Fetched { won: false } => {}
                _ => return Decision::Unknown,
            },
            _ => {}
        }
    }
    let (effect, answer) = change.apply(read.latest.as_ref(), now);
    match effect {
        Effect::Store(v) => {
            let mut state = v.state;
            if hands_out_a_win(&answer) {
                state.winner = Some(ballot);
            }
            Decision::Accept(
                Record::value(ballot, v.flags, v.expires_at, v.data).with_state(state),
                answer,
            )
        }
        Effect::Delete => Decision::Accept(Record::tombstone(ballot, now), answer),
        Effect::Keep => match read.write_back {
            Some((latest, _)) => {
                let state = ValueState {
                    cas: Some(latest.cas_unique()),
                    ..latest.state()
                };
                Decision::Accept(Record { tag: ballot, ..latest }.with_state(state), answer)
            }
            None => Decision::Answer(answer, read.latest),
        },
    }
}

/// True for the answer of a meta `mg` that hands this client the recache win (`W`).
fn hands_out_a_win(answer: &Answer) -> bool {
    *answer == Answer::Fetched { won: true }
}

#[cfg(test)]
mod tests;
