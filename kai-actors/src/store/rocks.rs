//! RocksDB store.
//!
//! Invariants beyond the trait's: the write-ahead log is always on (an applied record survives a
//! process crash); with `fsync` every write is synced before it is acknowledged (survives power
//! loss). Every change of a key — apply, drop, tombstone purge — happens under that key's lock
//! stripe, so concurrent changes cannot both win and the digests stay exact. Values that expired
//! more than [`EXPIRED_PURGE_GRACE`] ago are dropped by compaction; the grace leaves anti-entropy
//! time to spread newer versions first, so purging one replica's copy cannot let an older version
//! on another replica reappear. Paxos promises live in the `promises` column family under the
//! same stored key; a proposal's record and its promise are written in one batch.

use super::{
    guard, item_size, promise_check, split_stored_key, stored_key, Applied, CachedRead, Counted, Counters,
    EngineFigures, Guarded, HighestCounters, Prepared, RecordCounts, Store, StoreError, WriteKind,
};
use crate::store::merkle::{BucketDigest, Digests};
use bytes::Bytes;
use kai_proto::flush::FlushMark;
use kai_proto::WriterId;
use kai_proto::{BucketId, Record, RecordBody, Tag};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, Cache, Direction, ErrorKind, IteratorMode, Options, ReadOptions, ReadTier, WriteBatch,
    WriteOptions, DB,
};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use xxhash_rust::xxh3::xxh3_64;

/// Seconds an expired value is kept before compaction may purge it.
pub const EXPIRED_PURGE_GRACE: u64 = 24 * 60 * 60;
/// Lock stripes serialising concurrent changes of the same key.
const KEY_LOCK_STRIPES: usize = 256;
/// Block cache shared by all reads.
const BLOCK_CACHE_BYTES: usize = 256 * 1024 * 1024;
/// Memtable size. Every write appends a version, and reads search the memtable first: a
/// smaller one keeps that search short (measured: the skiplist search was the top CPU cost with
/// the 64 MiB default).
const WRITE_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// The column family of the Paxos promises: stored key → `[counter u64][writer u64]`.
const PROMISES_CF: &str = "promises";
/// Column family of the node's own facts (the flush mark), apart from any key.
const META_CF: &str = "meta";
/// Key of the flush mark in [`META_CF`].
const FLUSH_MARK_KEY: &[u8] = b"flush_mark";
/// Bloom filter bits per key: makes reads of absent keys cheap.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// A [`Store`] on RocksDB.
pub struct RocksStore {
    db: DB,
    /// The options the store was opened with: they hold RocksDB's statistics.
    options: Options,
    write_options: WriteOptions,
    /// Reads that may only use the memtables and the block cache.
    cached_read: ReadOptions,
    key_locks: Vec<Mutex<()>>,
    counts: Arc<RecordCounts>,
    digests: Arc<Digests>,
    highest: HighestCounters,
    /// The saved flush mark; locked while saving a new one.
    flush_mark: Mutex<Option<FlushMark>>,
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

fn decode_tag(key: &[u8], encoded: &[u8]) -> Result<Tag, StoreError> {
    Record::decode_tag(encoded).map_err(|source| StoreError::Corrupt {
        key: key.to_vec(),
        source,
    })
}

/// How the encoded record under the user key `key` (stored key `k`) counts.
fn encoded_counted(k: &[u8], key: &[u8], encoded: &[u8]) -> Result<Counted, StoreError> {
    match Record::decode_is_tombstone(encoded) {
        Ok(true) => Ok(Counted::Tombstone),
        Ok(false) => Ok(Counted::Value(item_size(key, encoded.len()))),
        Err(source) => Err(StoreError::Corrupt {
            key: k.to_vec(),
            source,
        }),
    }
}

/// The compaction filter: drops values expired for longer than the grace, keeping the counters
/// and digests in step.
fn purge_expired(counts: &RecordCounts, digests: &Digests, key: &[u8], value: &[u8]) -> Decision {
    let now = crate::clock::unix_now();
    match Record::decode_expiry(value) {
        // Only values expire: this is one.
        Ok(expires_at) if expires_at != 0 && expires_at + EXPIRED_PURGE_GRACE <= now => {
            let user_key = key.get(4..).unwrap_or_default();
            counts.replaced(Some(Counted::Value(item_size(user_key, value.len()))), None);
            if let (Some((bucket, user_key)), Ok(tag)) = (split_stored_key(key), Record::decode_tag(value)) {
                digests.toggle(bucket, user_key, tag);
            }
            Decision::Remove
        }
        _ => Decision::Keep,
    }
}

impl RocksStore {
    /// Opens (creating if needed) the store in `path` for `buckets` buckets. `fsync` syncs the
    /// WAL on every write. Scans the store once to count values and tombstones and build the
    /// digests.
    pub fn open(path: &Path, fsync: bool, buckets: u32) -> Result<Self, StoreError> {
        let counts = Arc::new(RecordCounts::default());
        let digests = Arc::new(Digests::new(buckets));
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.increase_parallelism(2);
        options.set_max_background_jobs(2);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        table.set_cache_index_and_filter_blocks(true);
        options.set_block_based_table_factory(&table);
        // Counters only (block-cache hits and misses): no timers on the request path.
        options.enable_statistics();
        options.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);
        options.set_write_buffer_size(WRITE_BUFFER_BYTES);
        let (purged, purged_digests) = (Arc::clone(&counts), Arc::clone(&digests));
        options.set_compaction_filter("kai-expired-values", move |_level, key, value| {
            purge_expired(&purged, &purged_digests, key, value)
        });
        // Each column family gets its own options: the records' carry the table settings and
        // the expiry filter, the promises' the defaults.
        let families = [
            rocksdb::ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, options.clone()),
            rocksdb::ColumnFamilyDescriptor::new(PROMISES_CF, Options::default()),
            rocksdb::ColumnFamilyDescriptor::new(META_CF, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&options, path, families).map_err(engine)?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(fsync);
        let mut cached_read = ReadOptions::default();
        cached_read.set_read_tier(ReadTier::BlockCache);
        let store = RocksStore {
            db,
            options,
            write_options,
            cached_read,
            key_locks: (0..KEY_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            counts,
            digests,
            highest: HighestCounters::default(),
            flush_mark: Mutex::new(None),
        };
        store.load_counts()?;
        let saved = store.read_flush_mark()?;
        *store.flush_mark.lock().unwrap_or_else(|p| p.into_inner()) = saved;
        Ok(store)
    }

    fn load_counts(&self) -> Result<(), StoreError> {
        for item in self.db.iterator(IteratorMode::Start) {
            let (key, value) = item.map_err(engine)?;
            if let Some((bucket, user_key)) = split_stored_key(&key) {
                let tag = decode_tag(&key, &value)?;
                self.counts
                    .replaced(None, Some(encoded_counted(&key, user_key, &value)?));
                self.highest.stored(tag);
                self.digests.toggle(bucket, user_key, tag);
            }
        }
        for item in self.db.iterator_cf(self.promises_cf()?, IteratorMode::Start) {
            let (key, value) = item.map_err(engine)?;
            let ballot =
                decode_promise(&value).ok_or_else(|| StoreError::Engine(format!("corrupt promise for key {key:?}")))?;
            self.highest.promised(ballot);
        }
        Ok(())
    }

    fn lock(&self, stored: &[u8]) -> MutexGuard<'_, ()> {
        let stripe = xxh3_64(stored) as usize % KEY_LOCK_STRIPES;
        self.key_locks[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The promise stored for the stored key `k`.
    fn promise(&self, k: &[u8]) -> Result<Option<Tag>, StoreError> {
        let cf = self.promises_cf()?;
        match self.db.get_pinned_cf(cf, k).map_err(engine)? {
            Some(v) => decode_promise(&v)
                .map(Some)
                .ok_or_else(|| StoreError::Engine(format!("corrupt promise for key {k:?}"))),
            None => Ok(None),
        }
    }

    fn meta_cf(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(META_CF)
            .ok_or_else(|| StoreError::Engine("meta column family missing".to_owned()))
    }

    fn read_flush_mark(&self) -> Result<Option<FlushMark>, StoreError> {
        match self.db.get_pinned_cf(self.meta_cf()?, FLUSH_MARK_KEY).map_err(engine)? {
            Some(v) => decode_flush_mark(&v)
                .map(Some)
                .ok_or_else(|| StoreError::Engine("corrupt flush mark".to_owned())),
            None => Ok(None),
        }
    }

    fn promises_cf(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(PROMISES_CF)
            .ok_or_else(|| StoreError::Engine("promises column family missing".to_owned()))
    }

    /// Stores `record` (and, if given, the promise) under the key's lock, like [`Store::apply`].
    fn store_locked(
        &self,
        bucket: BucketId,
        (key, k): (&[u8], &[u8]),
        record: &Record,
        promise: Option<Tag>,
    ) -> Result<Applied, StoreError> {
        let current = self.db.get_pinned(k).map_err(engine)?;
        let current_tag = match &current {
            Some(v) => Some(decode_tag(k, v)?),
            None => None,
        };
        if let Some(current) = current_tag.filter(|c| *c >= record.tag) {
            return Ok(Applied::Kept { current });
        }
        let old = match current.as_deref() {
            Some(v) => Some(encoded_counted(k, key, v)?),
            None => None,
        };
        drop(current);
        let mut batch = WriteBatch::default();
        batch.put(k, record.encode());
        if let Some(promise) = promise {
            batch.put_cf(self.promises_cf()?, k, encode_promise(promise));
        }
        self.db.write_opt(batch, &self.write_options).map_err(engine)?;
        self.highest.stored(record.tag);
        self.counts.replaced(old, Some(Counted::of(key, record)));
        self.digests.replace(bucket, key, current_tag, record.tag);
        Ok(Applied::Stored { previous: current_tag })
    }

    fn bucket_iterator(&self, bucket: BucketId, start: &[u8]) -> rocksdb::DBIterator<'_> {
        let mut read = ReadOptions::default();
        if let Some(next) = bucket.0.checked_add(1) {
            read.set_iterate_upper_bound(next.to_be_bytes().to_vec());
        }
        self.db
            .iterator_opt(IteratorMode::From(start, Direction::Forward), read)
    }

    /// Deletes the stored key `k` of `bucket` if `keep_if` says so of its current record; under
    /// the key's lock. Returns whether it deleted.
    fn delete_if(&self, bucket: BucketId, k: &[u8], keep_if: impl FnOnce(&Record) -> bool) -> Result<bool, StoreError> {
        let _guard = self.lock(k);
        let Some(current) = self.db.get_pinned(k).map_err(engine)? else {
            return Ok(false);
        };
        let record = decode(k, Bytes::copy_from_slice(&current))?;
        if keep_if(&record) {
            return Ok(false);
        }
        drop(current);
        self.db.delete_opt(k, &self.write_options).map_err(engine)?;
        self.digests.toggle(bucket, &k[4..], record.tag);
        self.counts.replaced(Some(Counted::of(&k[4..], &record)), None);
        Ok(true)
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
        let _guard = self.lock(&k);
        self.store_locked(bucket, (key, &k), record, None)
    }

    fn apply_guarded(
        &self,
        bucket: BucketId,
        key: &[u8],
        record: &Record,
        kind: WriteKind,
    ) -> Result<Guarded, StoreError> {
        let k = stored_key(bucket, key);
        let _guard = self.lock(&k);
        let current = match self.db.get_pinned(&k).map_err(engine)? {
            Some(v) => Some(decode_tag(&k, &v)?),
            None => None,
        };
        if let Some(decided) = guard(kind, record, self.promise(&k)?, current) {
            return Ok(decided);
        }
        let promise = (kind == WriteKind::Accept).then_some(record.tag);
        self.store_locked(bucket, (key, &k), record, promise)
            .map(Guarded::Applied)
    }

    fn prepare(&self, bucket: BucketId, key: &[u8], ballot: Tag) -> Result<Prepared, StoreError> {
        let k = stored_key(bucket, key);
        let _guard = self.lock(&k);
        let current = match self.db.get_pinned(&k).map_err(engine)? {
            Some(v) => Some(decode(&k, Bytes::copy_from_slice(&v))?),
            None => None,
        };
        if let Err(higher) = promise_check(ballot, self.promise(&k)?, current.as_ref().map(|r| r.tag)) {
            return Ok(Prepared::Refused(higher));
        }
        self.db
            .put_cf_opt(self.promises_cf()?, &k, encode_promise(ballot), &self.write_options)
            .map_err(engine)?;
        self.highest.promised(ballot);
        Ok(Prepared::Promised(current))
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
        let prefix = bucket.prefix();
        let keys: Vec<Box<[u8]>> = self
            .bucket_iterator(bucket, &prefix)
            .map(|item| item.map(|(k, _)| k).map_err(engine))
            .collect::<Result<_, _>>()?;
        let mut removed = 0;
        for k in keys {
            removed += u64::from(self.delete_if(bucket, &k, |_| false)?);
        }
        Ok(removed)
    }

    fn purge_tombstone(&self, bucket: BucketId, key: &[u8], tag: Tag) -> Result<bool, StoreError> {
        let k = stored_key(bucket, key);
        self.delete_if(bucket, &k, |r| {
            !(r.tag == tag && matches!(r.body, RecordBody::Tombstone { .. }))
        })
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
        self.db.flush().map_err(engine)?;
        self.db.flush_wal(true).map_err(engine)
    }

    fn highest_counters(&self) -> Counters {
        self.highest.get()
    }

    fn flush_mark(&self) -> Result<Option<FlushMark>, StoreError> {
        Ok(*self.flush_mark.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn save_flush_mark(&self, mark: FlushMark) -> Result<(), StoreError> {
        let mut saved = self.flush_mark.lock().unwrap_or_else(|p| p.into_inner());
        if saved.is_some_and(|s| s >= mark) {
            return Ok(());
        }
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        self.db
            .put_cf_opt(self.meta_cf()?, FLUSH_MARK_KEY, encode_flush_mark(mark), &synced)
            .map_err(engine)?;
        *saved = Some(mark);
        Ok(())
    }

    fn engine_figures(&self) -> EngineFigures {
        let property = |name: &str| match self.db.property_int_value(name) {
            Ok(value) => value,
            Err(e) => {
                log::debug!("RocksDB property {name}: {e}");
                None
            }
        };
        use rocksdb::statistics::Ticker;
        EngineFigures {
            memtable_bytes: property("rocksdb.cur-size-all-mem-tables"),
            sst_bytes: property("rocksdb.total-sst-files-size"),
            compaction_pending_bytes: property("rocksdb.estimate-pending-compaction-bytes"),
            compactions_running: property("rocksdb.num-running-compactions"),
            block_cache_bytes: property("rocksdb.block-cache-usage"),
            block_cache_hits: Some(self.options.get_ticker_count(Ticker::BlockCacheHit)),
            block_cache_misses: Some(self.options.get_ticker_count(Ticker::BlockCacheMiss)),
        }
    }
}

fn encode_flush_mark(mark: FlushMark) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&encode_promise(mark.tag));
    out[16..].copy_from_slice(&mark.at.to_be_bytes());
    out
}

fn decode_flush_mark(bytes: &[u8]) -> Option<FlushMark> {
    (bytes.len() == 24).then_some(())?;
    Some(FlushMark {
        tag: decode_promise(&bytes[..16])?,
        at: u64::from_be_bytes(bytes[16..].try_into().ok()?),
    })
}

fn decode_promise(bytes: &[u8]) -> Option<Tag> {
    (bytes.len() == 16).then_some(())?;
    Some(Tag {
        counter: u64::from_be_bytes(bytes[..8].try_into().ok()?),
        writer: WriterId(u64::from_be_bytes(bytes[8..].try_into().ok()?)),
    })
}

fn encode_promise(tag: Tag) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&tag.counter.to_be_bytes());
    out[8..].copy_from_slice(&tag.writer.0.to_be_bytes());
    out
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
    use kai_proto::ValueState;

    fn tag(counter: u64) -> Tag {
        Tag {
            counter,
            writer: WriterId(1),
        }
    }

    #[test]
    fn conforms() {
        super::super::conformance::run_all(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = RocksStore::open(dir.path(), false, super::super::conformance::BUCKETS).expect("open");
            super::super::conformance::Fixture::with_guard(Box::new(store), dir)
        });
    }

    #[test]
    fn compaction_purges_values_expired_longer_than_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path(), false, 4).expect("open");
        let now = crate::clock::unix_now();
        let put = |key: &[u8], expires_at| {
            let record = Record::value(tag(1), 0, expires_at, Bytes::from_static(b"v"));
            store.apply(BucketId(1), key, &record).expect("apply");
        };
        put(b"keep-recent", now - 10);
        put(b"keep-forever", 0);
        let digest_without_purged = store.digest(BucketId(1));
        let bytes_without_purged = store.value_bytes();
        put(b"purge-me", now - EXPIRED_PURGE_GRACE - 10);
        store.flush().expect("flush");
        store.db.compact_range::<&[u8], &[u8]>(None, None);
        assert_eq!(store.get(BucketId(1), b"purge-me").expect("get"), None);
        assert!(store.get(BucketId(1), b"keep-recent").expect("get").is_some());
        assert!(store.get(BucketId(1), b"keep-forever").expect("get").is_some());
        assert_eq!(store.value_count(), 2);
        assert_eq!(store.value_bytes(), bytes_without_purged);
        assert_eq!(store.digest(BucketId(1)), digest_without_purged);
    }

    #[test]
    fn the_flush_mark_and_the_highest_counter_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mark = FlushMark { tag: tag(77), at: 1234 };
        {
            let store = RocksStore::open(dir.path(), false, 4).expect("open");
            store
                .apply(BucketId(2), b"k", &Record::tombstone(tag(55), 0))
                .expect("apply");
            store.save_flush_mark(mark).expect("save");
            store.prepare(BucketId(3), b"p", tag(60)).expect("prepare");
        }
        let store = RocksStore::open(dir.path(), false, 4).expect("reopen");
        assert_eq!(store.flush_mark().expect("mark"), Some(mark));
        assert_eq!(
            store.highest_counters(),
            Counters {
                stored: 55,
                promised: 60
            }
        );
    }

    #[test]
    fn records_counts_and_digests_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (digest, bytes) = {
            let store = RocksStore::open(dir.path(), true, 4).expect("open");
            store
                .apply(
                    BucketId(3),
                    b"a",
                    &Record::value(tag(1), 1, 0, Bytes::from_static(b"x")),
                )
                .expect("apply");
            store
                .apply(BucketId(3), b"b", &Record::tombstone(tag(1), 0))
                .expect("apply");
            let marked = Record::value(tag(1), 1, 0, Bytes::from_static(b"y")).with_state(ValueState {
                stale: true,
                ..ValueState::default()
            });
            store.apply(BucketId(3), b"c", &marked).expect("apply");
            (store.digest(BucketId(3)), store.value_bytes())
        };
        let store = RocksStore::open(dir.path(), false, 4).expect("reopen");
        assert_eq!(store.value_count(), 2, "a value and a marked value");
        assert_eq!(store.tombstone_count(), 1);
        assert!(bytes > 0);
        assert_eq!(store.value_bytes(), bytes);
        assert_eq!(store.digest(BucketId(3)), digest);
        let b = store.get(BucketId(3), b"b").expect("get").expect("tombstone kept");
        assert!(matches!(b.body, RecordBody::Tombstone { .. }));
    }

    #[test]
    fn promises_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RocksStore::open(dir.path(), true, 4).expect("open");
            assert_eq!(
                store.prepare(BucketId(2), b"k", tag(9)).expect("prepare"),
                Prepared::Promised(None)
            );
        }
        let store = RocksStore::open(dir.path(), false, 4).expect("reopen");
        assert_eq!(
            store.prepare(BucketId(2), b"k", tag(8)).expect("prepare"),
            Prepared::Refused(tag(9))
        );
        let stale = Record::value(tag(8), 0, 0, Bytes::from_static(b"x"));
        assert_eq!(
            store
                .apply_guarded(BucketId(2), b"k", &stale, WriteKind::Plain)
                .expect("write"),
            Guarded::Refused(tag(9))
        );
    }
}
