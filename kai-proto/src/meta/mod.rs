//! memcached's meta protocol (`mg`, `ms`, `md`, `ma`, `mn`, `me`), as memcached 1.6's
//! `doc/protocol.txt` specifies it and memcached 1.6 answers it.
//!
//! Meta commands share the text protocol's framing (a line, and for `ms` a data block), so the
//! text decoder ([`crate::memcache::RequestDecoder`]) recognises them ([`parse::is_meta`]) and
//! hands the line to [`parse::parse`]; they come out as
//! [`crate::memcache::Request::Meta`]. This module has no I/O:
//! - [`request`]: the parsed requests and their flags.
//! - [`parse`]: the line parser and memcached's client errors.
//! - [`reply`]: reply encoding, quiet mode included.
//! - [`base64`]: memcached's base64 for binary keys (`b`).
//!
//! What the commands *do* (reads, stores, and the read-modify-writes that need per-key
//! agreement) is in [`crate::change`] and the node's listener.

pub mod base64;
pub mod parse;
pub mod reply;
pub mod request;

pub use parse::{Line, LineError, MetaError, SetHeader};
pub use request::{Echo, MetaCommand, MetaFlags, MetaRequest, SetMode};

#[cfg(test)]
mod tests;
