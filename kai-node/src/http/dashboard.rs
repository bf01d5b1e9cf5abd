//! `GET /`: the live dashboard, one HTML page embedded in the binary that polls the JSON API.

use actix_web::http::header;
use actix_web::HttpResponse;

/// The page (plain HTML, CSS, SVG and a small script; no build step).
const PAGE: &str = include_str!("dashboard.html");

pub(super) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(PAGE)
}
