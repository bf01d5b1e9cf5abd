//! Requests a coordinator sends to the replicas of a key, local or remote.
//!
//! These are the only operations the quorum and Paxos protocols need from a replica: read a
//! key's version, read its record, apply a record (kept only if its tag is higher than the stored
//! one, refused below the key's promise), promise a ballot, accept a proposal.

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
    /// Store this record unless a higher tag is present (phase 2 of a write, or read repair);
    /// refused if its tag is below the key's promise.
    Write(Record),
    /// Paxos phase 1: promise this ballot if it exceeds the key's promise and stored tag.
    Prepare(Tag),
    /// Paxos phase 2: store this proposal (tag = ballot) if its ballot is at least the key's
    /// promise and exceeds the stored tag.
    Accept(Record),
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
    /// Also the answer to an accepted [`ReplicaOp::Accept`].
    Written(Tag),
    /// Answer to [`ReplicaOp::Prepare`]: the ballot is promised; the stored record.
    Promised(Option<Record>),
    /// A write, prepare or accept was refused: the replica promised, or stores, this higher tag.
    Refused(Tag),
    /// The replica could not do it (store failure, or it cannot see a majority), with the reason.
    Failed(String),
    /// The request was made with a ring older than this one, which the replica has adopted:
    /// the coordinator must learn it and retry.
    StaleRing(RingId),
}
