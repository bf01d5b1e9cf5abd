//! Kai's wire formats and core types, with no I/O and no actors.
//!
//! - [`memcache`]: the memcached text protocol (streaming request parser, reply encoder, limits).
//! - [`binary`]: the memcached binary protocol; [`auth`]: SASL PLAIN and text authentication.
//! - [`meta`]: memcached's meta commands, parsed by the same decoder, and their replies.
//! - [`key`], [`tag`], [`record`], [`bucket`]: the data model shared by every node
//!   (validated keys, version tags, stored records and their on-disk encoding, key → bucket hashing).
//!
//! Everything here is deterministic and unit-tested without a network; the `kai-actors` crate does
//! the I/O around it.

pub mod auth;
pub mod binary;
pub mod bucket;
pub mod change;
pub mod cluster;
pub mod flush;
pub mod key;
pub mod memcache;
pub mod meta;
pub mod peer;
pub mod record;
pub mod replica;
pub mod sync;
pub mod tag;

pub use bucket::BucketId;
pub use key::{Key, KeyError};
pub use record::{Record, RecordBody, RecordDecodeError, ValueState};
pub use tag::{NodeId, Tag, WriterId};
