//! A Kai node as Actix actors, and the pure logic they drive.
//!
//! Actors (thin I/O shells): [`listener`] (client connections), [`coordinator`] (one operation
//! against a key's replicas), [`ring`] (publishes the placement), [`store`] (blocking storage on a
//! thread pool). Pure logic, unit-tested without a network: [`quorum`] (quorum rounds and ABD
//! decisions), [`ring::Ring`] (placement), [`config`] (validation).
//!
//! Embedding: call [`start`] inside a running Actix system and use the returned [`NodeHandle`].
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use kai_actors::{NodeConfig, StoreBackend};
//! let config = NodeConfig { store: StoreBackend::Memory, listen: "127.0.0.1:0".parse()?, ..NodeConfig::default() };
//! let node = kai_actors::start(config).await?;
//! node.set(kai_proto::Key::new("greeting")?, 0, "hello".into()).await?;
//! let record = node.get(kai_proto::Key::new("greeting")?).await?;
//! assert!(record.is_some());
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod accept;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod durable;
pub mod fence;
pub mod flush;
pub mod listener;
pub mod log_once;
pub mod membership;
mod node;
pub mod paxos;
pub mod peer;
pub mod proposers;
pub mod quorum;
pub mod replica;
pub mod report;
pub mod ring;
pub mod shutdown;
pub mod stats;
pub mod store;
pub mod sync;
pub mod tls;

pub use config::{ConfigError, ExpiryPolicy, NodeConfig, StoreBackend};
pub use node::{start, NodeBuilder, NodeError, NodeHandle, StartError};
