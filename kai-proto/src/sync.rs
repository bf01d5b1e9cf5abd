//! Messages that move data between replicas: bucket handoff and anti-entropy.
//!
//! All of them are safe to repeat or reorder: records are applied with "higher tag wins", and a
//! tombstone purge names the exact tag it removes. Every request travels in a [`SyncCall`] with
//! the ring its sender decided it on, so that a replica can refuse data movement planned on a
//! ring it has moved past (e.g. by a node that was removed while away).

use crate::bucket::BucketId;
use crate::cluster::RingId;
use crate::record::Record;
use crate::tag::Tag;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A request about one bucket of the receiving replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The bucket's segment digests.
    Digest {
        /// The bucket.
        bucket: BucketId,
    },
    /// `(key, tag)` of the records in the given segments, in key order, starting after `after`.
    Keys {
        /// The bucket.
        bucket: BucketId,
        /// Bit set of segments.
        segments: u64,
        /// Resume after this key.
        after: Option<Bytes>,
        /// Most entries to return.
        limit: u32,
    },
    /// The records of these keys (absent ones are skipped).
    Fetch {
        /// The bucket.
        bucket: BucketId,
        /// Keys wanted.
        keys: Vec<Bytes>,
    },
    /// A page of the bucket's records in key order, starting after `after` (bucket handoff).
    Scan {
        /// The bucket.
        bucket: BucketId,
        /// Resume after this key.
        after: Option<Bytes>,
        /// Most records to return.
        limit: u32,
    },
    /// Apply these records (each kept only if newer).
    Apply {
        /// The bucket.
        bucket: BucketId,
        /// Records by key.
        records: Vec<(Bytes, Record)>,
    },
    /// Remove these tombstones if still stored with exactly these tags.
    PurgeTombstones {
        /// The bucket.
        bucket: BucketId,
        /// Keys and the tags of the tombstones to remove.
        entries: Vec<(Bytes, Tag)>,
    },
}

impl SyncRequest {
    /// The bucket the request is about.
    pub fn bucket(&self) -> BucketId {
        match self {
            SyncRequest::Digest { bucket }
            | SyncRequest::Keys { bucket, .. }
            | SyncRequest::Fetch { bucket, .. }
            | SyncRequest::Scan { bucket, .. }
            | SyncRequest::Apply { bucket, .. }
            | SyncRequest::PurgeTombstones { bucket, .. } => *bucket,
        }
    }
}

/// A [`SyncRequest`] and the newest ring its sender knew when it decided to make it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCall {
    /// The sender's newest ring.
    pub ring: RingId,
    /// The request.
    pub request: SyncRequest,
}

/// The answer to a [`SyncRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Answer to `Digest`: one value per segment.
    Digest(Vec<u64>),
    /// Answer to `Keys`; `more` if the listing stopped at `limit`.
    Keys {
        /// `(key, tag)` pairs.
        entries: Vec<(Bytes, Tag)>,
        /// True if there may be more.
        more: bool,
    },
    /// Answer to `Fetch` and `Scan`; `more` if a scan stopped at `limit`.
    Records {
        /// Records by key.
        records: Vec<(Bytes, Record)>,
        /// True if there may be more.
        more: bool,
    },
    /// Answer to `Apply` and `PurgeTombstones`: how many changed the store.
    Done(u64),
    /// The replica failed.
    Failed(String),
}
