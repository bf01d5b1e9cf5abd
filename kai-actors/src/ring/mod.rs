//! Consistent-hash ring: members → buckets → preference lists.
//!
//! Invariants:
//! - Deterministic: the same member set, `buckets`, `virtual_nodes` and `n` give the same ring on
//!   every node, whatever order the members are listed in — no coordination needed.
//! - Each node places `virtual_nodes` points on a 64-bit circle at `xxh3(node id, i)`; bucket `b`
//!   sits at `b · 2⁶⁴ / buckets`; its preference list is the first `min(n, members)` *distinct*
//!   nodes met clockwise from that position.
//! - Adding or removing one of `m` nodes changes about `1/m` of the (bucket, replica) slots, the
//!   property consistent hashing exists for (see the tests).
//!
//! The [`RingActor`] owns the current ring and publishes it as an immutable snapshot that request
//! paths read without a message round trip.

mod actor;

pub use actor::{PlacementChanged, RingActor, RingReader, RingSnapshot, SetRings};

use kai_proto::{BucketId, NodeId};
use xxhash_rust::xxh3::xxh3_64;

/// The placement of every bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    buckets: u32,
    replicas: usize,
    nodes: Vec<NodeId>,
    /// `buckets × replicas` node ids, bucket-major.
    preference: Vec<NodeId>,
}

fn point(node: NodeId, index: u32) -> u64 {
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&node.0.to_be_bytes());
    bytes[8..].copy_from_slice(&index.to_be_bytes());
    xxh3_64(&bytes)
}

impl Ring {
    /// Builds the ring of `members` with `buckets` buckets (a power of two), `virtual_nodes`
    /// points per node and `n` replicas per bucket.
    pub fn build(members: &[NodeId], buckets: u32, virtual_nodes: u32, n: usize) -> Ring {
        let mut nodes = members.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        let replicas = n.min(nodes.len());
        let mut points: Vec<(u64, NodeId)> = nodes
            .iter()
            .flat_map(|&node| (0..virtual_nodes).map(move |i| (point(node, i), node)))
            .collect();
        points.sort_unstable();
        let spacing = (1u128 << 64) / u128::from(buckets.max(1));
        let mut preference = Vec::with_capacity(buckets as usize * replicas);
        for b in 0..buckets {
            let position = (u128::from(b) * spacing) as u64;
            let start = points.partition_point(|(p, _)| *p < position);
            let first = preference.len();
            for k in 0..points.len() {
                if preference.len() - first == replicas {
                    break;
                }
                let node = points[(start + k) % points.len()].1;
                if !preference[first..].contains(&node) {
                    preference.push(node);
                }
            }
        }
        Ring {
            buckets,
            replicas,
            nodes,
            preference,
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// Members of the ring, sorted by id.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Replicas per bucket: `min(n, members)`.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The bucket of `key`.
    pub fn bucket_of(&self, key: &[u8]) -> BucketId {
        BucketId::of(key, self.buckets)
    }

    /// The nodes holding `bucket`, coordinator preference first.
    pub fn preference_list(&self, bucket: BucketId) -> &[NodeId] {
        let start = bucket.0 as usize * self.replicas;
        self.preference.get(start..start + self.replicas).unwrap_or(&[])
    }

    /// Buckets for which `node` is one of the replicas.
    pub fn buckets_of(&self, node: NodeId) -> impl Iterator<Item = BucketId> + '_ {
        (0..self.buckets)
            .map(BucketId)
            .filter(move |b| self.preference_list(*b).contains(&node))
    }
}

#[cfg(test)]
mod tests;
