//! The Update service: read-modify-writes that other nodes forward to this node, the stable
//! proposer of their keys, run by this node's coordinators.
//!
//! Invariants: a forwarded update is proposed here and never forwarded again; all updates of one
//! key go to the same coordinator (chosen by the key's hash); an update that could not be handed
//! to a coordinator is answered as not served, which tells the sender that it did not run.

use crate::peer::{Serve, ServeError};
use actix::{Message, Recipient};
use kai_proto::peer::{ForwardedUpdate, UpdateReply, UpdateService};
use kai_proto::NodeId;
use xxhash_rust::xxh3::xxh3_64;

/// Runs a forwarded read-modify-write on a coordinator, proposing it there: the answer and the
/// key's resulting record, or why it failed.
#[derive(Message, Debug)]
#[rtype(result = "UpdateReply")]
pub struct ServeUpdate(pub ForwardedUpdate);

/// This node's coordinators, serving forwarded updates.
pub struct Proposers(Vec<Recipient<ServeUpdate>>);

impl Proposers {
    /// Proposers on `coordinators` (one per worker thread; at least one).
    pub fn new(coordinators: Vec<Recipient<ServeUpdate>>) -> Self {
        Proposers(coordinators)
    }
}

impl Serve<UpdateService> for Proposers {
    async fn serve(&self, _from: NodeId, update: ForwardedUpdate) -> Result<UpdateReply, ServeError> {
        let Some(lanes) = std::num::NonZeroUsize::new(self.0.len()) else {
            return Err(ServeError::NotServed(kai_proto::peer::ServiceId::Update));
        };
        let lane = xxh3_64(update.key.as_bytes()) as usize % lanes;
        (self.0[lane].send(ServeUpdate(update)).await).map_err(|_| ServeError::ShuttingDown("the coordinator"))
    }
}
