//! The node-to-node protocol.
//!
//! A connection carries length-delimited frames whose payload is a bincode-encoded message
//! ([`codec`], the one module that knows the encoding). It opens with a [`handshake`] that checks the
//! protocol version, the cluster name and the settings nodes must share (`n`, `r`, `w`, `buckets`,
//! `virtual_nodes`) and, when a cluster secret is configured, makes both sides
//! prove they know it; after that it carries [`message::Frame`]s: requests tagged with an id and
//! the responses to them, many in flight at once. Each request belongs to a [`service`] (replica,
//! gossip, sync, flush, update, ping), whose module is the one place that maps a service to its
//! variants of the wire enums.

pub mod codec;
pub mod handshake;
pub mod message;
pub mod service;

pub use codec::{CodecError, FrameCodec, HandshakeCodec};
pub use handshake::{Credentials, HandshakeError};
pub use message::{
    ClusterSettings, ForwardedUpdate, Frame, HandshakeFrame, Hello, PeerRequest, PeerResponse, UpdateReply, Welcome,
    PROTOCOL_VERSION,
};
pub use service::{
    FlushService, GossipService, PingService, ReplicaService, Service, ServiceId, SyncService, UpdateService,
};
