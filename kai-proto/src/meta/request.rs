//! Parsed meta requests.
//!
//! memcached parses every meta flag for every meta command and each command ignores the flags
//! it has no use for; [`MetaFlags`] is that common parse. Flags that echo something back are
//! kept in request order ([`Echo`]), the order the reply lists them in.

use crate::key::Key;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A flag whose reply token depends on the item or the request, in the order sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Echo {
    /// `O<token>`: copied back verbatim (the whole token, `O` included).
    Opaque(Bytes),
    /// `k`: the key (base64 with a trailing ` b` for binary keys).
    Key,
    /// `c`: the item's cas unique.
    Cas,
    /// `f`: the client flags.
    Flags,
    /// `t`: remaining TTL in seconds, `-1` for none.
    Ttl,
    /// `s`: the value's size.
    Size,
    /// `h`: whether the item was fetched before.
    Hit,
    /// `l`: seconds since the last access.
    LastAccess,
}

/// The flags of one meta command (memcached's `_meta_flags`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaFlags {
    /// `b`: the key was sent base64-encoded.
    pub base64: bool,
    /// `q`: hide the nominal reply (`EN` of `mg`, `HD` of `ms`/`md`/`ma`).
    pub quiet: bool,
    /// `v`: return the value.
    pub value: bool,
    /// Flags echoed in the reply, in request order.
    pub echo: Vec<Echo>,
    /// `C<cas>`: compare the cas unique.
    pub compare_cas: Option<u64>,
    /// `E<cas>`: the cas unique to give a new version (accepted, see the design doc).
    pub new_cas: Option<u64>,
    /// `F<flags>`: client flags to store (`ms`).
    pub client_flags: Option<u32>,
    /// `I`: invalidate (mark stale instead of deleting; `ms`: accept an old cas as stale).
    pub invalidate: bool,
    /// `N<ttl>`: vivify on miss with this exptime.
    pub vivify: Option<i32>,
    /// `R<ttl>`: win the recache if the remaining TTL is below this.
    pub recache: Option<i32>,
    /// `T<ttl>`: new exptime.
    pub ttl: Option<i32>,
    /// `J<n>`: initial value of a vivified counter (`ma`).
    pub initial: Option<u64>,
    /// `D<n>`: delta (`ma`).
    pub delta: Option<u64>,
    /// `x`: empty the value but keep the item (`md`).
    pub strip_value: bool,
}

/// `ms` modes (`M` flag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetMode {
    /// `S`: set (the default).
    #[default]
    Set,
    /// `E`: add.
    Add,
    /// `A`: append.
    Append,
    /// `P`: prepend.
    Prepend,
    /// `R`: replace.
    Replace,
}

/// A meta command on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaCommand {
    /// The key, decoded if it was sent base64-encoded.
    pub key: Key,
    /// Its flags.
    pub flags: MetaFlags,
}

/// One meta request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaRequest {
    /// `mg <key> <flags>*`
    Get(MetaCommand),
    /// `ms <key> <datalen> <flags>*` with its data block.
    Set {
        /// Key and flags.
        command: MetaCommand,
        /// The `M` mode.
        mode: SetMode,
        /// The data block, without `\r\n`.
        data: Bytes,
    },
    /// `md <key> <flags>*`
    Delete(MetaCommand),
    /// `ma <key> <flags>*`
    Arithmetic {
        /// Key and flags.
        command: MetaCommand,
        /// Increment (`MI`, `M+`, default) or decrement (`MD`, `M-`).
        incr: bool,
    },
    /// `mn`
    Noop,
    /// `me <key> [b]`
    Debug {
        /// The key.
        key: Key,
        /// It was sent base64-encoded.
        base64: bool,
    },
}
