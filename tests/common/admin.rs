//! A client of a node's admin HTTP endpoint.

use std::net::SocketAddr;
use std::time::Duration;

/// Deadline of one admin request.
const TIMEOUT: Duration = Duration::from_secs(10);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut response = response.expect("admin endpoint answers");
    let body = response.body_mut().read_to_string().expect("admin body");
    (response.status().as_u16(), body)
}

/// `GET path`: status code and body.
pub fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    answer(agent().get(&format!("http://{admin}{path}")).call())
}

/// `GET path`, which must answer 200 with JSON.
pub fn json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let (code, body) = get(admin, path);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON body")
}

/// `POST path` with an optional bearer token: status code and body.
pub fn post(admin: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = agent().post(&format!("http://{admin}{path}"));
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.send_empty())
}
