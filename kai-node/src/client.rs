//! A minimal memcache text-protocol client for the admin commands.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One connection to a memcache server.
pub struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
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
        })
    }

    async fn read_line(&mut self) -> Result<&str> {
        self.line.clear();
        if self.reader.read_line(&mut self.line).await? == 0 {
            bail!("server closed the connection");
        }
        Ok(self.line.trim_end())
    }

    /// Sends a one-line command and returns the one-line reply.
    pub async fn command(&mut self, line: &str) -> Result<String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).await?;
        Ok(self.read_line().await?.to_owned())
    }

    /// `stats [group]` as name → value, in order.
    pub async fn stats(&mut self, group: Option<&str>) -> Result<BTreeMap<String, String>> {
        let command = group.map_or("stats".to_owned(), |g| format!("stats {g}"));
        self.writer.write_all(format!("{command}\r\n").as_bytes()).await?;
        let mut out = BTreeMap::new();
        loop {
            let line = self.read_line().await?;
            if line == "END" {
                return Ok(out);
            }
            let Some(rest) = line.strip_prefix("STAT ") else {
                bail!("unexpected reply to `{command}`: {line}");
            };
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            out.insert(name.to_owned(), value.to_owned());
        }
    }
}
