//! Test harness: real `kai` processes on loopback and a raw memcache text client.
#![allow(dead_code)] // each test binary uses a different subset of the harness

pub mod admin;
pub mod cluster;
pub mod history;
pub mod linearizability;
pub mod memcached;
pub mod netns;
pub mod processes;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Socket read timeout of the raw client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `kai` binary built by `cargo test`.
pub fn kai_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kai")
}

/// A running `kai start` process.
pub struct KaiProcess {
    child: Option<Child>,
    /// Its memcache address.
    pub addr: SocketAddr,
    /// Its admin HTTP address.
    pub admin: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The command it was started with (for restarts).
    command: Vec<String>,
    log: PathBuf,
}

impl KaiProcess {
    /// Starts `kai start <args>` with data in `data_dir`.
    pub fn start_with_args(data_dir: &Path, args: Vec<String>) -> KaiProcess {
        Self::start_via(&[], data_dir, args)
    }

    /// Starts `<launcher…> kai start <args>` (e.g. `ip netns exec NS`) with data in `data_dir`.
    pub fn start_via(launcher: &[&str], data_dir: &Path, args: Vec<String>) -> KaiProcess {
        let mut command: Vec<String> = launcher.iter().map(|s| s.to_string()).collect();
        command.push(kai_bin().to_owned());
        command.extend([
            "start".to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            // Many nodes share the host: each gets its own admin port (`args` may override).
            "--set".to_owned(),
            "admin_listen=127.0.0.1:0".to_owned(),
        ]);
        command.extend(args);
        Self::spawn(data_dir, command)
    }

    /// Starts a lone node with data in `data_dir` on ephemeral ports, plus `--set` pairs.
    pub fn start(data_dir: &Path, settings: &[(&str, &str)]) -> KaiProcess {
        let mut args = vec![
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--peer-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--name".to_owned(),
            "single".to_owned(),
        ];
        for (k, v) in settings {
            args.push("--set".to_owned());
            args.push(format!("{k}={v}"));
        }
        Self::start_with_args(data_dir, args)
    }

    /// Runs `command` (program first): `kai start …`, possibly behind a launcher.
    fn spawn(data_dir: &Path, command: Vec<String>) -> KaiProcess {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let log = data_dir.join("kai.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn kai");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .map(String::from)
                };
                if let (Some(addr), Some(admin)) = (field("memcache="), field("admin=")) {
                    let _ = tx.send((addr, admin));
                }
            }
        });
        let (addr, admin) = match rx.recv_timeout(START_TIMEOUT) {
            Ok((addr, admin)) => (
                addr.parse().expect("ready line has an address"),
                admin.parse().expect("ready line has an admin address"),
            ),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "kai did not become ready; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        KaiProcess {
            child: Some(child),
            addr,
            admin,
            data_dir: data_dir.to_owned(),
            command,
            log,
        }
    }

    /// Connects a raw client.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// SIGKILL, and wait for it to die.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("wait");
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(status.success());
            let status = child.wait().expect("wait");
            assert!(
                status.success(),
                "kai exited with {status} after SIGTERM; log:\n{}",
                self.log_text()
            );
        }
    }

    /// Starts the same node again (same data dir and settings; new ephemeral port).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        let fresh = Self::spawn(&self.data_dir, self.command.clone());
        *self = fresh;
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for KaiProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A raw memcache text-protocol client.
pub struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
        Client::from_stream(stream)
    }

    /// A client over an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Client {
        let _ = stream.set_nodelay(true);
        Client {
            stream: BufReader::new(stream),
        }
    }

    /// `set`, or `None` if the connection failed (for clients that outlive their server).
    pub fn try_set(&mut self, key: &str, value: &[u8]) -> Option<String> {
        let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        self.stream.get_mut().write_all(&req).ok()?;
        let mut line = String::new();
        match self.stream.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line),
            _ => None,
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).expect("write");
    }

    /// Reads one line, with its `\r\n`.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("read line");
        line
    }

    /// Reads exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).expect("read bytes");
        buf
    }

    /// Sends `command` and returns the one-line reply.
    pub fn call(&mut self, command: &str) -> String {
        self.send(command.as_bytes());
        self.line()
    }

    /// `set` and its reply line.
    pub fn set(&mut self, key: &str, value: &[u8]) -> String {
        self.set_with(key, 0, 0, value)
    }

    /// `set` with flags and exptime.
    pub fn set_with(&mut self, key: &str, flags: u32, exptime: i64, value: &[u8]) -> String {
        let mut req = format!("set {key} {flags} {exptime} {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        self.send(&req);
        self.line()
    }

    /// Reads a `VALUE … END` block: `(key, flags, data, cas)` per hit.
    pub fn values(&mut self) -> Vec<(String, u32, Vec<u8>, Option<u64>)> {
        let mut out = Vec::new();
        loop {
            let line = self.line();
            if line == "END\r\n" {
                return out;
            }
            let parts: Vec<&str> = line.trim_end().split(' ').collect();
            assert_eq!(parts[0], "VALUE", "unexpected line {line:?}");
            let len: usize = parts[3].parse().expect("length");
            let data = self.bytes(len + 2);
            assert_eq!(&data[len..], b"\r\n");
            out.push((
                parts[1].to_owned(),
                parts[2].parse().expect("flags"),
                data[..len].to_vec(),
                parts.get(4).map(|c| c.parse().expect("cas")),
            ));
        }
    }

    /// `get key`: the value, if any.
    pub fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.send(format!("get {key}\r\n").as_bytes());
        let mut values = self.values();
        assert!(values.len() <= 1);
        values.pop().map(|(_, _, data, _)| data)
    }

    /// `stats` as name → value.
    pub fn stats(&mut self) -> std::collections::HashMap<String, String> {
        self.stats_group("")
    }

    /// `stats <group>` as name → value (`""`: the general stats).
    pub fn stats_group(&mut self, group: &str) -> std::collections::HashMap<String, String> {
        self.send(format!("stats {group}\r\n").as_bytes());
        let mut out = std::collections::HashMap::new();
        loop {
            let line = self.line();
            if line == "END\r\n" {
                return out;
            }
            let mut parts = line.trim_end().splitn(3, ' ');
            assert_eq!(parts.next(), Some("STAT"), "unexpected line {line:?}");
            let name = parts.next().expect("name").to_owned();
            out.insert(name, parts.next().unwrap_or_default().to_owned());
        }
    }

    /// True if the server closed the connection (reads EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.stream.read(&mut buf), Ok(0) | Err(_))
    }
}

/// A free loopback port below the kernel's ephemeral range (32768+), so no outgoing connection
/// can take it between this check and the node binding it; for nodes that must keep their
/// address across restarts.
pub fn reserve_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let offset = (std::process::id() % 60) as u16 * 200;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = FIRST + (offset + n) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a Python snippet; panics with a hint if Python or the module is missing.
pub fn python(script: &str, args: &[String]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed (see README: prerequisites)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python failed (is pymemcache installed? `pip install pymemcache`):\n{stderr}"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `openssl s_client` sending `input` to `addr` over TLS, verifying the server's certificate
/// against `ca` (and that it names `addr`'s IP address): its exit status and standard output.
pub fn s_client(addr: SocketAddr, ca: &str, input: &[u8]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(addr.to_string())
        .args(["-CAfile", ca, "-verify_ip"])
        .arg(addr.ip().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl must be installed (see README: prerequisites)");
    child.stdin.take().expect("stdin").write_all(input).expect("write");
    let out = child.wait_with_output().expect("wait for openssl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}
