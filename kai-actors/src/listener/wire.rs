//! A client connection's socket halves and buffers, shared by the protocol loops (text,
//! binary, authentication) so each reads and flushes the same way and can hand the connection,
//! with the bytes it has buffered, to the next.

use super::SessionContext;
use crate::stats;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Bytes read from the socket at a time (at least).
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// One connection's I/O state.
pub(super) struct Wire {
    pub rd: OwnedReadHalf,
    pub wr: OwnedWriteHalf,
    /// Received, not yet decoded.
    pub input: BytesMut,
    /// Replies not yet written.
    pub output: BytesMut,
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        let (rd, wr) = stream.into_split();
        Wire {
            rd,
            wr,
            input: BytesMut::with_capacity(READ_CHUNK),
            output: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Reads more input; false if the client closed the connection or it failed.
    pub async fn read(&mut self, ctx: &SessionContext) -> bool {
        self.input.reserve(READ_CHUNK);
        match self.rd.read_buf(&mut self.input).await {
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

    /// Writes and clears the output; false if the connection is gone.
    pub async fn flush(&mut self, ctx: &SessionContext) -> bool {
        if self.output.is_empty() {
            return true;
        }
        if let Err(e) = self.wr.write_all(&self.output).await {
            log::debug!("client write failed: {e}");
            return false;
        }
        stats::add(&ctx.shared.stats.bytes_written, self.output.len() as u64);
        self.output.clear();
        true
    }
}
