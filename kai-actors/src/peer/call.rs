//! Typed clients: a caller names the [`Service`] it calls and gets that service's reply, or a
//! [`PeerError`].
//!
//! This is the one place a [`PeerResponse`] is opened for a caller ([`open_reply`]): the
//! service's own variant is its reply; `Error` becomes [`PeerError::Remote`] (the peer did not
//! serve the request); any other variant becomes [`PeerError::UnexpectedReply`].

use super::client::Call;
use super::{PeerDirectory, PeerError};
use kai_proto::peer::{PeerResponse, Service, ServiceId};
use kai_proto::NodeId;
use std::future::Future;

impl PeerDirectory {
    /// Calls `S` on `node` with `request`, through the connection of `lane`.
    ///
    /// The request is handed to the node's Peer actor before this returns; the future only
    /// waits for the answer (within the call's timeout) and borrows nothing, so it can be
    /// spawned. A node with no Peer actor fails with [`PeerError::NoRoute`].
    pub fn call<S: Service>(
        &self,
        node: NodeId,
        lane: usize,
        request: S::Request,
    ) -> impl Future<Output = Result<S::Reply, PeerError>> + 'static {
        let sent = self.send(node, lane, Call(S::request(request)));
        async move {
            let sent = sent.ok_or(PeerError::NoRoute(node))?;
            // The Peer actor stopped (its node left) before answering.
            let response = sent.await.map_err(|_| PeerError::ConnectionLost(node.to_string()))??;
            open_reply::<S>(response)
        }
    }
}

/// `response` as the reply of a call of `S`.
pub(super) fn open_reply<S: Service>(response: PeerResponse) -> Result<S::Reply, PeerError> {
    S::open_reply(response).map_err(|other| match other {
        PeerResponse::Error(reason) => PeerError::Remote { service: S::ID, reason },
        other => PeerError::UnexpectedReply {
            service: S::ID,
            got: other.service().map_or("error", ServiceId::name),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_proto::flush::FlushReply;
    use kai_proto::peer::{FlushService, PingService};

    #[test]
    fn a_reply_of_the_called_service_is_its_typed_reply() {
        assert_eq!(
            open_reply::<FlushService>(PeerResponse::Flush(FlushReply::Marked)),
            Ok(FlushReply::Marked)
        );
        assert_eq!(open_reply::<PingService>(PeerResponse::Pong), Ok(()));
    }

    #[test]
    fn an_error_answer_is_a_remote_error_of_the_called_service() {
        let error = open_reply::<FlushService>(PeerResponse::Error("this node does not serve flush requests".into()));
        assert_eq!(
            error,
            Err(PeerError::Remote {
                service: ServiceId::Flush,
                reason: "this node does not serve flush requests".into()
            })
        );
        let shown = error.expect_err("an error").to_string();
        assert!(shown.contains("flush") && shown.contains("does not serve"), "{shown}");
    }

    #[test]
    fn another_services_reply_is_an_unexpected_reply() {
        let error = open_reply::<FlushService>(PeerResponse::Pong).expect_err("not a flush reply");
        assert_eq!(
            error,
            PeerError::UnexpectedReply {
                service: ServiceId::Flush,
                got: "ping"
            }
        );
        assert!(error.maybe_served(), "the request may have run: {error}");
    }
}
