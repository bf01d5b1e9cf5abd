//! What a node remembers about its cluster across restarts: its incarnation and its active rings
//! (`cluster.json` in the data directory, replaced atomically and fsynced: an incarnation is on
//! disk before the node gossips it). The newest ring it adopted is the Sync actor's progress
//! (`sync/progress.rs`), kept in one place.

use kai_proto::cluster::RingState;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The persisted part of a node's membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// Incarnation of the last run.
    pub incarnation: u64,
    /// Active rings, settled first.
    pub rings: Vec<RingState>,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// File system failure.
    #[error("cluster state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("cluster state file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Reads the state in `path`; a missing file is a fresh node.
pub fn load(path: &Path) -> Result<Persisted, PersistError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PersistError::Corrupt {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
        Err(source) => Err(PersistError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `state` to `path` durably (see [`crate::durable::write_atomic`]): a crash leaves the
/// old or the new state, never half of one.
pub fn save(path: &Path, state: &Persisted) -> Result<(), PersistError> {
    let io = |source| PersistError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(state).map_err(|source| PersistError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    crate::durable::write_atomic(path, &bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_proto::cluster::{RingId, RingMember};
    use kai_proto::NodeId;

    #[test]
    fn state_round_trips_and_missing_means_fresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.json");
        assert_eq!(load(&path).expect("fresh"), Persisted::default());
        let state = Persisted {
            incarnation: 3,
            rings: vec![RingState::new(
                RingId {
                    version: 2,
                    proposer: NodeId(1),
                },
                vec![RingMember {
                    id: NodeId(1),
                    name: "a".into(),
                    addr: "127.0.0.1:1".into(),
                }],
            )],
        };
        save(&path, &state).expect("save");
        assert_eq!(load(&path).expect("load"), state);
        let older = br#"{"incarnation": 4, "rings": [], "adopted": {"version": 2, "proposer": 1}}"#;
        std::fs::write(&path, older).expect("write");
        let loaded = load(&path).expect("a file of an older version, with the adopted ring, loads");
        assert_eq!(loaded.incarnation, 4);
        std::fs::write(&path, b"{not json").expect("write");
        assert!(matches!(load(&path), Err(PersistError::Corrupt { .. })));
    }
}
