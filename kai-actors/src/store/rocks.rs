//! RocksDB store.
//!
//! Invariants beyond the trait's: the write-ahead log is always on (an applied record survives a
//! process crash); with `fsync` every write is synced before it is acknowledged (survives power
//! loss). `apply` is a read-compare-write under a per-key lock stripe, so two concurrent applies
//! of the same key cannot both win. Values that expired more than [`EXPIRED_PURGE_GRACE`] ago are
//! dropped by compaction; the grace leaves anti-entropy time to spread newer versions first, so
//! purging one replica's copy cannot let an older version on another replica reappear.

use super::{apply_decision, stored_key, value_count_delta, Applied, CachedRead, Store, StoreError};
use bytes::Bytes;
use kai_proto::{BucketId, Record};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, Cache, Direction, ErrorKind, IteratorMode, Options, ReadOptions, ReadTier, WriteBatch,
    WriteOptions, DB,
};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use xxhash_rust::xxh3::xxh3_64;

/// Seconds an expired value is kept before compaction may purge it.
pub const EXPIRED_PURGE_GRACE: u64 = 24 * 60 * 60;
/// Lock stripes serialising concurrent applies of the same key.
const APPLY_LOCK_STRIPES: usize = 256;
/// Block cache shared by all reads.
const BLOCK_CACHE_BYTES: usize = 256 * 1024 * 1024;
/// Bloom filter bits per key: makes reads of absent keys cheap.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// A [`Store`] on RocksDB.
pub struct RocksStore {
    db: DB,
    write_options: WriteOptions,
    /// Reads that may only use the memtables and the block cache.
    cached_read: ReadOptions,
    apply_locks: Vec<Mutex<()>>,
    values: Arc<AtomicI64>,
}

fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.into_string())
}

fn decode(key: &[u8], bytes: Bytes) -> Result<Record, StoreError> {
    Record::decode(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_vec(),
        source,
    })
}

fn is_value(encoded: &[u8]) -> bool {
    encoded.get(1) == Some(&0)
}

impl RocksStore {
    /// Opens (creating if needed) the store in `path`. `fsync` syncs the WAL on every write.
    pub fn open(path: &Path, fsync: bool) -> Result<Self, StoreError> {
        let values = Arc::new(AtomicI64::new(0));
        let mut options = Options::default();
        options.create_if_missing(true);
        options.increase_parallelism(2);
        options.set_max_background_jobs(2);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        table.set_cache_index_and_filter_blocks(true);
        options.set_block_based_table_factory(&table);
        let purged = Arc::clone(&values);
        options.set_compaction_filter("kai-expired-values", move |_level, _key, value| {
            let now = crate::clock::unix_now();
            match Record::decode_expiry(value) {
                Ok(expires_at) if expires_at != 0 && expires_at + EXPIRED_PURGE_GRACE <= now => {
                    purged.fetch_sub(1, Ordering::Relaxed);
                    Decision::Remove
                }
                _ => Decision::Keep,
            }
        });
        let db = DB::open(&options, path).map_err(engine)?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(fsync);
        let mut cached_read = ReadOptions::default();
        cached_read.set_read_tier(ReadTier::BlockCache);
        let store = RocksStore {
            db,
            write_options,
            cached_read,
            apply_locks: (0..APPLY_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            values,
        };
        store.values.store(store.count_values()?, Ordering::Relaxed);
        Ok(store)
    }

    fn count_values(&self) -> Result<i64, StoreError> {
        let mut count = 0;
        for item in self.db.iterator(IteratorMode::Start) {
            let (_, value) = item.map_err(engine)?;
            count += i64::from(is_value(&value));
        }
        Ok(count)
    }

    fn bucket_iterator(&self, bucket: BucketId, start: &[u8]) -> rocksdb::DBIterator<'_> {
        let mut read = ReadOptions::default();
        if let Some(next) = bucket.0.checked_add(1) {
            read.set_iterate_upper_bound(next.to_be_bytes().to_vec());
        }
        self.db
            .iterator_opt(IteratorMode::From(start, Direction::Forward), read)
    }
}

impl Store for RocksStore {
    fn backend(&self) -> &'static str {
        "rocksdb"
    }

    fn get(&self, bucket: BucketId, key: &[u8]) -> Result<Option<Record>, StoreError> {
        let k = stored_key(bucket, key);
        match self.db.get_pinned(&k).map_err(engine)? {
            Some(v) => decode(&k, Bytes::copy_from_slice(&v)).map(Some),
            None => Ok(None),
        }
    }

    fn get_cached(&self, bucket: BucketId, key: &[u8]) -> Result<CachedRead, StoreError> {
        let k = stored_key(bucket, key);
        match self.db.get_pinned_opt(&k, &self.cached_read) {
            Ok(Some(v)) => decode(&k, Bytes::copy_from_slice(&v)).map(|r| CachedRead::Done(Some(r))),
            Ok(None) => Ok(CachedRead::Done(None)),
            Err(e) if e.kind() == ErrorKind::Incomplete => Ok(CachedRead::NeedsIo),
            Err(e) => Err(engine(e)),
        }
    }

    fn apply(&self, bucket: BucketId, key: &[u8], record: &Record) -> Result<Applied, StoreError> {
        let k = stored_key(bucket, key);
        let stripe = xxh3_64(&k) as usize % APPLY_LOCK_STRIPES;
        let _guard = self.apply_locks[stripe].lock().unwrap_or_else(|p| p.into_inner());
        let current = self.db.get_pinned(&k).map_err(engine)?;
        let current_tag = match &current {
            Some(v) => Some(Record::decode_tag(v).map_err(|source| StoreError::Corrupt { key: k.clone(), source })?),
            None => None,
        };
        let decision = apply_decision(current_tag, record.tag);
        if let Applied::Stored { .. } = decision {
            let was_value = current.as_deref().is_some_and(is_value);
            drop(current);
            self.db
                .put_opt(&k, record.encode(), &self.write_options)
                .map_err(engine)?;
            self.values
                .fetch_add(value_count_delta(was_value, record), Ordering::Relaxed);
        }
        Ok(decision)
    }

    fn scan_bucket(
        &self,
        bucket: BucketId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Record)>, StoreError> {
        let start = match after {
            Some(after) => stored_key(bucket, after),
            None => bucket.prefix().to_vec(),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self.bucket_iterator(bucket, &start) {
            if out.len() == limit {
                break;
            }
            let (k, v) = item.map_err(engine)?;
            if after.is_some() && *k == *start {
                continue;
            }
            let record = decode(&k, Bytes::copy_from_slice(&v))?;
            out.push((Bytes::copy_from_slice(&k[4..]), record));
        }
        Ok(out)
    }

    fn drop_bucket(&self, bucket: BucketId) -> Result<u64, StoreError> {
        let (mut removed, mut values) = (0u64, 0i64);
        let prefix = bucket.prefix();
        let mut batch = WriteBatch::default();
        for item in self.bucket_iterator(bucket, &prefix) {
            let (k, v) = item.map_err(engine)?;
            removed += 1;
            values += i64::from(is_value(&v));
            batch.delete(&k);
        }
        self.db.write_opt(batch, &self.write_options).map_err(engine)?;
        self.values.fetch_sub(values, Ordering::Relaxed);
        Ok(removed)
    }

    fn value_count(&self) -> u64 {
        self.values.load(Ordering::Relaxed).max(0) as u64
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(engine)?;
        self.db.flush_wal(true).map_err(engine)
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!("flushing the store on close failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_proto::{RecordBody, Tag, WriterId};

    #[test]
    fn conforms() {
        super::super::conformance::run_all(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = RocksStore::open(dir.path(), false).expect("open");
            super::super::conformance::Fixture::with_guard(Box::new(store), dir)
        });
    }

    #[test]
    fn compaction_purges_values_expired_longer_than_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path(), false).expect("open");
        let tag = Tag {
            counter: 1,
            writer: WriterId(1),
        };
        let now = crate::clock::unix_now();
        let long_expired = now - EXPIRED_PURGE_GRACE - 10;
        let just_expired = now - 10;
        let put = |key: &[u8], expires_at| {
            let record = Record::value(tag, 0, expires_at, Bytes::from_static(b"v"));
            store.apply(BucketId(1), key, &record).expect("apply");
        };
        put(b"purge-me", long_expired);
        put(b"keep-recent", just_expired);
        put(b"keep-forever", 0);
        store.flush().expect("flush");
        store.db.compact_range::<&[u8], &[u8]>(None, None);
        assert_eq!(store.get(BucketId(1), b"purge-me").expect("get"), None);
        assert!(store.get(BucketId(1), b"keep-recent").expect("get").is_some());
        assert!(store.get(BucketId(1), b"keep-forever").expect("get").is_some());
        assert_eq!(store.value_count(), 2);
    }

    #[test]
    fn records_and_counts_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tag = Tag {
            counter: 1,
            writer: WriterId(1),
        };
        {
            let store = RocksStore::open(dir.path(), true).expect("open");
            store
                .apply(BucketId(3), b"a", &Record::value(tag, 1, 0, Bytes::from_static(b"x")))
                .expect("apply");
            store
                .apply(BucketId(3), b"b", &Record::tombstone(tag, 0))
                .expect("apply");
        }
        let store = RocksStore::open(dir.path(), false).expect("reopen");
        assert_eq!(store.value_count(), 1);
        let b = store.get(BucketId(3), b"b").expect("get").expect("tombstone kept");
        assert!(matches!(b.body, RecordBody::Tombstone { .. }));
    }
}
