//! The peer listener: serves requests from other nodes.

use super::handshake::{self, PeerStream};
use super::{write_frames, LocalIdentity, LogOnce, RemoteIdentity, WRITE_QUEUE};
use crate::listener::{accept_stream, StopListening};
use crate::membership::Exchange;
use crate::replica::LocalReplica;
use crate::stats::NodeStats;
use crate::store::StoreHandle;
use crate::sync::gate::SyncGate;
use crate::sync::serve::serve_sync;
use actix::{Actor, ActorContext, ArbiterHandle, AsyncContext, Context, Handler, Message, Recipient, StreamHandler};
use futures_util::StreamExt;
use kai_proto::change::Answer;
use kai_proto::peer::{ForwardedUpdate, Frame, FrameCodec, PeerRequest, PeerResponse};
use kai_proto::{NodeId, Record};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use xxhash_rust::xxh3::xxh3_64;

/// Requests of one peer connection executing at once; further requests wait to be read.
const MAX_CONCURRENT_REQUESTS: usize = 1024;

/// Runs a read-modify-write forwarded by another node, proposing it here (never forwarding it
/// again): the answer and the key's resulting record, or why it failed.
#[derive(Message, Debug)]
#[rtype(result = "Result<(Answer, Option<Record>), String>")]
pub struct ServeUpdate(pub ForwardedUpdate);

/// This node's proposers of forwarded updates (its coordinators), set once they run.
pub type Proposers = Arc<OnceLock<Vec<Recipient<ServeUpdate>>>>;

/// Executes requests received from other nodes.
#[derive(Clone)]
pub struct PeerService {
    replica: LocalReplica,
    store: StoreHandle,
    gate: SyncGate,
    stats: Arc<NodeStats>,
    membership: Recipient<Exchange>,
    proposers: Proposers,
}

impl PeerService {
    /// A service answering replica requests from `replica`, sync requests from `store` behind
    /// `gate`, gossip through `membership`, and forwarded updates through `proposers`.
    pub fn new(
        replica: LocalReplica,
        (store, gate): (StoreHandle, SyncGate),
        stats: Arc<NodeStats>,
        (membership, proposers): (Recipient<Exchange>, Proposers),
    ) -> Self {
        PeerService {
            replica,
            store,
            gate,
            stats,
            membership,
            proposers,
        }
    }

    /// The response to `request` from node `from` (as authenticated by the handshake).
    pub async fn handle(&self, from: NodeId, request: PeerRequest) -> PeerResponse {
        match request {
            PeerRequest::Replica(request) => PeerResponse::Replica(self.replica.serve(request).await),
            PeerRequest::Gossip(state) => match self.membership.send(Exchange(state)).await {
                Ok(ours) => PeerResponse::Gossip(ours),
                Err(_) => PeerResponse::Error("membership is shutting down".to_owned()),
            },
            PeerRequest::Sync(call) => {
                PeerResponse::Sync(serve_sync(&self.store, &self.gate, &self.stats, from, call).await)
            }
            PeerRequest::Flush(step) => PeerResponse::Flush(self.replica.serve_flush(step).await),
            // An `Error` answer means the update did not run: the sender may run it itself.
            PeerRequest::Update(update) => {
                let Some(proposers) = self.proposers.get().filter(|p| !p.is_empty()) else {
                    return PeerResponse::Error("node is starting".to_owned());
                };
                let lane = xxh3_64(update.key.as_bytes()) as usize % proposers.len();
                match proposers[lane].send(ServeUpdate(update)).await {
                    Ok(result) => PeerResponse::Update(result),
                    Err(_) => PeerResponse::Error("node is shutting down".to_owned()),
                }
            }
            PeerRequest::Ping => PeerResponse::Pong,
        }
    }
}

/// Accepts connections from other nodes and serves them on the worker threads.
pub struct PeerListener {
    socket: Option<TcpListener>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    me: Arc<LocalIdentity>,
    service: PeerService,
    max_frame: usize,
    refusals: LogOnce,
}

impl PeerListener {
    /// A listener on `socket` serving `service` on `workers`.
    pub fn new(
        socket: TcpListener,
        workers: Vec<ArbiterHandle>,
        me: Arc<LocalIdentity>,
        service: PeerService,
        max_frame: usize,
    ) -> Self {
        PeerListener {
            socket: Some(socket),
            workers,
            next_worker: 0,
            me,
            service,
            max_frame,
            refusals: LogOnce::default(),
        }
    }
}

impl Actor for PeerListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(socket) = self.socket.take() {
            ctx.add_stream(accept_stream(socket));
        }
    }
}

impl StreamHandler<io::Result<(TcpStream, SocketAddr)>> for PeerListener {
    fn handle(&mut self, accepted: io::Result<(TcpStream, SocketAddr)>, _ctx: &mut Context<Self>) {
        let Ok((stream, from)) = accepted else {
            return;
        };
        let Ok(std_stream) = stream.into_std() else {
            return;
        };
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        let (me, service, refusals, max_frame) = (
            Arc::clone(&self.me),
            self.service.clone(),
            self.refusals.clone(),
            self.max_frame,
        );
        worker.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(std_stream) {
                serve_connection(stream, from, me, service, refusals, max_frame).await;
            }
        });
    }
}

impl Handler<StopListening> for PeerListener {
    type Result = ();

    fn handle(&mut self, _msg: StopListening, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

async fn serve_connection(
    stream: TcpStream,
    from: SocketAddr,
    me: Arc<LocalIdentity>,
    service: PeerService,
    refusals: LogOnce,
    max_frame: usize,
) {
    let (stream, remote) = match handshake::accept(stream, &me).await {
        Ok(done) => done,
        Err(refused) => {
            // One peer per name (several may share an address's host), else per host.
            let (peer, who) = match &refused.dialler {
                Some(name) => (format!("{name}@{}", from.ip()), format!("{name} at {from}")),
                None => (from.ip().to_string(), from.to_string()),
            };
            let error = refused.error;
            return refusals.failed(&peer, &format_args!("refused peer connection from {who}: {error}"));
        }
    };
    refusals.succeeded(&format!("{}@{}", remote.name, from.ip()));
    refusals.succeeded(&from.ip().to_string());
    log::debug!("peer {} ({}) connected from {from}", remote.name, remote.id);
    match stream {
        PeerStream::Plain(stream) => serve_frames(stream.into_split(), remote, service, max_frame).await,
        PeerStream::Tls(stream) => serve_frames(tokio::io::split(*stream), remote, service, max_frame).await,
    }
}

/// Serves the requests of an established connection from `remote` until it closes or breaks.
async fn serve_frames<R, W>((read, write): (R, W), remote: RemoteIdentity, service: PeerService, max_frame: usize)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let (replies, outgoing) = mpsc::channel(WRITE_QUEUE);
    actix_rt::spawn(write_frames(
        FramedWrite::new(write, FrameCodec::new(max_frame)),
        outgoing,
    ));
    let in_flight = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
    // Shared by the connection's requests: cloning the service clones actix addresses, which
    // allocates (see `Replicas`).
    let service = Arc::new(service);
    let mut frames = FramedRead::new(read, FrameCodec::new(max_frame));
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(Frame::Request { id, body }) => {
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let (service, replies, from) = (Arc::clone(&service), replies.clone(), remote.id);
                actix_rt::spawn(async move {
                    let body = service.handle(from, body).await;
                    let _ = replies.send(Frame::Response { id, body }).await;
                    drop(permit);
                });
            }
            Ok(Frame::Response { .. }) => {
                log::warn!("peer {} sent a response on its own connection; closing it", remote.name);
                break;
            }
            Err(e) => {
                log::warn!("peer {} sent a bad frame ({e}); closing its connection", remote.name);
                break;
            }
        }
    }
    log::debug!("peer {} disconnected", remote.name);
}
