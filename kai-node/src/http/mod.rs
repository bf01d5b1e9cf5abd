//! The admin HTTP endpoint (`admin_listen`): Prometheus metrics, health and readiness probes,
//! the JSON admin API the `kai` commands use, and the dashboard.
//!
//! Invariants:
//! - It listens apart from the memcache port: nothing on the data path can change the cluster.
//! - Mutating requests (`POST /api/v1/leave`) pass [`auth::authorize`]; a refusal is answered
//!   `401` and logged once per client address until that client succeeds.
//! - Bad input (malformed HTTP, oversized heads, slow clients) is refused by actix-web's
//!   bounded parser (`400`, `431` beyond 128 KiB of head, a request timeout) on the admin
//!   server's own thread: the data path does not share it.

mod api;
pub mod auth;
mod dashboard;
mod metrics;

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use kai_actors::log_once::LogOnce;
use kai_actors::report::NodeInfo;
use kai_actors::stats::NodeStats;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest a client may take to send a request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 256;

/// What every handler reads.
struct AdminState {
    info: NodeInfo,
    stats: Arc<NodeStats>,
    token: Option<String>,
    registry: Registry,
    refusals: LogOnce,
}

/// A running admin endpoint.
pub struct AdminServer {
    handle: ServerHandle,
    addr: SocketAddr,
}

impl AdminServer {
    /// The address it is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for requests in progress.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Binds `addr` (before the node starts, so a busy port fails the start early).
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (config key `admin_listen`): {e}"))
}

/// Serves the admin endpoint on `socket` for the node described by `info` and `stats`. Must be
/// called inside a running Actix system.
pub fn serve(
    socket: std::net::TcpListener,
    info: NodeInfo,
    stats: Arc<NodeStats>,
    token: Option<String>,
) -> anyhow::Result<AdminServer> {
    let addr = socket.local_addr()?;
    let state = web::Data::new(AdminState {
        registry: metrics::registry(info.clone(), Arc::clone(&stats)),
        info,
        stats,
        token,
        refusals: LogOnce::default(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/", web::get().to(dashboard::page))
            .route("/metrics", web::get().to(metrics_page))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .service(
                web::scope("/api/v1")
                    .route("/status", web::get().to(status))
                    .route("/members", web::get().to(members))
                    .route("/ring", web::get().to(ring))
                    .route("/transfers", web::get().to(transfers))
                    .route("/stats", web::get().to(stats_page))
                    // A resource answers other methods `405 Method Not Allowed`.
                    .service(web::resource("/leave").post(leave)),
            )
            .default_service(web::to(not_found))
    })
    .workers(1)
    .max_connections(MAX_CONNECTIONS)
    .client_request_timeout(REQUEST_TIMEOUT)
    .disable_signals()
    .listen(socket)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            log::error!("admin endpoint stopped: {e}");
        }
    });
    Ok(AdminServer { handle, addr })
}

fn json(value: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok().json(value)
}

async fn metrics_page(state: web::Data<AdminState>) -> HttpResponse {
    match metrics::render(&state.registry) {
        Ok(text) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, metrics::CONTENT_TYPE))
            .body(text),
        Err(e) => {
            log::error!("cannot encode metrics: {e}");
            HttpResponse::InternalServerError().body("cannot encode metrics\n")
        }
    }
}

/// Liveness: the process answers.
async fn health() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

/// Readiness: the node knows its cluster and sees a majority of it.
async fn ready(state: web::Data<AdminState>) -> HttpResponse {
    if state.info.ready() {
        HttpResponse::Ok().body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable().body("not ready: not in a cluster, or cannot see a majority of it\n")
    }
}

async fn status(state: web::Data<AdminState>) -> HttpResponse {
    json(api::status(&state.info, &state.stats))
}

async fn members(state: web::Data<AdminState>) -> HttpResponse {
    json(api::members(&state.info))
}

async fn ring(state: web::Data<AdminState>) -> HttpResponse {
    json(api::ring(&state.info))
}

async fn transfers(state: web::Data<AdminState>) -> HttpResponse {
    json(api::transfers(&state.stats))
}

async fn stats_page(state: web::Data<AdminState>) -> HttpResponse {
    json(api::stats(&state.info, &state.stats))
}

/// `POST /api/v1/leave`: the node hands its data off, leaves the cluster and stops.
async fn leave(request: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    let client = request
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    let header = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if let Err(refusal) = auth::authorize(state.token.as_deref(), header) {
        state.refusals.failed(
            &client,
            &format_args!("admin request POST /api/v1/leave from {client} refused: {refusal}"),
        );
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .json(serde_json::json!({ "error": refusal.to_string() }));
    }
    state.refusals.succeeded(&client);
    log::info!("leave requested through the admin endpoint by {client}");
    state.info.leave();
    HttpResponse::Accepted().json(serde_json::json!({ "leaving": state.info.name }))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().body("not found: see /api/v1/status, /metrics, /health, /ready\n")
}
