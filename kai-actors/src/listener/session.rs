//! One client connection: parse requests, execute them in order, write replies.
//!
//! The first bytes decide the dialect, as in memcached: the binary request magic hands the
//! connection to `binary.rs`; otherwise it speaks text (after `auth.rs` if `auth_file` is set).
//!
//! Invariants:
//! - Requests of a connection execute one after another, in order, so a pipelined `set` is
//!   visible to the `get` after it (memcached's semantics).
//! - Replies are written in request order; replies of pipelined requests are batched into one
//!   write, flushed whenever no complete request is buffered or the batch grows past
//!   [`FLUSH_THRESHOLD`].
//! - Memory is bounded: input by the parser's limits, output by the flush threshold (a client
//!   that stops reading stops being read, through TCP back-pressure).

use super::wire::{ClientStream, Wire};
use super::SessionContext;
use crate::clock::unix_now;
use crate::config::ExpiryPolicy;
use crate::coordinator::{CoordinatorError, Delete, FlushAll, Get, Set, Update};
use crate::stats;
use crate::stats::Command;
use bytes::BytesMut;
use futures_util::future::join_all;
use kai_proto::binary::REQUEST_MAGIC;
use kai_proto::change::{Answer, Change, NewValue};
use kai_proto::memcache::{
    absolute_expiry, ConditionalStore, Parsed, Request, RequestDecoder, RequestError, Response, StorageCommand,
    ValueEntry,
};
use kai_proto::{Key, Record};
use tokio_util::codec::Decoder;

/// Buffered reply bytes that force a write even if more requests are waiting.
const FLUSH_THRESHOLD: usize = 64 * 1024;

enum Flow {
    Continue,
    Close,
}

/// Serves one connection until the client quits, disconnects or sends an unrecoverable stream.
pub(crate) async fn serve<S: ClientStream>(stream: S, ctx: SessionContext) {
    let mut wire = Wire::new(stream);
    if !wire.read(&ctx).await {
        return;
    }
    // memcached's protocol detection: a binary request starts with its magic byte.
    if wire.input.first() == Some(&REQUEST_MAGIC) {
        return super::binary::serve(wire, ctx).await;
    }
    if let Some(users) = ctx.shared.auth.clone() {
        if !super::auth::authenticate_text(&mut wire, &ctx, &users).await {
            return;
        }
    }
    let mut decoder = RequestDecoder::new(ctx.shared.limits);
    loop {
        match decoder.decode(&mut wire.input) {
            Ok(Some(parsed)) => {
                if let Flow::Close = execute(&ctx, parsed, &mut wire.output).await {
                    break;
                }
                // A full batch is written, then the next buffered request runs: the socket is
                // read only when no complete request is left in `input`.
                if wire.output.len() >= FLUSH_THRESHOLD && !wire.flush(&ctx).await {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(fatal) => {
                log::debug!("closing client connection: {fatal}");
                Response::ClientError(fatal.to_string()).encode_into(&mut wire.output);
                break;
            }
        }
        if !wire.flush(&ctx).await || !wire.read(&ctx).await {
            break;
        }
    }
    wire.close(&ctx).await;
}

async fn execute(ctx: &SessionContext, parsed: Parsed, output: &mut BytesMut) -> Flow {
    ctx.connection.touch();
    let started = std::time::Instant::now();
    let (response, noreply, command) = match parsed {
        Parsed::Rejected { error, noreply } => (refuse(ctx, error).await, noreply, Command::Other),
        Parsed::Request(request) => {
            let noreply = request.noreply();
            let command = command_of(&request);
            match respond(ctx, request).await {
                Some(response) => (response, noreply, command),
                None => return Flow::Close,
            }
        }
    };
    let failed = matches!(response, Response::ServerError(_));
    ctx.shared.stats.commands.of(command).record(started.elapsed(), failed);
    if !noreply {
        response.encode_into(output);
    }
    Flow::Continue
}

/// How `request` is counted.
fn command_of(request: &Request) -> Command {
    match request {
        Request::Get { with_cas: false, .. } => Command::Get,
        Request::Get { with_cas: true, .. } => Command::Gets,
        Request::Set(_) => Command::Set,
        Request::Conditional(ConditionalStore::Add, _) => Command::Add,
        Request::Conditional(ConditionalStore::Replace, _) => Command::Replace,
        Request::Conditional(ConditionalStore::Append, _) => Command::Append,
        Request::Conditional(ConditionalStore::Prepend, _) => Command::Prepend,
        Request::Conditional(ConditionalStore::Cas(_), _) => Command::Cas,
        Request::Arithmetic { incr: true, .. } => Command::Incr,
        Request::Arithmetic { incr: false, .. } => Command::Decr,
        Request::Touch { .. } => Command::Touch,
        Request::GetAndTouch { .. } => Command::Gat,
        Request::Delete { .. } => Command::Delete,
        Request::Stats { .. } => Command::Stats,
        _ => Command::Other,
    }
}

/// The reply to a refused request. A `set` refused as too large first deletes the key's current
/// value, as memcached does, through the coordinator's normal delete path (replicated and
/// ordered like any delete); if that delete fails, its error is the reply.
async fn refuse(ctx: &SessionContext, error: RequestError) -> Response {
    if let RequestError::TooLarge { set_key: Some(key), .. } = &error {
        stats::add(&ctx.shared.stats.store_too_large, 1);
        match ctx.coordinator.send(Delete { key: key.clone() }).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return server_error(e),
            Err(_) => return unavailable(),
        }
    }
    Response::rejected(&error)
}

pub(super) fn server_error(e: CoordinatorError) -> Response {
    Response::ServerError(e.to_string())
}

pub(super) fn unavailable() -> Response {
    Response::ServerError("node is shutting down".to_owned())
}

/// The reply to `request`, or `None` if the connection must close (`quit`).
async fn respond(ctx: &SessionContext, request: Request) -> Option<Response> {
    let shared = &ctx.shared;
    Some(match request {
        Request::Get { keys, with_cas } => get(ctx, keys, with_cas).await,
        Request::Set(cmd) => set(ctx, cmd).await,
        Request::Conditional(command, cmd) => conditional(ctx, command, cmd).await,
        Request::Arithmetic { key, incr, delta, .. } => match delta {
            None => Response::ClientError("invalid numeric delta argument".to_owned()),
            Some(delta) => {
                let change = if incr { Change::Incr(delta) } else { Change::Decr(delta) };
                update(ctx, key, change).await.0
            }
        },
        Request::Touch { key, exptime, .. } => {
            let change = Change::Touch {
                expires_at: absolute_expiry(exptime, unix_now()),
            };
            update(ctx, key, change).await.0
        }
        Request::GetAndTouch {
            exptime,
            keys,
            with_cas,
        } => get_and_touch(ctx, exptime, keys, with_cas).await,
        Request::Delete { key, .. } => match ctx.coordinator.send(Delete { key }).await {
            Ok(Ok(true)) => {
                stats::add(&shared.stats.delete_hits, 1);
                Response::Deleted
            }
            Ok(Ok(false)) => {
                stats::add(&shared.stats.delete_misses, 1);
                Response::NotFound
            }
            Ok(Err(e)) => server_error(e),
            Err(_) => unavailable(),
        },
        Request::Stats { group } => super::stats_command::respond(shared, group.as_deref()),
        Request::Version => Response::Version(stats::PROTOCOL_VERSION.to_owned()),
        Request::Verbosity { .. } => Response::Ok,
        Request::Meta(request) => super::meta::respond(ctx, request).await,
        Request::FlushAll { delay, .. } => {
            stats::add(&shared.stats.cmd_flush, 1);
            let now = unix_now();
            let at = if delay > 0 { absolute_expiry(delay, now) } else { now };
            match ctx.coordinator.send(FlushAll { at }).await {
                Ok(Ok(())) => Response::Ok,
                Ok(Err(e)) => server_error(e),
                Err(_) => unavailable(),
            }
        }
        Request::Quit => return None,
    })
}

async fn get(ctx: &SessionContext, keys: Vec<Key>, with_cas: bool) -> Response {
    let stats = &ctx.shared.stats;
    stats::add(&stats.cmd_get, keys.len() as u64);
    let lookups = keys.into_iter().map(|key| async {
        let reply = ctx.coordinator.send(Get { key: key.clone() }).await;
        (key, reply)
    });
    let mut values = Vec::new();
    for (key, reply) in join_all(lookups).await {
        match reply {
            Ok(Ok(Some(record))) => {
                stats::add(&stats.get_hits, 1);
                values.extend(value_entry(&key, record, with_cas));
            }
            Ok(Ok(None)) => stats::add(&stats.get_misses, 1),
            Ok(Err(e)) => return server_error(e),
            Err(_) => return unavailable(),
        }
    }
    Response::Values(values)
}

async fn set(ctx: &SessionContext, cmd: StorageCommand) -> Response {
    let shared = &ctx.shared;
    stats::add(&shared.stats.cmd_set, 1);
    if cmd.exptime != 0 && shared.expiry == ExpiryPolicy::Reject {
        return Response::ClientError("expiry is not supported by this node (expiry = \"reject\")".to_owned());
    }
    let expires_at = cmd.expires_at(unix_now());
    let msg = Set {
        key: cmd.key,
        flags: cmd.flags,
        expires_at,
        data: cmd.data,
    };
    match ctx.coordinator.send(msg).await {
        Ok(Ok(_)) => {
            stats::add(&shared.stats.total_items, 1);
            Response::Stored
        }
        Ok(Err(e)) => server_error(e),
        Err(_) => unavailable(),
    }
}

async fn conditional(ctx: &SessionContext, command: ConditionalStore, cmd: StorageCommand) -> Response {
    stats::add(&ctx.shared.stats.cmd_set, 1);
    if cmd.exptime != 0 && ctx.shared.expiry == ExpiryPolicy::Reject {
        return Response::ClientError("expiry is not supported by this node (expiry = \"reject\")".to_owned());
    }
    let value = NewValue {
        flags: cmd.flags,
        expires_at: cmd.expires_at(unix_now()),
        data: cmd.data,
        ..NewValue::default()
    };
    let change = match command {
        ConditionalStore::Add => Change::Add(value),
        ConditionalStore::Replace => Change::Replace(value),
        ConditionalStore::Append => Change::Append(value.data),
        ConditionalStore::Prepend => Change::Prepend(value.data),
        ConditionalStore::Cas(unique) => Change::Cas { value, unique },
    };
    let (response, _) = update(ctx, cmd.key, change).await;
    if response == Response::Stored {
        stats::add(&ctx.shared.stats.total_items, 1);
    }
    response
}

/// Runs `change` on `key` through the coordinator: the reply, and the key's resulting record.
async fn update(ctx: &SessionContext, key: Key, change: Change) -> (Response, Option<Record>) {
    match ctx.coordinator.send(Update { key, change }).await {
        Ok(Ok((answer, record))) => (answer_response(answer), record),
        Ok(Err(e)) => (server_error(e), None),
        Err(_) => (unavailable(), None),
    }
}

fn answer_response(answer: Answer) -> Response {
    match answer {
        Answer::Stored => Response::Stored,
        Answer::NotStored => Response::NotStored,
        Answer::Exists => Response::Exists,
        Answer::NotFound => Response::NotFound,
        Answer::Touched => Response::Touched,
        Answer::Number(n) => Response::Number(n),
        Answer::NonNumeric => Response::ClientError("cannot increment or decrement non-numeric value".to_owned()),
        Answer::Deleted => Response::Deleted,
        // Only meta changes answer this; the text commands never run one.
        Answer::Fetched { .. } => Response::ServerError("unexpected meta answer".to_owned()),
    }
}

/// `gat`/`gats`: a touch of each key (in parallel, like a multi-get), answering the hits.
async fn get_and_touch(ctx: &SessionContext, exptime: i32, keys: Vec<Key>, with_cas: bool) -> Response {
    let stats = &ctx.shared.stats;
    stats::add(&stats.cmd_get, keys.len() as u64);
    let expires_at = absolute_expiry(exptime, unix_now());
    let touches = keys.into_iter().map(|key| async {
        let reply = update(ctx, key.clone(), Change::Touch { expires_at }).await;
        (key, reply)
    });
    let mut values = Vec::new();
    for (key, (response, record)) in join_all(touches).await {
        match (response, record) {
            (Response::Touched, Some(record)) => {
                stats::add(&stats.get_hits, 1);
                values.extend(value_entry(&key, record, with_cas));
            }
            (Response::NotFound, _) => stats::add(&stats.get_misses, 1),
            (failure, _) => return failure,
        }
    }
    Response::Values(values)
}

/// The `VALUE` line of `record` for `key` (its cas unique with `with_cas`); none for a tombstone.
fn value_entry(key: &Key, record: kai_proto::Record, with_cas: bool) -> Option<ValueEntry> {
    let cas = with_cas.then(|| record.cas_unique());
    match record.body {
        kai_proto::RecordBody::Value { flags, data, .. } => Some(ValueEntry {
            key: key.to_bytes(),
            flags,
            data,
            cas,
        }),
        kai_proto::RecordBody::Tombstone { .. } => None,
    }
}
