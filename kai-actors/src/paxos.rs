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
//!   accepts it again under its ballot (same value, new tag).

use crate::quorum::decide_read;
use kai_proto::change::{Answer, Change, Effect};
use kai_proto::{NodeId, Record, Tag};

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
            Some(tag) if tag > pending.record.tag => return Decision::Unknown,
            _ => {}
        }
    }
    let (effect, answer) = change.apply(read.latest.as_ref(), now);
    match effect {
        Effect::Store(v) => Decision::Accept(Record::value(ballot, v.flags, v.expires_at, v.data), answer),
        Effect::Keep => match read.write_back {
            Some((latest, _)) => Decision::Accept(Record { tag: ballot, ..latest }, answer),
            None => Decision::Answer(answer, read.latest),
        },
    }
}

#[cfg(test)]
mod tests;
