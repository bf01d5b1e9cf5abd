//! Answering other replicas' sync requests from the local store.

use crate::store::StoreHandle;
use crate::sync::merkle::SEGMENTS;
use bytes::Bytes;
use kai_proto::sync::{SyncRequest, SyncResponse};

/// Largest page a peer may ask for.
const MAX_PAGE: u32 = 4096;

/// The answer to `request`.
pub async fn serve_sync(store: &StoreHandle, request: SyncRequest) -> SyncResponse {
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
