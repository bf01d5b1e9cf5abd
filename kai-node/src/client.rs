//! A minimal memcache text-protocol client, for `kai bench`.

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One connection to a memcache server.
pub struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
    request: Vec<u8>,
}

impl Connection {
    /// Connects to `addr` (`host:port`).
    pub async fn open(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Connection {
            reader: BufReader::new(r),
            writer: w,
            line: String::new(),
            request: Vec::new(),
        })
    }

    async fn read_line(&mut self) -> Result<&str> {
        self.line.clear();
        if self.reader.read_line(&mut self.line).await? == 0 {
            bail!("server closed the connection");
        }
        Ok(self.line.trim_end())
    }

    /// `set`; true if the server answered `STORED`.
    pub async fn set(&mut self, key: &str, value: &[u8]) -> Result<bool> {
        self.request.clear();
        self.request
            .extend_from_slice(format!("set {key} 0 0 {}\r\n", value.len()).as_bytes());
        self.request.extend_from_slice(value);
        self.request.extend_from_slice(b"\r\n");
        self.writer.write_all(&self.request).await?;
        Ok(self.read_line().await? == "STORED")
    }

    /// `get`; true if the server answered a well-formed hit or miss.
    pub async fn get(&mut self, key: &str) -> Result<bool> {
        self.writer.write_all(format!("get {key}\r\n").as_bytes()).await?;
        let line = self.read_line().await?.to_owned();
        if line == "END" {
            return Ok(true);
        }
        let Some(len) = line.strip_prefix("VALUE ").and_then(|rest| rest.split(' ').nth(2)) else {
            return Ok(false);
        };
        let len: usize = len.parse().context("bad VALUE line")?;
        let mut data = vec![0u8; len + 2];
        self.reader.read_exact(&mut data).await?;
        Ok(self.read_line().await? == "END")
    }
}
