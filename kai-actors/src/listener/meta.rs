//! Executing meta commands (`kai_proto::meta`) through the coordinator.
//!
//! Invariants:
//! - Plain operations take the plain paths: `mg` without `N`/`R`/`T` is a `Get`, `ms` in set
//!   mode without a cas is a `Set`, `md` without `C`/`I`/`x` is a `Delete`.
//! - Everything that reads and decides (`ms` with a mode, `C` or `I`; `md` with `C`, `I` or
//!   `x`; `ma`; `mg` with `N`/`R`/`T`) is one `Update` with a meta [`Change`], linearizable per
//!   key through the per-key Paxos. So is an `mg` that finds a stale item whose recache win was
//!   not handed out yet: the `Get` only tells that a change is needed, the `Update` decides
//!   who wins, and exactly one client is told `W`.
//! - Relative times become absolute once, here, when the request arrives.

use super::session::{server_error, unavailable};
use super::SessionContext;
use crate::clock::unix_now;
use crate::config::ExpiryPolicy;
use crate::coordinator::{Delete, Get, Set, Update};
use crate::stats;
use bytes::Bytes;
use kai_proto::change::meta::{MetaArithmetic, MetaDelete, MetaGet, MetaSet};
use kai_proto::change::{Answer, Change, NewValue};
use kai_proto::memcache::{absolute_expiry, Response};
use kai_proto::meta::reply::{self, DebugView, GetHit, ItemView, Status};
use kai_proto::meta::{MetaCommand, MetaRequest, SetMode};
use kai_proto::{Key, Record, RecordBody, ValueState};

/// The reply to a meta request.
pub(super) async fn respond(ctx: &SessionContext, request: MetaRequest) -> Response {
    let now = unix_now();
    let reply = match request {
        MetaRequest::Noop => Ok(reply::noop()),
        MetaRequest::Get(command) => get(ctx, command, now).await,
        MetaRequest::Set { command, mode, data } => set(ctx, command, mode, data, now).await,
        MetaRequest::Delete(command) => delete(ctx, command, now).await,
        MetaRequest::Arithmetic { command, incr } => arithmetic(ctx, command, incr, now).await,
        MetaRequest::Debug { key, base64 } => debug(ctx, key, base64, now).await,
    };
    match reply {
        Ok(bytes) => Response::Meta(bytes),
        Err(response) => response,
    }
}

/// A failure reply instead of the meta reply.
type Reply = Result<Bytes, Response>;

async fn get(ctx: &SessionContext, command: MetaCommand, now: u64) -> Reply {
    let stats = &ctx.shared.stats;
    stats::add(&stats.cmd_get, 1);
    let flags = &command.flags;
    if flags.vivify.is_some() || flags.recache.is_some() || flags.ttl.is_some() {
        refuse_expiry(ctx, &[flags.vivify, flags.ttl])?;
    }
    let at = |exptime: Option<i32>| exptime.map(|e| absolute_expiry(e, now));
    let change = MetaGet {
        vivify: at(flags.vivify),
        recache: at(flags.recache),
        touch: at(flags.ttl),
        new_cas: flags.new_cas,
    };
    // A plain read first: only an item the `mg` would change takes the per-key agreement (its
    // answer may rewrite the value under a new version, which changes the cas).
    let read = coordinated(
        ctx.coordinator
            .send(Get {
                key: command.key.clone(),
            })
            .await,
    )?;
    let (record, won) = if needs_change(read.as_ref(), &change, now) {
        fetch_and_change(ctx, &command.key, change).await?
    } else {
        (read, false)
    };
    let hit = record.filter(|r| r.is_live(now)).map(|record| {
        let state = record.state();
        GetHit {
            item: view(&record, now),
            stale: state.stale,
            win_taken: state.win_sent && !won,
            won,
        }
    });
    stats::add(
        if hit.is_some() {
            &stats.get_hits
        } else {
            &stats.get_misses
        },
        1,
    );
    Ok(reply::get(&command, hit.as_ref()))
}

/// Whether an `mg` that read `record` changes it: a touch; a vivify of a miss; a win to hand
/// out (a stale item, or one expiring before the recache limit, whose win nobody has).
fn needs_change(record: Option<&Record>, change: &MetaGet, now: u64) -> bool {
    let Some(record) = record.filter(|r| r.is_live(now)) else {
        return change.vivify.is_some();
    };
    let state = record.state();
    let expires_at = match record.body {
        RecordBody::Value { expires_at, .. } => expires_at,
        RecordBody::Tombstone { .. } => 0,
    };
    let recache = change
        .recache
        .is_some_and(|limit| expires_at != 0 && expires_at < limit);
    change.touch.is_some() || (!state.win_sent && (state.stale || recache))
}

/// Runs an `mg` change: the item afterwards (`None`: a miss) and whether this client won.
async fn fetch_and_change(
    ctx: &SessionContext,
    key: &Key,
    change: MetaGet,
) -> Result<(Option<Record>, bool), Response> {
    match update(ctx, key.clone(), Change::MetaGet(change)).await? {
        (Answer::Fetched { won }, record) => Ok((record, won)),
        _ => Ok((None, false)),
    }
}

async fn set(ctx: &SessionContext, command: MetaCommand, mode: SetMode, data: Bytes, now: u64) -> Reply {
    let shared = &ctx.shared;
    stats::add(&shared.stats.cmd_set, 1);
    let flags = &command.flags;
    refuse_expiry(ctx, &[flags.ttl, flags.vivify])?;
    let value = NewValue {
        flags: flags.client_flags.unwrap_or(0),
        expires_at: absolute_expiry(flags.ttl.unwrap_or(0), now),
        data,
        state: ValueState {
            cas: flags.new_cas,
            ..ValueState::default()
        },
    };
    let compare = flags.compare_cas;
    let (status, cas) = if mode == SetMode::Set && compare.is_none() && flags.new_cas.is_none() {
        let msg = Set {
            key: command.key.clone(),
            flags: value.flags,
            expires_at: value.expires_at,
            data: value.data,
        };
        let tag = coordinated(ctx.coordinator.send(msg).await)?;
        (Status::Done, tag.cas_unique())
    } else {
        let change = Change::MetaSet(MetaSet {
            mode,
            value,
            compare,
            invalidate: flags.invalidate,
            vivify: flags.vivify.map(|e| absolute_expiry(e, now)),
        });
        match update(ctx, command.key.clone(), change).await? {
            (Answer::Stored, Some(record)) => (Status::Done, record.cas_unique()),
            (answer, _) => (status_of(&answer)?, 0),
        }
    };
    if status == Status::Done {
        stats::add(&shared.stats.total_items, 1);
    }
    Ok(reply::set(&command, status, cas))
}

async fn delete(ctx: &SessionContext, command: MetaCommand, now: u64) -> Reply {
    let stats = &ctx.shared.stats;
    let flags = &command.flags;
    let plain = flags.compare_cas.is_none() && !flags.invalidate && !flags.strip_value;
    let deleted = if plain {
        coordinated(
            ctx.coordinator
                .send(Delete {
                    key: command.key.clone(),
                })
                .await,
        )?
    } else {
        let expires_at = absolute_expiry(flags.ttl.unwrap_or(0), now);
        let change = Change::MetaDelete(MetaDelete {
            compare: flags.compare_cas,
            invalidate: flags.invalidate,
            touch: flags.ttl.filter(|_| flags.invalidate).map(|_| expires_at),
            strip: flags.strip_value.then(|| NewValue {
                flags: flags.client_flags.unwrap_or(0),
                expires_at,
                ..NewValue::default()
            }),
            new_cas: flags.new_cas,
        });
        match update(ctx, command.key.clone(), change).await? {
            (Answer::Deleted, _) => true,
            (Answer::Exists, _) => return Ok(reply::delete(&command, Status::Exists)),
            _ => false,
        }
    };
    stats::add(
        if deleted {
            &stats.delete_hits
        } else {
            &stats.delete_misses
        },
        1,
    );
    let status = if deleted { Status::Done } else { Status::NotFound };
    Ok(reply::delete(&command, status))
}

async fn arithmetic(ctx: &SessionContext, command: MetaCommand, incr: bool, now: u64) -> Reply {
    let flags = &command.flags;
    refuse_expiry(ctx, &[flags.ttl, flags.vivify])?;
    let at = |exptime: i32| absolute_expiry(exptime, now);
    let change = Change::MetaArithmetic(MetaArithmetic {
        incr,
        delta: flags.delta.unwrap_or(1),
        compare: flags.compare_cas,
        vivify: flags.vivify.map(|e| (at(e), flags.initial.unwrap_or(0))),
        touch: flags.ttl.map(at),
        new_cas: flags.new_cas,
    });
    let outcome = match update(ctx, command.key.clone(), change).await? {
        (Answer::Number(n), Some(record)) => Ok((n, view(&record, now))),
        (Answer::NonNumeric, _) => {
            return Err(Response::ClientError(
                "cannot increment or decrement non-numeric value".to_owned(),
            ))
        }
        (answer, _) => Err(status_of(&answer)?),
    };
    Ok(reply::arithmetic(
        &command,
        outcome.as_ref().map(|(n, item)| (*n, item)).map_err(|s| *s),
    ))
}

/// `me`: what Kai knows of the item, in memcached's format.
async fn debug(ctx: &SessionContext, key: Key, base64: bool, now: u64) -> Reply {
    let record = coordinated(ctx.coordinator.send(Get { key: key.clone() }).await)?;
    let view = record.map(|record| {
        let expires_at = match record.body {
            RecordBody::Value { expires_at, .. } => expires_at,
            RecordBody::Tombstone { .. } => 0,
        };
        DebugView {
            // memcached prints `now - expiry` (negative while the item lives).
            exp: if expires_at == 0 {
                -1
            } else {
                now as i64 - expires_at as i64
            },
            cas: record.cas_unique(),
            size: (key.as_bytes().len() + record.encoded_len()) as u64,
        }
    });
    Ok(reply::debug(&key, base64, view.as_ref()))
}

/// The status line of an answer that stored nothing.
fn status_of(answer: &Answer) -> Result<Status, Response> {
    match answer {
        Answer::NotStored => Ok(Status::NotStored),
        Answer::Exists => Ok(Status::Exists),
        Answer::NotFound => Ok(Status::NotFound),
        other => Err(Response::ServerError(format!("unexpected outcome {other:?}"))),
    }
}

/// With `expiry = "reject"`, any non-zero expiry is refused as the text protocol refuses it.
fn refuse_expiry(ctx: &SessionContext, exptimes: &[Option<i32>]) -> Result<(), Response> {
    if ctx.shared.expiry == ExpiryPolicy::Reject && exptimes.iter().flatten().any(|e| *e != 0) {
        return Err(Response::ClientError(
            "expiry is not supported by this node (expiry = \"reject\")".to_owned(),
        ));
    }
    Ok(())
}

/// An item as meta replies show it.
fn view(record: &Record, now: u64) -> ItemView {
    let (flags, data, expires_at) = match &record.body {
        RecordBody::Value {
            flags,
            data,
            expires_at,
            ..
        } => (*flags, data.clone(), *expires_at),
        RecordBody::Tombstone { .. } => (0, Bytes::new(), 0),
    };
    ItemView {
        flags,
        data,
        cas: record.cas_unique(),
        ttl: (expires_at != 0).then(|| expires_at.saturating_sub(now)),
    }
}

/// Runs a change: its answer and the key's resulting record.
async fn update(ctx: &SessionContext, key: Key, change: Change) -> Result<(Answer, Option<Record>), Response> {
    coordinated(ctx.coordinator.send(Update { key, change }).await)
}

/// The result of a coordinator call, or the reply for its failure.
fn coordinated<T>(
    sent: Result<Result<T, crate::coordinator::CoordinatorError>, actix::MailboxError>,
) -> Result<T, Response> {
    match sent {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(server_error(e)),
        Err(_) => Err(unavailable()),
    }
}
