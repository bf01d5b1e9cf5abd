//! The sync service: answering other replicas' sync requests from the local store, behind the
//! replica fence and the [`gate`](super::gate) (ring, ownership, and whether this node is current).

use super::gate::{SyncGate, SyncRefusal};
use crate::peer::{Serve, ServeError};
use crate::stats::{self, NodeStats};
use crate::store::merkle::SEGMENTS;
use crate::store::StoreHandle;
use bytes::Bytes;
use kai_proto::peer::SyncService;
use kai_proto::sync::{SyncCall, SyncRequest, SyncResponse};
use kai_proto::NodeId;
use std::sync::Arc;

/// Largest page a peer may ask for.
const MAX_PAGE: u32 = 4096;

/// Serves other replicas' sync requests from this node's store.
pub struct SyncServer {
    /// The local store.
    pub store: StoreHandle,
    /// What admits a request.
    pub gate: SyncGate,
    /// Counts refusals.
    pub stats: Arc<NodeStats>,
}

/// The answer to a call from node `from`: refused (as `Failed`, and counted) unless both the
/// fence and the gate admit it; the fence is held while the store works, so an adoption waits
/// for it like for a replica request.
impl Serve<SyncService> for SyncServer {
    async fn serve(&self, from: NodeId, call: SyncCall) -> Result<SyncResponse, ServeError> {
        let SyncServer { store, gate, stats } = self;
        let SyncCall { ring, request } = call;
        let admitted = match gate.fence.admit(ring).await {
            Ok(guard) => gate.view.load().check(from, ring, request.bucket()).map(|()| guard),
            Err(refusal) => Err(SyncRefusal::from_fence(refusal, ring)),
        };
        let _admitted = match admitted {
            Ok(guard) => guard,
            Err(refusal) => {
                stats::add(&stats.sync.refused, 1);
                log::debug!("refused a sync request from {from:?}: {refusal}");
                return Ok(SyncResponse::Failed(refusal.to_string()));
            }
        };
        Ok(serve(store, request).await)
    }
}

async fn serve(store: &StoreHandle, request: SyncRequest) -> SyncResponse {
    let result = match request {
        SyncRequest::Digest { bucket } => Ok(SyncResponse::Digest(store.digest(bucket).to_vec())),
        SyncRequest::Keys {
            bucket,
            segments,
            after,
            limit,
        } => store
            .scan_segments(bucket, segments, after, limit.min(MAX_PAGE) as usize)
            .await
            .map(|(records, more)| SyncResponse::Keys {
                entries: records.into_iter().map(|(k, r)| (k, r.tag)).collect(),
                more,
            }),
        SyncRequest::Fetch { bucket, keys } => fetch(store, bucket, keys).await,
        SyncRequest::Scan { bucket, after, limit } => {
            let limit = limit.min(MAX_PAGE) as usize;
            store
                .scan_bucket(bucket, after, limit)
                .await
                .map(|records| SyncResponse::Records {
                    more: records.len() == limit,
                    records,
                })
        }
        SyncRequest::Apply { bucket, records } => store.apply_many(bucket, records).await.map(SyncResponse::Done),
        SyncRequest::PurgeTombstones { bucket, entries } => {
            store.purge_tombstones(bucket, entries).await.map(SyncResponse::Done)
        }
    };
    result.unwrap_or_else(|e| SyncResponse::Failed(e.to_string()))
}

async fn fetch(
    store: &StoreHandle,
    bucket: kai_proto::BucketId,
    keys: Vec<Bytes>,
) -> Result<SyncResponse, crate::store::StoreError> {
    let mut records = Vec::with_capacity(keys.len());
    for key in keys.into_iter().take(MAX_PAGE as usize) {
        if let Some(record) = store.get(bucket, key.clone()).await? {
            records.push((key, record));
        }
    }
    Ok(SyncResponse::Records { records, more: false })
}

/// Digests travel as a list; a malformed one (wrong length) reads as all-different.
pub fn digest_from_wire(values: &[u64]) -> Option<[u64; SEGMENTS]> {
    values.try_into().ok()
}
