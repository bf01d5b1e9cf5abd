//! Node configuration: every tunable of a node, with defaults and validation.
//!
//! Invariant: a [`NodeConfig`] that passed [`NodeConfig::validate`] satisfies the quorum rules
//! (`1 ≤ R, W ≤ N`, `R + W > N`, `W > N/2`) and has sane sizes; the node refuses to start otherwise,
//! with a [`ConfigError`] naming the offending key.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Storage engine of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// RocksDB in `data_dir` (the default).
    Rocksdb,
    /// In memory; for tests and embedding. Nothing survives a restart.
    Memory,
}

/// What a non-zero memcache `exptime` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiryPolicy {
    /// Store the absolute expiry; expired records read as missing.
    Honour,
    /// Refuse with `CLIENT_ERROR`, as the original Kai did.
    Reject,
}

/// Everything a node needs to start. Field names are the config keys (`KAI_<KEY>` in the
/// environment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name; its id is derived from it. Defaults to the advertised peer address.
    pub name: Option<String>,
    /// Memcache listen address.
    pub listen: SocketAddr,
    /// Peer (node-to-node) listen address.
    pub peer_listen: SocketAddr,
    /// Peer address other nodes use to reach this one; defaults to `peer_listen`.
    pub advertise: Option<String>,
    /// Nodes to contact to join a cluster, as peer addresses `host:port`, or `name@host:port`
    /// for nodes whose `name` is not their advertised address. Nodes that all start fresh with
    /// the same seeds form a new cluster of exactly those nodes.
    pub seeds: Vec<String>,
    /// Replicas per key.
    pub n: usize,
    /// Replicas consulted by a read.
    pub r: usize,
    /// Replicas that must acknowledge a write.
    pub w: usize,
    /// Number of buckets keys hash into (a power of two).
    pub buckets: u32,
    /// Points each node places on the ring.
    pub virtual_nodes: u32,
    /// Storage engine.
    pub store: StoreBackend,
    /// Directory of the RocksDB store and node state.
    pub data_dir: PathBuf,
    /// Sync the write-ahead log on every write (survives power loss; slower).
    pub fsync: bool,
    /// Largest value accepted, in bytes.
    pub max_value_size: usize,
    /// Client connections served at once; more are refused.
    pub max_connections: usize,
    /// Period of gossip exchanges.
    #[serde(with = "humantime_serde")]
    pub gossip_interval: Duration,
    /// A node unreachable for this long is removed from the ring.
    #[serde(with = "humantime_serde")]
    pub down_after: Duration,
    /// Deadline of a request to a replica.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Nodes only talk to peers with the same cluster name.
    pub cluster_name: String,
    /// Shared secret peers must prove knowledge of; none means no authentication.
    pub cluster_secret: Option<String>,
    /// memcached's auth file (`user:password` lines): when set, clients must authenticate
    /// (binary: SASL PLAIN; text: memcached's `set` carrying `user password`).
    pub auth_file: Option<PathBuf>,
    /// How a non-zero expiry is treated.
    pub expiry: ExpiryPolicy,
    /// Threads serving client connections; 0 = one per CPU core.
    pub worker_threads: usize,
    /// Threads running blocking store calls.
    pub store_threads: usize,
    /// Limit of background data movement (handoff, anti-entropy), records per second.
    pub sync_rate: u64,
    /// Pause between anti-entropy comparisons of two buckets while replicas agree.
    #[serde(with = "humantime_serde")]
    pub anti_entropy_interval: Duration,
    /// Tombstones older than this that every replica holds are purged; 0 keeps them forever.
    #[serde(with = "humantime_serde")]
    pub tombstone_grace: Duration,
    /// Certificate chain (PEM) of the memcache port; with `tls_key`, the port speaks only TLS
    /// (memcached's `-Z`).
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): when set, memcache clients must present a certificate signed by
    /// one of them.
    pub tls_client_ca: Option<PathBuf>,
    /// This node's certificate chain (PEM) on peer links, signed by `peer_tls_ca`. With
    /// `peer_tls_key` and `peer_tls_ca`, peer links use mutual TLS.
    pub peer_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `peer_tls_cert`.
    pub peer_tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): peers must present a certificate it signed.
    pub peer_tls_ca: Option<PathBuf>,
    /// Admin HTTP address (metrics, health, status, dashboard, `leave`), served by the `kai`
    /// binary; embedded nodes serve none.
    pub admin_listen: SocketAddr,
    /// Bearer token that mutating admin requests must carry; required when `admin_listen` is not
    /// a loopback address.
    pub admin_token: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 11211)),
            peer_listen: SocketAddr::from(([127, 0, 0, 1], 11011)),
            advertise: None,
            seeds: Vec::new(),
            n: 1,
            r: 1,
            w: 1,
            buckets: 1024,
            virtual_nodes: 128,
            store: StoreBackend::Rocksdb,
            data_dir: PathBuf::from("kai-data"),
            fsync: false,
            max_value_size: 1024 * 1024,
            max_connections: 1024,
            gossip_interval: Duration::from_secs(1),
            down_after: Duration::from_secs(30),
            request_timeout: Duration::from_secs(1),
            cluster_name: "kai".to_owned(),
            cluster_secret: None,
            auth_file: None,
            expiry: ExpiryPolicy::Honour,
            worker_threads: 0,
            store_threads: 4,
            sync_rate: 60_000,
            anti_entropy_interval: Duration::from_millis(50),
            tombstone_grace: Duration::from_secs(24 * 60 * 60),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 11311)),
            admin_token: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            peer_tls_cert: None,
            peer_tls_key: None,
            peer_tls_ca: None,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration key `{key}`: {reason}")]
pub struct ConfigError {
    /// The config key at fault.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

/// Largest value size a node can be configured for (memcached's item size ceiling).
const MAX_VALUE_SIZE_LIMIT: usize = 128 * 1024 * 1024;
/// Upper bound on `buckets`: the ring precomputes a preference list per bucket.
const MAX_BUCKETS: u32 = 1 << 20;

/// One entry of `seeds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The node's name: given before `@`, or else its address.
    pub name: String,
    /// Its peer address.
    pub addr: String,
}

impl Seed {
    /// Parses `host:port` or `name@host:port`.
    pub fn parse(entry: &str) -> Result<Seed, ConfigError> {
        let entry = entry.trim();
        let (name, addr) = match entry.split_once('@') {
            Some((name, addr)) => (name.to_owned(), addr.to_owned()),
            None => (entry.to_owned(), entry.to_owned()),
        };
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if name.is_empty() || !port_ok {
            return Err(invalid(
                "seeds",
                format!("`{entry}` is not `host:port` or `name@host:port`"),
            ));
        }
        Ok(Seed { name, addr })
    }
}

impl NodeConfig {
    /// Checks every rule; the first broken one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_quorum()?;
        self.validate_rest()
    }

    /// The parsed `seeds`.
    pub fn seed_list(&self) -> Result<Vec<Seed>, ConfigError> {
        self.seeds.iter().map(|s| Seed::parse(s)).collect()
    }

    /// The quorum rules: `1 ≤ R, W ≤ N`, `R + W > N`, `W > N/2`.
    pub fn validate_quorum(&self) -> Result<(), ConfigError> {
        if self.n == 0 {
            return Err(invalid("n", "must be at least 1"));
        }
        if self.r == 0 || self.r > self.n {
            return Err(invalid(
                "r",
                format!("must be between 1 and n = {}, got {}", self.n, self.r),
            ));
        }
        if self.w == 0 || self.w > self.n {
            return Err(invalid(
                "w",
                format!("must be between 1 and n = {}, got {}", self.n, self.w),
            ));
        }
        if self.r + self.w <= self.n {
            return Err(invalid(
                "r",
                format!(
                    "r + w must exceed n for reads to see writes (r={}, w={}, n={})",
                    self.r, self.w, self.n
                ),
            ));
        }
        if 2 * self.w <= self.n {
            return Err(invalid(
                "w",
                format!("w must be a majority of n = {} (w > n/2), got {}", self.n, self.w),
            ));
        }
        Ok(())
    }

    /// Every rule but the quorum rules.
    pub fn validate_rest(&self) -> Result<(), ConfigError> {
        if self.n == 0 {
            return Err(invalid("n", "must be at least 1"));
        }
        if !self.buckets.is_power_of_two() || self.buckets > MAX_BUCKETS {
            return Err(invalid(
                "buckets",
                format!("must be a power of two up to {MAX_BUCKETS}, got {}", self.buckets),
            ));
        }
        if self.virtual_nodes == 0 {
            return Err(invalid("virtual_nodes", "must be at least 1"));
        }
        if self.max_value_size == 0 || self.max_value_size > MAX_VALUE_SIZE_LIMIT {
            return Err(invalid(
                "max_value_size",
                format!(
                    "must be between 1 and {MAX_VALUE_SIZE_LIMIT} bytes, got {}",
                    self.max_value_size
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if self.store_threads == 0 {
            return Err(invalid("store_threads", "must be at least 1"));
        }
        if self.sync_rate == 0 {
            return Err(invalid("sync_rate", "must be at least 1 record per second"));
        }
        if self.down_after <= self.gossip_interval * 5 {
            return Err(invalid(
                "down_after",
                format!(
                    "must exceed 5 gossip intervals ({:?}), or nodes would be removed while merely suspected",
                    self.gossip_interval * 5
                ),
            ));
        }
        for (key, value) in [
            ("gossip_interval", self.gossip_interval),
            ("down_after", self.down_after),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if self.cluster_name.is_empty() {
            return Err(invalid("cluster_name", "must not be empty"));
        }
        if self.store == StoreBackend::Rocksdb && self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must be set for the rocksdb store"));
        }
        if self.advertise.is_none() && self.peer_listen.ip().is_unspecified() {
            return Err(invalid(
                "advertise",
                format!(
                    "must be set when peer_listen ({}) is a wildcard address",
                    self.peer_listen
                ),
            ));
        }
        self.seed_list()?;
        self.validate_admin()?;
        self.validate_tls()
    }

    /// TLS files come in sets: a certificate with its key (and a client CA only with both); on
    /// peer links, certificate, key and cluster CA all three (mutual TLS). The files themselves
    /// are read at start ([`crate::tls`]).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(invalid("tls_key", "must be set when tls_cert is")),
            (None, Some(_)) => return Err(invalid("tls_cert", "must be set when tls_key is")),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(invalid(
                    "tls_client_ca",
                    "needs tls_cert and tls_key (client certificates are checked on a TLS port only)",
                ))
            }
            _ => {}
        }
        let peer = [
            ("peer_tls_cert", &self.peer_tls_cert),
            ("peer_tls_key", &self.peer_tls_key),
            ("peer_tls_ca", &self.peer_tls_ca),
        ];
        if peer.iter().any(|(_, file)| file.is_some()) {
            if let Some((key, _)) = peer.iter().find(|(_, file)| file.is_none()) {
                return Err(invalid(
                    key,
                    "must be set with the other peer_tls_* keys (peer links use mutual TLS: certificate, key and cluster CA)",
                ));
            }
        }
        Ok(())
    }

    /// Anyone who can reach a non-loopback admin address could make the node leave: such an
    /// address needs a token. An empty token would accept an empty `Authorization` header.
    fn validate_admin(&self) -> Result<(), ConfigError> {
        match self.admin_token.as_deref() {
            Some("") => Err(invalid("admin_token", "must not be empty")),
            None if !self.admin_listen.ip().is_loopback() => Err(invalid(
                "admin_token",
                format!(
                    "must be set when admin_listen ({}) is not a loopback address",
                    self.admin_listen
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The address peers use to reach this node, given the address its peer listener is bound
    /// to (which differs from `peer_listen` when that asks for port 0).
    pub fn advertised_address(&self, bound: SocketAddr) -> String {
        self.advertise.clone().unwrap_or_else(|| bound.to_string())
    }

    /// This node's name: `name`, or the advertised address.
    pub fn node_name(&self, bound: SocketAddr) -> String {
        self.name.clone().unwrap_or_else(|| self.advertised_address(bound))
    }

    /// The largest peer frame a node accepts or sends: the largest value plus room for the key,
    /// the versions and the framing.
    pub fn max_frame(&self) -> usize {
        self.max_value_size + 64 * 1024
    }

    /// The settings every member of one cluster must share (peers compare them at the handshake).
    pub fn cluster_settings(&self) -> kai_proto::peer::ClusterSettings {
        kai_proto::peer::ClusterSettings {
            n: self.n as u64,
            r: self.r as u64,
            w: self.w as u64,
            buckets: u64::from(self.buckets),
            virtual_nodes: u64::from(self.virtual_nodes),
        }
    }

    /// Threads serving client connections.
    pub fn effective_worker_threads(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        std::thread::available_parallelism().map_or(2, usize::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut NodeConfig)) -> Result<(), ConfigError> {
        let mut c = NodeConfig::default();
        f(&mut c);
        c.validate()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(NodeConfig::default().validate(), Ok(()));
        assert_eq!(with(|c| (c.n, c.r, c.w) = (3, 2, 2)), Ok(()));
        assert_eq!(with(|c| (c.n, c.r, c.w) = (5, 1, 5)), Ok(()));
    }

    #[test]
    fn quorum_rules_are_enforced_naming_the_key() {
        assert_eq!(with(|c| c.n = 0).map_err(|e| e.key), Err("n"));
        assert_eq!(with(|c| (c.n, c.r, c.w) = (3, 0, 3)).map_err(|e| e.key), Err("r"));
        assert_eq!(with(|c| (c.n, c.r, c.w) = (3, 4, 3)).map_err(|e| e.key), Err("r"));
        assert_eq!(with(|c| (c.n, c.r, c.w) = (3, 1, 2)).map_err(|e| e.key), Err("r"));
        assert_eq!(with(|c| (c.n, c.r, c.w) = (4, 3, 2)).map_err(|e| e.key), Err("w"));
    }

    #[test]
    fn seeds_are_addresses_or_named_addresses() {
        assert_eq!(
            Seed::parse("10.0.0.1:11011"),
            Ok(Seed {
                name: "10.0.0.1:11011".into(),
                addr: "10.0.0.1:11011".into()
            })
        );
        assert_eq!(
            Seed::parse("kai2@kai2.local:11011"),
            Ok(Seed {
                name: "kai2".into(),
                addr: "kai2.local:11011".into()
            })
        );
        for bad in ["nohost", ":1", "h:notaport", "@h:1", "h:70000"] {
            assert_eq!(Seed::parse(bad).map_err(|e| e.key), Err("seeds"), "{bad}");
        }
        assert_eq!(with(|c| c.seeds = vec!["x".into()]).map_err(|e| e.key), Err("seeds"));
    }

    #[test]
    fn a_wildcard_peer_address_needs_an_advertised_one() {
        assert_eq!(
            with(|c| c.peer_listen = "0.0.0.0:11011".parse().expect("addr")).map_err(|e| e.key),
            Err("advertise")
        );
        assert_eq!(
            with(|c| {
                c.peer_listen = "0.0.0.0:11011".parse().expect("addr");
                c.advertise = Some("kai1:11011".into());
            }),
            Ok(())
        );
    }

    #[test]
    fn sizes_and_durations_are_checked() {
        assert_eq!(with(|c| c.buckets = 1000).map_err(|e| e.key), Err("buckets"));
        assert_eq!(with(|c| c.max_value_size = 0).map_err(|e| e.key), Err("max_value_size"));
        assert_eq!(
            with(|c| c.request_timeout = Duration::ZERO).map_err(|e| e.key),
            Err("request_timeout")
        );
        assert_eq!(with(|c| c.cluster_name.clear()).map_err(|e| e.key), Err("cluster_name"));
    }

    #[test]
    fn a_reachable_admin_address_needs_a_token() {
        let public: SocketAddr = "0.0.0.0:11311".parse().expect("addr");
        assert_eq!(with(|c| c.admin_listen = public).map_err(|e| e.key), Err("admin_token"));
        assert_eq!(
            with(|c| c.admin_token = Some(String::new())).map_err(|e| e.key),
            Err("admin_token")
        );
        assert_eq!(
            with(|c| {
                c.admin_listen = public;
                c.admin_token = Some("s3cret".into());
            }),
            Ok(())
        );
        assert_eq!(with(|c| c.admin_listen = "[::1]:0".parse().expect("addr")), Ok(()));
    }

    #[test]
    fn tls_files_come_in_sets() {
        let file = || Some(PathBuf::from("x.pem"));
        assert_eq!(with(|c| c.tls_cert = file()).map_err(|e| e.key), Err("tls_key"));
        assert_eq!(with(|c| c.tls_key = file()).map_err(|e| e.key), Err("tls_cert"));
        assert_eq!(
            with(|c| c.tls_client_ca = file()).map_err(|e| e.key),
            Err("tls_client_ca")
        );
        assert_eq!(with(|c| (c.tls_cert, c.tls_key) = (file(), file())), Ok(()));
        assert_eq!(
            with(|c| (c.tls_cert, c.tls_key, c.tls_client_ca) = (file(), file(), file())),
            Ok(())
        );
        assert_eq!(
            with(|c| c.peer_tls_cert = file()).map_err(|e| e.key),
            Err("peer_tls_key")
        );
        assert_eq!(
            with(|c| (c.peer_tls_cert, c.peer_tls_key) = (file(), file())).map_err(|e| e.key),
            Err("peer_tls_ca")
        );
        assert_eq!(
            with(|c| c.peer_tls_ca = file()).map_err(|e| e.key),
            Err("peer_tls_cert")
        );
        assert_eq!(
            with(|c| (c.peer_tls_cert, c.peer_tls_key, c.peer_tls_ca) = (file(), file(), file())),
            Ok(())
        );
    }
}
