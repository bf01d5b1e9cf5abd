//! Membership: who is in the cluster, who is alive, and how the ring changes.
//!
//! [`view`] holds every decision as plain logic (merge of gossip, failure detection, proposals,
//! transition barrier and settlement), [`catchup`] whether this node has heard the cluster's
//! current view; the Membership actor (`actor.rs`) runs the gossip exchanges, timers and
//! persistence around them.

mod actor;
pub mod catchup;
pub mod persist;
pub mod view;

pub use actor::{
    Adopted, ClusterStatus, Leave, MemberStatus, Membership, MembershipConfig, MembershipParts, StatusReader, Synced,
};
pub use view::{Liveness, Timeouts, View};
