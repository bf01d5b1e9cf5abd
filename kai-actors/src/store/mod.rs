//! Storage behind one trait.
//!
//! A replica keeps, per key, the record with the highest [`Tag`]: [`Store::apply`] is a
//! compare-and-store that never replaces a record by an older or equal one, so replaying,
//! reordering or duplicating writes cannot move a key backwards. Every store keeps per-bucket
//! digests of its records current ([`Store::digest`], a two-level Merkle tree: [`merkle`]) for
//! anti-entropy. Keys are stored under their
//! bucket's big-endian prefix so a bucket is one contiguous, ordered range ([`Store::scan_bucket`]).
//!
//! Per key, a store also keeps a Paxos *promise* (a ballot, which is a [`Tag`]): durable like the
//! records (a crash must not forget it), changed only under the key's lock together with its
//! record. [`Store::prepare`] raises it; [`Store::apply_guarded`] refuses records below it and,
//! for an accepted proposal, raises it to the proposal's ballot. Anti-entropy and handoff use
//! [`Store::apply`], which ignores promises (they copy versions that already exist).
//!
//! A store also keeps the node's `flush_all` mark (durably; see `crate::flush`) and the highest
//! counters of the tags it stores and the ballots it promised ([`Store::highest_counters`]),
//! which a flush needs to pick a mark above every version and proposal.
//!
//! Two backends implement the trait — [`RocksStore`] (persistent, the default) and
//! [`MemStore`] (tests and embedding) — and one conformance suite (`conformance.rs`) runs against
//! both. The [`StoreActor`] runs the blocking calls on a pool of threads.

mod actor;
#[cfg(test)]
mod conformance;
mod memory;
pub mod merkle;
mod rocks;

pub use actor::{StoreActor, StoreHandle};
pub use memory::MemStore;
pub use rocks::RocksStore;

use bytes::Bytes;
use kai_proto::flush::FlushMark;
use kai_proto::{BucketId, Record, RecordDecodeError, Tag};
use merkle::BucketDigest;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The engine reported an error.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored record could not be decoded.
    #[error("corrupt record for key {key:?}: {source}")]
    Corrupt {
        /// The stored key (bucket prefix included).
        key: Vec<u8>,
        /// Why it could not be decoded.
        source: RecordDecodeError,
    },
    /// The store's worker threads are gone (node shutting down).
    #[error("store is shutting down")]
    Unavailable,
}

/// Outcome of [`Store::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The record was stored; `previous` is the tag it replaced, if any.
    Stored {
        /// Tag of the replaced record.
        previous: Option<Tag>,
    },
    /// A record with an equal or higher tag was already present and was kept.
    Kept {
        /// Tag of the record kept.
        current: Tag,
    },
}

/// Outcome of [`Store::prepare`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The ballot is now the key's promise; the stored record.
    Promised(Option<Record>),
    /// The key promised, or stores, this tag, which is not below the ballot.
    Refused(Tag),
}

/// Outcome of [`Store::apply_guarded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    /// Not refused: stored or kept as by [`Store::apply`].
    Applied(Applied),
    /// Refused: the key promised (or, for a proposal, stores) this higher tag.
    Refused(Tag),
}

/// Whether [`Store::apply_guarded`] writes a plain version or accepts a Paxos proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// A set, delete or read write-back: refused below the promise, kept below the stored tag.
    Plain,
    /// A proposal whose tag is its ballot: refused below the promise or at or below the stored
    /// tag; once stored, the ballot is also the promise.
    Accept,
}

/// The decision of [`Store::apply_guarded`] for `record` given the key's `promise` and `current`
/// tag; `None` means store it.
pub(crate) fn guard(kind: WriteKind, record: &Record, promise: Option<Tag>, current: Option<Tag>) -> Option<Guarded> {
    let tag = record.tag;
    if let Some(promise) = promise.filter(|p| *p > tag) {
        return Some(Guarded::Refused(promise));
    }
    match (kind, current.filter(|c| *c >= tag)) {
        (_, None) => None,
        (WriteKind::Plain, Some(current)) => Some(Guarded::Applied(Applied::Kept { current })),
        (WriteKind::Accept, Some(current)) => Some(Guarded::Refused(current)),
    }
}

/// The decision of [`Store::prepare`] for `ballot` given the key's `promise` and `current` tag:
/// `Err(higher)` refuses.
pub(crate) fn promise_check(ballot: Tag, promise: Option<Tag>, current: Option<Tag>) -> Result<(), Tag> {
    match promise.into_iter().chain(current).filter(|t| *t >= ballot).max() {
        Some(higher) => Err(higher),
        None => Ok(()),
    }
}

/// Result of [`Store::get_cached`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CachedRead {
    /// The answer, found in memory.
    Done(Option<Record>),
    /// Answering needs disk I/O: use [`Store::get`] on a blocking thread.
    NeedsIo,
}

/// A versioned record store. Implementations are safe to call from many threads at once.
pub trait Store: Send + Sync + 'static {
    /// Short backend name for stats (`rocksdb`, `memory`).
    fn backend(&self) -> &'static str;

    /// The record stored under `key`, expired or not, tombstones included.
    fn get(&self, bucket: BucketId, key: &[u8]) -> Result<Option<Record>, StoreError>;

    /// Like [`Store::get`], but only from memory (memtable, block cache): never blocks on disk
    /// I/O, so it may run on an async thread.
    fn get_cached(&self, bucket: BucketId, key: &[u8]) -> Result<CachedRead, StoreError>;

    /// Stores `record` unless a record with an equal or higher tag is present.
    fn apply(&self, bucket: BucketId, key: &[u8], record: &Record) -> Result<Applied, StoreError>;

    /// Like [`Store::apply`], but guarded by the key's promise (see [`WriteKind`]).
    fn apply_guarded(
        &self,
        bucket: BucketId,
        key: &[u8],
        record: &Record,
        kind: WriteKind,
    ) -> Result<Guarded, StoreError>;

    /// Paxos phase 1: makes `ballot` the key's promise if it exceeds the promise and the stored
    /// tag, durably, and returns the stored record.
    fn prepare(&self, bucket: BucketId, key: &[u8], ballot: Tag) -> Result<Prepared, StoreError>;

    /// Up to `limit` records of `bucket` in key order, starting after `after` (exclusive).
    fn scan_bucket(
        &self,
        bucket: BucketId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Record)>, StoreError>;

    /// Removes every record of `bucket`; returns how many were removed.
    fn drop_bucket(&self, bucket: BucketId) -> Result<u64, StoreError>;

    /// Removes `key`'s record if it is a tombstone with tag `tag` (garbage collection of a
    /// tombstone every replica holds); returns whether it did.
    fn purge_tombstone(&self, bucket: BucketId, key: &[u8], tag: Tag) -> Result<bool, StoreError>;

    /// The bucket's segment digests (see [`merkle`]), always current.
    fn digest(&self, bucket: BucketId) -> BucketDigest;

    /// Number of stored values (tombstones excluded; expired values until they are purged).
    fn value_count(&self) -> u64;

    /// Bytes of the values counted by [`Store::value_count`]: each value's key plus its encoded
    /// record.
    fn value_bytes(&self) -> u64;

    /// Number of stored tombstones: deleted keys whose garbage collection has not yet removed
    /// them ([`Store::purge_tombstone`], [`Store::drop_bucket`]).
    fn tombstone_count(&self) -> u64;

    /// Makes every applied record durable (flushes memtables).
    fn flush(&self) -> Result<(), StoreError>;

    /// The highest counters of the tags stored and of the ballots promised, now or since the
    /// store was opened.
    fn highest_counters(&self) -> Counters;

    /// The flush mark saved by [`Store::save_flush_mark`], if any.
    fn flush_mark(&self) -> Result<Option<FlushMark>, StoreError>;

    /// Saves `mark` durably — synced whatever the store's fsync setting — unless a higher
    /// one is saved.
    fn save_flush_mark(&self, mark: FlushMark) -> Result<(), StoreError>;

    /// The storage engine's own figures, for metrics (none for engines that keep none).
    fn engine_figures(&self) -> EngineFigures {
        EngineFigures::default()
    }
}

/// What a storage engine reports about itself; `None` where it cannot tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineFigures {
    /// Bytes in memtables (not yet flushed to files).
    pub memtable_bytes: Option<u64>,
    /// Bytes of the engine's sorted files on disk.
    pub sst_bytes: Option<u64>,
    /// Estimated bytes compaction still has to rewrite.
    pub compaction_pending_bytes: Option<u64>,
    /// Compactions running now.
    pub compactions_running: Option<u64>,
    /// Bytes held by the block cache.
    pub block_cache_bytes: Option<u64>,
    /// Block-cache lookups that found their block, since start.
    pub block_cache_hits: Option<u64>,
    /// Block-cache lookups that had to read the disk, since start.
    pub block_cache_misses: Option<u64>,
}

/// What [`Store::highest_counters`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// The highest counter of a stored record's tag.
    pub stored: u64,
    /// The highest counter of a promised ballot.
    pub promised: u64,
}

impl Counters {
    /// The higher of the two.
    pub fn max(self) -> u64 {
        self.stored.max(self.promised)
    }
}

/// Tracks [`Store::highest_counters`].
#[derive(Debug, Default)]
pub(crate) struct HighestCounters {
    stored: AtomicU64,
    promised: AtomicU64,
}

impl HighestCounters {
    /// A record tagged `tag` is stored.
    pub(crate) fn stored(&self, tag: Tag) {
        self.stored.fetch_max(tag.counter, Ordering::Relaxed);
    }

    /// `ballot` is promised.
    pub(crate) fn promised(&self, ballot: Tag) {
        self.promised.fetch_max(ballot.counter, Ordering::Relaxed);
    }

    /// The highest counters seen.
    pub(crate) fn get(&self) -> Counters {
        Counters {
            stored: self.stored.load(Ordering::Relaxed),
            promised: self.promised.load(Ordering::Relaxed),
        }
    }
}

/// The stored form of a key: bucket prefix, then the key bytes.
pub(crate) fn stored_key(bucket: BucketId, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&bucket.prefix());
    k.extend_from_slice(key);
    k
}

/// Splits a stored key into its bucket and the user key.
pub(crate) fn split_stored_key(stored: &[u8]) -> Option<(BucketId, &[u8])> {
    let prefix: [u8; 4] = stored.get(..4)?.try_into().ok()?;
    Some((BucketId(u32::from_be_bytes(prefix)), &stored[4..]))
}

/// The size a stored value counts for in [`Store::value_bytes`]: its key and encoded record.
pub(crate) fn item_size(key: &[u8], encoded_len: usize) -> i64 {
    (key.len() + encoded_len) as i64
}

/// What one stored record adds to the [`RecordCounts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    /// A value (marked or not) of this [`item_size`].
    Value(i64),
    /// A tombstone.
    Tombstone,
}

impl Counted {
    /// How `record`, stored under the user key `key`, counts.
    pub(crate) fn of(key: &[u8], record: &Record) -> Counted {
        match record.body {
            kai_proto::RecordBody::Value { .. } => Counted::Value(item_size(key, record.encoded_len())),
            kai_proto::RecordBody::Tombstone { .. } => Counted::Tombstone,
        }
    }

    fn value_size(self) -> Option<i64> {
        match self {
            Counted::Value(size) => Some(size),
            Counted::Tombstone => None,
        }
    }
}

/// The count and bytes of the stored values and the count of the stored tombstones, kept in
/// step with every change of a record (and counted once on open), so reading them costs no scan.
#[derive(Debug, Default)]
pub(crate) struct RecordCounts {
    count: AtomicI64,
    bytes: AtomicI64,
    tombstones: AtomicI64,
}

impl RecordCounts {
    /// A key's record changed from `old` to `new` (`None`: no record).
    pub(crate) fn replaced(&self, old: Option<Counted>, new: Option<Counted>) {
        let (old_value, new_value) = (old.and_then(Counted::value_size), new.and_then(Counted::value_size));
        let count = i64::from(new_value.is_some()) - i64::from(old_value.is_some());
        self.count.fetch_add(count, Ordering::Relaxed);
        self.bytes
            .fetch_add(new_value.unwrap_or(0) - old_value.unwrap_or(0), Ordering::Relaxed);
        let tombstones = i64::from(new == Some(Counted::Tombstone)) - i64::from(old == Some(Counted::Tombstone));
        self.tombstones.fetch_add(tombstones, Ordering::Relaxed);
    }

    /// Number of values.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed).max(0) as u64
    }

    /// Their bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// Number of tombstones.
    pub(crate) fn tombstones(&self) -> u64 {
        self.tombstones.load(Ordering::Relaxed).max(0) as u64
    }
}
