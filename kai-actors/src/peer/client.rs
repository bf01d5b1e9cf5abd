//! The Peer actor: this node's connection to one remote node, for requests it sends there.

use super::filter::{NetworkFilter, Verdict};
use super::handshake::{self, PeerStream};
use super::{write_frames, LocalIdentity, PeerError, RemoteIdentity, WRITE_QUEUE};
use crate::log_once::LogOnce;
use crate::stats::{self, NodeStats};
use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseFuture, StreamHandler,
    WrapFuture,
};
use futures_util::{stream, StreamExt};
use kai_proto::peer::{CodecError, Frame, FrameCodec, PeerRequest, PeerResponse, ServiceId};
use kai_proto::NodeId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

/// First redial delay after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest redial delay: a restarted peer is reconnected to within this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Requests in flight to one peer before new ones are refused.
const MAX_IN_FLIGHT: usize = 16 * 1024;
/// How often abandoned pending calls are forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Messages the actor may hold before senders wait.
const MAILBOX_CAPACITY: usize = 4096;

/// Stop this Peer actor (its node left the cluster or moved).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Disconnect;

impl Handler<Disconnect> for PeerActor {
    type Result = ();

    fn handle(&mut self, _msg: Disconnect, ctx: &mut Context<Self>) {
        if self.link.take().is_some() {
            self.settings
                .stats
                .peer_connections
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        ctx.stop();
    }
}

/// A forwarded update may retry on the proposer for a whole request timeout and then run its
/// last rounds: its answer is awaited this many request timeouts.
const FORWARDED_UPDATE_TIMEOUTS: u32 = 3;

/// How long to wait for the response to `request`.
fn response_timeout(request: &PeerRequest, request_timeout: Duration) -> Duration {
    match request.service() {
        ServiceId::Update => request_timeout * FORWARDED_UPDATE_TIMEOUTS,
        _ => request_timeout,
    }
}

/// Send a request to the peer; resolves with its response or an error within the request timeout.
/// Callers use the typed [`PeerDirectory::call`](super::PeerDirectory::call).
#[derive(Message, Debug)]
#[rtype(result = "Result<PeerResponse, PeerError>")]
pub struct Call(pub PeerRequest);

struct Link {
    queue: mpsc::Sender<Frame>,
    remote: NodeId,
}

/// Items of the current connection's read side, tagged with the connection's generation so that
/// events of an old connection are ignored.
enum Inbound {
    Frame(u64, Result<Frame, CodecError>),
    Closed(u64),
}

/// What every Peer actor of a node shares.
pub struct PeerSettings {
    /// This node.
    pub me: Arc<LocalIdentity>,
    /// Largest frame accepted or sent.
    pub max_frame: usize,
    /// Deadline of a call.
    pub request_timeout: Duration,
    /// Fault injection (tests only).
    pub filter: Option<NetworkFilter>,
    /// Counters (`peer_connections`).
    pub stats: Arc<NodeStats>,
    /// Handshake refusals, logged once per peer address across all lanes.
    pub refusals: LogOnce,
}

impl PeerSettings {
    /// The settings of node `me` configured by `config`, counting in `stats`, with requests
    /// passing through `filter` (fault-injection tests only).
    pub fn new(
        me: Arc<LocalIdentity>,
        config: &crate::config::NodeConfig,
        filter: Option<NetworkFilter>,
        stats: Arc<NodeStats>,
    ) -> Self {
        PeerSettings {
            me,
            max_frame: config.max_frame(),
            request_timeout: config.request_timeout,
            filter,
            stats,
            refusals: LogOnce::default(),
        }
    }
}

/// A call waiting for the connection to come up.
struct Waiting {
    request: PeerRequest,
    reply: oneshot::Sender<Result<PeerResponse, PeerError>>,
}

/// The outbound connection to one remote node.
pub struct PeerActor {
    settings: Arc<PeerSettings>,
    addr: String,
    expected: Option<NodeId>,
    link: Option<Link>,
    generation: u64,
    dialing: bool,
    backoff: Duration,
    pending: HashMap<u64, oneshot::Sender<PeerResponse>>,
    /// Calls made while a dial is in progress; sent when it succeeds, failed when it fails.
    waiting: Vec<Waiting>,
    next_id: u64,
    outage_logged: bool,
}

impl PeerActor {
    /// A peer at `addr` that should be node `expected` (if known).
    pub fn new(settings: Arc<PeerSettings>, addr: String, expected: Option<NodeId>) -> Self {
        PeerActor {
            settings,
            addr,
            expected,
            link: None,
            generation: 0,
            dialing: false,
            backoff: MIN_BACKOFF,
            pending: HashMap::new(),
            waiting: Vec::new(),
            next_id: 0,
            outage_logged: false,
        }
    }

    fn dial(&mut self, ctx: &mut Context<Self>) {
        if self.dialing || self.link.is_some() {
            return;
        }
        self.dialing = true;
        let (addr, settings, expected) = (self.addr.clone(), Arc::clone(&self.settings), self.expected);
        let attempt = async move { handshake::dial(&addr, &settings.me, expected).await };
        ctx.spawn(attempt.into_actor(self).map(|result, act, ctx| act.dialed(result, ctx)));
    }

    fn dialed(&mut self, result: Result<(PeerStream, RemoteIdentity), PeerError>, ctx: &mut Context<Self>) {
        self.dialing = false;
        match result {
            Ok((PeerStream::Plain(stream), remote)) => self.open_link(stream.into_split(), remote, ctx),
            Ok((PeerStream::Tls(stream), remote)) => self.open_link(tokio::io::split(*stream), remote, ctx),
            Err(e) => {
                for waiting in self.waiting.drain(..) {
                    let _ = waiting.reply.send(Err(e.clone()));
                }
                if matches!(e, PeerError::Handshake { .. }) {
                    // Refused (another cluster, other settings, wrong secret, TLS): every lane
                    // of this node redials, but the refusal is logged once.
                    let addr = &self.addr;
                    (self.settings.refusals).failed(addr, &format_args!("peer {addr}: {e}; retrying with backoff"));
                } else if self.outage_logged {
                    log::debug!("peer {}: {e}", self.addr);
                } else {
                    log::warn!("peer {}: {e}; retrying with backoff", self.addr);
                }
                self.outage_logged = true;
                let delay = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                ctx.run_later(delay, |act, ctx| act.dial(ctx));
            }
        }
    }

    fn open_link<R, W>(&mut self, (read, write): (R, W), remote: RemoteIdentity, ctx: &mut Context<Self>)
    where
        R: AsyncRead + Unpin + 'static,
        W: AsyncWrite + Unpin + 'static,
    {
        self.generation += 1;
        let generation = self.generation;
        let (queue, outgoing) = mpsc::channel(WRITE_QUEUE);
        actix_rt::spawn(write_frames(
            FramedWrite::new(write, FrameCodec::new(self.settings.max_frame)),
            outgoing,
        ));
        let frames = FramedRead::new(read, FrameCodec::new(self.settings.max_frame))
            .map(move |frame| Inbound::Frame(generation, frame))
            .chain(stream::once(async move { Inbound::Closed(generation) }));
        ctx.add_stream(frames);
        log::info!("connected to peer {} ({}) at {}", remote.name, remote.id, self.addr);
        self.link = Some(Link {
            queue,
            remote: remote.id,
        });
        self.backoff = MIN_BACKOFF;
        self.outage_logged = false;
        self.settings.refusals.succeeded(&self.addr);
        stats::add(&self.settings.stats.peer_connections, 1);
        for Waiting { request, reply } in std::mem::take(&mut self.waiting) {
            let sent = self.send(request);
            actix_rt::spawn(async move {
                let _ = reply.send(sent.await);
            });
        }
    }

    fn drop_link(&mut self, why: &str, ctx: &mut Context<Self>) {
        if self.link.take().is_some() {
            log::warn!("lost connection to peer {}: {why}", self.addr);
            self.outage_logged = true;
            self.settings
                .stats
                .peer_connections
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        // Dropping the senders fails the calls in flight at once.
        self.pending.clear();
        ctx.run_later(MIN_BACKOFF, |act, ctx| act.dial(ctx));
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.dial(ctx);
        ctx.run_interval(SWEEP_INTERVAL, |act, _| act.pending.retain(|_, tx| !tx.is_closed()));
    }
}

impl StreamHandler<Inbound> for PeerActor {
    fn handle(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        match item {
            Inbound::Frame(generation, _) | Inbound::Closed(generation) if generation != self.generation => {}
            Inbound::Frame(_, Ok(Frame::Response { id, body })) => {
                if let Some(tx) = self.pending.remove(&id) {
                    let _ = tx.send(body);
                }
            }
            Inbound::Frame(_, Ok(Frame::Request { .. })) => {
                self.drop_link("peer sent a request on our connection", ctx)
            }
            Inbound::Frame(_, Err(e)) => self.drop_link(&e.to_string(), ctx),
            Inbound::Closed(_) => self.drop_link("closed by peer", ctx),
        }
    }

    /// A connection's stream ending is handled by `Inbound::Closed`; the actor keeps running.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl PeerActor {
    /// Sends `request` on the current link; the future resolves with the response or an error
    /// within the request timeout.
    fn send(&mut self, request: PeerRequest) -> ResponseFuture<Result<PeerResponse, PeerError>> {
        let addr = self.addr.clone();
        let Some(link) = &self.link else {
            return Box::pin(async move { Err(PeerError::NotConnected(addr)) });
        };
        if self.pending.len() >= MAX_IN_FLIGHT {
            return Box::pin(async move { Err(PeerError::Overloaded(addr)) });
        }
        let id = self.next_id;
        self.next_id += 1;
        let timeout = response_timeout(&request, self.settings.request_timeout);
        let frame = Frame::Request { id, body: request };
        let verdict =
            (self.settings.filter.as_ref()).map_or(Verdict::Deliver, |f| f.verdict(self.settings.me.id, link.remote));
        match verdict {
            Verdict::Deliver => {
                if link.queue.try_send(frame).is_err() {
                    return Box::pin(async move { Err(PeerError::Overloaded(addr)) });
                }
            }
            Verdict::Drop => {}
            Verdict::Delay(delay) => {
                let queue = link.queue.clone();
                actix_rt::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = queue.send(frame).await;
                });
            }
        }
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, tx);
        Box::pin(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(_)) => Err(PeerError::ConnectionLost(addr)),
                Err(_) => Err(PeerError::Timeout(addr)),
            }
        })
    }
}

impl Handler<Call> for PeerActor {
    type Result = ResponseFuture<Result<PeerResponse, PeerError>>;

    /// Sends at once when connected; waits (up to the request timeout) while a dial is in
    /// progress; fails at once while the peer is known to be unreachable (between dials).
    fn handle(&mut self, Call(request): Call, _ctx: &mut Context<Self>) -> Self::Result {
        if self.link.is_some() || !self.dialing {
            return self.send(request);
        }
        let (reply, answer) = oneshot::channel();
        let timeout = response_timeout(&request, self.settings.request_timeout);
        self.waiting.push(Waiting { request, reply });
        let addr = self.addr.clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(PeerError::ConnectionLost(addr)),
                Err(_) => Err(PeerError::Timeout(addr)),
            }
        })
    }
}
