//! Connections the admin endpoint refuses before any handler runs: bytes that are not HTTP or
//! do not parse (`400 Bad Request`) and request heads over actix-http's bounds — 128 KiB or 96
//! headers — (`431 Request Header Fields Too Large`).
//!
//! Invariants: actix-http answers such a connection and closes it on the admin server's own
//! thread, so the data path never sees it. Each refusal is logged at warn once per client
//! address and kind ([`LogOnce`]) and at debug after that, so a client sending garbage in a loop
//! cannot flood the log. A connection that fails for another reason (the client went away, a
//! timeout) is nobody's bad input: debug only.

use actix_http::error::{DispatchError, ParseError};
use kai_actors::log_once::LogOnce;
use std::net::SocketAddr;

/// Why actix-http refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// Not HTTP, or HTTP that does not parse.
    Malformed,
    /// A request head over the size or header-count bound.
    HeadTooLarge,
}

impl BadRequest {
    /// The refusal `error` (what ended a connection) stands for, if it was the client's input.
    pub fn of(error: &DispatchError) -> Option<BadRequest> {
        match error {
            DispatchError::Parse(ParseError::TooLarge) => Some(BadRequest::HeadTooLarge),
            DispatchError::Parse(ParseError::Io(_)) => None,
            DispatchError::Parse(_) => Some(BadRequest::Malformed),
            _ => None,
        }
    }

    /// The status line actix-http answered.
    pub fn answer(self) -> &'static str {
        match self {
            BadRequest::Malformed => "400 Bad Request",
            BadRequest::HeadTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// Logs what ended an admin connection from `client` with `error` (see the module invariants).
pub fn log(refusals: &LogOnce, client: Option<SocketAddr>, error: &DispatchError) {
    let ip = client.map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    match BadRequest::of(error) {
        Some(kind) => refusals.failed(
            &format!("{ip} {kind:?}"),
            &format_args!("admin connection from {ip} refused with {}: {error}", kind.answer()),
        ),
        None => log::debug!("admin connection from {ip} ended: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_are_bad_input_and_io_errors_are_not() {
        let of = |e: DispatchError| BadRequest::of(&e);
        assert_eq!(of(ParseError::Header.into()), Some(BadRequest::Malformed));
        assert_eq!(of(ParseError::Method.into()), Some(BadRequest::Malformed));
        assert_eq!(of(ParseError::Version.into()), Some(BadRequest::Malformed));
        assert_eq!(of(ParseError::TooLarge.into()), Some(BadRequest::HeadTooLarge));
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(of(ParseError::Io(reset()).into()), None);
        assert_eq!(of(DispatchError::Io(reset())), None);
        assert_eq!(of(DispatchError::SlowRequestTimeout), None);
    }
}
