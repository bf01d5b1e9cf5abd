//! Keeping replicas in sync: per-bucket digests ([`merkle`]), the rate limit of background work
//! ([`rate`]), answers to other replicas ([`serve`]) behind the rules of [`gate`], this node's
//! persisted transition [`progress`] and the decisions taken from it ([`plan`]), and the Sync
//! actor that moves buckets when ownership changes and runs anti-entropy between replicas.

mod actor;
pub mod gate;
pub mod merkle;
mod mover;
pub mod plan;
pub mod progress;
pub mod rate;
pub mod serve;

pub use actor::{BarrierReached, CaughtUp, DataConflict, ReportTo, RingsChanged, Shutdown, SyncActor, SyncConfig};
