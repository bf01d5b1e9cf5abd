//! Logging a repeated failure once: the first failure about a peer (a node, a client address)
//! is logged at warn, later ones at debug until that peer succeeds again, so a peer that keeps
//! failing (a misconfigured node redialling, a scanner) cannot flood the log.
//!
//! Invariant: at most [`LOG_ONCE_REMEMBERED`] peers are remembered; beyond that, failures are
//! logged at debug only (memory stays bounded whatever the peers do).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Distinct peers remembered by a [`LogOnce`]; beyond that, refusals are logged at debug.
pub const LOG_ONCE_REMEMBERED: usize = 1024;

/// Logs a failure about a peer once (at warn), then quietly (at debug) until the peer succeeds.
#[derive(Clone, Default)]
pub struct LogOnce(Arc<Mutex<HashSet<String>>>);

impl LogOnce {
    /// Logs `what` about `peer`: at warn the first time since it last succeeded.
    pub fn failed(&self, peer: &str, what: &dyn std::fmt::Display) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() < LOG_ONCE_REMEMBERED && seen.insert(peer.to_owned()) {
            log::warn!("{what}");
        } else {
            log::debug!("{what}");
        }
    }

    /// `peer` succeeded: its next failure is logged again.
    pub fn succeeded(&self, peer: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(peer);
    }
}
