//! Connection setup between nodes: TCP, then mutual TLS when the node has `peer_tls_*`
//! (`crate::tls`), then the handshake (the checks themselves are in `kai_proto::peer::handshake`),
//! all within [`HANDSHAKE_TIMEOUT`]. A TLS failure is a [`HandshakeError::Tls`], refused and
//! logged like any other handshake failure.

use super::{LocalIdentity, PeerError, RemoteIdentity};
use crate::tls::tls_failure;
use futures_util::{SinkExt, StreamExt};
use kai_proto::peer::{CodecError, HandshakeCodec, HandshakeError, HandshakeFrame, Hello, Welcome, PROTOCOL_VERSION};
use kai_proto::NodeId;
use rand::RngCore;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Longest a connection setup (TLS and handshake) may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// An established peer connection.
pub(crate) enum PeerStream {
    /// Plain TCP (no `peer_tls_*`).
    Plain(TcpStream),
    /// Mutual TLS over TCP.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// What a handshake runs over.
trait Link: AsyncRead + AsyncWrite + Unpin {}

impl<S: AsyncRead + AsyncWrite + Unpin> Link for S {}

type HandshakeStream<S> = Framed<S, HandshakeCodec>;

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::rng().fill_bytes(&mut n);
    n
}

async fn receive<S: Link>(framed: &mut HandshakeStream<S>) -> Result<HandshakeFrame, HandshakeError> {
    match framed.next().await {
        Some(Ok(HandshakeFrame::Refused(reason))) => Err(HandshakeError::Refused(reason)),
        Some(Ok(frame)) => Ok(frame),
        // With TLS 1.3 a dialler learns that its certificate was refused only here, as an alert.
        Some(Err(CodecError::Io(e))) if tls_failure(&e).is_some() => Err(HandshakeError::Tls(e.to_string())),
        Some(Err(_)) => Err(HandshakeError::Unexpected("malformed frame")),
        None => Err(HandshakeError::Unexpected("connection closed")),
    }
}

/// Tells the other side why the handshake failed; returns the error. Best effort: the
/// connection is dropped anyway.
async fn refuse<S: Link>(framed: &mut HandshakeStream<S>, error: HandshakeError) -> HandshakeError {
    let _ = framed.send(HandshakeFrame::Refused(error.to_string())).await;
    error
}

/// The stream, checked to hold no bytes beyond the handshake.
fn into_stream<S: Link>(framed: HandshakeStream<S>) -> Result<S, HandshakeError> {
    let parts = framed.into_parts();
    if !parts.read_buf.is_empty() {
        return Err(HandshakeError::Unexpected("data before the handshake completed"));
    }
    Ok(parts.io)
}

/// Dialler side. `expected` is the node that should be at `addr`, if known.
pub(crate) async fn dial(
    addr: &str,
    me: &LocalIdentity,
    expected: Option<NodeId>,
) -> Result<(PeerStream, RemoteIdentity), PeerError> {
    let connect = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr));
    let stream = match connect.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(connect_error(addr, e.to_string())),
        Err(_) => return Err(connect_error(addr, "timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    let setup = async {
        match &me.tls {
            None => {
                let (stream, remote) =
                    dial_exchange(Framed::new(stream, HandshakeCodec::handshake()), me, expected).await?;
                Ok::<_, DialFailure>((PeerStream::Plain(stream), remote))
            }
            Some(tls) => {
                let stream = tls.connect(addr, stream).await.map_err(HandshakeError::Tls)?;
                let (stream, remote) =
                    dial_exchange(Framed::new(stream, HandshakeCodec::handshake()), me, expected).await?;
                Ok((PeerStream::Tls(Box::new(stream)), remote))
            }
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, setup).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(DialFailure::Handshake(source))) => Err(PeerError::Handshake {
            addr: addr.to_owned(),
            source,
        }),
        Ok(Err(DialFailure::WrongNode(found))) => Err(PeerError::WrongNode {
            addr: addr.to_owned(),
            expected: expected.unwrap_or(found),
            found,
        }),
        Err(_) => Err(PeerError::Handshake {
            addr: addr.to_owned(),
            source: HandshakeError::Unexpected("timed out"),
        }),
    }
}

fn connect_error(addr: &str, reason: String) -> PeerError {
    PeerError::Connect {
        addr: addr.to_owned(),
        reason,
    }
}

enum DialFailure {
    Handshake(HandshakeError),
    WrongNode(NodeId),
}

impl From<HandshakeError> for DialFailure {
    fn from(e: HandshakeError) -> Self {
        DialFailure::Handshake(e)
    }
}

async fn dial_exchange<S: Link>(
    mut framed: HandshakeStream<S>,
    me: &LocalIdentity,
    expected: Option<NodeId>,
) -> Result<(S, RemoteIdentity), DialFailure> {
    let my_nonce = nonce();
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_name: me.credentials.cluster_name().to_owned(),
        settings: me.credentials.settings(),
        node: me.id,
        name: me.name.clone(),
        advertise: me.advertise.clone(),
        nonce: my_nonce,
    };
    framed
        .send(HandshakeFrame::Hello(hello))
        .await
        .map_err(|_| HandshakeError::Unexpected("connection closed"))?;
    let HandshakeFrame::Welcome(welcome) = receive(&mut framed).await? else {
        return Err(HandshakeError::Unexpected("expected welcome").into());
    };
    let Welcome {
        node,
        name,
        nonce: their_nonce,
        proof,
    } = welcome;
    if let Err(e) = me.credentials.verify_acceptor(&my_nonce, &their_nonce, &proof) {
        return Err(refuse(&mut framed, e).await.into());
    }
    if expected.is_some_and(|id| id != node) {
        let _ = framed.send(HandshakeFrame::Refused("unexpected node id".into())).await;
        return Err(DialFailure::WrongNode(node));
    }
    let my_proof = me.credentials.dialler_proof(&my_nonce, &their_nonce);
    framed
        .send(HandshakeFrame::Proof(my_proof))
        .await
        .map_err(|_| HandshakeError::Unexpected("connection closed"))?;
    let HandshakeFrame::Accepted = receive(&mut framed).await? else {
        return Err(HandshakeError::Unexpected("expected accepted").into());
    };
    let remote = RemoteIdentity {
        id: node,
        name,
        advertise: String::new(),
    };
    Ok((into_stream(framed)?, remote))
}

/// A connection the acceptor refused: why, and the name the dialler gave (if it got that far).
pub(crate) struct Refused {
    pub(crate) error: HandshakeError,
    pub(crate) dialler: Option<String>,
}

impl From<HandshakeError> for Refused {
    fn from(error: HandshakeError) -> Self {
        Refused { error, dialler: None }
    }
}

/// Acceptor side.
pub(crate) async fn accept(stream: TcpStream, me: &LocalIdentity) -> Result<(PeerStream, RemoteIdentity), Refused> {
    let _ = stream.set_nodelay(true);
    let setup = async {
        match &me.tls {
            None => {
                let (stream, remote) = accept_exchange(Framed::new(stream, HandshakeCodec::handshake()), me).await?;
                Ok::<_, Refused>((PeerStream::Plain(stream), remote))
            }
            Some(tls) => {
                let stream = tls.accept(stream).await.map_err(HandshakeError::Tls)?;
                let (stream, remote) = accept_exchange(Framed::new(stream, HandshakeCodec::handshake()), me).await?;
                Ok((PeerStream::Tls(Box::new(stream)), remote))
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, setup)
        .await
        .unwrap_or(Err(HandshakeError::Unexpected("timed out").into()))
}

async fn accept_exchange<S: Link>(
    mut framed: HandshakeStream<S>,
    me: &LocalIdentity,
) -> Result<(S, RemoteIdentity), Refused> {
    let HandshakeFrame::Hello(hello) = receive(&mut framed).await? else {
        return Err(refuse(&mut framed, HandshakeError::Unexpected("expected hello"))
            .await
            .into());
    };
    let dialler = hello.name.clone();
    accept_hello(framed, me, hello).await.map_err(|error| Refused {
        error,
        dialler: Some(dialler),
    })
}

async fn accept_hello<S: Link>(
    mut framed: HandshakeStream<S>,
    me: &LocalIdentity,
    hello: Hello,
) -> Result<(S, RemoteIdentity), HandshakeError> {
    if let Err(e) = me.credentials.check_hello(&hello) {
        return Err(refuse(&mut framed, e).await);
    }
    let my_nonce = nonce();
    let welcome = Welcome {
        node: me.id,
        name: me.name.clone(),
        nonce: my_nonce,
        proof: me.credentials.acceptor_proof(&hello.nonce, &my_nonce),
    };
    framed
        .send(HandshakeFrame::Welcome(welcome))
        .await
        .map_err(|_| HandshakeError::Unexpected("connection closed"))?;
    let HandshakeFrame::Proof(proof) = receive(&mut framed).await? else {
        return Err(refuse(&mut framed, HandshakeError::Unexpected("expected proof")).await);
    };
    if let Err(e) = me.credentials.verify_dialler(&hello.nonce, &my_nonce, &proof) {
        return Err(refuse(&mut framed, e).await);
    }
    framed
        .send(HandshakeFrame::Accepted)
        .await
        .map_err(|_| HandshakeError::Unexpected("connection closed"))?;
    let remote = RemoteIdentity {
        id: hello.node,
        name: hello.name,
        advertise: hello.advertise,
    };
    Ok((into_stream(framed)?, remote))
}
