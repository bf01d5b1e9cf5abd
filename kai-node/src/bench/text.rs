//! The memcache text protocol as `kai bench` speaks it: one request in flight per connection
//! (pipelined only for the prefill), replies classified as done, refused or failed.
//!
//! Invariants: a reply that is not the command's documented answer is a failure, never a
//! success; buffers are reused between requests, so the client allocates nothing per request.

use super::protocol::Reply;
use anyhow::{bail, Context, Result};
use std::io::Write;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// One text-protocol connection.
pub struct TextConnection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    request: Vec<u8>,
    line: Vec<u8>,
    data: Vec<u8>,
}

impl TextConnection {
    /// Connects to `addr`.
    pub async fn open(addr: &str) -> Result<TextConnection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(TextConnection {
            reader: BufReader::new(r),
            writer: w,
            request: Vec::new(),
            line: Vec::new(),
            data: Vec::new(),
        })
    }

    async fn send(&mut self) -> Result<()> {
        self.writer.write_all(&self.request).await?;
        Ok(())
    }

    /// Reads one reply line (without `\r\n`) into `self.line`.
    async fn read_line(&mut self) -> Result<()> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line).await? == 0 {
            bail!("server closed the connection");
        }
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(())
    }

    fn storage(&mut self, command: &str, key: &[u8], value: &[u8], cas: Option<u64>) {
        self.request.clear();
        self.request.extend_from_slice(command.as_bytes());
        self.request.push(b' ');
        self.request.extend_from_slice(key);
        // Writing to a Vec cannot fail.
        let _ = write!(self.request, " 0 0 {}", value.len());
        if let Some(cas) = cas {
            let _ = write!(self.request, " {cas}");
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(value);
        self.request.extend_from_slice(b"\r\n");
    }

    /// Classifies a storage reply.
    fn stored(&self) -> Reply {
        match self.line.as_slice() {
            b"STORED" => Reply::Done,
            b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => Reply::Refused,
            other => Reply::failed(other),
        }
    }

    /// `get`: a hit or a miss is done. With `cas`, `gets`, returning the hit's cas unique.
    async fn fetch(&mut self, key: &[u8], cas: bool) -> Result<(Reply, Option<u64>)> {
        self.request.clear();
        self.data.clear();
        self.request.extend_from_slice(if cas { b"gets " } else { b"get " });
        self.request.extend_from_slice(key);
        self.request.extend_from_slice(b"\r\n");
        self.send().await?;
        self.read_line().await?;
        if self.line == b"END" {
            return Ok((Reply::Done, None));
        }
        let header = match std::str::from_utf8(&self.line) {
            Ok(line) if line.starts_with("VALUE ") => line.to_owned(),
            _ => return Ok((Reply::failed(&self.line), None)),
        };
        let mut fields = header.split(' ').skip(3);
        let len: usize = fields
            .next()
            .and_then(|l| l.parse().ok())
            .with_context(|| format!("bad VALUE line `{header}`"))?;
        let unique = fields.next().and_then(|c| c.parse().ok());
        self.data.resize(len + 2, 0);
        self.reader.read_exact(&mut self.data).await?;
        self.read_line().await?;
        if self.line != b"END" {
            return Ok((Reply::failed(&self.line), None));
        }
        Ok((Reply::Done, unique))
    }

    /// `get key`.
    pub async fn get(&mut self, key: &[u8]) -> Result<Reply> {
        Ok(self.fetch(key, false).await?.0)
    }

    /// `set`/`add` (`command`) of `value`.
    pub async fn store(&mut self, command: &str, key: &[u8], value: &[u8]) -> Result<Reply> {
        self.storage(command, key, value, None);
        self.send().await?;
        self.read_line().await?;
        Ok(self.stored())
    }

    /// `incr key 1`: a number is done.
    pub async fn incr(&mut self, key: &[u8]) -> Result<Reply> {
        self.request.clear();
        self.request.extend_from_slice(b"incr ");
        self.request.extend_from_slice(key);
        self.request.extend_from_slice(b" 1\r\n");
        self.send().await?;
        self.read_line().await?;
        Ok(match self.line.as_slice() {
            b"NOT_FOUND" => Reply::Refused,
            digits if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => Reply::Done,
            other => Reply::failed(other),
        })
    }

    /// `gets key` then `cas key … unique` with `value`: `EXISTS` (a concurrent change) or a miss
    /// is refused.
    pub async fn cas(&mut self, key: &[u8], value: &[u8]) -> Result<Reply> {
        let (reply, unique) = self.fetch(key, true).await?;
        let Some(unique) = unique else {
            return Ok(match reply {
                Reply::Done => Reply::Refused,
                failed => failed,
            });
        };
        self.storage("cas", key, value, Some(unique));
        self.send().await?;
        self.read_line().await?;
        Ok(self.stored())
    }

    /// Stores every `(key, value)` pipelined in one write; the number answered `STORED`.
    pub async fn set_batch(&mut self, items: &[(Vec<u8>, &[u8])]) -> Result<usize> {
        self.request.clear();
        for (key, value) in items {
            self.request.extend_from_slice(b"set ");
            self.request.extend_from_slice(key);
            let _ = write!(self.request, " 0 0 {}\r\n", value.len());
            self.request.extend_from_slice(value);
            self.request.extend_from_slice(b"\r\n");
        }
        self.send().await?;
        let mut stored = 0;
        for _ in items {
            self.read_line().await?;
            stored += usize::from(self.line == b"STORED");
        }
        Ok(stored)
    }

    /// The value of `key` as a number, if it holds one.
    pub async fn counter(&mut self, key: &[u8]) -> Result<Option<u64>> {
        match self.fetch(key, false).await? {
            (Reply::Done, _) if !self.data.is_empty() => {
                let digits = &self.data[..self.data.len() - 2];
                Ok(std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()))
            }
            _ => Ok(None),
        }
    }
}
