//! Node identities and version tags.
//!
//! A [`Tag`] is `(counter, node)`, totally ordered by counter first and node id second, so two
//! writers that pick the same counter still produce distinct, ordered tags. Every stored record,
//! tombstones included, carries one; a replica keeps whichever record has the higher tag.

use serde::{Deserialize, Serialize};
use std::fmt;
use xxhash_rust::xxh3::xxh3_64;

/// A node's identity: the xxh3-64 hash of its configured name, so a restarted node with the same
/// name is the same node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// A record's version: higher wins. Ordered by `counter`, then `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    /// Logical clock of the key, incremented by every write.
    pub counter: u64,
    /// The node that coordinated the write; breaks ties between concurrent writers.
    pub node: NodeId,
}

/// Bits of the cas unique taken by the node id; the counter fills the rest.
const CAS_NODE_BITS: u32 = 16;

impl Tag {
    /// The tag a writer on `node` gives a new version when the highest tag it saw is `seen`.
    pub fn successor(seen: Option<Tag>, node: NodeId) -> Tag {
        Tag {
            counter: seen.map_or(1, |t| t.counter + 1),
            node,
        }
    }

    /// The memcached `cas unique` for this version: the counter in the high bits, the low bits of
    /// the node id below it. Successive versions of a key always get distinct, increasing numbers;
    /// concurrent writers collide only if their node ids share the low 16 bits.
    pub fn cas_unique(&self) -> u64 {
        (self.counter << CAS_NODE_BITS) | (self.node.0 & ((1 << CAS_NODE_BITS) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_order_by_counter_then_node() {
        let a = Tag {
            counter: 1,
            node: NodeId(9),
        };
        let b = Tag {
            counter: 2,
            node: NodeId(1),
        };
        let c = Tag {
            counter: 2,
            node: NodeId(3),
        };
        assert!(a < b && b < c);
    }

    #[test]
    fn successor_is_strictly_greater() {
        let n = NodeId::from_name("kai1");
        let first = Tag::successor(None, n);
        assert_eq!(first.counter, 1);
        let seen = Tag {
            counter: 41,
            node: NodeId(u64::MAX),
        };
        let next = Tag::successor(Some(seen), NodeId(0));
        assert!(next > seen);
    }

    #[test]
    fn cas_unique_grows_with_the_counter() {
        let n = NodeId::from_name("kai1");
        let t1 = Tag { counter: 7, node: n };
        let t2 = Tag { counter: 8, node: n };
        assert!(t2.cas_unique() > t1.cas_unique());
        assert_ne!(
            Tag {
                counter: 7,
                node: NodeId(1)
            }
            .cas_unique(),
            Tag {
                counter: 7,
                node: NodeId(2)
            }
            .cas_unique()
        );
    }
}
