//! The Ring actor: builds the rings of the active membership and publishes them.
//!
//! Readers hold a [`RingReader`] and load the current `Arc<RingSnapshot>` lock-free; a snapshot is
//! never mutated, so a request sees one consistent placement from start to end. One subscriber
//! (the Sync actor) is sent every new snapshot ([`PlacementChanged`]) after it is published,
//! so it works on the very placement coordinators use instead of building its own copy.

use super::Ring;
use actix::{Actor, Context, Handler, Message, Recipient};
use arc_swap::ArcSwap;
use kai_proto::cluster::{RingId, RingState};
use kai_proto::{BucketId, NodeId};
use std::sync::Arc;

/// The placement published by the [`RingActor`]: the active rings, settled first.
///
/// While a transition is in progress there are several; an operation on a bucket then needs a
/// quorum in the owner set of each ([`RingSnapshot::groups`]).
#[derive(Debug)]
pub struct RingSnapshot {
    /// Increases by one with every snapshot published.
    pub version: u64,
    /// The active rings, settled first, newest last; empty until the node knows a cluster.
    pub rings: Vec<(RingId, Ring)>,
    buckets: u32,
}

impl RingSnapshot {
    /// Snapshot number `version` of `rings` (settled first) over `buckets` buckets.
    pub fn new(version: u64, rings: Vec<(RingId, Ring)>, buckets: u32) -> Self {
        RingSnapshot {
            version,
            rings,
            buckets,
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The bucket of `key`.
    pub fn bucket_of(&self, key: &[u8]) -> BucketId {
        BucketId::of(key, self.buckets)
    }

    /// Id of the newest ring (requests carry it so replicas can refuse stale coordinators).
    pub fn latest_id(&self) -> RingId {
        self.rings.last().map(|(id, _)| *id).unwrap_or_default()
    }

    /// The newest ring.
    pub fn latest(&self) -> Option<&Ring> {
        self.rings.last().map(|(_, r)| r)
    }

    /// The settled ring.
    pub fn settled(&self) -> Option<&Ring> {
        self.rings.first().map(|(_, r)| r)
    }

    /// The distinct owner sets of `bucket` across the active rings, settled first.
    pub fn groups(&self, bucket: BucketId) -> Vec<Vec<NodeId>> {
        let mut groups: Vec<Vec<NodeId>> = Vec::with_capacity(self.rings.len());
        for (_, ring) in &self.rings {
            let owners = ring.preference_list(bucket);
            if !owners.is_empty() && !groups.iter().any(|g| g.as_slice() == owners) {
                groups.push(owners.to_vec());
            }
        }
        groups
    }
}

/// Lock-free access to the latest published placement. Cheap to clone.
#[derive(Clone)]
pub struct RingReader(Arc<ArcSwap<RingSnapshot>>);

impl RingReader {
    /// The latest placement.
    pub fn load(&self) -> Arc<RingSnapshot> {
        self.0.load_full()
    }
}

/// Owns the rings' shape and rebuilds them for new memberships.
pub struct RingActor {
    buckets: u32,
    virtual_nodes: u32,
    n: usize,
    published: Arc<ArcSwap<RingSnapshot>>,
    subscriber: Option<Recipient<PlacementChanged>>,
}

impl RingActor {
    /// An actor for rings of the given shape, with nothing published yet, and a reader of what it
    /// will publish.
    pub fn new(buckets: u32, virtual_nodes: u32, n: usize) -> (Self, RingReader) {
        let empty = RingSnapshot::new(0, Vec::new(), buckets);
        let published = Arc::new(ArcSwap::from_pointee(empty));
        let actor = RingActor {
            buckets,
            virtual_nodes,
            n,
            published: Arc::clone(&published),
            subscriber: None,
        };
        (actor, RingReader(published))
    }

    /// Sends every placement published from now on to `subscriber`.
    pub fn notify(mut self, subscriber: Recipient<PlacementChanged>) -> Self {
        self.subscriber = Some(subscriber);
        self
    }

    fn build(&self, rings: &[RingState], previous: &RingSnapshot) -> Vec<(RingId, Ring)> {
        rings
            .iter()
            .map(|state| {
                let reused = previous
                    .rings
                    .iter()
                    .find(|(id, _)| *id == state.id)
                    .map(|(_, r)| r.clone());
                let ring =
                    reused.unwrap_or_else(|| Ring::build(&state.ids(), self.buckets, self.virtual_nodes, self.n));
                (state.id, ring)
            })
            .collect()
    }
}

impl Actor for RingActor {
    type Context = Context<Self>;
}

/// Replace the active rings (settled first); the placement is rebuilt and published.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct SetRings(pub Vec<RingState>);

impl Handler<SetRings> for RingActor {
    type Result = u64;

    /// Returns the version of the snapshot now published.
    fn handle(&mut self, SetRings(rings): SetRings, _ctx: &mut Context<Self>) -> u64 {
        let current = self.published.load_full();
        let ids: Vec<RingId> = rings.iter().map(|r| r.id).collect();
        if ids == current.rings.iter().map(|(id, _)| *id).collect::<Vec<_>>() {
            return current.version;
        }
        let version = current.version + 1;
        let snapshot = Arc::new(RingSnapshot::new(version, self.build(&rings, &current), self.buckets));
        let sizes: Vec<usize> = snapshot.rings.iter().map(|(_, r)| r.nodes().len()).collect();
        log::info!(
            "placement {version}: rings {:?} with {sizes:?} members",
            ids.iter().map(|id| id.version).collect::<Vec<_>>()
        );
        self.published.store(Arc::clone(&snapshot));
        if let Some(subscriber) = &self.subscriber {
            subscriber.do_send(PlacementChanged(snapshot));
        }
        version
    }
}

/// A new placement was published (the active rings changed).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct PlacementChanged(pub Arc<RingSnapshot>);
