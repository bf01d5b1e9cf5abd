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

/// Bits of the cas unique taken by the writer id; the counter fills the rest.
const CAS_WRITER_BITS: u32 = 16;

impl Tag {
    /// The memcached `cas unique` for this version: the counter in the high bits, the low bits of
    /// the writer id below it. Successive versions of a key get increasing numbers; concurrent
    /// writers collide only if their ids share the low 16 bits.
    pub fn cas_unique(&self) -> u64 {
        (self.counter << CAS_WRITER_BITS) | (self.writer.0 & ((1 << CAS_WRITER_BITS) - 1))
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
    fn cas_unique_grows_with_the_counter() {
        assert!(tag(8, 5).cas_unique() > tag(7, 5).cas_unique());
        assert_ne!(tag(7, 1).cas_unique(), tag(7, 2).cas_unique());
    }
}
