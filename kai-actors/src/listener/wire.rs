//! A client connection's stream and buffers, shared by the protocol loops (text, binary,
//! authentication) so each reads and flushes the same way and can hand the connection, with
//! the bytes it has buffered, to the next.
//!
//! Generic over the stream: a plain `TcpStream`, or a TLS session over one (`crate::tls`); the
//! loops are compiled once for each, so plain connections pay nothing for TLS.

use super::SessionContext;
use crate::stats;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from the socket at a time (at least).
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// What a client connection runs over.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin {}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientStream for S {}

/// One connection's I/O state.
pub(super) struct Wire<S> {
    stream: S,
    /// Received, not yet decoded.
    pub input: BytesMut,
    /// Replies not yet written.
    pub output: BytesMut,
}

impl<S: ClientStream> Wire<S> {
    pub fn new(stream: S) -> Wire<S> {
        Wire {
            stream,
            input: BytesMut::with_capacity(READ_CHUNK),
            output: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Reads more input; false if the client closed the connection or it failed.
    pub async fn read(&mut self, ctx: &SessionContext) -> bool {
        self.input.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.input).await {
            Ok(0) => false,
            Ok(n) => {
                stats::add(&ctx.shared.stats.bytes_read, n as u64);
                true
            }
            Err(e) => {
                log::debug!("client read failed: {e}");
                false
            }
        }
    }

    /// Writes and clears the output; false if the connection is gone. (`flush` pushes out what
    /// a TLS session buffered; on a `TcpStream` it does nothing.)
    pub async fn flush(&mut self, ctx: &SessionContext) -> bool {
        if self.output.is_empty() {
            return true;
        }
        let written = match self.stream.write_all(&self.output).await {
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            log::debug!("client write failed: {e}");
            return false;
        }
        stats::add(&ctx.shared.stats.bytes_written, self.output.len() as u64);
        self.output.clear();
        true
    }

    /// Ends the connection cleanly: writes what is left, then closes the sending side (on TLS,
    /// with a `close_notify`, so clients can tell the end from a truncation).
    pub async fn close(mut self, ctx: &SessionContext) {
        if self.flush(ctx).await {
            if let Err(e) = self.stream.shutdown().await {
                log::debug!("client shutdown failed: {e}");
            }
        }
    }
}
