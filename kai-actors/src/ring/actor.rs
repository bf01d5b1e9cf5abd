//! The Ring actor: rebuilds the ring when membership changes and publishes it.
//!
//! Readers hold a [`RingReader`] and load the current `Arc<RingSnapshot>` lock-free; a snapshot is
//! never mutated, so a request sees one consistent ring from start to end.

use super::Ring;
use actix::{Actor, Context, Handler, Message};
use arc_swap::ArcSwap;
use kai_proto::NodeId;
use std::sync::Arc;

/// An immutable ring published by the [`RingActor`].
#[derive(Debug)]
pub struct RingSnapshot {
    /// Increases by one with every published ring.
    pub version: u64,
    /// The placement.
    pub ring: Ring,
}

/// Lock-free access to the latest published ring. Cheap to clone.
#[derive(Clone)]
pub struct RingReader(Arc<ArcSwap<RingSnapshot>>);

impl RingReader {
    /// The latest ring.
    pub fn load(&self) -> Arc<RingSnapshot> {
        self.0.load_full()
    }
}

/// Owns the ring's shape and rebuilds it for new member sets.
pub struct RingActor {
    buckets: u32,
    virtual_nodes: u32,
    n: usize,
    published: Arc<ArcSwap<RingSnapshot>>,
}

impl RingActor {
    /// A ring of `members` with the given shape, and a reader of what it publishes.
    pub fn new(members: &[NodeId], buckets: u32, virtual_nodes: u32, n: usize) -> (Self, RingReader) {
        let first = RingSnapshot {
            version: 1,
            ring: Ring::build(members, buckets, virtual_nodes, n),
        };
        let published = Arc::new(ArcSwap::from_pointee(first));
        let actor = RingActor {
            buckets,
            virtual_nodes,
            n,
            published: Arc::clone(&published),
        };
        (actor, RingReader(published))
    }
}

impl Actor for RingActor {
    type Context = Context<Self>;
}

/// Replace the member set; the ring is rebuilt and published if it changed.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct SetMembers(pub Vec<NodeId>);

impl Handler<SetMembers> for RingActor {
    type Result = u64;

    /// Returns the version of the ring now published.
    fn handle(&mut self, msg: SetMembers, _ctx: &mut Context<Self>) -> u64 {
        let current = self.published.load_full();
        let ring = Ring::build(&msg.0, self.buckets, self.virtual_nodes, self.n);
        if ring == current.ring {
            return current.version;
        }
        let version = current.version + 1;
        log::info!("ring version {version}: {} members", ring.nodes().len());
        self.published.store(Arc::new(RingSnapshot { version, ring }));
        version
    }
}
