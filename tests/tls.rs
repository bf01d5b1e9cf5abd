//! End-to-end TLS: real `kai` processes on loopback with certificates made at test time by
//! `deploy/make-certs.sh` (the openssl commands operators run) in a temporary directory, driven
//! by real clients: pymemcache with a `tls_context`, `openssl s_client`, and a rustls client
//! speaking the text, meta and binary protocols. Peer links with mutual TLS form a cluster that
//! serves quorum writes; a node whose certificate another CA signed is refused, logged once.
//!
//! Prerequisites: `openssl` and `pip install pymemcache`.

mod common;

use common::processes::{node_args, ProcessCluster};
use common::{kai_bin, python, reserve_port, s_client, wait_until, KaiProcess};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Socket timeout of the test clients.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a misconfigured `kai start` may take to give up.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A CA and node certificates in a temporary directory, made by `deploy/make-certs.sh`.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn make(nodes: &[&str]) -> Certs {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/make-certs.sh");
        let out = Command::new(script)
            .arg(dir.path())
            .args(nodes)
            .output()
            .expect("run deploy/make-certs.sh (needs openssl)");
        assert!(
            out.status.success(),
            "make-certs.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Certs { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    fn ca(&self) -> String {
        self.path("ca.pem")
    }

    /// `tls_cert`/`tls_key` settings serving `node`'s certificate on the memcache port.
    fn client_port(&self, node: &str) -> Vec<(&'static str, String)> {
        vec![
            ("tls_cert", self.path(&format!("{node}.pem"))),
            ("tls_key", self.path(&format!("{node}.key"))),
        ]
    }

    /// `peer_tls_*` settings: `node`'s certificate, trusting `ca`'s CA.
    fn peer_links(&self, node: &str, ca: &Certs) -> Vec<(&'static str, String)> {
        vec![
            ("peer_tls_cert", self.path(&format!("{node}.pem"))),
            ("peer_tls_key", self.path(&format!("{node}.key"))),
            ("peer_tls_ca", ca.ca()),
        ]
    }
}

fn start_node(dir: &Path, settings: &[(&'static str, String)]) -> KaiProcess {
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    KaiProcess::start(dir, &pairs)
}

/// A rustls client of a memcache port, trusting `ca`, optionally presenting a certificate.
struct TlsClient {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

impl TlsClient {
    fn connect(addr: SocketAddr, ca: &str, identity: Option<(&str, &str)>) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
            roots.add(cert.expect("CA certificate")).expect("add CA");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .expect("read cert")
                        .collect::<Result<_, _>>()
                        .expect("certs"),
                    PrivateKeyDer::from_pem_file(key).expect("key"),
                )
                .expect("client certificate"),
        };
        let name = ServerName::from(addr.ip());
        let session = rustls::ClientConnection::new(Arc::new(config), name).expect("client session");
        let socket = TcpStream::connect(addr).expect("connect");
        socket.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
        TlsClient {
            stream: BufReader::new(rustls::StreamOwned::new(session, socket)),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stream = self.stream.get_mut();
        stream.write_all(bytes).expect("write");
        stream.flush().expect("flush");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("read line");
        line
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).expect("read bytes");
        buf
    }

    fn call(&mut self, request: &str) -> String {
        self.send(request.as_bytes());
        self.line()
    }

    /// Reads until the server ends the session: what it sent, or the error that ended it.
    fn rest(&mut self) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::new();
        self.stream.read_to_end(&mut out).map(|_| out)
    }
}

/// A binary-protocol request: `opcode` with `extras`, `key` and `value`.
fn binary_request(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut packet = vec![0x80, opcode];
    packet.extend_from_slice(&(key.len() as u16).to_be_bytes());
    packet.push(extras.len() as u8);
    packet.extend_from_slice(&[0, 0, 0]); // data type, vbucket
    packet.extend_from_slice(&(body as u32).to_be_bytes());
    packet.extend_from_slice(&[0; 12]); // opaque, cas
    packet.extend_from_slice(extras);
    packet.extend_from_slice(key);
    packet.extend_from_slice(value);
    packet
}

/// Reads one binary-protocol response: `(status, body)`.
fn binary_response(client: &mut TlsClient) -> (u16, Vec<u8>) {
    let header = client.bytes(24);
    assert_eq!(header[0], 0x81, "response magic");
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    (status, client.bytes(body))
}

/// The lines of `log` at warn level that contain `text`.
fn warnings(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(" WARN ") && l.contains(text)).count()
}

#[test]
fn text_meta_and_binary_run_over_tls() {
    let certs = Certs::make(&["node"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = start_node(dir.path(), &certs.client_port("node"));

    let mut text = TlsClient::connect(kai.addr, &certs.ca(), None);
    assert_eq!(text.call("set greeting 5 0 5\r\nhello\r\n"), "STORED\r\n");
    assert_eq!(text.call("get greeting\r\n"), "VALUE greeting 5 5\r\n");
    assert_eq!(text.line(), "hello\r\n");
    assert_eq!(text.line(), "END\r\n");
    assert_eq!(text.call("ms meta 2 T0\r\nhi\r\n"), "HD\r\n");
    assert_eq!(text.call("mg meta v f\r\n"), "VA 2 f0\r\n");
    assert_eq!(text.line(), "hi\r\n");

    let mut binary = TlsClient::connect(kai.addr, &certs.ca(), None);
    binary.send(&binary_request(0x00, &[], b"greeting", &[]));
    let (status, body) = binary_response(&mut binary);
    assert_eq!(status, 0);
    assert_eq!(body, b"\0\0\0\x05hello", "flags then value");
    let mut set_extras = 7u32.to_be_bytes().to_vec();
    set_extras.extend_from_slice(&0u32.to_be_bytes());
    binary.send(&binary_request(0x01, &set_extras, b"bin", b"binary"));
    assert_eq!(binary_response(&mut binary).0, 0);
    assert_eq!(text.call("get bin\r\n"), "VALUE bin 7 6\r\n");
    assert_eq!(text.line(), "binary\r\n");
    assert_eq!(text.line(), "END\r\n");

    // `quit` ends the session with a TLS close_notify: a clean end, not a truncation.
    text.send(b"quit\r\n");
    assert_eq!(text.rest().expect("clean TLS shutdown"), b"");
}

#[test]
fn pymemcache_with_a_tls_context_sets_and_gets() {
    let certs = Certs::make(&["node"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = start_node(dir.path(), &certs.client_port("node"));
    let script = r#"
import ssl, sys
from pymemcache.client.base import Client
context = ssl.create_default_context(cafile=sys.argv[3])
c = Client((sys.argv[1], int(sys.argv[2])), tls_context=context, connect_timeout=5, timeout=5)
assert c.set("greeting", b"hello over tls")
assert c.get("greeting") == b"hello over tls"
c.set_many({"a": b"1", "b": b"2"})
assert c.get_many(["a", "b", "nope"]) == {"a": b"1", "b": b"2"}
assert c.delete("a") is True
assert c.get("a") is None
assert c.incr("counter", 1) is None
c.set("counter", b"41")
assert c.incr("counter", 1) == 42
assert c.version().startswith(b"1.6.0-kai.")
print("pymemcache tls ok")
"#;
    let out = python(
        script,
        &[kai.addr.ip().to_string(), kai.addr.port().to_string(), certs.ca()],
    );
    assert_eq!(out.trim(), "pymemcache tls ok");
}

#[test]
fn openssl_s_client_speaks_the_text_protocol() {
    let certs = Certs::make(&["node"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = start_node(dir.path(), &certs.client_port("node"));
    let (ok, out) = s_client(
        kai.addr,
        &certs.ca(),
        b"set k 3 0 2\r\nhi\r\nget k\r\nincr n 1\r\nquit\r\n",
    );
    assert!(ok, "s_client failed; output: {out}");
    assert_eq!(out, "STORED\r\nVALUE k 3 2\r\nhi\r\nEND\r\nNOT_FOUND\r\n");

    // The node presents the certificate it was given: a client trusting another CA refuses it.
    let other = Certs::make(&["node"]);
    let (ok, out) = s_client(kai.addr, &other.ca(), b"get k\r\nquit\r\n");
    assert!(!ok, "verified against the wrong CA: {out}");
    assert_eq!(out, "");
}

#[test]
fn plain_text_on_the_tls_port_is_refused_while_tls_clients_work() {
    let certs = Certs::make(&["node"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = start_node(dir.path(), &certs.client_port("node"));
    let mut tls = TlsClient::connect(kai.addr, &certs.ca(), None);
    assert_eq!(tls.call("set k 0 0 1\r\nv\r\n"), "STORED\r\n");

    // A port probe (connect, close) is not a refusal.
    drop(TcpStream::connect(kai.addr).expect("connect"));
    for attempt in 0..20 {
        let mut plain = TcpStream::connect(kai.addr).expect("connect");
        plain.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
        let request: &[u8] = if attempt % 2 == 0 {
            b"get k\r\n"
        } else {
            &binary_request(0x00, &[], b"k", &[])
        };
        plain.write_all(request).expect("write");
        let mut reply = Vec::new();
        // The server closes the connection (possibly after a TLS alert): never a memcache reply.
        let _ = plain.read_to_end(&mut reply);
        assert!(
            !reply.windows(3).any(|w| w == b"END" || w == b"v\r\n") && reply.first() != Some(&0x81),
            "plain text was answered: {reply:?}"
        );
    }
    // The TLS session on the other connection is untouched.
    assert_eq!(tls.call("get k\r\n"), "VALUE k 0 1\r\n");
    assert_eq!(tls.line(), "v\r\n");
    assert_eq!(tls.line(), "END\r\n");
    assert_eq!(
        TlsClient::connect(kai.addr, &certs.ca(), None).call("version\r\n")[..8],
        *"VERSION "
    );

    wait_until(Duration::from_secs(10), "the refusal in the log", || {
        warnings(&kai.log_text(), "refused client 127.0.0.1") > 0
    });
    let log = kai.log_text();
    assert_eq!(
        warnings(&log, "refused client 127.0.0.1"),
        1,
        "20 refusals from one address are logged once:\n{log}"
    );
    assert_eq!(warnings(&log, "TLS"), 1, "the probe is no refusal:\n{log}");
}

#[test]
fn client_certificates_are_required_with_tls_client_ca() {
    let certs = Certs::make(&["node", "app"]);
    let strangers = Certs::make(&["app"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = certs.client_port("node");
    settings.push(("tls_client_ca", certs.ca()));
    let kai = start_node(dir.path(), &settings);

    let identity = (certs.path("app.pem"), certs.path("app.key"));
    let mut client = TlsClient::connect(kai.addr, &certs.ca(), Some((&identity.0, &identity.1)));
    assert_eq!(client.call("set k 0 0 1\r\nv\r\n"), "STORED\r\n");

    for identity in [None, Some((strangers.path("app.pem"), strangers.path("app.key")))] {
        let identity = identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        let mut refused = TlsClient::connect(kai.addr, &certs.ca(), identity);
        refused.send(b"get k\r\n");
        let refusal = refused
            .rest()
            .expect_err("a client without an accepted certificate was served");
        assert!(refusal.to_string().contains("received fatal alert"), "{refusal}");
    }
    assert_eq!(client.call("get k\r\n"), "VALUE k 0 1\r\n");
}

#[test]
fn a_cluster_with_peer_mutual_tls_serves_quorum_writes() {
    let certs = Certs::make(&["kai"]);
    let settings = certs.peer_links("kai", &certs);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cluster = ProcessCluster::start_with(3, (3, 2, 2), &pairs);
    assert!(
        cluster.nodes[0].log_text().contains("peers over mutual TLS"),
        "{}",
        cluster.nodes[0].log_text()
    );
    assert_eq!(cluster.client(0).set("k", b"v1"), "STORED\r\n");
    for i in 1..3 {
        assert_eq!(cluster.client(i).get("k"), Some(b"v1".to_vec()));
    }
    // With one node down, a write needs the other over TLS (W = 2).
    cluster.nodes[2].kill9();
    assert_eq!(cluster.client(0).set("k", b"v2"), "STORED\r\n");
    assert_eq!(cluster.client(1).get("k"), Some(b"v2".to_vec()));

    // The peer port speaks only mutual TLS: a client without a certificate is refused.
    let peer: SocketAddr = cluster.peer_addrs()[0].parse().expect("addr");
    let mut anonymous = TlsClient::connect(peer, &certs.ca(), None);
    anonymous.send(b"hello");
    let refusal = anonymous.rest().expect_err("served without a certificate");
    assert!(refusal.to_string().contains("CertificateRequired"), "{refusal}");
    wait_until(Duration::from_secs(10), "the refusal in the log", || {
        warnings(&cluster.nodes[0].log_text(), "refused peer connection from 127.0.0.1") == 1
    });
    let log = cluster.nodes[0].log_text();
    assert_eq!(warnings(&log, "TLS: peer sent no certificates"), 1, "{log}");
}

#[test]
fn a_node_whose_certificate_another_ca_signed_cannot_join() {
    let certs = Certs::make(&["kai"]);
    let settings = certs.peer_links("kai", &certs);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cluster = ProcessCluster::start_with(3, (3, 2, 2), &pairs);

    // It trusts the cluster's CA, but its own certificate comes from another one.
    let rogue_certs = Certs::make(&["rogue"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rogue_settings = rogue_certs.peer_links("rogue", &certs);
    rogue_settings.push(("gossip_interval", "200ms".to_owned()));
    let listen = format!("127.0.0.1:{}", reserve_port());
    let peer = format!("127.0.0.1:{}", reserve_port());
    let args = node_args(&listen, &peer, &cluster.peer_addrs(), (3, 2, 2), &rogue_settings);
    let debug_log = [
        "env".to_owned(),
        "RUST_LOG=info,kai_actors::peer=debug,kai_actors::log_once=debug".to_owned(),
    ];
    let launcher: Vec<&str> = debug_log.iter().map(String::as_str).collect();
    let rogue = KaiProcess::start_via(&launcher, dir.path(), args);

    // It redials every node again and again (with backoff); refusals after the first are quiet.
    wait_until(Duration::from_secs(30), "several refused dials to every node", || {
        let log = rogue.log_text();
        cluster.peer_addrs().iter().all(|target| {
            log.lines()
                .filter(|l| l.contains(&format!("peer {target}: handshake")))
                .count()
                >= 4
        })
    });
    for i in 0..3 {
        let log = cluster.nodes[i].log_text();
        assert_eq!(
            warnings(&log, "refused peer connection from 127.0.0.1"),
            1,
            "node {i} logs the refusal once:\n{log}"
        );
        assert!(log.contains("TLS: "), "node {i} says why:\n{log}");
    }
    let rogue_log = rogue.log_text();
    assert!(
        rogue_log
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("handshake with") && l.contains("TLS")),
        "{rogue_log}"
    );

    // The cluster keeps serving, without the rogue.
    let mut rogue_client = rogue.client();
    assert_eq!(rogue_client.stats()["kai_peer_connections"], "0");
    for i in 0..3 {
        let stats = cluster.client(i).stats();
        assert_eq!(stats["kai_members"], "3");
    }
    assert_eq!(cluster.client(1).set("k", b"v"), "STORED\r\n");
    assert_eq!(cluster.client(2).get("k"), Some(b"v".to_vec()));
}

/// Runs `kai start` with `settings`, which must fail within [`REFUSAL_TIMEOUT`]: its stderr.
fn refused_start(settings: &[(&str, String)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(kai_bin());
    command.args([
        "start",
        "--listen",
        "127.0.0.1:0",
        "--peer-listen",
        "127.0.0.1:0",
        "--data-dir",
    ]);
    command.arg(dir.path()).args(["--set", "admin_listen=127.0.0.1:0"]);
    for (key, value) in settings {
        command.arg("--set").arg(format!("{key}={value}"));
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kai");
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kai started with {settings:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn unusable_tls_files_stop_the_start_naming_the_key() {
    let certs = Certs::make(&["node", "other"]);
    let missing = "/nonexistent/node.pem".to_owned();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("tls_cert", certs.path("node.pem"))],
            "invalid configuration key `tls_key`: must be set when tls_cert is",
        ),
        (
            vec![("tls_cert", missing.clone()), ("tls_key", certs.path("node.key"))],
            "cannot use tls_cert /nonexistent/node.pem: No such file or directory",
        ),
        (
            vec![
                ("tls_cert", certs.path("node.key")),
                ("tls_key", certs.path("node.key")),
            ],
            "holds no PEM certificate",
        ),
        (
            vec![
                ("tls_cert", certs.path("node.pem")),
                ("tls_key", certs.path("other.key")),
            ],
            "cannot use tls_key",
        ),
        (
            vec![
                ("peer_tls_cert", certs.path("node.pem")),
                ("peer_tls_key", certs.path("node.key")),
            ],
            "invalid configuration key `peer_tls_ca`",
        ),
        (
            vec![
                ("peer_tls_cert", certs.path("node.pem")),
                ("peer_tls_key", certs.path("node.key")),
                ("peer_tls_ca", certs.path("node.key")),
            ],
            "cannot use peer_tls_ca",
        ),
    ];
    for (settings, expected) in cases {
        let stderr = refused_start(&settings);
        assert!(stderr.contains(expected), "{settings:?}: `{expected}` not in {stderr}");
    }
}
