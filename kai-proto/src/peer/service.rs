//! The services the peer protocol carries, and the one mapping between each service and the
//! variants of [`PeerRequest`] and [`PeerResponse`] that carry it on the wire.
//!
//! A service is a marker type implementing [`Service`]: its request and reply types and its
//! [`ServiceId`]. A server dispatches a request by [`PeerRequest::service`] and opens it with
//! [`Service::open_request`]; a client wraps its typed request with [`Service::request`] and
//! opens the typed reply with [`Service::open_reply`]. No other code matches on these enums.
//!
//! Invariants: every `PeerRequest` variant belongs to exactly one service, and so does every
//! `PeerResponse` variant except `Error` (a request its peer could not serve);
//! `S::request(r).service() == S::ID`; opening what `S` wrapped gives it back; opening anything
//! else returns it unchanged as the `Err`. The wire encoding stays the enums' (see
//! [`codec`](super::codec)): adding a service is adding a variant to both enums, a new
//! [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) and a line here.

use super::message::{ForwardedUpdate, PeerRequest, PeerResponse, UpdateReply};
use crate::cluster::GossipState;
use crate::flush::{FlushReply, FlushStep};
use crate::replica::{ReplicaReply, ReplicaRequest};
use crate::sync::{SyncCall, SyncResponse};
use std::fmt;

/// Names a service of the peer protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceId {
    /// [`ReplicaService`].
    Replica,
    /// [`GossipService`].
    Gossip,
    /// [`SyncService`].
    Sync,
    /// [`FlushService`].
    Flush,
    /// [`UpdateService`].
    Update,
    /// [`PingService`].
    Ping,
}

impl ServiceId {
    /// Number of services.
    pub const COUNT: usize = 6;

    /// Every service, in the order of [`ServiceId::index`].
    pub const ALL: [ServiceId; Self::COUNT] = [
        ServiceId::Replica,
        ServiceId::Gossip,
        ServiceId::Sync,
        ServiceId::Flush,
        ServiceId::Update,
        ServiceId::Ping,
    ];

    /// A dense index in `0..COUNT`, for tables of services.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The service's name, as logs and errors show it.
    pub const fn name(self) -> &'static str {
        match self {
            ServiceId::Replica => "replica",
            ServiceId::Gossip => "gossip",
            ServiceId::Sync => "sync",
            ServiceId::Flush => "flush",
            ServiceId::Update => "update",
            ServiceId::Ping => "ping",
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PeerRequest {
    /// The service this request is for.
    pub fn service(&self) -> ServiceId {
        match self {
            PeerRequest::Replica(_) => ServiceId::Replica,
            PeerRequest::Gossip(_) => ServiceId::Gossip,
            PeerRequest::Sync(_) => ServiceId::Sync,
            PeerRequest::Flush(_) => ServiceId::Flush,
            PeerRequest::Update(_) => ServiceId::Update,
            PeerRequest::Ping => ServiceId::Ping,
        }
    }
}

impl PeerResponse {
    /// The service whose reply this is; `None` for [`PeerResponse::Error`].
    pub fn service(&self) -> Option<ServiceId> {
        match self {
            PeerResponse::Replica(_) => Some(ServiceId::Replica),
            PeerResponse::Gossip(_) => Some(ServiceId::Gossip),
            PeerResponse::Sync(_) => Some(ServiceId::Sync),
            PeerResponse::Flush(_) => Some(ServiceId::Flush),
            PeerResponse::Update(_) => Some(ServiceId::Update),
            PeerResponse::Pong => Some(ServiceId::Ping),
            PeerResponse::Error(_) => None,
        }
    }
}

/// A service of the peer protocol: what a request carries, what its reply carries, and how both
/// travel in [`PeerRequest`] and [`PeerResponse`].
#[allow(
    clippy::result_large_err,
    reason = "the `Err` is the message itself, handed back unchanged: as large as what came in, and no copy"
)]
pub trait Service: 'static {
    /// The service's id.
    const ID: ServiceId;
    /// What a caller sends.
    type Request: Send + 'static;
    /// What the serving node answers.
    type Reply: Send + 'static;

    /// `request` as sent on the wire.
    fn request(request: Self::Request) -> PeerRequest;
    /// The typed request, if `request` is one of this service's.
    fn open_request(request: PeerRequest) -> Result<Self::Request, PeerRequest>;
    /// `reply` as sent on the wire.
    fn response(reply: Self::Reply) -> PeerResponse;
    /// The typed reply, if `response` is one of this service's.
    fn open_reply(response: PeerResponse) -> Result<Self::Reply, PeerResponse>;
}

/// Declares services carried by a newtype variant of the same name in both enums.
macro_rules! newtype_services {
    ($($(#[$doc:meta])* $marker:ident: $variant:ident($request:ty) -> $reply:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $marker {}

        impl Service for $marker {
            const ID: ServiceId = ServiceId::$variant;
            type Request = $request;
            type Reply = $reply;

            fn request(request: $request) -> PeerRequest {
                PeerRequest::$variant(request)
            }

            fn open_request(request: PeerRequest) -> Result<$request, PeerRequest> {
                match request {
                    PeerRequest::$variant(request) => Ok(request),
                    other => Err(other),
                }
            }

            fn response(reply: $reply) -> PeerResponse {
                PeerResponse::$variant(reply)
            }

            fn open_reply(response: PeerResponse) -> Result<$reply, PeerResponse> {
                match response {
                    PeerResponse::$variant(reply) => Ok(reply),
                    other => Err(other),
                }
            }
        }
    )*};
}

newtype_services! {
    /// An operation on the replica of a key.
    ReplicaService: Replica(ReplicaRequest) -> ReplicaReply;
    /// A push-pull gossip exchange: the sender's view; the reply is the receiver's.
    GossipService: Gossip(GossipState) -> GossipState;
    /// Data movement between replicas (handoff, anti-entropy), with the sender's ring.
    SyncService: Sync(SyncCall) -> SyncResponse;
    /// A step of a cluster-wide `flush_all`.
    FlushService: Flush(FlushStep) -> FlushReply;
    /// A read-modify-write of a key, run by the key's proposer.
    UpdateService: Update(ForwardedUpdate) -> UpdateReply;
}

/// Liveness check: `Ping`, answered `Pong`.
#[derive(Debug)]
pub enum PingService {}

impl Service for PingService {
    const ID: ServiceId = ServiceId::Ping;
    type Request = ();
    type Reply = ();

    fn request((): ()) -> PeerRequest {
        PeerRequest::Ping
    }

    fn open_request(request: PeerRequest) -> Result<(), PeerRequest> {
        match request {
            PeerRequest::Ping => Ok(()),
            other => Err(other),
        }
    }

    fn response((): ()) -> PeerResponse {
        PeerResponse::Pong
    }

    fn open_reply(response: PeerResponse) -> Result<(), PeerResponse> {
        match response {
            PeerResponse::Pong => Ok(()),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Answer, Change};
    use crate::cluster::RingId;
    use crate::replica::ReplicaOp;
    use crate::sync::SyncRequest;
    use crate::{BucketId, Key, NodeId, Tag, WriterId};

    fn key() -> Key {
        Key::new("k").expect("key")
    }

    fn gossip() -> GossipState {
        GossipState {
            from: NodeId(1),
            rings: Vec::new(),
            nodes: Vec::new(),
            flush: None,
        }
    }

    /// One request of each service, in [`ServiceId::ALL`] order.
    fn requests() -> Vec<PeerRequest> {
        vec![
            PeerRequest::Replica(ReplicaRequest {
                ring: RingId::default(),
                bucket: BucketId(1),
                key: key(),
                op: ReplicaOp::Read,
            }),
            PeerRequest::Gossip(gossip()),
            PeerRequest::Sync(SyncCall {
                ring: RingId::default(),
                request: SyncRequest::Digest { bucket: BucketId(2) },
            }),
            PeerRequest::Flush(FlushStep::Bound),
            PeerRequest::Update(ForwardedUpdate {
                key: key(),
                change: Change::Incr(1),
            }),
            PeerRequest::Ping,
        ]
    }

    /// One reply of each service, in [`ServiceId::ALL`] order.
    fn responses() -> Vec<PeerResponse> {
        let tag = Tag {
            counter: 1,
            writer: WriterId(2),
        };
        vec![
            PeerResponse::Replica(ReplicaReply::Written(tag)),
            PeerResponse::Gossip(gossip()),
            PeerResponse::Sync(SyncResponse::Done(3)),
            PeerResponse::Flush(FlushReply::Failed),
            PeerResponse::Update(Ok((Answer::NotFound, None))),
            PeerResponse::Pong,
        ]
    }

    #[test]
    fn each_service_has_its_own_variants_in_id_order() {
        let services: Vec<ServiceId> = requests().iter().map(PeerRequest::service).collect();
        assert_eq!(services, ServiceId::ALL);
        let replies: Vec<Option<ServiceId>> = responses().iter().map(PeerResponse::service).collect();
        assert_eq!(replies, ServiceId::ALL.map(Some));
        assert_eq!(PeerResponse::Error("no".into()).service(), None);
        for (i, id) in ServiceId::ALL.into_iter().enumerate() {
            assert_eq!(id.index(), i);
        }
    }

    /// Whether a service opened each sample (request, response).
    type Opened = Vec<(bool, bool)>;

    /// For each sample message: whether `S` opened the request and the response. Every message
    /// `S` opens wraps back to itself; every other one comes back unchanged.
    fn opened_by<S: Service>() -> Opened {
        let mut opened = Vec::new();
        for (request, response) in requests().into_iter().zip(responses()) {
            let (took_request, back) = match S::open_request(request.clone()) {
                Ok(typed) => (true, S::request(typed)),
                Err(other) => (false, other),
            };
            assert_eq!(back, request);
            let (took_response, back) = match S::open_reply(response.clone()) {
                Ok(typed) => (true, S::response(typed)),
                Err(other) => (false, other),
            };
            assert_eq!(back, response);
            opened.push((took_request, took_response));
        }
        let error = PeerResponse::Error("not served".into());
        assert_eq!(S::open_reply(error.clone()).err(), Some(error));
        opened
    }

    #[test]
    fn a_service_opens_exactly_its_own_messages() {
        let services: [(ServiceId, fn() -> Opened); ServiceId::COUNT] = [
            (ReplicaService::ID, opened_by::<ReplicaService>),
            (GossipService::ID, opened_by::<GossipService>),
            (SyncService::ID, opened_by::<SyncService>),
            (FlushService::ID, opened_by::<FlushService>),
            (UpdateService::ID, opened_by::<UpdateService>),
            (PingService::ID, opened_by::<PingService>),
        ];
        for (i, (id, opened_by)) in services.into_iter().enumerate() {
            assert_eq!(id, ServiceId::ALL[i]);
            let expected: Opened = (0..ServiceId::COUNT).map(|j| (i == j, i == j)).collect();
            assert_eq!(opened_by(), expected, "{id}");
        }
    }

    #[test]
    fn service_names_are_distinct() {
        let names: std::collections::HashSet<&str> = ServiceId::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), ServiceId::COUNT);
        assert_eq!(ServiceId::Sync.to_string(), "sync");
    }
}
