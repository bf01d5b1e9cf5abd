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
//! During an ownership transition a bucket has several owner sets (one per active ring); every
//! round then needs its quorum in *each* of them ([`Group`]), so operations stay linearizable
//! whichever set a later operation uses.
//!
//! Invariant of [`Round`]: it is `Reached` as soon as every group has `needed` successes among
//! its members, `Impossible` as soon as some group's outstanding members cannot make up its
//! difference, `Waiting` otherwise. A reply from a node counts for every group it belongs to.

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
    /// Paxos phase 1 of a read-modify-write.
    Prepare,
    /// Paxos phase 2 of a read-modify-write.
    Accept,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Version => "version",
            Phase::Write => "write",
            Phase::Read => "read",
            Phase::WriteBack => "write-back",
            Phase::Prepare => "prepare",
            Phase::Accept => "accept",
        })
    }
}

/// A round that could not reach its quorum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{phase} quorum not reached: {got} of {needed} replicas answered ({})", .errors.join("; "))]
pub struct QuorumError {
    /// The failed round.
    pub phase: Phase,
    /// Successes required (in the group that fell short).
    pub needed: usize,
    /// Successes obtained there.
    pub got: usize,
    /// What went wrong with the others, `node: reason`.
    pub errors: Vec<String>,
}

/// One owner set of a round and the successes it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The owners.
    pub members: Vec<NodeId>,
    /// Successes needed among them.
    pub needed: usize,
}

impl Group {
    /// A group needing `needed` of `members` (capped at their number).
    pub fn new(members: Vec<NodeId>, needed: usize) -> Self {
        let needed = needed.min(members.len());
        Group { members, needed }
    }
}

#[derive(Debug)]
struct Tally {
    group: Group,
    succeeded: usize,
    failed: usize,
}

/// The replies of one round.
#[derive(Debug)]
pub struct Round<T> {
    phase: Phase,
    tallies: Vec<Tally>,
    replies: Vec<(NodeId, T)>,
    failures: Vec<String>,
}

impl<T> Round<T> {
    /// A round over `groups`.
    pub fn new(phase: Phase, groups: Vec<Group>) -> Self {
        Round {
            phase,
            tallies: groups
                .into_iter()
                .map(|group| Tally {
                    group,
                    succeeded: 0,
                    failed: 0,
                })
                .collect(),
            replies: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Every node of every group, each once, in group order.
    pub fn targets(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for t in &self.tallies {
            for n in &t.group.members {
                if !out.contains(n) {
                    out.push(*n);
                }
            }
        }
        out
    }

    /// The fewest targets, taken in `preference` order, that can reach every group's quorum if
    /// they all succeed.
    pub fn eager_targets(&self, preference: &[NodeId]) -> Vec<NodeId> {
        let mut chosen: Vec<NodeId> = Vec::new();
        for node in preference {
            let useful = self.tallies.iter().any(|t| {
                let have = t.group.members.iter().filter(|m| chosen.contains(m)).count();
                have < t.group.needed && t.group.members.contains(node)
            });
            if useful {
                chosen.push(*node);
            }
        }
        chosen
    }

    /// The spare (from `spares`, in their order) to ask in place of `failed`: the first one in
    /// an owner set that `failed` belonged to and that has not reached its quorum yet.
    pub fn replacement(&self, failed: NodeId, spares: &[NodeId]) -> Option<NodeId> {
        let short: Vec<&Group> = self
            .tallies
            .iter()
            .filter(|t| t.succeeded < t.group.needed && t.group.members.contains(&failed))
            .map(|t| &t.group)
            .collect();
        spares
            .iter()
            .copied()
            .find(|spare| short.iter().any(|g| g.members.contains(spare)))
    }

    /// Records a success from `node`.
    pub fn succeed(&mut self, node: NodeId, value: T) -> Progress {
        for t in self.tallies.iter_mut().filter(|t| t.group.members.contains(&node)) {
            t.succeeded += 1;
        }
        self.replies.push((node, value));
        self.progress()
    }

    /// Records a failure of `node`.
    pub fn fail(&mut self, node: NodeId, reason: impl std::fmt::Display) -> Progress {
        for t in self.tallies.iter_mut().filter(|t| t.group.members.contains(&node)) {
            t.failed += 1;
        }
        self.failures.push(format!("{node}: {reason}"));
        self.progress()
    }

    /// Where the round stands.
    pub fn progress(&self) -> Progress {
        let impossible = self
            .tallies
            .iter()
            .any(|t| t.group.members.len() - t.failed < t.group.needed);
        if self.tallies.iter().all(|t| t.succeeded >= t.group.needed) {
            Progress::Reached
        } else if impossible {
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

    /// The error for a round that ended without quorum; `timed_out` says some replicas never
    /// answered.
    pub fn into_error(mut self, timed_out: bool) -> QuorumError {
        let short = self
            .tallies
            .iter()
            .find(|t| t.succeeded < t.group.needed)
            .or(self.tallies.first());
        let (needed, got, silent) = short.map_or((0, 0, 0), |t| {
            let silent = t.group.members.len() - t.succeeded - t.failed;
            (t.group.needed, t.succeeded, silent)
        });
        if timed_out && silent > 0 {
            self.failures.push(format!("{silent} replica(s) timed out"));
        }
        QuorumError {
            phase: self.phase,
            needed,
            got,
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

    /// The writer id stamped on every tag this clock issues.
    pub fn writer(&self) -> WriterId {
        self.writer
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

/// What a read returns, and the write-back it needs first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadDecision {
    /// The record with the highest tag among the answers, if any replica had one.
    pub latest: Option<Record>,
    /// Set when some owner set has fewer than its write quorum known to hold `latest`: write it
    /// back to that set's other members until enough do.
    pub write_back: Option<(Record, Vec<Group>)>,
}

/// Decides a read from the `answers` of a read round over owner sets `owners`, whose write quorum
/// is `w` (capped per set).
pub fn decide_read(answers: Vec<(NodeId, Option<Record>)>, owners: &[Vec<NodeId>], w: usize) -> ReadDecision {
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
    let short: Vec<Group> = owners
        .iter()
        .filter_map(|members| {
            let held = members.iter().filter(|m| holders.contains(m)).count();
            let quorum = w.min(members.len());
            (held < quorum).then(|| {
                let others: Vec<NodeId> = members.iter().copied().filter(|m| !holders.contains(m)).collect();
                Group::new(others, quorum - held)
            })
        })
        .collect();
    ReadDecision {
        latest: Some(latest.clone()),
        write_back: (!short.is_empty()).then_some((latest, short)),
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

    fn group(members: &[NodeId], needed: usize) -> Group {
        Group::new(members.to_vec(), needed)
    }

    #[test]
    fn round_reaches_quorum_on_the_needed_success() {
        let mut round = Round::new(Phase::Write, vec![group(&[A, B, C], 2)]);
        assert_eq!(round.succeed(A, ()), Progress::Waiting);
        assert_eq!(round.fail(B, "down"), Progress::Waiting);
        assert_eq!(round.succeed(C, ()), Progress::Reached);
        assert_eq!(round.replies().len(), 2);
    }

    #[test]
    fn round_is_impossible_once_too_many_fail() {
        let mut round: Round<()> = Round::new(Phase::Read, vec![group(&[A, B, C], 2)]);
        assert_eq!(round.fail(A, "refused"), Progress::Waiting);
        assert_eq!(round.fail(B, "store error"), Progress::Impossible);
        let err = round.into_error(false);
        assert_eq!((err.needed, err.got, err.errors.len()), (2, 0, 2));
        assert!(err.to_string().starts_with("read quorum not reached: 0 of 2"), "{err}");
    }

    #[test]
    fn timed_out_rounds_say_so() {
        let mut round = Round::new(Phase::Version, vec![group(&[A, B, C], 2)]);
        round.succeed(A, ());
        let err = round.into_error(true);
        assert_eq!(err.got, 1);
        assert!(err.to_string().contains("2 replica(s) timed out"), "{err}");
    }

    #[test]
    fn during_a_transition_every_owner_set_needs_its_quorum() {
        const D: NodeId = NodeId(4);
        let mut round = Round::new(Phase::Write, vec![group(&[A, B, C], 2), group(&[A, B, D], 2)]);
        assert_eq!(round.targets(), vec![A, B, C, D]);
        assert_eq!(round.succeed(C, ()), Progress::Waiting);
        assert_eq!(round.succeed(D, ()), Progress::Waiting);
        assert_eq!(round.succeed(A, ()), Progress::Reached, "A counts for both sets");
        let mut round: Round<()> = Round::new(Phase::Write, vec![group(&[A, B, C], 2), group(&[A, B, D], 2)]);
        round.fail(A, "down");
        assert_eq!(
            round.fail(D, "down"),
            Progress::Impossible,
            "the new set lost two of three"
        );
    }

    #[test]
    fn eager_targets_cover_every_set_with_the_fewest_nodes() {
        const D: NodeId = NodeId(4);
        let round: Round<()> = Round::new(Phase::Read, vec![group(&[A, B, C], 2), group(&[A, B, D], 2)]);
        assert_eq!(round.eager_targets(&[A, C, B, D]), vec![A, C, B]);
        let single: Round<()> = Round::new(Phase::Read, vec![group(&[A, B, C], 2)]);
        assert_eq!(single.eager_targets(&[B, A, C]), vec![B, A]);
    }

    #[test]
    fn a_failed_replica_is_replaced_by_a_spare_of_its_own_owner_set() {
        let (a, b, c, d, e) = (NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5));
        // Two owner sets during a transition: {a, b, c} and {a, b, d}; `e` belongs to neither.
        let round: Round<()> = Round::new(Phase::Write, vec![group(&[a, b, c], 2), group(&[a, b, d], 2)]);
        assert_eq!(round.replacement(c, &[e, d]), None, "d is not in c's owner set");
        assert_eq!(round.replacement(b, &[d, c]), Some(d), "b's sets both lack a success");
        assert_eq!(round.replacement(d, &[c]), None);
        let mut round: Round<()> = Round::new(Phase::Write, vec![group(&[a, b, c], 2), group(&[a, b, d], 2)]);
        round.succeed(a, ());
        round.succeed(c, ());
        assert_eq!(
            round.replacement(b, &[c, d]),
            Some(d),
            "only the second set is still short"
        );
    }

    #[test]
    fn read_returns_the_highest_tag_and_skips_write_back_when_w_hold_it() {
        let d = decide_read(vec![(A, Some(rec(3, A))), (B, Some(rec(3, A)))], &[vec![A, B, C]], 2);
        assert_eq!(d.latest, Some(rec(3, A)));
        assert_eq!(d.write_back, None);
    }

    #[test]
    fn stale_answers_trigger_write_back_to_the_others() {
        let d = decide_read(vec![(A, Some(rec(2, A))), (C, Some(rec(5, B)))], &[vec![A, B, C]], 2);
        assert_eq!(d.latest, Some(rec(5, B)));
        assert_eq!(d.write_back, Some((rec(5, B), vec![group(&[A, B], 1)])));
    }

    #[test]
    fn write_back_targets_each_owner_set_short_of_its_quorum() {
        const D: NodeId = NodeId(4);
        let owners = [vec![A, B, C], vec![A, B, D]];
        let d = decide_read(vec![(C, Some(rec(5, B))), (D, Some(rec(5, B))), (A, None)], &owners, 2);
        assert_eq!(
            d.write_back,
            Some((rec(5, B), vec![group(&[A, B], 1), group(&[A, B], 1)]))
        );
    }

    #[test]
    fn ties_on_counter_break_by_writer() {
        let d = decide_read(vec![(A, Some(rec(7, A))), (B, Some(rec(7, C)))], &[vec![A, B, C]], 2);
        assert_eq!(d.latest.map(|r| r.tag), Some(tag(7, C)));
    }

    #[test]
    fn tombstones_are_written_back_like_values() {
        let tomb = Record::tombstone(tag(9, A), 0);
        let d = decide_read(vec![(A, Some(tomb.clone())), (B, Some(rec(8, B)))], &[vec![A, B, C]], 2);
        assert_eq!(d.latest, Some(tomb.clone()));
        assert_eq!(d.write_back, Some((tomb, vec![group(&[B, C], 1)])));
    }

    #[test]
    fn absent_everywhere_needs_no_write_back() {
        let d = decide_read(vec![(A, None), (B, None)], &[vec![A, B, C]], 2);
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
        let d = decide_read(vec![(A, Some(rec(1, A)))], &[vec![A]], 1);
        assert_eq!(d.write_back, None);
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
}
