//! Typed calls over a real loopback connection: a Peer actor dialling a peer listener that serves
//! some services and not others.

use super::*;
use crate::log_once::LogOnce;
use crate::stats::NodeStats;
use actix::Actor;
use kai_proto::flush::{FlushReply, FlushStep};
use kai_proto::peer::{ClusterSettings, FlushService, PingService, ReplicaService};
use kai_proto::replica::{ReplicaOp, ReplicaRequest};
use kai_proto::{BucketId, Key};
use std::time::Duration;

/// Long enough never to expire in these tests: an answer that took it would be a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_FRAME: usize = 1 << 20;

/// Marks every flush step it serves.
struct Marks;

impl Serve<FlushService> for Marks {
    async fn serve(&self, _from: NodeId, _step: FlushStep) -> Result<FlushReply, ServeError> {
        Ok(FlushReply::Marked)
    }
}

/// Who node `name`, reachable at `advertise`, says it is (cluster "test", no secret, no TLS).
pub(crate) fn identity(name: &str, advertise: String) -> Arc<LocalIdentity> {
    Arc::new(LocalIdentity {
        id: NodeId::from_name(name),
        name: name.to_owned(),
        advertise,
        credentials: Credentials::new("test", ClusterSettings::default(), None),
        tls: None,
    })
}

/// A node "server" serving `services` on loopback, and node "client"'s directory with a Peer
/// actor for it.
async fn connect(services: Services) -> (PeerDirectory, NodeId) {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("local address").to_string();
    let server = identity("server", addr.clone());
    let workers = vec![actix_rt::Arbiter::current()];
    PeerListener::new(socket, workers, Arc::clone(&server), Arc::new(services), MAX_FRAME).start();
    let settings = Arc::new(PeerSettings {
        me: identity("client", "127.0.0.1:1".into()),
        max_frame: MAX_FRAME,
        request_timeout: REQUEST_TIMEOUT,
        filter: None,
        stats: Arc::new(NodeStats::default()),
        refusals: LogOnce::default(),
    });
    let peers = PeerDirectory::default();
    peers.insert(server.id, vec![PeerActor::new(settings, addr, Some(server.id)).start()]);
    (peers, server.id)
}

fn replica_read() -> ReplicaRequest {
    ReplicaRequest {
        ring: kai_proto::cluster::RingId::default(),
        bucket: BucketId(0),
        key: Key::new("k").expect("key"),
        op: ReplicaOp::Read,
    }
}

#[actix_rt::test]
async fn a_typed_call_gets_the_reply_of_its_service() {
    let mut services = Services::new();
    services.register::<FlushService>(Marks);
    let (peers, server) = connect(services).await;
    assert_eq!(peers.call::<PingService>(server, 0, ()).await, Ok(()));
    assert_eq!(
        peers.call::<FlushService>(server, 0, FlushStep::Bound).await,
        Ok(FlushReply::Marked)
    );
}

#[actix_rt::test]
async fn a_service_the_peer_does_not_serve_fails_at_once_naming_it() {
    let (peers, server) = connect(Services::new()).await;
    assert_eq!(peers.call::<PingService>(server, 0, ()).await, Ok(()));
    let started = tokio::time::Instant::now();
    let error = peers
        .call::<ReplicaService>(server, 0, replica_read())
        .await
        .expect_err("replica requests are not served there");
    assert_eq!(
        error,
        PeerError::Remote {
            service: ServiceId::Replica,
            reason: "this node does not serve replica requests".into()
        }
    );
    assert!(!error.maybe_served(), "{error}");
    assert!(started.elapsed() < REQUEST_TIMEOUT / 2, "answered, not timed out");
    // The connection stays up for the services that are served.
    assert_eq!(peers.call::<PingService>(server, 0, ()).await, Ok(()));
}

#[actix_rt::test]
async fn a_call_to_an_unknown_node_has_no_route() {
    let peers = PeerDirectory::default();
    let error = peers.call::<PingService>(NodeId(9), 0, ()).await;
    assert_eq!(error, Err(PeerError::NoRoute(NodeId(9))));
}
