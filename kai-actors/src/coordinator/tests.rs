//! A coordinator against real replicas (in-memory stores behind real fences, two of them across a
//! loopback peer connection), for what only a deterministic schedule shows.

use super::*;
use crate::fence::Fence;
use crate::flush::Flushes;
use crate::log_once::LogOnce;
use crate::peer::tests::identity;
use crate::peer::{PeerActor, PeerDirectory, PeerListener, PeerSettings, Serve, ServeError, Services};
use crate::replica::LocalReplica;
use crate::ring::{RingActor, SetRings};
use crate::store::{MemStore, StoreHandle};
use actix::{Actor, Addr, Context, Handler, ResponseFuture};
use kai_proto::cluster::{RingMember, RingState};
use kai_proto::peer::ReplicaService;
use kai_proto::replica::{ReplicaOp, ReplicaReply, ReplicaRequest};
use kai_proto::WriterId;
use std::sync::Mutex;

const BUCKETS: u32 = 16;
const MAX_FRAME: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long replica B holds every write: far longer than the rest of the operation takes.
const SLOW_WRITE: Duration = Duration::from_millis(300);

fn ring_id(version: u64) -> RingId {
    RingId {
        version,
        proposer: NodeId::from_name("a"),
    }
}

fn ring(version: u64) -> RingState {
    let members = ["a", "b", "c"]
        .iter()
        .map(|name| RingMember {
            id: NodeId::from_name(name),
            name: (*name).to_owned(),
            addr: String::new(),
        })
        .collect();
    RingState::new(ring_id(version), members)
}

/// A replica on an in-memory store whose fence has adopted `adopted`.
fn replica(adopted: RingId, stats: &Arc<NodeStats>) -> LocalReplica {
    let store = StoreHandle::start(Arc::new(MemStore::new(BUCKETS)), 1, true);
    let flushes = Flushes::open(store.clone(), TIMEOUT).expect("flush mark");
    let fence = Arc::new(Fence::new(adopted));
    fence.set_majority(true);
    LocalReplica::new(store, fence, flushes, Arc::clone(stats))
}

/// Replica B: holds every write for [`SLOW_WRITE`] and remembers the versions it was sent.
struct SlowWrites {
    replica: LocalReplica,
    written: Arc<Mutex<Vec<Tag>>>,
}

impl Serve<ReplicaService> for SlowWrites {
    async fn serve(&self, _from: NodeId, request: ReplicaRequest) -> Result<ReplicaReply, ServeError> {
        if let ReplicaOp::Write(record) = &request.op {
            self.written.lock().expect("lock").push(record.tag);
            tokio::time::sleep(SLOW_WRITE).await;
        }
        Ok(self.replica.serve(request).await)
    }
}

/// Serves `services` as node `name` on loopback; returns its address.
async fn serve(name: &str, services: Services) -> String {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("address").to_string();
    let workers = vec![actix_rt::Arbiter::current()];
    PeerListener::new(
        socket,
        workers,
        identity(name, addr.clone()),
        Arc::new(services),
        MAX_FRAME,
    )
    .start();
    addr
}

/// Learns a newer ring the way Membership does: publishes it, then answers.
struct Learner {
    ring: Addr<RingActor>,
}

impl Actor for Learner {
    type Context = Context<Self>;
}

impl Handler<LearnRing> for Learner {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, LearnRing(wanted): LearnRing, _ctx: &mut Context<Self>) -> Self::Result {
        let published = self.ring.send(SetRings(vec![ring(wanted.version)]));
        Box::pin(async move { published.await.is_ok() })
    }
}

/// Node A coordinates with ring 1; replica C has adopted ring 2 and refuses ring 1 at once, while
/// replica B is still receiving the first attempt's write. The retry after learning ring 2 must
/// write the very version the first attempt minted: B, which sees both attempts' writes, must see
/// one version only (a second, newer one would take effect above writes made in between).
#[actix_rt::test]
async fn a_set_retried_after_a_stale_ring_writes_the_version_its_first_attempt_minted() {
    let stats = Arc::new(NodeStats::default());
    let written = Arc::new(Mutex::new(Vec::new()));
    let mut b = Services::new();
    b.register::<ReplicaService>(SlowWrites {
        replica: replica(ring_id(1), &stats),
        written: Arc::clone(&written),
    });
    let mut c = Services::new();
    c.register::<ReplicaService>(replica(ring_id(2), &stats));
    let addresses = [("b", serve("b", b).await), ("c", serve("c", c).await)];

    let settings = Arc::new(PeerSettings {
        me: identity("a", "127.0.0.1:1".into()),
        max_frame: MAX_FRAME,
        request_timeout: TIMEOUT,
        filter: None,
        stats: Arc::clone(&stats),
        refusals: LogOnce::default(),
    });
    let peers = PeerDirectory::default();
    for (name, addr) in addresses {
        let id = NodeId::from_name(name);
        peers.insert(id, vec![PeerActor::new(Arc::clone(&settings), addr, Some(id)).start()]);
    }
    let (ring_actor, placement) = RingActor::new(BUCKETS, 8, 3);
    let ring_actor = ring_actor.start();
    ring_actor.send(SetRings(vec![ring(1)])).await.expect("ring 1");
    let a = NodeId::from_name("a");
    let core = CoordinatorCore::new(
        Replicas::new(a, replica(ring_id(1), &stats), peers, 0),
        placement,
        Arc::new(TagClock::new(WriterId::new(a, 1))),
        Some(ClusterLink {
            learn: Learner { ring: ring_actor }.start().recipient(),
            status: Default::default(),
        }),
        (2, 2),
        TIMEOUT,
        Arc::clone(&stats),
    );

    let key = Key::new("contended").expect("key");
    let tag = core.set(key, 0, 0, Bytes::from_static(b"v")).await.expect("set");
    assert_eq!(
        crate::stats::get(&stats.stale_ring_retries),
        1,
        "the first attempt met the newer ring"
    );
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while written.lock().expect("lock").len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica B got both attempts' writes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let versions = written.lock().expect("lock").clone();
    assert!(
        versions.iter().all(|v| *v == tag),
        "one set wrote versions {versions:?}; it answered {tag:?}"
    );
}
