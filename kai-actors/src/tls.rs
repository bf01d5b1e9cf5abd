//! TLS, with rustls and its `ring` provider: optional TLS on the memcache port (memcached's `-Z`)
//! and mutual TLS on peer links.
//!
//! - Memcache port ([`ClientTls`], keys `tls_cert`, `tls_key`, optional `tls_client_ca`): when
//!   set, every accepted connection must complete a TLS handshake before a byte of memcache is
//!   read; the port then speaks nothing else (text, meta and binary run inside TLS). With
//!   `tls_client_ca`, clients must present a certificate signed by it.
//! - Peer links ([`PeerTls`], keys `peer_tls_cert`, `peer_tls_key`, `peer_tls_ca`): both ends
//!   present a certificate signed by the cluster CA and verify the other's against it; the
//!   dialler also checks that the certificate names the host it dialled (a DNS or IP subject
//!   alternative name). The cluster-secret handshake then runs inside TLS.
//!
//! Invariants:
//! - Every file is read and checked once, at start; a missing, unreadable or malformed file, or
//!   a key that does not match its certificate, stops the start with a [`TlsError`] naming the
//!   config key and the file (never its contents).
//! - A failed client handshake closes that connection only. A refusal (bytes that are not TLS, a
//!   certificate the node does not accept) is logged at warn once per client address for the
//!   node's lifetime ([`LogOnce`]), later ones at debug; a client that leaves or stalls without
//!   finishing the handshake is logged at debug only (port probes are not refusals).
//! - Without TLS settings nothing here runs: sessions and peer links use the `TcpStream` itself
//!   (their code is generic over the stream).

use crate::config::NodeConfig;
use crate::log_once::LogOnce;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

/// Longest a memcache client may take to complete its TLS handshake.
const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot use {key} {path}: {reason}")]
pub struct TlsError {
    /// The config key naming the file.
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it (never its contents).
    pub reason: String,
}

/// One configured PEM file: its config key and path.
#[derive(Clone, Copy)]
struct PemFile<'a> {
    key: &'static str,
    path: &'a Path,
}

impl PemFile<'_> {
    fn error(&self, reason: impl Into<String>) -> TlsError {
        TlsError {
            key: self.key,
            path: self.path.to_owned(),
            reason: reason.into(),
        }
    }

    fn read(&self) -> Result<Vec<u8>, TlsError> {
        std::fs::read(self.path).map_err(|e| self.error(e.to_string()))
    }

    /// The certificates in the file, in order; at least one.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.read()?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(format!("malformed PEM: {e}")))?;
        if certs.is_empty() {
            return Err(self.error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
        Ok(certs)
    }

    /// The first private key in the file (PKCS#8, PKCS#1 or SEC1).
    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.read()?).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                self.error("holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
            }
            e => self.error(format!("malformed PEM: {e}")),
        })
    }

    /// The certificates in the file as trust anchors.
    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in self.certificates()? {
            roots
                .add(cert)
                .map_err(|e| self.error(format!("not a usable CA certificate: {e}")))?;
        }
        Ok(Arc::new(roots))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key, as read from their files.
struct Identity<'a> {
    cert_file: PemFile<'a>,
    key_file: PemFile<'a>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl<'a> Identity<'a> {
    fn load(cert_file: PemFile<'a>, key_file: PemFile<'a>) -> Result<Identity<'a>, TlsError> {
        Ok(Identity {
            cert_file,
            key_file,
            certs: cert_file.certificates()?,
            key: key_file.private_key()?,
        })
    }

    /// A copy of the chain and the key, for one rustls config.
    fn parts(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.certs.clone(), self.key.clone_key())
    }

    /// The rustls error of building a config with this identity, blamed on the key file (the
    /// usual cause: a key that does not belong to the certificate).
    fn refused(&self, e: rustls::Error) -> TlsError {
        let cert = self.cert_file;
        (self.key_file).error(format!("cannot be used with {} {}: {e}", cert.key, cert.path.display()))
    }
}

/// A server config presenting `identity`, requiring client certificates signed by `client_ca`
/// (its file and its certificates) if given.
fn server_config(
    identity: &Identity<'_>,
    client_ca: Option<(PemFile<'_>, Arc<RootCertStore>)>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| identity.cert_file.error(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((file, roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| file.error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let (certs, key) = identity.parts();
    let config = builder.with_single_cert(certs, key).map_err(|e| identity.refused(e))?;
    Ok(Arc::new(config))
}

/// TLS on the memcache port.
#[derive(Clone)]
pub struct ClientTls {
    acceptor: TlsAcceptor,
    refusals: LogOnce,
}

impl ClientTls {
    /// The memcache port's TLS, if `tls_cert` and `tls_key` are set (the config must have passed
    /// validation, which checks they come together).
    pub fn from_config(config: &NodeConfig) -> Result<Option<ClientTls>, TlsError> {
        let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
            return Ok(None);
        };
        let identity = Identity::load(
            PemFile {
                key: "tls_cert",
                path: cert,
            },
            PemFile {
                key: "tls_key",
                path: key,
            },
        )?;
        let client_ca = match config.tls_client_ca.as_deref() {
            None => None,
            Some(path) => {
                let file = PemFile {
                    key: "tls_client_ca",
                    path,
                };
                Some((file, file.roots()?))
            }
        };
        Ok(Some(ClientTls {
            acceptor: TlsAcceptor::from(server_config(&identity, client_ca)?),
            refusals: LogOnce::default(),
        }))
    }

    /// The TLS session of a client that connected from `peer`, or `None` (logged) if its
    /// handshake failed or took too long.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let error = match tokio::time::timeout(CLIENT_HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
            Ok(Ok(session)) => return Some(session),
            Ok(Err(e)) => e,
            Err(_) => io::Error::new(io::ErrorKind::TimedOut, "timed out"),
        };
        if error.kind() == io::ErrorKind::InvalidData {
            let what = format_args!("refused client {peer}: TLS handshake failed: {error}");
            self.refusals.failed(&peer.ip().to_string(), &what);
        } else {
            log::debug!("client {peer} left during the TLS handshake: {error}");
        }
        None
    }
}

/// Mutual TLS of peer links: this node's certificate, and the cluster CA that every peer's
/// certificate must be signed by.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PeerTls {
    /// Peer mutual TLS, if `peer_tls_cert`, `peer_tls_key` and `peer_tls_ca` are set (the config
    /// must have passed validation, which checks they come together).
    pub fn from_config(config: &NodeConfig) -> Result<Option<PeerTls>, TlsError> {
        let (Some(cert), Some(key), Some(ca)) = (&config.peer_tls_cert, &config.peer_tls_key, &config.peer_tls_ca)
        else {
            return Ok(None);
        };
        let cert = PemFile {
            key: "peer_tls_cert",
            path: cert,
        };
        let key = PemFile {
            key: "peer_tls_key",
            path: key,
        };
        let ca = PemFile {
            key: "peer_tls_ca",
            path: ca,
        };
        let identity = Identity::load(cert, key)?;
        let roots = ca.roots()?;
        let server = server_config(&identity, Some((ca, Arc::clone(&roots))))?;
        let (certs, key) = identity.parts();
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| identity.cert_file.error(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| identity.refused(e))?;
        Ok(Some(PeerTls {
            acceptor: TlsAcceptor::from(server),
            connector: TlsConnector::from(Arc::new(client)),
        }))
    }

    /// The TLS session over `stream`, dialled to `addr` (`host:port`), whose certificate must
    /// name `host`. The error says why (for the logs).
    pub(crate) async fn connect(&self, addr: &str, stream: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let name = server_name(addr)?;
        match self.connector.connect(name, stream).await {
            Ok(session) => Ok(session.into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The TLS session of a peer that connected on `stream`. The error says why (for the logs).
    pub(crate) async fn accept(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        match self.acceptor.accept(stream).await {
            Ok(session) => Ok(session.into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The name a dialled peer's certificate must carry: the host of `addr` (`host:port`,
/// `[v6]:port`), as a DNS name or an IP address.
fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _port)| host);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    ServerName::try_from(host.to_owned()).map_err(|_| format!("`{host}` is not a DNS name or IP address"))
}

/// The TLS failure behind an I/O error of a TLS stream (an alert from the other side, a
/// certificate refused after the handshake), if that is what it is.
pub(crate) fn tls_failure(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(contents.as_bytes()).expect("write");
        f
    }

    fn config_with(f: impl FnOnce(&mut NodeConfig)) -> NodeConfig {
        let mut config = NodeConfig::default();
        f(&mut config);
        config
    }

    #[test]
    fn peer_names_are_the_dialled_host() {
        assert_eq!(
            server_name("kai1:11011"),
            Ok(ServerName::try_from("kai1").expect("dns").to_owned())
        );
        assert_eq!(
            server_name("127.0.0.1:11011"),
            Ok(ServerName::from(std::net::IpAddr::from([127, 0, 0, 1])))
        );
        assert_eq!(
            server_name("[::1]:11011"),
            Ok(ServerName::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)))
        );
        assert!(server_name("bad host:1").is_err());
    }

    #[test]
    fn no_settings_no_tls() {
        let config = NodeConfig::default();
        assert!(matches!(ClientTls::from_config(&config), Ok(None)));
        assert!(matches!(PeerTls::from_config(&config), Ok(None)));
    }

    #[test]
    fn missing_files_are_named_with_their_key() {
        let config = config_with(|c| {
            c.tls_cert = Some("/nonexistent/cert.pem".into());
            c.tls_key = Some("/nonexistent/key.pem".into());
        });
        let error = ClientTls::from_config(&config).expect_err("refused");
        assert_eq!(error.key, "tls_cert");
        assert_eq!(error.path, PathBuf::from("/nonexistent/cert.pem"));
        assert!(error.to_string().contains("No such file"), "{error}");
    }

    #[test]
    fn files_without_pem_sections_are_refused() {
        let garbage = file("this is not PEM\n");
        let config = config_with(|c| {
            c.tls_cert = Some(garbage.path().into());
            c.tls_key = Some(garbage.path().into());
        });
        let error = ClientTls::from_config(&config).expect_err("refused");
        assert_eq!(error.key, "tls_cert");
        assert!(error.reason.contains("no PEM certificate"), "{error}");

        let config = config_with(|c| {
            c.peer_tls_cert = Some(garbage.path().into());
            c.peer_tls_key = Some(garbage.path().into());
            c.peer_tls_ca = Some(garbage.path().into());
        });
        let error = PeerTls::from_config(&config).expect_err("refused");
        assert_eq!(error.key, "peer_tls_cert");
    }

    #[test]
    fn a_key_file_without_a_key_is_refused() {
        // The certificate's DER is checked by rustls later; the key file is read first.
        let cert = file("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let config = config_with(|c| {
            c.tls_cert = Some(cert.path().into());
            c.tls_key = Some(cert.path().into());
        });
        let error = ClientTls::from_config(&config).expect_err("refused");
        assert_eq!(error.key, "tls_key");
        assert!(error.reason.contains("no PEM private key"), "{error}");
    }

    #[test]
    fn a_broken_pem_section_is_malformed() {
        let broken = file("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        let config = config_with(|c| {
            c.tls_cert = Some(broken.path().into());
            c.tls_key = Some(broken.path().into());
        });
        let error = ClientTls::from_config(&config).expect_err("refused");
        assert_eq!(error.key, "tls_cert");
        assert!(error.reason.contains("malformed PEM"), "{error}");
    }
}
