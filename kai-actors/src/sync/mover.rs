//! Transfers between this node's store and other replicas, for the Sync actor: pulling a bucket
//! from enough owners, comparing digests,
//! repairing differing segments both ways, and purging tombstones on every owner together.
//! Every request carries the ring it was planned on ([`Mover::ring`]).

use super::rate::TokenBucket;
use super::serve::digest_from_wire;
use crate::clock::unix_now;
use crate::peer::{PeerDirectory, PeerError};
use crate::stats::{self, NodeStats};
use crate::store::merkle::{BucketDigest, SegmentSet};
use crate::store::StoreHandle;
use bytes::Bytes;
use kai_proto::cluster::RingId;
use kai_proto::peer::SyncService;
use kai_proto::sync::{SyncCall, SyncRequest, SyncResponse};
use kai_proto::{BucketId, NodeId, Record, RecordBody, Tag};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records per page of a pull or a key listing.
const PAGE: u32 = 1024;
/// Records per push or fetch batch of anti-entropy.
const BATCH: usize = 512;
/// Pause before retrying a pull that could not reach enough sources.
const PULL_RETRY: Duration = Duration::from_secs(1);
/// Long transfers log their progress this often.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress of one handoff: feeds the `kai_sync_*` stats and the progress log lines.
pub(super) struct PullProgress {
    total: usize,
    done: usize,
    pub(super) moved: u64,
    started: Instant,
    logged: Instant,
}

impl PullProgress {
    pub(super) fn new(total: usize, now: Instant) -> Self {
        PullProgress {
            total,
            done: 0,
            moved: 0,
            started: now,
            logged: now,
        }
    }

    pub(super) fn bucket_done(&mut self, moved: u64, stats: &NodeStats) {
        self.done += 1;
        self.moved += moved;
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let remaining = self.total - self.done;
        let eta = elapsed / self.done as f64 * remaining as f64;
        let sync = &stats.sync;
        sync.buckets_pending.store(remaining as u64, Ordering::Relaxed);
        sync.keys_per_sec
            .store((self.moved as f64 / elapsed) as u64, Ordering::Relaxed);
        sync.eta_secs.store(eta.ceil() as u64, Ordering::Relaxed);
        let per_bucket = self.moved as f64 / self.done as f64;
        sync.keys_remaining
            .store((per_bucket * remaining as f64) as u64, Ordering::Relaxed);
        stats::add(&sync.buckets_pulled, 1);
        if self.logged.elapsed() >= PROGRESS_LOG_EVERY {
            self.logged = Instant::now();
            log::info!(
                "handoff: {}/{} bucket(s), {} record(s), {:.0} records/s, about {eta:.0} s left",
                self.done,
                self.total,
                self.moved,
                self.moved as f64 / elapsed
            );
        }
    }
}

/// Everything a background transfer needs, cheap to clone into its future.
#[derive(Clone)]
pub(super) struct Mover {
    pub(super) me: NodeId,
    /// The ring the transfer was planned on; every request carries it.
    pub(super) ring: RingId,
    pub(super) store: StoreHandle,
    pub(super) peers: PeerDirectory,
    pub(super) limiter: Rc<RefCell<TokenBucket>>,
    pub(super) stats: Arc<NodeStats>,
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum MoveError {
    #[error("peer call failed: {0}")]
    Peer(#[from] PeerError),
    #[error("peer answered: {0}")]
    Remote(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Mover {
    pub(super) async fn call(&self, node: NodeId, request: SyncRequest) -> Result<SyncResponse, MoveError> {
        let call = SyncCall {
            ring: self.ring,
            request,
        };
        match self.peers.call::<SyncService>(node, 0, call).await? {
            SyncResponse::Failed(e) => Err(MoveError::Remote(e)),
            response => Ok(response),
        }
    }

    pub(super) async fn pace(&self, records: usize) {
        let wait = self.limiter.borrow_mut().take(records as u64, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Copies every record of `bucket` from `source` into the local store.
    pub(super) async fn pull_bucket(&self, bucket: BucketId, source: NodeId) -> Result<u64, MoveError> {
        let mut after = None;
        let mut moved = 0;
        loop {
            let request = SyncRequest::Scan {
                bucket,
                after,
                limit: PAGE,
            };
            let SyncResponse::Records { records, more } = self.call(source, request).await? else {
                return Err(MoveError::Remote("scan answered something else".to_owned()));
            };
            after = records.last().map(|(k, _)| k.clone());
            let count = records.len();
            self.pace(count).await;
            self.store.apply_many(bucket, records).await?;
            moved += count as u64;
            stats::add(&self.stats.sync.keys_pulled, count as u64);
            if !more || after.is_none() {
                return Ok(moved);
            }
        }
    }

    /// Pulls `bucket` from `needed` of `sources` (enough to hold every acknowledged write);
    /// retries until it has, and returns the records received. The Sync actor drops the future
    /// when the rings change.
    pub(super) async fn pull_from_enough(&self, bucket: BucketId, sources: &[NodeId], needed: usize) -> u64 {
        let mut moved = 0;
        loop {
            let mut done = 0;
            for source in sources {
                if done == needed {
                    break;
                }
                match self.pull_bucket(bucket, *source).await {
                    Ok(n) => {
                        moved += n;
                        done += 1;
                    }
                    Err(e) => log::debug!("pulling bucket {bucket} from {source}: {e}"),
                }
            }
            if done == needed {
                return moved;
            }
            log::warn!("bucket {bucket}: only {done} of {needed} sources answered; retrying");
            tokio::time::sleep(PULL_RETRY).await;
        }
    }

    pub(super) async fn digest_of(&self, node: NodeId, bucket: BucketId) -> Result<BucketDigest, MoveError> {
        match self.call(node, SyncRequest::Digest { bucket }).await? {
            SyncResponse::Digest(values) => {
                digest_from_wire(&values).ok_or_else(|| MoveError::Remote("malformed digest".to_owned()))
            }
            _ => Err(MoveError::Remote("digest answered something else".to_owned())),
        }
    }

    /// `(key, tag)` of `node`'s records of `bucket` in `segments`.
    pub(super) async fn keys_of(
        &self,
        node: NodeId,
        bucket: BucketId,
        segments: SegmentSet,
    ) -> Result<BTreeMap<Bytes, Tag>, MoveError> {
        let mut out = BTreeMap::new();
        let mut after = None;
        loop {
            let request = SyncRequest::Keys {
                bucket,
                segments,
                after: after.clone(),
                limit: PAGE,
            };
            let SyncResponse::Keys { entries, more } = self.call(node, request).await? else {
                return Err(MoveError::Remote("key listing answered something else".to_owned()));
            };
            after = entries.last().map(|(k, _)| k.clone());
            out.extend(entries);
            if !more || after.is_none() {
                return Ok(out);
            }
        }
    }

    /// Makes `bucket`'s `segments` equal on this node and `peer`: newer tags win, both ways.
    pub(super) async fn repair(&self, bucket: BucketId, peer: NodeId, segments: SegmentSet) -> Result<u64, MoveError> {
        let theirs = self.keys_of(peer, bucket, segments).await?;
        let (mine, _) = self.store.scan_segments(bucket, segments, None, usize::MAX).await?;
        let mine: BTreeMap<Bytes, Record> = mine.into_iter().collect();
        let wanted: Vec<Bytes> = theirs
            .iter()
            .filter(|(k, tag)| mine.get(*k).is_none_or(|r| r.tag < **tag))
            .map(|(k, _)| k.clone())
            .collect();
        let offered: Vec<(Bytes, Record)> = mine
            .iter()
            .filter(|(k, r)| theirs.get(*k).is_none_or(|tag| *tag < r.tag))
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        let mut moved = 0;
        for keys in wanted.chunks(BATCH) {
            self.pace(keys.len()).await;
            let request = SyncRequest::Fetch {
                bucket,
                keys: keys.to_vec(),
            };
            if let SyncResponse::Records { records, .. } = self.call(peer, request).await? {
                moved += records.len() as u64;
                self.store.apply_many(bucket, records).await?;
            }
        }
        for records in offered.chunks(BATCH) {
            self.pace(records.len()).await;
            let request = SyncRequest::Apply {
                bucket,
                records: records.to_vec(),
            };
            self.call(peer, request).await?;
            moved += records.len() as u64;
        }
        stats::add(&self.stats.sync.keys_repaired, moved);
        Ok(moved)
    }

    /// Purges, on every owner at once, the tombstones of `bucket` older than `grace`; only
    /// called while every owner holds the same records.
    pub(super) async fn purge_tombstones(
        &self,
        bucket: BucketId,
        others: &[NodeId],
        grace: Duration,
    ) -> Result<(), MoveError> {
        let horizon = unix_now().saturating_sub(grace.as_secs());
        let (records, _) = self
            .store
            .scan_segments(bucket, SegmentSet::MAX, None, usize::MAX)
            .await?;
        let old: Vec<(Bytes, Tag)> = records
            .into_iter()
            .filter(|(_, r)| matches!(r.body, RecordBody::Tombstone { deleted_at } if deleted_at < horizon))
            .map(|(k, r)| (k, r.tag))
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        for node in others {
            let request = SyncRequest::PurgeTombstones {
                bucket,
                entries: old.clone(),
            };
            self.call(*node, request).await?;
        }
        let purged = self.store.purge_tombstones(bucket, old).await?;
        stats::add(&self.stats.sync.tombstones_purged, purged);
        Ok(())
    }
}
