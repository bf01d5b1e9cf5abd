//! What a node tells about its view of the cluster (stats, `kai status`, coordinators): a
//! snapshot computed from the [`View`] at one instant, without I/O.
//!
//! Invariants: every node the view knows is listed once, with the liveness the view gives it at
//! that instant; members of the newest ring the view has no news of are listed as `unheard`.

use super::view::{Liveness, View};
use arc_swap::ArcSwap;
use kai_proto::cluster::{Intent, RingId};
use kai_proto::NodeId;
use std::sync::Arc;

/// A member as `kai status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Name.
    pub name: String,
    /// Peer address.
    pub addr: String,
    /// `up`, `suspect`, `down`, `joining`, `leaving`, or `unheard` (in the ring, no news yet).
    pub status: &'static str,
    /// Milliseconds since it was last heard from.
    pub silent_ms: u64,
}

/// A node's view, for stats and `kai status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Active rings (versions), settled first.
    pub rings: Vec<RingId>,
    /// Every known node.
    pub members: Vec<MemberStatus>,
    /// Whether this node sees a majority of the ring.
    pub majority: bool,
    /// Nodes not heard from lately (suspect or down): coordinators ask them last.
    pub unhealthy: Vec<NodeId>,
}

impl ClusterStatus {
    /// The status of `view` at `now` (ms).
    pub fn of(view: &View, now: u64) -> Self {
        let latest = view.latest();
        let members = view.nodes().map(|n| {
            let in_ring = latest.is_some_and(|r| r.contains(n.id));
            let status = match (view.liveness(n.id, now), n.intent, in_ring) {
                (Liveness::Down, _, _) => "down",
                (Liveness::Suspect, _, _) => "suspect",
                (_, Intent::Leave, _) => "leaving",
                (_, Intent::Member, false) => "joining",
                (_, Intent::Member, true) => "up",
            };
            MemberStatus {
                id: n.id,
                name: n.name.clone(),
                addr: n.addr.clone(),
                status,
                silent_ms: view.silence(n.id, now).unwrap_or(u64::MAX),
            }
        });
        let unheard = latest
            .into_iter()
            .flat_map(|r| r.members.iter())
            .filter(|m| view.node(m.id).is_none())
            .map(|m| MemberStatus {
                id: m.id,
                name: m.name.clone(),
                addr: m.addr.clone(),
                status: "unheard",
                silent_ms: u64::MAX,
            });
        ClusterStatus {
            rings: view.rings().iter().map(|r| r.id).collect(),
            members: members.chain(unheard).collect(),
            majority: view.majority_alive(now),
            unhealthy: view
                .nodes()
                .map(|n| n.id)
                .filter(|id| view.liveness(*id, now) != Liveness::Alive)
                .collect(),
        }
    }

    /// The name of node `id`, or its id if this node knows no member by it.
    pub fn name_of(&self, id: NodeId) -> String {
        self.members
            .iter()
            .find(|m| m.id == id)
            .map_or_else(|| id.to_string(), |m| m.name.clone())
    }
}

/// Lock-free access to the latest [`ClusterStatus`].
pub type StatusReader = Arc<ArcSwap<ClusterStatus>>;
