//! Keeping replicas in sync: per-bucket digests ([`merkle`]), the rate limit of background work
//! ([`rate`]), answers to other replicas ([`serve`]), and the Sync actor that moves buckets when
//! ownership changes and runs anti-entropy between replicas.

mod actor;
pub mod merkle;
pub mod rate;
pub mod serve;

pub use actor::{BarrierReached, ReportTo, RingsChanged, Shutdown, SyncActor, SyncConfig};
