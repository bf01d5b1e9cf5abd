//! The byte stream under every dialect of `kai bench`: one TCP connection, buffered reads and
//! buffers reused from request to request.
//!
//! Invariants: once the buffers have grown to the workload's sizes the client allocates nothing
//! per request; an `Err` means the connection is unusable (I/O error, closed by the server) and
//! the caller reopens it.

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// One connection and its buffers.
pub struct Wire {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The request being built; [`Wire::send`] writes it.
    pub request: Vec<u8>,
    /// The last line read, without its `\r\n`.
    pub line: Vec<u8>,
    /// The last block read.
    pub data: Vec<u8>,
}

impl Wire {
    /// Connects to `addr` (Nagle off: one request in flight, sent at once).
    pub async fn open(addr: &str) -> Result<Wire> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Wire {
            reader: BufReader::new(r),
            writer: w,
            request: Vec::new(),
            line: Vec::new(),
            data: Vec::new(),
        })
    }

    /// Writes `self.request`.
    pub async fn send(&mut self) -> Result<()> {
        self.writer.write_all(&self.request).await?;
        Ok(())
    }

    /// Reads one line into `self.line`, without its `\r\n`.
    pub async fn read_line(&mut self) -> Result<()> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line).await? == 0 {
            bail!("server closed the connection");
        }
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(())
    }

    /// Fills `out`.
    pub async fn read_exact(&mut self, out: &mut [u8]) -> Result<()> {
        self.reader.read_exact(out).await?;
        Ok(())
    }

    /// Reads exactly `len` bytes into `self.data`.
    pub async fn read_block(&mut self, len: usize) -> Result<()> {
        self.data.resize(len, 0);
        self.reader.read_exact(&mut self.data).await?;
        Ok(())
    }
}
