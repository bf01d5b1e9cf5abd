//! Handshake checks and proofs, without I/O.
//!
//! Sequence (dialler D, acceptor A):
//! 1. D → A `Hello { version, cluster, settings, id, name, nonce_d }`; A checks the version, the
//!    cluster name and that every shared setting (`n`, `r`, `w`, `buckets`, `virtual_nodes`)
//!    equals its own, and refuses with an error naming the first that differs.
//! 2. A → D `Welcome { id, name, nonce_a, proof_a = mac("kai-acceptor", nonce_d, nonce_a) }`;
//!    D checks `proof_a` (and, if it dialled a known node, the id).
//! 3. D → A `Proof(mac("kai-dialler", nonce_d, nonce_a))`; A checks it and answers `Accepted`.
//!
//! `mac` is HMAC-SHA256 keyed with the cluster secret over the role label, the cluster name and
//! both nonces, so a proof cannot be replayed in the other direction, on another cluster, or with
//! other nonces. Without a secret the proof is all zeros: both sides must agree on having no secret.
//! Proofs are compared in constant time.

use super::message::{ClusterSettings, Hello, Nonce, Proof, PROTOCOL_VERSION};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const ACCEPTOR_LABEL: &[u8] = b"kai-acceptor";
const DIALLER_LABEL: &[u8] = b"kai-dialler";

/// Why a handshake failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: ours {ours}, theirs {theirs}")]
    Version {
        /// Our version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The peer belongs to another cluster.
    #[error("cluster name mismatch: ours {ours:?}, theirs {theirs:?}")]
    Cluster {
        /// Our cluster.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// The nodes disagree on a setting every node of a cluster must share.
    #[error("cluster setting `{setting}` differs: {acceptor} on the accepting node, {dialler} on the dialling node")]
    Setting {
        /// The config key.
        setting: &'static str,
        /// Its value on the node that accepted the connection.
        acceptor: u64,
        /// Its value on the node that dialled.
        dialler: u64,
    },
    /// The peer does not know the cluster secret (or we have none and it has one).
    #[error("peer failed to prove the cluster secret")]
    BadProof,
    /// The peer refused us.
    #[error("refused by peer: {0}")]
    Refused(String),
    /// The TLS layer of the connection failed (its certificate, or ours, was not accepted).
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer broke the handshake sequence.
    #[error("unexpected handshake message: {0}")]
    Unexpected(&'static str),
}

/// What a node proves and checks during handshakes.
#[derive(Clone)]
pub struct Credentials {
    cluster_name: String,
    settings: ClusterSettings,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cluster_name", &self.cluster_name)
            .field("settings", &self.settings)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Credentials {
    /// Credentials of a node of `cluster_name` with `settings`, with an optional shared secret.
    pub fn new(cluster_name: impl Into<String>, settings: ClusterSettings, secret: Option<&str>) -> Self {
        Credentials {
            cluster_name: cluster_name.into(),
            settings,
            secret: secret.map(|s| s.as_bytes().to_vec()),
        }
    }

    /// The cluster name.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// The settings this node requires its peers to share.
    pub fn settings(&self) -> ClusterSettings {
        self.settings
    }

    /// Checks a dialler's `Hello` (acceptor side).
    pub fn check_hello(&self, hello: &Hello) -> Result<(), HandshakeError> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: hello.protocol_version,
            });
        }
        if hello.cluster_name != self.cluster_name {
            return Err(HandshakeError::Cluster {
                ours: self.cluster_name.clone(),
                theirs: hello.cluster_name.clone(),
            });
        }
        let differs = self
            .settings
            .named()
            .into_iter()
            .zip(hello.settings.named())
            .find(|((_, ours), (_, theirs))| ours != theirs);
        if let Some(((setting, acceptor), (_, dialler))) = differs {
            return Err(HandshakeError::Setting {
                setting,
                acceptor,
                dialler,
            });
        }
        Ok(())
    }

    fn mac(&self, label: &[u8], dialler: &Nonce, acceptor: &Nonce) -> Option<Hmac<Sha256>> {
        let secret = self.secret.as_ref()?;
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()?;
        mac.update(label);
        mac.update(&(self.cluster_name.len() as u64).to_be_bytes());
        mac.update(self.cluster_name.as_bytes());
        mac.update(dialler);
        mac.update(acceptor);
        Some(mac)
    }

    fn prove(&self, label: &[u8], dialler: &Nonce, acceptor: &Nonce) -> Proof {
        self.mac(label, dialler, acceptor)
            .map_or([0; 32], |mac| mac.finalize().into_bytes().into())
    }

    fn verify(&self, label: &[u8], dialler: &Nonce, acceptor: &Nonce, proof: &Proof) -> Result<(), HandshakeError> {
        let ok = match self.mac(label, dialler, acceptor) {
            Some(mac) => mac.verify_slice(proof).is_ok(),
            None => proof == &[0; 32],
        };
        ok.then_some(()).ok_or(HandshakeError::BadProof)
    }

    /// The acceptor's proof for the nonces of this handshake.
    pub fn acceptor_proof(&self, dialler: &Nonce, acceptor: &Nonce) -> Proof {
        self.prove(ACCEPTOR_LABEL, dialler, acceptor)
    }

    /// The dialler's proof for the nonces of this handshake.
    pub fn dialler_proof(&self, dialler: &Nonce, acceptor: &Nonce) -> Proof {
        self.prove(DIALLER_LABEL, dialler, acceptor)
    }

    /// Checks the acceptor's proof (dialler side).
    pub fn verify_acceptor(&self, dialler: &Nonce, acceptor: &Nonce, proof: &Proof) -> Result<(), HandshakeError> {
        self.verify(ACCEPTOR_LABEL, dialler, acceptor, proof)
    }

    /// Checks the dialler's proof (acceptor side).
    pub fn verify_dialler(&self, dialler: &Nonce, acceptor: &Nonce, proof: &Proof) -> Result<(), HandshakeError> {
        self.verify(DIALLER_LABEL, dialler, acceptor, proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    const SETTINGS: ClusterSettings = ClusterSettings {
        n: 3,
        r: 2,
        w: 2,
        buckets: 1024,
        virtual_nodes: 64,
    };

    fn creds(cluster: &str, secret: Option<&str>) -> Credentials {
        Credentials::new(cluster, SETTINGS, secret)
    }

    fn hello(cluster: &str, version: u32) -> Hello {
        Hello {
            protocol_version: version,
            cluster_name: cluster.into(),
            settings: SETTINGS,
            node: NodeId(1),
            name: "a".into(),
            advertise: "127.0.0.1:1".into(),
            nonce: [1; 32],
        }
    }

    #[test]
    fn hello_must_match_version_and_cluster() {
        let creds = creds("prod", None);
        assert_eq!(creds.check_hello(&hello("prod", PROTOCOL_VERSION)), Ok(()));
        assert!(matches!(
            creds.check_hello(&hello("test", PROTOCOL_VERSION)),
            Err(HandshakeError::Cluster { .. })
        ));
        assert!(matches!(
            creds.check_hello(&hello("prod", 99)),
            Err(HandshakeError::Version { theirs: 99, .. })
        ));
    }

    /// A change to one setting.
    type Change = fn(&mut ClusterSettings);

    #[test]
    fn hello_must_share_every_cluster_setting() {
        let ours = creds("prod", None);
        let cases: [(&str, Change); 5] = [
            ("n", |s| s.n = 5),
            ("r", |s| s.r = 1),
            ("w", |s| s.w = 3),
            ("buckets", |s| s.buckets = 512),
            ("virtual_nodes", |s| s.virtual_nodes = 128),
        ];
        for (name, change) in cases {
            let mut theirs = hello("prod", PROTOCOL_VERSION);
            change(&mut theirs.settings);
            let error = ours.check_hello(&theirs).expect_err("a differing setting is refused");
            assert!(matches!(error, HandshakeError::Setting { setting, .. } if setting == name));
            assert!(
                error.to_string().contains(&format!("`{name}`")),
                "the error names the setting: {error}"
            );
        }
    }

    #[test]
    fn both_sides_with_the_same_secret_accept_each_other() {
        let (a, b) = (creds("c", Some("s3cret")), creds("c", Some("s3cret")));
        let (nd, na) = ([7; 32], [9; 32]);
        assert_eq!(b.verify_acceptor(&nd, &na, &a.acceptor_proof(&nd, &na)), Ok(()));
        assert_eq!(a.verify_dialler(&nd, &na, &b.dialler_proof(&nd, &na)), Ok(()));
    }

    #[test]
    fn wrong_missing_or_replayed_proofs_are_refused() {
        let good = creds("c", Some("s3cret"));
        let wrong = creds("c", Some("guess"));
        let none = creds("c", None);
        let other_cluster = creds("d", Some("s3cret"));
        let (nd, na) = ([7; 32], [9; 32]);
        let bad = Err(HandshakeError::BadProof);
        assert_eq!(good.verify_acceptor(&nd, &na, &wrong.acceptor_proof(&nd, &na)), bad);
        assert_eq!(good.verify_acceptor(&nd, &na, &none.acceptor_proof(&nd, &na)), bad);
        assert_eq!(none.verify_acceptor(&nd, &na, &good.acceptor_proof(&nd, &na)), bad);
        assert_eq!(
            good.verify_acceptor(&nd, &na, &other_cluster.acceptor_proof(&nd, &na)),
            bad
        );
        // A proof made for one direction or other nonces does not pass for another.
        assert_eq!(good.verify_dialler(&nd, &na, &good.acceptor_proof(&nd, &na)), bad);
        assert_eq!(good.verify_acceptor(&[8; 32], &na, &good.acceptor_proof(&nd, &na)), bad);
    }

    #[test]
    fn without_secrets_both_sides_agree() {
        let none = creds("c", None);
        let (nd, na) = ([7; 32], [9; 32]);
        assert_eq!(none.verify_dialler(&nd, &na, &none.dialler_proof(&nd, &na)), Ok(()));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        assert!(!format!("{:?}", creds("c", Some("s3cret"))).contains("s3cret"));
    }
}
