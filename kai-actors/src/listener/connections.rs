//! The open client connections of a node, for `stats conns`.
//!
//! Invariant: a connection is listed from the moment it is accepted until its session ends,
//! however it ends (the listener's guard removes it when the session task is dropped).

use crate::clock::unix_now;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One open client connection.
#[derive(Debug)]
pub struct Connection {
    /// Connection number, unique for the node's lifetime (memcached shows its fd).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Unix seconds of the last request (or of the accept, before the first one).
    last_command: AtomicU64,
}

impl Connection {
    /// Notes that a request arrived now.
    pub fn touch(&self) {
        self.last_command.store(unix_now(), Ordering::Relaxed);
    }

    /// Seconds since the last request at `now` (unix seconds).
    pub fn secs_since_last_command(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_command.load(Ordering::Relaxed))
    }
}

/// The registry of open connections.
#[derive(Debug, Default)]
pub struct Connections {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
}

impl Connections {
    /// Lists a newly accepted connection from `peer`.
    pub fn open(&self, peer: SocketAddr) -> Arc<Connection> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let connection = Arc::new(Connection {
            id,
            peer,
            last_command: AtomicU64::new(unix_now()),
        });
        self.lock().insert(id, Arc::clone(&connection));
        connection
    }

    /// Removes connection `id` from the list.
    pub fn close(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The open connections, oldest first.
    pub fn list(&self) -> Vec<Arc<Connection>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_listed_until_closed() {
        let connections = Connections::default();
        let a = connections.open(SocketAddr::from(([127, 0, 0, 1], 1000)));
        let b = connections.open(SocketAddr::from(([127, 0, 0, 1], 1001)));
        assert_ne!(a.id, b.id);
        let ids: Vec<u64> = connections.list().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![a.id, b.id]);
        connections.close(a.id);
        let ids: Vec<u64> = connections.list().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![b.id]);
        assert!(b.secs_since_last_command(unix_now() + 5) >= 5);
    }
}
