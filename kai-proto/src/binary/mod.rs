//! The memcached binary protocol (memcached 1.6's `proto_bin.c`; deprecated by memcached but
//! still spoken by memjs, php-memcached sessions, Dalli ≤ 4 and libmemcached's `--binary`).
//!
//! - [`header`]: the 24-byte packet header, opcodes and status codes.
//! - [`change`]: which read-modify-write a write runs (a cas in the header makes it a
//!   compare-and-swap) and the status of its answer.
//! - [`decode`]: a streaming request decoder ([`BinaryDecoder`]) with bounded memory.
//! - [`request`]: the decoded requests.
//! - [`response`]: reply packets, memcached's error texts and the quiet-mode rule.
//!
//! Invariants: every request is answered by memcached's status for it (or by nothing, where a
//! quiet opcode asks for silence); the opaque of a request is echoed in its replies; no input
//! makes the decoder buffer more than one header, 255 bytes of extras, a key and
//! `max_value_size` bytes of value.

pub mod change;
pub mod decode;
pub mod header;
pub mod request;
pub mod response;

pub use decode::{BinaryDecoder, BinaryFatal, BinaryParsed, Rejection};
pub use header::{opcode, RequestHeader, Status, HEADER_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};
pub use request::{absolute_expiry, Command, StoreMode, COUNTER_NO_CREATE};
pub use response::{returns_key, Reply, StatusExt};
