//! In-memory store: a sorted map behind a lock. For unit tests and embedding; nothing persists.

use super::{
    guard, promise_check, stored_key, Applied, CachedRead, Counted, Counters, Guarded, HighestCounters, Prepared,
    RecordCounts, Store, StoreError, WriteKind,
};
use crate::store::merkle::{BucketDigest, Digests};
use bytes::Bytes;
use kai_proto::flush::FlushMark;
use kai_proto::{BucketId, Record, RecordBody, Tag};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, RwLock};

/// A [`Store`] in memory.
pub struct MemStore {
    records: RwLock<BTreeMap<Vec<u8>, Record>>,
    /// Promises by stored key; locked only while `records` is write-locked.
    promises: Mutex<HashMap<Vec<u8>, Tag>>,
    counts: RecordCounts,
    digests: Digests,
    highest: HighestCounters,
    flush_mark: Mutex<Option<FlushMark>>,
}

impl MemStore {
    /// An empty store for `buckets` buckets.
    pub fn new(buckets: u32) -> Self {
        MemStore {
            records: RwLock::default(),
            promises: Mutex::default(),
            counts: RecordCounts::default(),
            digests: Digests::new(buckets),
            highest: HighestCounters::default(),
            flush_mark: Mutex::new(None),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Record>> {
        self.records.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Record>> {
        self.records.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn promises(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Tag>> {
        self.promises.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn forget(&self, bucket: BucketId, key: &[u8], record: &Record) {
        self.counts.replaced(Some(Counted::of(key, record)), None);
        self.digests.toggle(bucket, key, record.tag);
    }
}

type Records<'a> = std::sync::RwLockWriteGuard<'a, BTreeMap<Vec<u8>, Record>>;

impl MemStore {
    /// [`Store::apply`] under the write lock `records`.
    fn store_locked(&self, mut records: Records<'_>, bucket: BucketId, key: &[u8], record: &Record) -> Applied {
        let k = stored_key(bucket, key);
        let current = records.get(&k);
        let current_tag = current.map(|r| r.tag);
        if let Some(current) = current_tag.filter(|c| *c >= record.tag) {
            return Applied::Kept { current };
        }
        self.counts
            .replaced(current.map(|r| Counted::of(key, r)), Some(Counted::of(key, record)));
        self.digests.replace(bucket, key, current_tag, record.tag);
        self.highest.stored(record.tag);
        records.insert(k, record.clone());
        Applied::Stored { previous: current_tag }
    }
}

impl Store for MemStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn get(&self, bucket: BucketId, key: &[u8]) -> Result<Option<Record>, StoreError> {
        Ok(self.read().get(&stored_key(bucket, key)).cloned())
    }

    fn get_cached(&self, bucket: BucketId, key: &[u8]) -> Result<CachedRead, StoreError> {
        self.get(bucket, key).map(CachedRead::Done)
    }

    fn apply_guarded(
        &self,
        bucket: BucketId,
        key: &[u8],
        record: &Record,
        kind: WriteKind,
    ) -> Result<Guarded, StoreError> {
        let records = self.write();
        let k = stored_key(bucket, key);
        let mut promises = self.promises();
        if let Some(decided) = guard(kind, record, promises.get(&k).copied(), records.get(&k).map(|r| r.tag)) {
            return Ok(decided);
        }
        if kind == WriteKind::Accept {
            promises.insert(k, record.tag);
        }
        drop(promises);
        Ok(Guarded::Applied(self.store_locked(records, bucket, key, record)))
    }

    fn prepare(&self, bucket: BucketId, key: &[u8], ballot: Tag) -> Result<Prepared, StoreError> {
        let records = self.write();
        let k = stored_key(bucket, key);
        let current = records.get(&k).cloned();
        let mut promises = self.promises();
        if let Err(higher) = promise_check(ballot, promises.get(&k).copied(), current.as_ref().map(|r| r.tag)) {
            return Ok(Prepared::Refused(higher));
        }
        promises.insert(k, ballot);
        self.highest.promised(ballot);
        Ok(Prepared::Promised(current))
    }

    fn apply(&self, bucket: BucketId, key: &[u8], record: &Record) -> Result<Applied, StoreError> {
        let records = self.write();
        Ok(self.store_locked(records, bucket, key, record))
    }

    fn scan_bucket(
        &self,
        bucket: BucketId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Record)>, StoreError> {
        let start = match after {
            Some(after) => Bound::Excluded(stored_key(bucket, after)),
            None => Bound::Included(bucket.prefix().to_vec()),
        };
        let prefix = bucket.prefix();
        Ok(self
            .read()
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .take(limit)
            .map(|(k, r)| (Bytes::copy_from_slice(&k[4..]), r.clone()))
            .collect())
    }

    fn drop_bucket(&self, bucket: BucketId) -> Result<u64, StoreError> {
        let mut records = self.write();
        let prefix = bucket.prefix();
        let keys: Vec<Vec<u8>> = records
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            if let Some(r) = records.remove(k) {
                self.forget(bucket, &k[4..], &r);
            }
        }
        Ok(keys.len() as u64)
    }

    fn purge_tombstone(&self, bucket: BucketId, key: &[u8], tag: Tag) -> Result<bool, StoreError> {
        let mut records = self.write();
        let k = stored_key(bucket, key);
        let matches = records
            .get(&k)
            .is_some_and(|r| r.tag == tag && matches!(r.body, RecordBody::Tombstone { .. }));
        if let Some(r) = matches.then(|| records.remove(&k)).flatten() {
            self.forget(bucket, key, &r);
        }
        Ok(matches)
    }

    fn digest(&self, bucket: BucketId) -> BucketDigest {
        self.digests.get(bucket)
    }

    fn value_count(&self) -> u64 {
        self.counts.count()
    }

    fn value_bytes(&self) -> u64 {
        self.counts.bytes()
    }

    fn tombstone_count(&self) -> u64 {
        self.counts.tombstones()
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn highest_counters(&self) -> Counters {
        self.highest.get()
    }

    fn flush_mark(&self) -> Result<Option<FlushMark>, StoreError> {
        Ok(*self.flush_mark.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn save_flush_mark(&self, mark: FlushMark) -> Result<(), StoreError> {
        let mut saved = self.flush_mark.lock().unwrap_or_else(|p| p.into_inner());
        *saved = (*saved).max(Some(mark));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conforms() {
        super::super::conformance::run_all(|| {
            Box::new(MemStore::new(super::super::conformance::BUCKETS)) as Box<dyn Store>
        });
    }
}
