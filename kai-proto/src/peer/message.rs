//! Messages of the peer protocol.

use crate::change::{Answer, Change};
use crate::cluster::GossipState;
use crate::flush::{FlushReply, FlushStep};
use crate::key::Key;
use crate::record::Record;
use crate::replica::{ReplicaReply, ReplicaRequest};
use crate::sync::{SyncCall, SyncResponse};
use crate::tag::NodeId;
use serde::{Deserialize, Serialize};

/// Version of the peer protocol; peers must speak the same one. Version 3: records carry the
/// meta protocol's stale-while-revalidate marks (`RecordBody::Value::state`); `Flush` and
/// forwarded `Update` requests.
pub const PROTOCOL_VERSION: u32 = 3;

/// 32 random bytes chosen by one side of a handshake.
pub type Nonce = [u8; 32];
/// An HMAC-SHA256 proof of knowing the cluster secret.
pub type Proof = [u8; 32];

/// Settings every node of a cluster must share: nodes that disagree on them place keys on
/// different replicas, or count quorums differently, so they must not talk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Replicas per key.
    pub n: u64,
    /// Read quorum.
    pub r: u64,
    /// Write quorum.
    pub w: u64,
    /// Buckets of the key space.
    pub buckets: u64,
    /// Ring positions per node.
    pub virtual_nodes: u64,
}

impl ClusterSettings {
    /// Each setting with its config key, in a fixed order.
    pub fn named(&self) -> [(&'static str, u64); 5] {
        [
            ("n", self.n),
            ("r", self.r),
            ("w", self.w),
            ("buckets", self.buckets),
            ("virtual_nodes", self.virtual_nodes),
        ]
    }
}

/// The dialling node introduces itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the dialler.
    pub protocol_version: u32,
    /// The dialler's cluster.
    pub cluster_name: String,
    /// The dialler's cluster settings (the acceptor refuses it unless they equal its own).
    pub settings: ClusterSettings,
    /// The dialler's id.
    pub node: NodeId,
    /// The dialler's name.
    pub name: String,
    /// The peer address the dialler can be reached at.
    pub advertise: String,
    /// The dialler's challenge.
    pub nonce: Nonce,
}

/// The accepting node introduces itself and answers the challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The acceptor's id.
    pub node: NodeId,
    /// The acceptor's name.
    pub name: String,
    /// The acceptor's challenge.
    pub nonce: Nonce,
    /// Answer to the dialler's challenge.
    pub proof: Proof,
}

/// Frames exchanged before a connection is trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeFrame {
    /// Dialler → acceptor, first.
    Hello(Hello),
    /// Acceptor → dialler: identity and proof.
    Welcome(Welcome),
    /// Dialler → acceptor: answer to the acceptor's challenge.
    Proof(Proof),
    /// Acceptor → dialler: the connection is open for requests.
    Accepted,
    /// Either side: the handshake failed, and why.
    Refused(String),
}

/// A read-modify-write forwarded to the node that proposes the key's changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedUpdate {
    /// The key.
    pub key: Key,
    /// The command.
    pub change: Change,
}

/// The answer to a forwarded update: the change's answer and the key's resulting record, or why
/// the proposer failed to run it.
pub type UpdateReply = Result<(Answer, Option<Record>), String>;

/// A request from one node to another; each variant belongs to one
/// [`Service`](super::service::Service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// An operation on the replica of a key.
    Replica(ReplicaRequest),
    /// A push-pull gossip exchange: the sender's view; the answer is the receiver's.
    Gossip(GossipState),
    /// Data movement between replicas (handoff, anti-entropy), with the sender's ring.
    Sync(SyncCall),
    /// A step of a cluster-wide `flush_all`.
    Flush(FlushStep),
    /// A read-modify-write of a key, sent to the key's stable proposer to run.
    Update(ForwardedUpdate),
    /// Liveness check.
    Ping,
}

/// The answer to a [`PeerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Answer to [`PeerRequest::Replica`].
    Replica(ReplicaReply),
    /// Answer to [`PeerRequest::Gossip`].
    Gossip(GossipState),
    /// Answer to [`PeerRequest::Sync`].
    Sync(SyncResponse),
    /// Answer to [`PeerRequest::Flush`].
    Flush(FlushReply),
    /// Answer to [`PeerRequest::Update`].
    Update(UpdateReply),
    /// Answer to [`PeerRequest::Ping`].
    Pong,
    /// The request could not be served (no handler for its service, or its handler could not
    /// run it): it did not take effect.
    Error(String),
}

/// A frame of an established connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// A request; the response carries the same id.
    Request {
        /// Chosen by the requester, unique among its requests in flight.
        id: u64,
        /// The request.
        body: PeerRequest,
    },
    /// The response to request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The response.
        body: PeerResponse,
    },
}
