//! The Store actor: a pool of threads (an Actix `SyncArbiter`) running blocking store calls, so
//! RocksDB never blocks the async threads that serve connections.

use super::{Applied, CachedRead, Guarded, Prepared, Store, StoreError, WriteKind};
use crate::store::merkle::{in_segments, BucketDigest, SegmentSet};
use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};
use bytes::Bytes;
use kai_proto::{BucketId, Record, Tag};
use std::sync::Arc;

/// Records read per page while filtering a bucket by segment.
const SCAN_PAGE: usize = 1024;

/// Longest [`StoreHandle::close`] waits for the store's other users to stop.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often [`StoreHandle::close`] checks.
const CLOSE_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// One worker of the pool; all share the same store.
pub struct StoreActor {
    store: Arc<dyn Store>,
}

impl Actor for StoreActor {
    type Context = SyncContext<Self>;
}

/// A blocking function of the store.
type StoreFn<R> = Box<dyn FnOnce(&dyn Store) -> R + Send>;

/// A blocking call to run on a store worker.
struct Call<R>(StoreFn<R>);

impl<R: Send + 'static> Message for Call<R> {
    type Result = R;
}

impl<R: Send + 'static> Handler<Call<R>> for StoreActor {
    type Result = actix::MessageResult<Call<R>>;

    fn handle(&mut self, call: Call<R>, _ctx: &mut SyncContext<Self>) -> Self::Result {
        actix::MessageResult((call.0)(self.store.as_ref()))
    }
}

/// Async access to the local store. Cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    pool: Addr<StoreActor>,
    store: Arc<dyn Store>,
    inline_applies: bool,
}

impl StoreHandle {
    /// Starts `threads` store workers over `store`. With `inline_applies`, [`StoreHandle::apply`]
    /// runs on the calling thread: only for stores whose writes never wait for the disk (RocksDB
    /// without `fsync`: a memtable insert and an unsynced log append). Must run inside an Actix
    /// system.
    pub fn start(store: Arc<dyn Store>, threads: usize, inline_applies: bool) -> Self {
        let shared = Arc::clone(&store);
        let pool = SyncArbiter::start(threads, move || StoreActor {
            store: Arc::clone(&shared),
        });
        StoreHandle {
            pool,
            store,
            inline_applies,
        }
    }

    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.pool
            .send(Call(Box::new(f)))
            .await
            .map_err(|_| StoreError::Unavailable)?
    }

    /// See [`Store::get`]. Answered on the calling thread when the record is in memory
    /// ([`Store::get_cached`]); only reads that need disk I/O go to the pool.
    pub async fn get(&self, bucket: BucketId, key: Bytes) -> Result<Option<Record>, StoreError> {
        match self.store.get_cached(bucket, &key)? {
            CachedRead::Done(record) => Ok(record),
            CachedRead::NeedsIo => self.call(move |s| s.get(bucket, &key)).await,
        }
    }

    /// See [`Store::apply`].
    pub async fn apply(&self, bucket: BucketId, key: Bytes, record: Record) -> Result<Applied, StoreError> {
        if self.inline_applies {
            return self.store.apply(bucket, &key, &record);
        }
        self.call(move |s| s.apply(bucket, &key, &record)).await
    }

    /// See [`Store::apply_guarded`]; inline like [`StoreHandle::apply`] when allowed.
    pub async fn apply_guarded(
        &self,
        bucket: BucketId,
        key: Bytes,
        record: Record,
        kind: WriteKind,
    ) -> Result<Guarded, StoreError> {
        if self.inline_applies {
            return self.store.apply_guarded(bucket, &key, &record, kind);
        }
        self.call(move |s| s.apply_guarded(bucket, &key, &record, kind)).await
    }

    /// See [`Store::prepare`]; inline when applies are (it writes like one).
    pub async fn prepare(&self, bucket: BucketId, key: Bytes, ballot: Tag) -> Result<Prepared, StoreError> {
        if self.inline_applies {
            return self.store.prepare(bucket, &key, ballot);
        }
        self.call(move |s| s.prepare(bucket, &key, ballot)).await
    }

    /// See [`Store::scan_bucket`].
    pub async fn scan_bucket(
        &self,
        bucket: BucketId,
        after: Option<Bytes>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Record)>, StoreError> {
        self.call(move |s| s.scan_bucket(bucket, after.as_deref(), limit)).await
    }

    /// Applies every record of `records` (each kept only if newer); returns how many changed the
    /// store. One call to the pool for the whole batch.
    pub async fn apply_many(&self, bucket: BucketId, records: Vec<(Bytes, Record)>) -> Result<u64, StoreError> {
        self.call(move |s| {
            let mut stored = 0;
            for (key, record) in &records {
                if let Applied::Stored { .. } = s.apply(bucket, key, record)? {
                    stored += 1;
                }
            }
            Ok(stored)
        })
        .await
    }

    /// Records of `bucket` whose keys fall in `segments`, in key order, after `after`, at most
    /// `limit`; and whether the bucket may hold more.
    pub async fn scan_segments(
        &self,
        bucket: BucketId,
        segments: SegmentSet,
        after: Option<Bytes>,
        limit: usize,
    ) -> Result<(Vec<(Bytes, Record)>, bool), StoreError> {
        self.call(move |s| {
            let mut out = Vec::new();
            let mut cursor = after;
            loop {
                let page = s.scan_bucket(bucket, cursor.as_deref(), SCAN_PAGE)?;
                let exhausted = page.len() < SCAN_PAGE;
                cursor = page.last().map(|(k, _)| k.clone());
                for (key, record) in page {
                    if in_segments(&key, segments) {
                        out.push((key, record));
                        if out.len() == limit {
                            return Ok((out, true));
                        }
                    }
                }
                if exhausted {
                    return Ok((out, false));
                }
            }
        })
        .await
    }

    /// Removes the tombstones `entries` names, if still stored with those tags.
    pub async fn purge_tombstones(&self, bucket: BucketId, entries: Vec<(Bytes, Tag)>) -> Result<u64, StoreError> {
        self.call(move |s| {
            let mut purged = 0;
            for (key, tag) in &entries {
                purged += u64::from(s.purge_tombstone(bucket, key, *tag)?);
            }
            Ok(purged)
        })
        .await
    }

    /// See [`Store::digest`] (no I/O).
    pub fn digest(&self, bucket: BucketId) -> BucketDigest {
        self.store.digest(bucket)
    }

    /// See [`Store::drop_bucket`].
    pub async fn drop_bucket(&self, bucket: BucketId) -> Result<u64, StoreError> {
        self.call(move |s| s.drop_bucket(bucket)).await
    }

    /// See [`Store::flush`].
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(|s| s.flush()).await
    }

    /// Flushes the store, then waits (up to 10 s) until this is its last user and
    /// drops it on this thread. Stop every other user first.
    pub async fn close(self) {
        if let Err(e) = self.flush().await {
            log::error!("flushing the store at shutdown failed: {e}");
        }
        let StoreHandle { pool, store, .. } = self;
        drop(pool);
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
        while Arc::strong_count(&store) > 1 {
            if tokio::time::Instant::now() >= deadline {
                log::error!("store still in use {CLOSE_TIMEOUT:?} after shutdown; closing it anyway later");
                return;
            }
            tokio::time::sleep(CLOSE_POLL).await;
        }
        drop(store);
    }

    /// See [`Store::highest_counters`].
    pub fn highest_counters(&self) -> super::Counters {
        self.store.highest_counters()
    }

    /// See [`Store::flush_mark`].
    pub fn flush_mark(&self) -> Result<Option<kai_proto::flush::FlushMark>, StoreError> {
        self.store.flush_mark()
    }

    /// See [`Store::save_flush_mark`] (a synced write: runs on a store worker).
    pub async fn save_flush_mark(&self, mark: kai_proto::flush::FlushMark) -> Result<(), StoreError> {
        self.call(move |store| store.save_flush_mark(mark)).await
    }

    /// See [`Store::value_count`] (no I/O).
    pub fn value_count(&self) -> u64 {
        self.store.value_count()
    }

    /// See [`Store::value_bytes`] (no I/O).
    pub fn value_bytes(&self) -> u64 {
        self.store.value_bytes()
    }

    /// See [`Store::tombstone_count`] (no I/O).
    pub fn tombstone_count(&self) -> u64 {
        self.store.tombstone_count()
    }

    /// See [`Store::backend`].
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// See [`Store::engine_figures`] (reads in-memory properties; no disk I/O).
    pub fn engine_figures(&self) -> super::EngineFigures {
        self.store.engine_figures()
    }
}
