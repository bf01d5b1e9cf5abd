//! Key → bucket hashing.
//!
//! Keys hash with xxh3-64 into a fixed, power-of-two number of buckets. The bucket is the unit of
//! placement on the ring and of data movement; it also prefixes every stored key (big-endian), so
//! a bucket is one contiguous range in the store.

use serde::{Deserialize, Serialize};
use std::fmt;
use xxhash_rust::xxh3::xxh3_64;

/// A bucket number in `0..buckets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BucketId(pub u32);

impl BucketId {
    /// The bucket of `key` among `buckets` buckets (a power of two).
    pub fn of(key: &[u8], buckets: u32) -> BucketId {
        debug_assert!(buckets.is_power_of_two());
        BucketId((xxh3_64(key) & u64::from(buckets - 1)) as u32)
    }

    /// The bucket's big-endian prefix as used by stored keys.
    pub fn prefix(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for BucketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_in_range_and_deterministic() {
        for i in 0..10_000u32 {
            let key = format!("key-{i}");
            let b = BucketId::of(key.as_bytes(), 1024);
            assert!(b.0 < 1024);
            assert_eq!(b, BucketId::of(key.as_bytes(), 1024));
        }
    }

    #[test]
    fn keys_spread_over_all_buckets() {
        let mut seen = vec![0u32; 64];
        for i in 0..64_000u32 {
            seen[BucketId::of(format!("k{i}").as_bytes(), 64).0 as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (700..1300).contains(&c)), "{seen:?}");
    }
}
