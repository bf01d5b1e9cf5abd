//! Embedding Kai in an existing Actix application.
//!
//! The application owns the Actix `System`; Kai's actors start inside it with
//! [`kai_actors::NodeBuilder`], and the application talks to its node through the returned
//! [`kai_actors::NodeHandle`] or by sending [`Get`]/[`Set`]/[`Delete`] messages to the node's
//! Coordinator actor — no memcache connection involved. Here the application's own actor, a
//! tiny page-view counter, keeps its counts in Kai.
//!
//! ```text
//! cargo run --example embed
//! ```

use actix::{Actor, Addr, Context, Handler, Message, ResponseFuture};
use kai_actors::coordinator::{Coordinator, Get, Set};
use kai_actors::{NodeBuilder, NodeConfig, StoreBackend};
use kai_proto::{Key, RecordBody};
use std::time::Duration;

type Error = Box<dyn std::error::Error>;

/// The host application's actor: counts page views, stored in Kai.
struct PageViews {
    kai: Addr<Coordinator>,
}

impl Actor for PageViews {
    type Context = Context<Self>;
}

/// Count one view of `page`; answers the new count.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
struct View {
    page: String,
}

impl Handler<View> for PageViews {
    type Result = ResponseFuture<Result<u64, String>>;

    fn handle(&mut self, msg: View, _ctx: &mut Context<Self>) -> Self::Result {
        let kai = self.kai.clone();
        Box::pin(async move {
            let key = Key::new(format!("views:{}", msg.page)).map_err(|e| e.to_string())?;
            let current = match kai.send(Get { key: key.clone() }).await.map_err(|e| e.to_string())? {
                Ok(Some(record)) => match record.body {
                    RecordBody::Value { data, .. } => String::from_utf8_lossy(&data).parse().unwrap_or(0),
                    RecordBody::Tombstone { .. } => 0,
                },
                Ok(None) => 0,
                Err(e) => return Err(e.to_string()),
            };
            let next: u64 = current + 1;
            let set = Set {
                key,
                flags: 0,
                expires_at: 0,
                data: next.to_string().into(),
            };
            kai.send(set)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(next)
        })
    }
}

/// What the example does; returns the lines it reports (the tests run this too).
pub async fn run() -> Result<Vec<String>, Error> {
    let mut report = Vec::new();
    // A single in-memory node on free ports; for a persistent node use `StoreBackend::Rocksdb`
    // and a `data_dir`, and give `seeds` to join a cluster.
    let config = NodeConfig {
        listen: "127.0.0.1:0".parse()?,
        peer_listen: "127.0.0.1:0".parse()?,
        store: StoreBackend::Memory,
        ..NodeConfig::default()
    };
    let node = NodeBuilder::new(config).start().await?;
    if !node.wait_ready(Duration::from_secs(5)).await {
        return Err("the node did not become ready".into());
    }
    report.push(format!(
        "kai node {} started (memcache also on {})",
        node.name(),
        node.client_addr()
    ));

    // Through the handle.
    node.set(Key::new("greeting")?, 7, "hello from the host app".into())
        .await?;
    if let Some(record) = node.get(Key::new("greeting")?).await? {
        if let RecordBody::Value { data, flags, .. } = record.body {
            report.push(format!(
                "greeting = {:?} (flags {flags})",
                String::from_utf8_lossy(&data)
            ));
        }
    }

    // Through the application's own actor, which messages Kai's Coordinator.
    let views = PageViews {
        kai: node.coordinator(),
    }
    .start();
    for _ in 0..3 {
        views.send(View { page: "home".into() }).await??;
    }
    let count = views.send(View { page: "home".into() }).await??;
    report.push(format!("home viewed {count} times"));

    let deleted = node.delete(Key::new("greeting")?).await?;
    report.push(format!("greeting deleted: {deleted}"));
    node.shutdown().await;
    report.push("kai node stopped".to_owned());
    Ok(report)
}

#[cfg_attr(test, allow(dead_code))]
#[actix_rt::main]
async fn main() -> Result<(), Error> {
    for line in run().await? {
        println!("{line}");
    }
    Ok(())
}
