//! The peer listener: accepts other nodes' connections and hands their requests to the
//! registered [`Services`], at most `MAX_CONCURRENT_REQUESTS` of one connection at once.

use super::handshake::{self, PeerStream};
use super::registry::{Responder, Services};
use super::{write_frames, LocalIdentity, RemoteIdentity, WRITE_QUEUE};
use crate::accept::accept_stream;
use crate::log_once::LogOnce;
use actix::{Actor, ArbiterHandle, AsyncContext, Context, StreamHandler};
use futures_util::StreamExt;
use kai_proto::peer::{Frame, FrameCodec};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Requests of one peer connection executing at once; further requests wait to be read.
const MAX_CONCURRENT_REQUESTS: usize = 1024;

/// Accepts connections from other nodes and serves them on the worker threads.
pub struct PeerListener {
    socket: Option<TcpListener>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    me: Arc<LocalIdentity>,
    services: Arc<Services>,
    max_frame: usize,
    refusals: LogOnce,
}

impl PeerListener {
    /// A listener on `socket` serving `services` on `workers`.
    pub fn new(
        socket: TcpListener,
        workers: Vec<ArbiterHandle>,
        me: Arc<LocalIdentity>,
        services: Arc<Services>,
        max_frame: usize,
    ) -> Self {
        PeerListener {
            socket: Some(socket),
            workers,
            next_worker: 0,
            me,
            services,
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
        let (me, services, refusals, max_frame) = (
            Arc::clone(&self.me),
            Arc::clone(&self.services),
            self.refusals.clone(),
            self.max_frame,
        );
        worker.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(std_stream) {
                serve_connection(stream, from, me, services, refusals, max_frame).await;
            }
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    from: SocketAddr,
    me: Arc<LocalIdentity>,
    services: Arc<Services>,
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
        PeerStream::Plain(stream) => serve_frames(stream.into_split(), remote, services, max_frame).await,
        PeerStream::Tls(stream) => serve_frames(tokio::io::split(*stream), remote, services, max_frame).await,
    }
}

/// Serves the requests of an established connection from `remote` until it closes or breaks.
async fn serve_frames<R, W>((read, write): (R, W), remote: RemoteIdentity, services: Arc<Services>, max_frame: usize)
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
    let mut frames = FramedRead::new(read, FrameCodec::new(max_frame));
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(Frame::Request { id, body }) => {
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                services.dispatch(remote.id, body, Responder::new(id, replies.clone(), permit));
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
