//! A minimal memcache text-protocol client for the admin commands.

use anyhow::{bail, Context, Result};
use kai_proto::auth::AuthFile;
use std::collections::BTreeMap;
use std::path::Path;
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

    /// Connects to `addr` and, with `auth_file` (memcached's `user:password` lines, e.g. the
    /// node's own `auth_file`), authenticates as its first user with memcached's text
    /// authentication.
    pub async fn open_as(addr: &str, auth_file: Option<&Path>) -> Result<Self> {
        let mut conn = Self::open(addr).await?;
        if let Some(path) = auth_file {
            let text = std::fs::read(path).with_context(|| format!("cannot read auth file {}", path.display()))?;
            let users = AuthFile::parse(&text).with_context(|| format!("bad auth file {}", path.display()))?;
            let Some((user, password)) = users.first_user() else {
                bail!("auth file {} names no user", path.display());
            };
            if !conn.authenticate(user, password).await? {
                bail!("authentication as the first user of {} failed", path.display());
            }
        }
        Ok(conn)
    }

    /// memcached's text authentication: a `set` whose data is `user password`.
    async fn authenticate(&mut self, user: &[u8], password: &[u8]) -> Result<bool> {
        let data = [user, b" ", password].concat();
        let mut request = format!("set kai_auth 0 0 {}\r\n", data.len()).into_bytes();
        request.extend_from_slice(&data);
        request.extend_from_slice(b"\r\n");
        self.writer.write_all(&request).await?;
        Ok(self.read_line().await? == "STORED")
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
