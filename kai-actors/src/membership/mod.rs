//! Membership: who is in the cluster, who is alive, and how the ring changes.
//!
//! [`view`] holds the cluster as this node sees it and the decisions taken from it (merge of
//! gossip, failure detection, proposals, transition barrier and settlement), [`catchup`]
//! whether this node has heard the cluster's current view, [`engine`] the state machine that
//! drives both from events (timer ticks, gossip, Sync's progress, a leave) and says what to do
//! about it, [`status`] what is shown of the view; the Membership actor (`actor.rs`) performs
//! the engine's effects (gossip exchanges, peers, persistence, notifications).

mod actor;
pub mod catchup;
pub mod engine;
pub mod persist;
pub mod status;
pub mod view;

pub use actor::{Adopted, Leave, Membership, MembershipConfig, MembershipParts, Synced};
pub use status::{ClusterStatus, MemberStatus, StatusReader};
pub use view::{Liveness, Timeouts, View};
