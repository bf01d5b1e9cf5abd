//! Quorum rounds and the decisions of the multi-writer ABD register protocol, without I/O.
//!
//! A coordinator runs every operation as one or two [`Round`]s against a key's replicas:
//! - **set**: a version round learns the highest tag from R replicas ([`TagClock`]); a write
//!   round stores `(max.counter + 1, self)` on all N and succeeds after W acknowledgements.
//! - **delete**: a read (below); if it found a live value, a tombstone is written like a set.
//!   Its answer (deleted or not found) is what that linearizable read saw: two concurrent
//!   deletes of one value may both answer "deleted" (a read-modify-write would need consensus).
//! - **read**: a read round takes R records and returns the one with the highest tag
//!   ([`decide_read`]); if fewer than W of the answers carry that tag, a write-back round stores it
//!   on the others until W hold it, *before* the read returns. This makes reads linearizable: a
//!   value once returned is on a write quorum, so every later read quorum sees it.
//!
//! Invariant of [`Round`]: it is `Reached` as soon as `needed` replicas succeeded, `Impossible`
//! as soon as the replicas still outstanding cannot make up the difference, `Waiting` otherwise.

use kai_proto::{NodeId, Record, Tag, WriterId};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a round stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not decided yet.
    Waiting,
    /// Enough replicas succeeded.
    Reached,
    /// Too many replicas failed for the round to succeed.
    Impossible,
}

/// Which round of an operation failed, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Learning the highest version before a write.
    Version,
    /// Storing a new version.
    Write,
    /// Reading records.
    Read,
    /// Writing the latest record back to stale replicas during a read.
    WriteBack,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Version => "version",
            Phase::Write => "write",
            Phase::Read => "read",
            Phase::WriteBack => "write-back",
        })
    }
}

/// A round that could not reach its quorum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{phase} quorum not reached: {got} of {needed} replicas answered ({})", .errors.join("; "))]
pub struct QuorumError {
    /// The failed round.
    pub phase: Phase,
    /// Successes required.
    pub needed: usize,
    /// Successes obtained.
    pub got: usize,
    /// What went wrong with the others, `node: reason`.
    pub errors: Vec<String>,
}

/// The replies of one round.
#[derive(Debug)]
pub struct Round<T> {
    phase: Phase,
    needed: usize,
    outstanding: usize,
    replies: Vec<(NodeId, T)>,
    failures: Vec<String>,
}

impl<T> Round<T> {
    /// A round that asked `asked` replicas and needs `needed` successes.
    pub fn new(phase: Phase, needed: usize, asked: usize) -> Self {
        Round {
            phase,
            needed,
            outstanding: asked,
            replies: Vec::with_capacity(asked),
            failures: Vec::new(),
        }
    }

    /// Records a success from `node`.
    pub fn succeed(&mut self, node: NodeId, value: T) -> Progress {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.replies.push((node, value));
        self.progress()
    }

    /// Records a failure of `node`.
    pub fn fail(&mut self, node: NodeId, reason: impl std::fmt::Display) -> Progress {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.failures.push(format!("{node}: {reason}"));
        self.progress()
    }

    /// Where the round stands.
    pub fn progress(&self) -> Progress {
        if self.replies.len() >= self.needed {
            Progress::Reached
        } else if self.replies.len() + self.outstanding < self.needed {
            Progress::Impossible
        } else {
            Progress::Waiting
        }
    }

    /// The successes so far.
    pub fn replies(&self) -> &[(NodeId, T)] {
        &self.replies
    }

    /// Consumes the round, returning the successes.
    pub fn into_replies(self) -> Vec<(NodeId, T)> {
        self.replies
    }

    /// The error for a round that ended without quorum; `timed_out` marks the replicas that
    /// never answered.
    pub fn into_error(mut self, timed_out: bool) -> QuorumError {
        if timed_out && self.outstanding > 0 {
            self.failures.push(format!("{} replica(s) timed out", self.outstanding));
        }
        QuorumError {
            phase: self.phase,
            needed: self.needed,
            got: self.replies.len(),
            errors: self.failures,
        }
    }
}

/// Issues the tags of the versions this node writes.
///
/// Invariant: every tag it issues is unique — its writer id is unique to this run of the node,
/// and its counters strictly increase across all keys (so two writes of one key coordinated
/// concurrently by this node still get distinct tags) — and exceeds every tag passed as seen.
#[derive(Debug)]
pub struct TagClock {
    writer: WriterId,
    issued: AtomicU64,
}

impl TagClock {
    /// A clock for `writer`.
    pub fn new(writer: WriterId) -> Self {
        TagClock {
            writer,
            issued: AtomicU64::new(0),
        }
    }

    /// The tag for a new version of a key whose replicas reported the tags `seen` (`None` for
    /// replicas without the key).
    pub fn next_after<'a>(&self, seen: impl IntoIterator<Item = &'a Option<Tag>>) -> Tag {
        let floor = seen.into_iter().flatten().map(|t| t.counter).max().unwrap_or(0);
        let bump = |issued: u64| Some(issued.max(floor) + 1);
        let previous = match self.issued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, bump) {
            Ok(previous) | Err(previous) => previous,
        };
        Tag {
            counter: previous.max(floor) + 1,
            writer: self.writer,
        }
    }
}

/// Records to write back during a read so that `needed` more replicas hold the latest version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteBack {
    /// The latest record.
    pub record: Record,
    /// Replicas that did not report it (stale or silent).
    pub targets: Vec<NodeId>,
    /// Acknowledgements needed from `targets`.
    pub needed: usize,
}

/// What a read returns, and the write-back it needs first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadDecision {
    /// The record with the highest tag among the answers, if any replica had one.
    pub latest: Option<Record>,
    /// Set when fewer than W replicas are known to hold `latest`.
    pub write_back: Option<WriteBack>,
}

/// Decides a read from the `answers` of a read quorum over `replicas`, with write quorum `w`.
pub fn decide_read(answers: Vec<(NodeId, Option<Record>)>, replicas: &[NodeId], w: usize) -> ReadDecision {
    let Some(latest) = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .max_by_key(|r| r.tag)
        .cloned()
    else {
        return ReadDecision {
            latest: None,
            write_back: None,
        };
    };
    let holders: Vec<NodeId> = answers
        .iter()
        .filter(|(_, r)| r.as_ref().is_some_and(|r| r.tag == latest.tag))
        .map(|(node, _)| *node)
        .collect();
    let write_back = (holders.len() < w).then(|| WriteBack {
        record: latest.clone(),
        targets: replicas.iter().copied().filter(|n| !holders.contains(n)).collect(),
        needed: w - holders.len(),
    });
    ReadDecision {
        latest: Some(latest),
        write_back,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);
    const C: NodeId = NodeId(3);

    fn tag(counter: u64, node: NodeId) -> Tag {
        Tag {
            counter,
            writer: WriterId(node.0),
        }
    }

    fn rec(counter: u64, node: NodeId) -> Record {
        Record::value(tag(counter, node), 0, 0, Bytes::from(format!("v{counter}")))
    }

    #[test]
    fn round_reaches_quorum_on_the_needed_success() {
        let mut round = Round::new(Phase::Write, 2, 3);
        assert_eq!(round.succeed(A, ()), Progress::Waiting);
        assert_eq!(round.fail(B, "down"), Progress::Waiting);
        assert_eq!(round.succeed(C, ()), Progress::Reached);
        assert_eq!(round.replies().len(), 2);
    }

    #[test]
    fn round_is_impossible_once_too_many_fail() {
        let mut round: Round<()> = Round::new(Phase::Read, 2, 3);
        assert_eq!(round.fail(A, "refused"), Progress::Waiting);
        assert_eq!(round.fail(B, "store error"), Progress::Impossible);
        let err = round.into_error(false);
        assert_eq!((err.needed, err.got, err.errors.len()), (2, 0, 2));
        assert!(err.to_string().starts_with("read quorum not reached: 0 of 2"), "{err}");
    }

    #[test]
    fn timed_out_rounds_say_so() {
        let mut round = Round::new(Phase::Version, 2, 3);
        round.succeed(A, ());
        let err = round.into_error(true);
        assert_eq!(err.got, 1);
        assert!(err.to_string().contains("2 replica(s) timed out"), "{err}");
    }

    #[test]
    fn issued_tags_exceed_every_seen_version() {
        let clock = TagClock::new(WriterId(2));
        let t = clock.next_after(&[Some(tag(4, C)), None, Some(tag(4, A))]);
        assert!(t > tag(4, C));
        assert_eq!(t.writer, WriterId(2));
        assert!(clock.next_after(&[None, None]).counter >= 1);
    }

    #[test]
    fn concurrent_writes_of_one_key_get_distinct_tags() {
        let clock = TagClock::new(WriterId(7));
        let seen = [Some(tag(10, A))];
        let tags: Vec<Tag> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).map(|_| clock.next_after(&seen)).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
        });
        let unique: std::collections::HashSet<Tag> = tags.iter().copied().collect();
        assert_eq!(unique.len(), tags.len());
        assert!(tags.iter().all(|t| t.counter > 10));
    }

    #[test]
    fn read_returns_the_highest_tag_and_skips_write_back_when_w_hold_it() {
        let d = decide_read(vec![(A, Some(rec(3, A))), (B, Some(rec(3, A)))], &[A, B, C], 2);
        assert_eq!(d.latest, Some(rec(3, A)));
        assert_eq!(d.write_back, None);
    }

    #[test]
    fn stale_answers_trigger_write_back_to_the_others() {
        let d = decide_read(vec![(A, Some(rec(2, A))), (C, Some(rec(5, B)))], &[A, B, C], 2);
        assert_eq!(d.latest, Some(rec(5, B)));
        assert_eq!(
            d.write_back,
            Some(WriteBack {
                record: rec(5, B),
                targets: vec![A, B],
                needed: 1
            })
        );
    }

    #[test]
    fn ties_on_counter_break_by_node() {
        let d = decide_read(vec![(A, Some(rec(7, A))), (B, Some(rec(7, C)))], &[A, B, C], 2);
        assert_eq!(d.latest.map(|r| r.tag), Some(tag(7, C)));
    }

    #[test]
    fn tombstones_are_written_back_like_values() {
        let tomb = Record::tombstone(tag(9, A), 0);
        let d = decide_read(vec![(A, Some(tomb.clone())), (B, Some(rec(8, B)))], &[A, B, C], 2);
        assert_eq!(d.latest, Some(tomb.clone()));
        assert_eq!(d.write_back.map(|wb| (wb.record, wb.targets)), Some((tomb, vec![B, C])));
    }

    #[test]
    fn absent_everywhere_needs_no_write_back() {
        let d = decide_read(vec![(A, None), (B, None)], &[A, B, C], 2);
        assert_eq!(
            d,
            ReadDecision {
                latest: None,
                write_back: None
            }
        );
    }

    #[test]
    fn single_replica_never_writes_back() {
        let d = decide_read(vec![(A, Some(rec(1, A)))], &[A], 1);
        assert_eq!(d.write_back, None);
    }
}
