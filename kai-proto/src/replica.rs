//! Requests a coordinator sends to the replicas of a key, local or remote.
//!
//! These are the only operations the quorum protocol needs from a replica: read a key's version,
//! read its record, and apply a record (kept only if its tag is higher than the stored one).

use crate::bucket::BucketId;
use crate::cluster::RingId;
use crate::key::Key;
use crate::record::Record;
use crate::tag::Tag;
use serde::{Deserialize, Serialize};

/// What a coordinator asks one replica to do with one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaOp {
    /// Report the stored version (phase 1 of a write).
    ReadVersion,
    /// Return the stored record (a read).
    Read,
    /// Store this record unless a higher tag is present (phase 2 of a write, or read repair).
    Write(Record),
}

/// One replica operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRequest {
    /// The newest ring the coordinator knows; a replica that adopted a newer one refuses.
    pub ring: RingId,
    /// The key's bucket.
    pub bucket: BucketId,
    /// The key.
    pub key: Key,
    /// The operation.
    pub op: ReplicaOp,
}

/// A replica's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaReply {
    /// Answer to [`ReplicaOp::ReadVersion`]: the stored tag (values and tombstones alike).
    Version(Option<Tag>),
    /// Answer to [`ReplicaOp::Read`].
    Record(Option<Record>),
    /// Answer to [`ReplicaOp::Write`]: the tag now stored (the written one or a higher one).
    Written(Tag),
    /// The replica could not do it (store failure, or it cannot see a majority), with the reason.
    Failed(String),
    /// The request was made with a ring older than this one, which the replica has adopted:
    /// the coordinator must learn it and retry.
    StaleRing(RingId),
}
