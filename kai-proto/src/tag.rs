//! Node identities, writer identities and version tags.
//!
//! A [`Tag`] is `(counter, writer)`, totally ordered by counter first and writer second. Every
//! stored record, tombstones included, carries one; a replica keeps whichever record has the
//! higher tag. Tags must be unique per write — two different values with one tag would make
//! replicas disagree forever — so the writer is not just the node: it is a [`WriterId`] fresh for
//! every run of a node, and within a run the counter never repeats (see `TagClock` in kai-actors).

use serde::{Deserialize, Serialize};
use std::fmt;
use xxhash_rust::xxh3::xxh3_64;

/// A node's identity: the xxh3-64 hash of its configured name, so a restarted node with the same
/// name is the same node (same place on the ring).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The id of the node named `name`.
    pub fn from_name(name: &str) -> Self {
        NodeId(xxh3_64(name.as_bytes()))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:016x})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The identity of one run of one node as a writer of versions: derived from the node id and a
/// random incarnation number chosen at start, so a restarted node never reuses a tag it may
/// have issued before crashing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WriterId(pub u64);

impl WriterId {
    /// The writer of node `node` in the run numbered `incarnation`.
    pub fn new(node: NodeId, incarnation: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&node.0.to_be_bytes());
        bytes[8..].copy_from_slice(&incarnation.to_be_bytes());
        WriterId(xxh3_64(&bytes))
    }
}

impl fmt::Debug for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriterId({:016x})", self.0)
    }
}

/// A record's version: higher wins. Ordered by `counter`, then `writer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    /// Logical clock: a new version's counter exceeds every counter its writer saw for the key.
    pub counter: u64,
    /// Who wrote it; breaks ties between concurrent writers.
    pub writer: WriterId,
}

impl Tag {
    /// The memcached `cas unique` for this version: 63 bits of the xxh3-64 hash of the whole tag (never 0,
    /// which clients read as "no cas"). Every replica derives the same number from the same
    /// version; two versions of a key — concurrent writers with one counter included — get the
    /// same number only by a 64-bit hash collision. Not ordered: clients only compare it.
    pub fn cas_unique(&self) -> u64 {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.counter.to_be_bytes());
        bytes[8..].copy_from_slice(&self.writer.0.to_be_bytes());
        // 63 bits: libmemcached formats a cas unique into 20 characters with a leading space,
        // so 20-digit numbers (≥ 10¹⁹) make its `cas` fail.
        (xxh3_64(&bytes) >> 1).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(counter: u64, writer: u64) -> Tag {
        Tag {
            counter,
            writer: WriterId(writer),
        }
    }

    #[test]
    fn tags_order_by_counter_then_writer() {
        assert!(tag(1, 9) < tag(2, 1) && tag(2, 1) < tag(2, 3));
    }

    #[test]
    fn writers_differ_between_runs_of_a_node() {
        let node = NodeId::from_name("kai1");
        assert_ne!(WriterId::new(node, 1), WriterId::new(node, 2));
        assert_eq!(WriterId::new(node, 1), WriterId::new(node, 1));
    }

    #[test]
    fn cas_unique_tells_every_version_apart_and_is_the_same_everywhere() {
        assert_eq!(tag(7, 1).cas_unique(), tag(7, 1).cas_unique());
        assert_ne!(tag(7, 1).cas_unique(), tag(7, 2).cas_unique(), "concurrent writers");
        assert_ne!(
            tag(1 << 50, 1).cas_unique(),
            tag(1 << 51, 1).cas_unique(),
            "high counter bits"
        );
        let mut seen = std::collections::HashSet::new();
        for counter in 0..2_000u64 {
            for writer in 0..50u64 {
                let unique = tag(counter, writer).cas_unique();
                assert!(unique != 0 && unique < 10_000_000_000_000_000_000, "{unique}");
                assert!(seen.insert(unique), "collision at ({counter}, {writer})");
            }
        }
    }
}
