//! One shutdown signal per node.
//!
//! Every long-lived actor of a node (the client [`Listener`](crate::listener::Listener), the
//! [`PeerListener`](crate::peer::PeerListener), [`Membership`](crate::membership::Membership)
//! and the [`SyncActor`](crate::sync::SyncActor)) is created watching the node's one
//! [`Shutdown`]; triggering it stops them all. Actors know nothing of the signal: the node wires
//! it in when it creates them ([`Shutdown::stop_on`]), and an actor that must leave something
//! behind (Membership persists its view) does so in its `stopping` hook, whatever stopped it.
//!
//! Invariant: once triggered, the signal stays triggered; an actor created watching a triggered
//! signal stops right after it starts.

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context};
use tokio_util::sync::CancellationToken;

/// A node's shutdown signal: cheap to clone, every clone sees the same trigger.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// Stops every actor watching this signal.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    /// True once [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Makes the actor owning `ctx` stop when the signal is triggered. Call it while creating the
    /// actor (`Actor::create(|ctx| { shutdown.stop_on(ctx); … })`).
    pub fn stop_on<A>(&self, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>>,
    {
        let token = self.0.clone();
        let triggered = actix::fut::wrap_future::<_, A>(async move { token.cancelled().await });
        ctx.spawn(triggered.map(|(), _actor, ctx| ctx.stop()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Idle;
    impl Actor for Idle {
        type Context = Context<Self>;
    }

    #[actix_rt::test]
    async fn triggering_stops_every_watching_actor() {
        let shutdown = Shutdown::default();
        let actors: Vec<_> = (0..3)
            .map(|_| {
                Idle::create(|ctx| {
                    shutdown.stop_on(ctx);
                    Idle
                })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(actors.iter().all(|a| a.connected()));
        shutdown.trigger();
        assert!(shutdown.is_triggered());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while actors.iter().any(|a| a.connected()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "actors still running after the trigger"
            );
            tokio::task::yield_now().await;
        }
    }

    #[actix_rt::test]
    async fn an_actor_created_after_the_trigger_stops_at_once() {
        let shutdown = Shutdown::default();
        shutdown.trigger();
        let late = Idle::create(|ctx| {
            shutdown.stop_on(ctx);
            Idle
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while late.connected() {
            assert!(tokio::time::Instant::now() < deadline, "late actor still running");
            tokio::task::yield_now().await;
        }
    }
}
