//! Accepting connections as a stream, for the client and peer listeners.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop cannot spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// The connections accepted on `socket`, forever. After a failed accept (e.g. out of file
/// descriptors) it pauses briefly, so the loop cannot spin.
pub(crate) fn accept_stream(
    socket: TcpListener,
) -> impl futures_util::Stream<Item = io::Result<(TcpStream, SocketAddr)>> {
    futures_util::stream::unfold(socket, |socket| async move {
        let accepted = socket.accept().await;
        if let Err(e) = &accepted {
            log::warn!("accept failed: {e}");
            tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
        }
        Some((accepted, socket))
    })
}
