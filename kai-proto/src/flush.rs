//! `flush_all` as a version: a [`FlushMark`] is a tag above every version stored before the
//! flush began; a replica that knows the mark reads every record below it — and every missing
//! key — as a tombstone tagged with the mark.
//!
//! Invariants:
//! - Marks only rise: a node keeps the highest mark it has seen (ordered by tag).
//! - Masking is a pure function of (mark, record): every replica that knows a mark answers the
//!   same for the same record, so a read quorum that includes one of them sees the flush, and a
//!   write minted after it (its tag above the mark) is never masked.

use crate::record::Record;
use crate::tag::Tag;
use serde::{Deserialize, Serialize};

/// A cluster-wide flush: everything tagged below `tag` is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlushMark {
    /// Above the tag of every version stored before the flush began.
    pub tag: Tag,
    /// When the flush took effect (unix seconds): the deletion time of the tombstones it implies.
    pub at: u64,
}

impl FlushMark {
    /// What a replica that knows this mark answers for the stored `record`: the record if it is
    /// newer than the mark, else (and for a missing key) the mark's tombstone.
    pub fn mask(&self, record: Option<Record>) -> Record {
        match record {
            Some(record) if record.tag > self.tag => record,
            _ => Record::tombstone(self.tag, self.at),
        }
    }

    /// The tag a replica that knows this mark reports for a key whose stored tag is `stored`.
    pub fn mask_tag(&self, stored: Option<Tag>) -> Tag {
        stored.filter(|t| *t > self.tag).unwrap_or(self.tag)
    }
}

/// Masks `record` with `mark` when there is one.
pub fn masked(mark: Option<FlushMark>, record: Option<Record>) -> Option<Record> {
    match mark {
        Some(mark) => Some(mark.mask(record)),
        None => record,
    }
}

/// The two steps of a flush, sent to every member of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushStep {
    /// Report a counter at or above every version and promise the node stores, and stop
    /// admitting read-modify-writes until the mark arrives.
    Bound,
    /// Adopt this mark (durably) if it is higher than the node's, and admit read-modify-writes
    /// again.
    Mark(FlushMark),
}

/// The answer to a [`FlushStep`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushReply {
    /// Answer to [`FlushStep::Bound`]: the node's highest counter and its current mark.
    Bound {
        /// At or above the counter of every version and promise stored.
        counter: u64,
        /// The node's mark, if any.
        mark: Option<FlushMark>,
    },
    /// The mark is durable on the node.
    Marked,
    /// The node could not take part.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::WriterId;
    use bytes::Bytes;

    fn tag(counter: u64) -> Tag {
        Tag {
            counter,
            writer: WriterId(9),
        }
    }

    const MARK: FlushMark = FlushMark {
        tag: Tag {
            counter: 10,
            writer: WriterId(1),
        },
        at: 500,
    };

    #[test]
    fn records_below_the_mark_and_missing_keys_read_as_its_tombstone() {
        let old = Record::value(tag(9), 0, 0, Bytes::from_static(b"old"));
        assert_eq!(MARK.mask(Some(old)), Record::tombstone(MARK.tag, 500));
        assert_eq!(MARK.mask(None), Record::tombstone(MARK.tag, 500));
        let same_counter_lower_writer = Record::value(
            Tag {
                counter: 10,
                writer: WriterId(0),
            },
            0,
            0,
            Bytes::new(),
        );
        assert_eq!(MARK.mask(Some(same_counter_lower_writer)).tag, MARK.tag);
    }

    #[test]
    fn records_above_the_mark_are_untouched() {
        let new = Record::value(tag(11), 3, 0, Bytes::from_static(b"new"));
        assert_eq!(MARK.mask(Some(new.clone())), new);
        assert_eq!(MARK.mask_tag(Some(tag(11))), tag(11));
        assert_eq!(MARK.mask_tag(Some(tag(2))), MARK.tag);
        assert_eq!(MARK.mask_tag(None), MARK.tag);
    }

    #[test]
    fn without_a_mark_nothing_is_masked() {
        assert_eq!(masked(None, None), None);
        let r = Record::value(tag(1), 0, 0, Bytes::new());
        assert_eq!(masked(None, Some(r.clone())), Some(r));
    }
}
