//! The memcached text protocol, as specified by memcached's `doc/protocol.txt`.
//!
//! - [`parse`]: a streaming request parser ([`RequestDecoder`], a tokio-util `Decoder`) that
//!   accepts pipelined requests split across any number of reads, keeps memory bounded by the
//!   configured [`Limits`], and resynchronises after every recoverable error.
//! - [`request`]: the parsed requests.
//! - [`response`]: replies and their encoding, including the one mapping from errors to
//!   `ERROR` / `CLIENT_ERROR` / `SERVER_ERROR` lines.
//!
//! Meta commands (`mg`, `ms`, …) share this framing: the decoder hands their lines to
//! [`crate::meta`] and yields them as [`Request::Meta`].

pub mod parse;
pub mod request;
pub mod response;

pub use parse::{FatalError, Limits, Parsed, RequestDecoder, RequestError};
pub use request::{absolute_expiry, ConditionalStore, Request, StorageCommand};
pub use response::{Response, StatsEntry, ValueEntry};
