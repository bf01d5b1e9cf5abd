//! This node's own progress through ring transitions and the identity of its data, kept in
//! `data_dir/progress.json` (replaced atomically and fsynced, see [`crate::durable`]), so that a
//! restart neither wipes again what it already pulled nor forgets what it wiped and must pull back.
//!
//! Invariants:
//! - A bucket enters `unpulled` — on disk — before its local copy is wiped, and leaves it only
//!   after a complete pull of it from enough owners: whatever happens to the rings meanwhile
//!   (restart, settlement), a wiped bucket is pulled again. Leaving is saved in batches (see
//!   [`super::transition`]): a crash before the batch is saved costs a second pull of those
//!   buckets, never a missed one.
//! - `adopted` is the newest ring whose adoption wipe was made: adopting it again (after a
//!   restart) wipes nothing.
//! - `data_id` is created with the store and never changes; a store created anew (empty data
//!   dir) gets a new one. It is gossiped, so the cluster tells a node that comes back under an old
//!   name with other data.
//! - [`DataState`] says whether the store may serve as a replica of the buckets this node owns.

use kai_proto::cluster::RingId;
use kai_proto::BucketId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Whether the local store holds what the cluster expects from this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataState {
    /// The store was just created: whether the cluster expects data from this node is not known
    /// until the node has completed a gossip exchange. Serves nothing meanwhile.
    Fresh,
    /// The cluster expects data this store does not have (an empty, replaced or rolled-back
    /// data dir under a name the cluster knows): pull every owned bucket before serving.
    Refill,
    /// The store holds this node's share, as far as `unpulled` says.
    Ready,
}

/// What is persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Identity of the data dir.
    pub data_id: u64,
    /// Newest ring whose adoption wipe was made.
    pub adopted: RingId,
    /// Newest ring this node reported synced (for the log and for operators; a restarted node
    /// reports `synced` again only once its new run has checked it).
    pub synced: RingId,
    /// Buckets wiped (or to refill) and not yet completely pulled back.
    pub unpulled: BTreeSet<u32>,
    /// Whether the store can be trusted.
    pub data: DataState,
}

impl Progress {
    /// The progress of a store created just now.
    pub fn fresh(data_id: u64) -> Self {
        Progress {
            data_id,
            adopted: RingId::default(),
            synced: RingId::default(),
            unpulled: BTreeSet::new(),
            data: DataState::Fresh,
        }
    }

    /// True if `bucket` still has to be pulled.
    pub fn is_unpulled(&self, bucket: BucketId) -> bool {
        self.unpulled.contains(&bucket.0)
    }
}

/// Why the progress file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    /// File system failure.
    #[error("progress file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("progress file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Where the progress is kept (`None`: an in-memory store, nothing persists). It keeps no copy
/// of the progress: the transition state machine owns that, and asks for it to be saved.
#[derive(Debug)]
pub struct ProgressFile {
    path: Option<PathBuf>,
}

impl ProgressFile {
    /// Loads the progress at `path`. A missing file, or a store created just now
    /// (`store_is_new`), starts fresh with a new data-dir identity, saved at once.
    pub fn open(path: Option<PathBuf>, store_is_new: bool) -> Result<(Self, Progress), ProgressError> {
        let loaded = match (&path, store_is_new) {
            (Some(path), false) => load(path)?,
            _ => None,
        };
        let file = ProgressFile { path };
        let progress = match loaded {
            Some(progress) => progress,
            None => {
                let fresh = Progress::fresh(rand::random::<u64>().max(1));
                file.save(&fresh)?;
                fresh
            }
        };
        Ok((file, progress))
    }

    /// Saves `progress` atomically and durably.
    pub fn save(&self, progress: &Progress) -> Result<(), ProgressError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(progress).map_err(|source| ProgressError::Corrupt {
            path: path.clone(),
            source,
        })?;
        crate::durable::write_atomic(path, &bytes).map_err(|source| ProgressError::Io {
            path: path.clone(),
            source,
        })
    }
}

fn load(path: &Path) -> Result<Option<Progress>, ProgressError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ProgressError::Corrupt {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ProgressError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_proto::NodeId;

    #[test]
    fn progress_survives_a_restart_and_a_new_store_gets_a_new_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("progress.json");
        let (file, mut progress) = ProgressFile::open(Some(path.clone()), false).expect("fresh");
        assert_eq!(progress.data, DataState::Fresh);
        let id = progress.data_id;
        progress.adopted = RingId {
            version: 4,
            proposer: NodeId(2),
        };
        progress.unpulled.extend([3, 7]);
        progress.data = DataState::Ready;
        file.save(&progress).expect("save");
        let (_, reopened) = ProgressFile::open(Some(path.clone()), false).expect("reopen");
        assert_eq!(reopened, progress, "a restart keeps every step");
        assert_eq!(reopened.data_id, id);
        let (_, recreated) = ProgressFile::open(Some(path.clone()), true).expect("new store");
        assert_eq!(recreated.data, DataState::Fresh, "a new store is fresh");
        assert_ne!(recreated.data_id, id, "and has another identity");
        assert_eq!(ProgressFile::open(Some(path), false).expect("again").1, recreated);
    }

    #[test]
    fn a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("progress.json");
        std::fs::write(&path, b"{").expect("write");
        assert!(matches!(
            ProgressFile::open(Some(path), false),
            Err(ProgressError::Corrupt { .. })
        ));
    }
}
