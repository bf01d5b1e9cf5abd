//! The services this node serves to its peers, each registered by the subsystem that owns it.
//!
//! A subsystem implements [`Serve<S>`] for the [`Service`]s it answers (the replica and flush
//! steps: `LocalReplica`; gossip: the Membership actor; sync: `SyncServer`; forwarded updates:
//! the coordinators), and the node registers those handlers in one [`Services`] at start. The
//! peer server hands every request to `Services::dispatch` and knows none of them.
//!
//! Invariants: every request gets exactly one answer on its connection — its handler's reply, or
//! `PeerResponse::Error` when no handler is registered for its service or the handler could not
//! serve it (the request then did not take effect). A service has at most one handler. Dispatch
//! allocates nothing beyond the task that runs the handler: handlers are generic, reached by one
//! table lookup and one virtual call per request, and share the handler through an `Arc`.

use kai_proto::peer::{Frame, PeerRequest, PeerResponse, PingService, Service, ServiceId};
use kai_proto::NodeId;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// Where the answer to one request goes: its connection's write queue, under the request's id.
/// Holds the request's in-flight permit until the answer is queued.
pub(crate) struct Responder {
    id: u64,
    replies: mpsc::Sender<Frame>,
    _in_flight: OwnedSemaphorePermit,
}

impl Responder {
    /// The answer to request `id` goes to `replies`; `in_flight` is released once it is queued.
    pub(crate) fn new(id: u64, replies: mpsc::Sender<Frame>, in_flight: OwnedSemaphorePermit) -> Self {
        Responder {
            id,
            replies,
            _in_flight: in_flight,
        }
    }

    /// Queues `body` as the answer (dropped if the connection closed meanwhile).
    async fn answer(self, body: PeerResponse) {
        let _ = self.replies.send(Frame::Response { id: self.id, body }).await;
    }
}

/// Why a handler could not serve a request; the peer receives it as `PeerResponse::Error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// No handler is registered for the request's service on this node.
    #[error("this node does not serve {0} requests")]
    NotServed(ServiceId),
    /// The subsystem behind the service is shutting down.
    #[error("{0} is shutting down")]
    ShuttingDown(&'static str),
}

/// Serves the requests of service `S` that other nodes send.
pub trait Serve<S: Service>: Send + Sync + 'static {
    /// The reply to `request` from node `from` (as authenticated by the handshake), or why it
    /// was not served. Runs on the worker thread of the connection it came on.
    fn serve(&self, from: NodeId, request: S::Request) -> impl Future<Output = Result<S::Reply, ServeError>>;
}

/// The transport's own liveness check.
struct Pong;

impl Serve<PingService> for Pong {
    async fn serve(&self, _from: NodeId, (): ()) -> Result<(), ServeError> {
        Ok(())
    }
}

/// A registered handler, type-erased over its service.
trait Dispatch: Send + Sync {
    /// Runs the handler on `request` (which is of the handler's service) in a task of the
    /// current worker thread; the task answers through `respond`.
    fn dispatch(&self, from: NodeId, request: PeerRequest, respond: Responder);
}

struct Registered<S, H> {
    handler: Arc<H>,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service, H: Serve<S>> Dispatch for Registered<S, H> {
    fn dispatch(&self, from: NodeId, request: PeerRequest, respond: Responder) {
        let handler = Arc::clone(&self.handler);
        actix_rt::spawn(async move {
            let body = match S::open_request(request) {
                Ok(request) => match handler.serve(from, request).await {
                    Ok(reply) => S::response(reply),
                    Err(e) => PeerResponse::Error(e.to_string()),
                },
                // Not reached: `Services` files a handler under its own service's id.
                Err(other) => PeerResponse::Error(ServeError::NotServed(other.service()).to_string()),
            };
            respond.answer(body).await;
        });
    }
}

/// Service id → the handler registered for it.
pub struct Services {
    handlers: [Option<Box<dyn Dispatch>>; ServiceId::COUNT],
}

impl Default for Services {
    fn default() -> Self {
        Self::new()
    }
}

impl Services {
    /// A table serving only [`PingService`].
    pub fn new() -> Self {
        let mut services = Services {
            handlers: std::array::from_fn(|_| None),
        };
        services.register::<PingService>(Pong);
        services
    }

    /// Serves `S` with `handler` from now on (replacing any handler registered for `S` before).
    pub fn register<S: Service>(&mut self, handler: impl Serve<S>) -> &mut Self {
        self.handlers[S::ID.index()] = Some(Box::new(Registered::<S, _> {
            handler: Arc::new(handler),
            _service: PhantomData,
        }));
        self
    }

    /// Hands `request` from node `from` to its service's handler, which answers through
    /// `respond` from a task of the current worker thread; answers `NotServed` when none is
    /// registered.
    pub(crate) fn dispatch(&self, from: NodeId, request: PeerRequest, respond: Responder) {
        let service = request.service();
        match &self.handlers[service.index()] {
            Some(handler) => handler.dispatch(from, request, respond),
            None => {
                log::debug!("a {service} request from {from} is not served here");
                let body = PeerResponse::Error(ServeError::NotServed(service).to_string());
                actix_rt::spawn(respond.answer(body));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_proto::flush::{FlushReply, FlushStep};
    use kai_proto::peer::FlushService;
    use tokio::sync::Semaphore;

    /// Answers a flush step with the node it came from, or refuses a `Mark`.
    struct Echo;

    impl Serve<FlushService> for Echo {
        async fn serve(&self, from: NodeId, step: FlushStep) -> Result<FlushReply, ServeError> {
            match step {
                FlushStep::Bound => Ok(FlushReply::Bound {
                    counter: from.0,
                    mark: None,
                }),
                FlushStep::Mark(_) => Err(ServeError::ShuttingDown("echo")),
            }
        }
    }

    /// Dispatches `requests` (ids 0, 1, …) from node 7 and collects the answers by id, checking
    /// that every request was answered exactly once and released its in-flight permit.
    async fn answers(services: &Services, requests: Vec<PeerRequest>) -> Vec<PeerResponse> {
        let count = requests.len();
        let (replies, mut sent) = mpsc::channel(count);
        let in_flight = Arc::new(Semaphore::new(count));
        for (id, request) in requests.into_iter().enumerate() {
            let permit = Arc::clone(&in_flight).try_acquire_owned().expect("a permit");
            services.dispatch(NodeId(7), request, Responder::new(id as u64, replies.clone(), permit));
        }
        drop(replies);
        let mut answers: Vec<Option<PeerResponse>> = vec![None; count];
        while let Some(frame) = sent.recv().await {
            let Frame::Response { id, body } = frame else {
                panic!("a request was sent instead of an answer");
            };
            let slot = &mut answers[usize::try_from(id).expect("small id")];
            assert!(slot.replace(body).is_none(), "request {id} answered twice");
        }
        assert_eq!(in_flight.available_permits(), count, "every permit is released");
        answers
            .into_iter()
            .map(|a| a.expect("every request is answered"))
            .collect()
    }

    #[actix_rt::test]
    async fn a_registered_service_answers_with_its_handlers_reply() {
        let mut services = Services::new();
        services.register::<FlushService>(Echo);
        let got = answers(&services, vec![PeerRequest::Flush(FlushStep::Bound), PeerRequest::Ping]).await;
        let bound = PeerResponse::Flush(FlushReply::Bound { counter: 7, mark: None });
        assert_eq!(got, vec![bound, PeerResponse::Pong]);
    }

    #[actix_rt::test]
    async fn an_unregistered_service_is_answered_with_an_error_naming_it() {
        let services = Services::new();
        let got = answers(&services, vec![PeerRequest::Flush(FlushStep::Bound), PeerRequest::Ping]).await;
        assert_eq!(
            got,
            vec![
                PeerResponse::Error("this node does not serve flush requests".into()),
                PeerResponse::Pong
            ]
        );
    }

    #[actix_rt::test]
    async fn a_handlers_refusal_is_answered_as_an_error() {
        let mut services = Services::new();
        services.register::<FlushService>(Echo);
        let mark = kai_proto::flush::FlushMark {
            tag: kai_proto::Tag {
                counter: 1,
                writer: kai_proto::WriterId(1),
            },
            at: 0,
        };
        let got = answers(&services, vec![PeerRequest::Flush(FlushStep::Mark(mark))]).await;
        assert_eq!(got, vec![PeerResponse::Error("echo is shutting down".into())]);
    }

    #[actix_rt::test]
    async fn registering_again_replaces_the_handler() {
        struct Failing;
        impl Serve<FlushService> for Failing {
            async fn serve(&self, _from: NodeId, _step: FlushStep) -> Result<FlushReply, ServeError> {
                Ok(FlushReply::Failed)
            }
        }
        let mut services = Services::new();
        services
            .register::<FlushService>(Echo)
            .register::<FlushService>(Failing);
        let got = answers(&services, vec![PeerRequest::Flush(FlushStep::Bound)]).await;
        assert_eq!(got, vec![PeerResponse::Flush(FlushReply::Failed)]);
    }
}
