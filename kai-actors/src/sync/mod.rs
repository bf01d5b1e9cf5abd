//! Keeping replicas in sync by comparing the store's per-bucket digests
//! ([`crate::store::merkle`]): the rate limit of background work ([`rate`]), answers to other
//! replicas ([`serve`]) behind the rules of [`gate`], this node's
//! persisted transition [`progress`], the decisions taken from it ([`plan`]) by the
//! [`transition`] state machine, and the Sync actor that performs them and runs anti-entropy
//! between replicas.

mod actor;
pub mod gate;
mod mover;
pub mod plan;
pub mod progress;
pub mod rate;
pub mod serve;
pub mod transition;

pub use actor::{BarrierReached, CaughtUp, DataConflict, ReportTo, SyncActor, SyncConfig};
