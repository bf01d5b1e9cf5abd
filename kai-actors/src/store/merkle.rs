//! Per-bucket digests of a replica's contents, kept current on every change: a two-level Merkle
//! tree (bucket → [`SEGMENTS`] segments → records).
//!
//! Invariant: a segment's digest is the XOR of `xxh3(key ‖ tag)` over the records (values and
//! tombstones) whose key falls in it, so it is independent of order and updated in O(1) when a
//! record is added, replaced or removed. Two replicas hold the same records in a segment iff their
//! digests match (up to 64-bit hash collisions); comparing 64 digests per bucket finds the segments
//! whose keys must be exchanged. Tags are unique per write, so `(key, tag)` identifies a record's
//! content.

use kai_proto::{BucketId, Tag};
use std::sync::atomic::{AtomicU64, Ordering};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// Segments per bucket (one bit each in a [`SegmentSet`]).
pub const SEGMENTS: usize = 64;

/// A set of segments of one bucket.
pub type SegmentSet = u64;

/// The segments of one bucket.
pub type BucketDigest = [u64; SEGMENTS];

/// The segment of `key` (from hash bits the bucket does not use).
pub fn segment_of(key: &[u8]) -> usize {
    (xxh3_64(key) >> 58) as usize
}

/// The digest contribution of one record.
pub fn record_hash(key: &[u8], tag: Tag) -> u64 {
    let mut h = Xxh3::new();
    h.update(key);
    h.update(&tag.counter.to_be_bytes());
    h.update(&tag.writer.0.to_be_bytes());
    h.digest()
}

/// The segments where two digests of a bucket differ.
pub fn differing_segments(a: &BucketDigest, b: &BucketDigest) -> SegmentSet {
    a.iter()
        .zip(b.iter())
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .fold(0, |set, (i, _)| set | (1 << i))
}

/// True if `key` falls in one of `segments`.
pub fn in_segments(key: &[u8], segments: SegmentSet) -> bool {
    segments & (1 << segment_of(key)) != 0
}

/// Digests of every bucket of a store, updated concurrently without locks.
pub struct Digests {
    buckets: Vec<[AtomicU64; SEGMENTS]>,
}

impl Digests {
    /// All-zero digests (empty store) for `buckets` buckets.
    pub fn new(buckets: u32) -> Self {
        Digests {
            buckets: (0..buckets)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }

    fn segments_of(&self, bucket: BucketId) -> Option<&[AtomicU64; SEGMENTS]> {
        self.buckets.get(bucket.0 as usize)
    }

    /// Adds or removes (XOR is its own inverse) the record `(key, tag)`.
    pub fn toggle(&self, bucket: BucketId, key: &[u8], tag: Tag) {
        if let Some(segments) = self.segments_of(bucket) {
            segments[segment_of(key)].fetch_xor(record_hash(key, tag), Ordering::Relaxed);
        }
    }

    /// Records that `(key, old)` was replaced by `(key, new)`.
    pub fn replace(&self, bucket: BucketId, key: &[u8], old: Option<Tag>, new: Tag) {
        if let Some(old) = old {
            self.toggle(bucket, key, old);
        }
        self.toggle(bucket, key, new);
    }

    /// Empties a bucket's digest.
    pub fn clear(&self, bucket: BucketId) {
        if let Some(segments) = self.segments_of(bucket) {
            for s in segments {
                s.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The bucket's segment digests.
    pub fn get(&self, bucket: BucketId) -> BucketDigest {
        match self.segments_of(bucket) {
            Some(segments) => std::array::from_fn(|i| segments[i].load(Ordering::Relaxed)),
            None => [0; SEGMENTS],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_proto::WriterId;
    use proptest::prelude::*;

    fn tag(counter: u64) -> Tag {
        Tag {
            counter,
            writer: WriterId(1),
        }
    }

    #[test]
    fn digests_depend_on_content_not_order() {
        let (a, b) = (Digests::new(4), Digests::new(4));
        let bucket = BucketId(2);
        for (k, c) in [("x", 1), ("y", 2), ("z", 3)] {
            a.toggle(bucket, k.as_bytes(), tag(c));
        }
        for (k, c) in [("z", 3), ("x", 1), ("y", 2)] {
            b.toggle(bucket, k.as_bytes(), tag(c));
        }
        assert_eq!(a.get(bucket), b.get(bucket));
        b.replace(bucket, b"y", Some(tag(2)), tag(5));
        let diff = differing_segments(&a.get(bucket), &b.get(bucket));
        assert_eq!(diff, 1 << segment_of(b"y"));
        assert!(in_segments(b"y", diff));
        b.replace(bucket, b"y", Some(tag(5)), tag(2));
        assert_eq!(differing_segments(&a.get(bucket), &b.get(bucket)), 0);
        a.clear(bucket);
        assert_eq!(a.get(bucket), [0; SEGMENTS]);
        assert_eq!(a.get(BucketId(99)), [0; SEGMENTS], "unknown buckets read as empty");
    }

    proptest! {
        #[test]
        fn equal_sets_give_equal_digests(keys in proptest::collection::btree_map("[a-z]{1,8}", 0u64..100, 0..50)) {
            let (a, b) = (Digests::new(1), Digests::new(1));
            for (k, c) in &keys {
                a.toggle(BucketId(0), k.as_bytes(), tag(*c));
            }
            for (k, c) in keys.iter().rev() {
                b.toggle(BucketId(0), k.as_bytes(), tag(*c));
            }
            prop_assert_eq!(a.get(BucketId(0)), b.get(BucketId(0)));
        }
    }
}
