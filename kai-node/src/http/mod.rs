//! The admin HTTP endpoint (`admin_listen`): Prometheus metrics, health and readiness probes,
//! the JSON admin API the `kai` commands use, and the dashboard.
//!
//! Invariants:
//! - It listens apart from the memcache port: nothing on the data path can change the cluster.
//! - Mutating requests (`POST /api/v1/leave`) pass [`auth::authorize`]; a refusal is answered
//!   `401` and logged once per client address until that client succeeds.
//! - Bad input (malformed HTTP, oversized heads, slow clients) is refused by actix-http's
//!   bounded parser (`400`, `431` beyond 128 KiB of head or 96 headers, a request timeout) on
//!   the admin server's own thread: the data path does not share it. Refusals are logged once
//!   per client and kind ([`bad_input`]).

mod api;
pub mod auth;
mod bad_input;
mod dashboard;
mod metrics;

use actix_http::HttpService;
use actix_rt::net::TcpStream;
use actix_server::ServerHandle;
use actix_service::{apply_fn_factory, map_config, Service};
use actix_web::dev::AppConfig;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse};
use kai_actors::log_once::LogOnce;
use kai_actors::report::NodeInfo;
use kai_actors::stats::NodeStats;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest a client may take to send a request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a closing connection may take to shut down.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
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
    let refusals = LogOnce::default();
    let state = web::Data::new(AdminState {
        registry: metrics::registry(info.clone(), Arc::clone(&stats)),
        info,
        stats,
        token,
        refusals: refusals.clone(),
    });
    // actix-web's `HttpServer` from its parts (actix-server, actix-http), so that what ends a
    // connection reaches `bad_input` instead of only actix-http's own per-connection log line.
    let builder = actix_server::Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder
        .workers(1)
        .max_concurrent_connections(MAX_CONNECTIONS)
        .disable_signals()
        .listen("kai-admin", socket, move || {
            let app = App::new().app_data(state.clone()).configure(routes);
            let shutdown = shutdown.clone();
            let http = HttpService::build()
                .client_request_timeout(REQUEST_TIMEOUT)
                .client_disconnect_timeout(DISCONNECT_TIMEOUT)
                .local_addr(addr)
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                // No handler builds URLs or reads the configured host, which is all AppConfig
                // carries.
                .finish(map_config(app, |()| AppConfig::default()))
                .tcp();
            let refusals = refusals.clone();
            apply_fn_factory(http, move |stream: TcpStream, http| {
                let client = stream.peer_addr().ok();
                let connection = http.call(stream);
                let refusals = refusals.clone();
                async move {
                    let ended = connection.await;
                    if let Err(e) = &ended {
                        bad_input::log(&refusals, client, e);
                    }
                    ended
                }
            })
        })?
        .run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            log::error!("admin endpoint stopped: {e}");
        }
    });
    Ok(AdminServer { handle, addr })
}

/// Every path the endpoint serves.
fn routes(config: &mut web::ServiceConfig) {
    config
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
        .default_service(web::to(not_found));
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
