//! A binary-protocol connection: decode requests (`kai_proto::binary`), run them through the
//! coordinator one after another, write replies in request order.
//!
//! Invariants:
//! - The same execution rules as the text session: requests run in order, replies of pipelined
//!   requests are batched and flushed when no complete request is buffered (so a `noop` after a
//!   batch of quiet requests is answered at once, as clients expect).
//! - Every binary opcode maps onto the coordinator calls the text commands use: `Get`, `Set`,
//!   `Delete`, and `Update` with a [`Change`] for add/replace/cas/append/prepend/incr/decr/touch/gat
//!   (chosen by `kai_proto::binary::change`). A non-zero cas makes any write a compare-and-swap,
//!   as in memcached: set/add/replace a cas, delete/append/prepend/incr/decr the meta changes
//!   with a cas to compare.
//! - With an `auth_file`, only SASL and `version` run before a successful SASL PLAIN
//!   authentication; anything else is `Auth failure.` and closes the connection (memcached -S).
//!   A SASL attempt first drops the connection's authentication, as in memcached.
//! - Keys Kai cannot store (whitespace or control characters, which binary keys may hold)
//!   miss on reads and are `Invalid arguments` on writes.

use super::wire::{ClientStream, Wire};
use super::SessionContext;
use crate::clock::unix_now;
use crate::config::ExpiryPolicy;
use crate::coordinator::{Coordinator, CoordinatorError, Delete, FlushAll, Get, Set, Update};
use crate::stats;
use actix::MailboxError;
use bytes::{BufMut, Bytes, BytesMut};
use kai_proto::auth::plain;
use kai_proto::binary::change::{self as binary_change, Counter};
use kai_proto::binary::{
    absolute_expiry, opcode as op, returns_key, BinaryDecoder, BinaryParsed, Command, Rejection, Reply, RequestHeader,
    Status, StoreMode,
};
use kai_proto::change::{Answer, Change, NewValue};
use kai_proto::memcache::Response;
use kai_proto::{Key, Record, RecordBody};
use tokio_util::codec::Decoder;

/// Buffered reply bytes that force a write even if more requests are waiting.
const FLUSH_THRESHOLD: usize = 64 * 1024;

enum Flow {
    Continue,
    Close,
}

/// Serves a connection whose first byte was the binary request magic.
pub(super) async fn serve<S: ClientStream>(mut wire: Wire<S>, ctx: SessionContext) {
    let mut decoder = BinaryDecoder::new(ctx.shared.limits.max_value_size);
    let mut session = Session {
        ctx: &ctx,
        authenticated: ctx.shared.auth.is_none(),
    };
    loop {
        match decoder.decode(&mut wire.input) {
            Ok(Some(parsed)) => {
                ctx.connection.touch();
                if let Flow::Close = session.execute(parsed, &mut wire.output).await {
                    break;
                }
                if wire.output.len() >= FLUSH_THRESHOLD && !wire.flush(&ctx).await {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(fatal) => {
                log::debug!("closing binary client connection: {fatal}");
                break;
            }
        }
        if !wire.flush(&ctx).await || !wire.read(&ctx).await {
            break;
        }
    }
    wire.close(&ctx).await;
}

struct Session<'a> {
    ctx: &'a SessionContext,
    authenticated: bool,
}

/// True for the opcodes memcached runs before authentication.
fn allowed_unauthenticated(opcode: u8) -> bool {
    matches!(
        opcode,
        op::SASL_LIST_MECHS | op::SASL_AUTH | op::SASL_STEP | op::VERSION
    )
}

/// How a binary `command` (with the header's `cas`) is counted in the per-command metrics.
fn counted_as(command: &Command, cas: u64) -> stats::Command {
    use stats::Command as Counted;
    match command {
        Command::Get { .. } => Counted::Get,
        Command::GetAndTouch { .. } => Counted::Gat,
        Command::Store { .. } if cas != 0 => Counted::Cas,
        Command::Store {
            mode: StoreMode::Set, ..
        } => Counted::Set,
        Command::Store {
            mode: StoreMode::Add, ..
        } => Counted::Add,
        Command::Store {
            mode: StoreMode::Replace,
            ..
        } => Counted::Replace,
        Command::Concat { append: true, .. } => Counted::Append,
        Command::Concat { append: false, .. } => Counted::Prepend,
        Command::Counter { incr: true, .. } => Counted::Incr,
        Command::Counter { incr: false, .. } => Counted::Decr,
        Command::Delete { .. } => Counted::Delete,
        _ => Counted::Other,
    }
}

impl Session<'_> {
    async fn execute(&mut self, parsed: BinaryParsed, out: &mut BytesMut) -> Flow {
        let header = match &parsed {
            BinaryParsed::Request { header, .. } | BinaryParsed::Rejected { header, .. } => *header,
        };
        if !self.authenticated && !allowed_unauthenticated(header.opcode) {
            Reply::error(&header, Status::AuthError).encode_into(out);
            return Flow::Close;
        }
        match parsed {
            BinaryParsed::Rejected { header, rejection } => {
                let reply = self.refuse(&header, &rejection).await;
                reply.encode_into(out);
                if rejection.closes() {
                    Flow::Close
                } else {
                    Flow::Continue
                }
            }
            BinaryParsed::Request { header, command } => self.run(header, command, out).await,
        }
    }

    /// The reply to a refused request. A refused set deletes the key's current value first, as
    /// in memcached (and as the text session does).
    async fn refuse(&self, header: &RequestHeader, rejection: &Rejection) -> Reply {
        if let Rejection::TooLarge { set_key: Some(key) } = rejection {
            stats::add(&self.ctx.shared.stats.store_too_large, 1);
            if let Ok(key) = Key::new(key.clone()) {
                match self.call(Delete { key }).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Failure::Coordinator(e).reply(header),
                    Err(failure) => return failure.reply(header),
                }
            }
        }
        Reply::error(header, rejection.status())
    }

    async fn run(&mut self, header: RequestHeader, command: Command, out: &mut BytesMut) -> Flow {
        let (started, counted) = (std::time::Instant::now(), counted_as(&command, header.cas));
        let reply = match command {
            Command::Get { key } => self.get(&header, key).await,
            Command::GetAndTouch { key, exptime } => self.touch(&header, key, exptime).await,
            Command::Store {
                mode,
                key,
                flags,
                exptime,
                value,
            } => self.store(&header, mode, key, flags, exptime, value).await,
            Command::Concat { append, key, value } => {
                let change = binary_change::concat(append, value, header.cas);
                self.update(&header, key, change).await
            }
            Command::Delete { key } => self.delete(&header, key).await,
            Command::Counter {
                incr,
                key,
                delta,
                initial,
                exptime,
            } => {
                let counter = Counter {
                    incr,
                    delta,
                    initial,
                    exptime,
                };
                let change = binary_change::counter(counter, header.cas, unix_now());
                self.update(&header, key, change).await
            }
            Command::Quit => {
                Reply::ok(&header).encode_into(out);
                return Flow::Close;
            }
            Command::Flush { exptime } => self.flush_all(&header, exptime).await,
            Command::Noop => Reply::ok(&header),
            Command::Version => Reply {
                value: Bytes::from_static(stats::PROTOCOL_VERSION.as_bytes()),
                ..Reply::ok(&header)
            },
            Command::Stat { group } => {
                self.stat(&header, &group, out);
                return Flow::Continue;
            }
            Command::SaslListMechs => match self.ctx.shared.auth {
                Some(_) => Reply {
                    value: Bytes::from_static(plain::MECHANISM),
                    ..Reply::ok(&header)
                },
                None => Reply::error(&header, Status::UnknownCommand),
            },
            Command::Sasl { step, mechanism, data } => self.sasl(&header, step, &mechanism, &data),
        };
        let failed = reply.status == Status::InternalError;
        self.ctx
            .shared
            .stats
            .commands
            .of(counted)
            .record(started.elapsed(), failed);
        reply.encode_into(out);
        Flow::Continue
    }

    async fn call<M>(&self, msg: M) -> Result<M::Result, Failure>
    where
        M: actix::Message + Send + 'static,
        M::Result: Send,
        Coordinator: actix::Handler<M>,
        <Coordinator as actix::Actor>::Context: actix::dev::ToEnvelope<Coordinator, M>,
    {
        self.ctx
            .coordinator
            .send(msg)
            .await
            .map_err(|_: MailboxError| Failure::Unavailable)
    }

    async fn get(&self, header: &RequestHeader, key: Bytes) -> Reply {
        let stats = &self.ctx.shared.stats;
        stats::add(&stats.cmd_get, 1);
        let found = match Key::new(key.clone()) {
            Ok(valid) => match self.call(Get { key: valid }).await {
                Ok(Ok(record)) => record,
                Ok(Err(e)) => return Failure::Coordinator(e).reply(header),
                Err(failure) => return failure.reply(header),
            },
            Err(_) => None,
        };
        match found.and_then(|record| hit(header, &key, record)) {
            Some(reply) => {
                stats::add(&stats.get_hits, 1);
                reply
            }
            None => {
                stats::add(&stats.get_misses, 1);
                miss(header, key)
            }
        }
    }

    async fn touch(&self, header: &RequestHeader, key: Bytes, exptime: u32) -> Reply {
        let Ok(valid) = Key::new(key.clone()) else {
            return miss(header, key);
        };
        let change = Change::Touch {
            expires_at: absolute_expiry(exptime, unix_now()),
        };
        match self.call(Update { key: valid, change }).await {
            Ok(Ok((Answer::Touched, Some(record)))) => hit(header, &key, record).unwrap_or_else(|| miss(header, key)),
            Ok(Ok(_)) => miss(header, key),
            Ok(Err(e)) => Failure::Coordinator(e).reply(header),
            Err(failure) => failure.reply(header),
        }
    }

    async fn store(
        &self,
        header: &RequestHeader,
        mode: StoreMode,
        key: Bytes,
        flags: u32,
        exptime: u32,
        data: Bytes,
    ) -> Reply {
        let shared = &self.ctx.shared;
        stats::add(&shared.stats.cmd_set, 1);
        if exptime != 0 && shared.expiry == ExpiryPolicy::Reject {
            return Reply::error_with(
                header,
                Status::Invalid,
                "expiry is not supported by this node (expiry = \"reject\")",
            );
        }
        let value = NewValue {
            flags,
            expires_at: absolute_expiry(exptime, unix_now()),
            data,
            ..NewValue::default()
        };
        let reply = match binary_change::store(mode, value.clone(), header.cas) {
            Some(change) => self.update(header, key, change).await,
            None => self.set(header, key, value).await,
        };
        if reply.status == Status::Success {
            stats::add(&shared.stats.total_items, 1);
        }
        reply
    }

    /// A plain set.
    async fn set(&self, header: &RequestHeader, key: Bytes, value: NewValue) -> Reply {
        let Ok(key) = Key::new(key) else {
            return Reply::error(header, Status::Invalid);
        };
        let set = Set {
            key,
            flags: value.flags,
            expires_at: value.expires_at,
            data: value.data,
        };
        match self.call(set).await {
            Ok(Ok(tag)) => Reply {
                cas: tag.cas_unique(),
                ..Reply::ok(header)
            },
            Ok(Err(e)) => Failure::Coordinator(e).reply(header),
            Err(failure) => failure.reply(header),
        }
    }

    /// Runs `change` on `key` and answers memcached's status for its outcome, with the new
    /// version's cas (none for a delete) and an incr/decr's number.
    async fn update(&self, header: &RequestHeader, key: Bytes, change: Change) -> Reply {
        let Ok(key) = Key::new(key) else {
            return Reply::error(header, Status::Invalid);
        };
        let update = Update {
            key,
            change: change.clone(),
        };
        let (answer, record) = match self.call(update).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => return Failure::Coordinator(e).reply(header),
            Err(failure) => return failure.reply(header),
        };
        match (binary_change::status(&change, &answer), answer) {
            (Status::Success, Answer::Deleted) => Reply::ok(header),
            (Status::Success, answer) => Reply {
                cas: record.map_or(0, |r| r.cas_unique()),
                value: match answer {
                    Answer::Number(n) => Bytes::copy_from_slice(&n.to_be_bytes()),
                    _ => Bytes::new(),
                },
                ..Reply::ok(header)
            },
            (status, _) => Reply::error(header, status),
        }
    }

    /// flush: the cluster-wide `flush_all`; 0 is now, else a delay read like an expiry.
    async fn flush_all(&self, header: &RequestHeader, exptime: u32) -> Reply {
        stats::add(&self.ctx.shared.stats.cmd_flush, 1);
        let now = unix_now();
        let at = match exptime {
            0 => now,
            delay => absolute_expiry(delay, now),
        };
        match self.call(FlushAll { at }).await {
            Ok(Ok(())) => Reply::ok(header),
            Ok(Err(e)) => Failure::Coordinator(e).reply(header),
            Err(failure) => failure.reply(header),
        }
    }

    /// delete: a plain delete, or with a cas one that deletes only that version (a different
    /// one is `Key exists`, counted neither a hit nor a miss, as in memcached).
    async fn delete(&self, header: &RequestHeader, key: Bytes) -> Reply {
        let stats = &self.ctx.shared.stats;
        let reply = match (Key::new(key.clone()), binary_change::delete(header.cas)) {
            (Ok(_), Some(change)) => self.update(header, key, change).await,
            (Ok(key), None) => match self.call(Delete { key }).await {
                Ok(Ok(true)) => Reply::ok(header),
                Ok(Ok(false)) => Reply::error(header, Status::KeyNotFound),
                Ok(Err(e)) => Failure::Coordinator(e).reply(header),
                Err(failure) => failure.reply(header),
            },
            (Err(_), _) => Reply::error(header, Status::KeyNotFound),
        };
        match reply.status {
            Status::Success => stats::add(&stats.delete_hits, 1),
            Status::KeyNotFound => stats::add(&stats.delete_misses, 1),
            _ => {}
        }
        reply
    }

    /// One packet per statistic (name as key, value as value), then an empty packet; an unknown
    /// group is "not found".
    fn stat(&self, header: &RequestHeader, group: &[u8], out: &mut BytesMut) {
        let group = (!group.is_empty()).then(|| String::from_utf8_lossy(group).into_owned());
        match super::stats_command::respond(&self.ctx.shared, group.as_deref()) {
            Response::Stats(entries) => {
                for entry in entries {
                    Reply {
                        key: Bytes::from(entry.name),
                        value: Bytes::from(entry.value),
                        ..Reply::ok(header)
                    }
                    .encode_into(out);
                }
                Reply::ok(header).encode_into(out);
            }
            Response::Reset => Reply::ok(header).encode_into(out),
            _ => Reply::error(header, Status::KeyNotFound).encode_into(out),
        }
    }

    /// SASL auth/step. Kai offers PLAIN only, which completes in one auth; a step (or any other
    /// mechanism, or wrong credentials) fails. As in memcached, every attempt starts by dropping
    /// the connection's authentication: a failed one leaves it unauthenticated.
    fn sasl(&mut self, header: &RequestHeader, step: bool, mechanism: &[u8], data: &[u8]) -> Reply {
        let Some(users) = &self.ctx.shared.auth else {
            return Reply::error(header, Status::UnknownCommand);
        };
        let valid = !step
            && mechanism == plain::MECHANISM
            && plain::parse(data).is_some_and(|(user, password)| users.check(user, password));
        self.authenticated = valid;
        if valid {
            Reply {
                value: Bytes::from_static(b"Authenticated"),
                ..Reply::ok(header)
            }
        } else {
            log::debug!("client {}: SASL authentication failed", self.ctx.connection.peer);
            Reply::error(header, Status::AuthError)
        }
    }
}

/// The reply to a hit on `record` (none for a tombstone): flags as extras, the key for
/// getk/gatk, the value unless the request is a touch.
fn hit(header: &RequestHeader, key: &Bytes, record: Record) -> Option<Reply> {
    let cas = record.cas_unique();
    let RecordBody::Value { flags, data, .. } = record.body else {
        return None;
    };
    let mut extras = BytesMut::with_capacity(4);
    extras.put_u32(flags);
    Some(Reply {
        cas,
        extras: extras.freeze(),
        key: if returns_key(header.opcode) {
            key.clone()
        } else {
            Bytes::new()
        },
        value: if header.opcode == op::TOUCH { Bytes::new() } else { data },
        ..Reply::ok(header)
    })
}

/// A miss: getk/gatk carry the key (and no text), the others memcached's "Not found".
fn miss(header: &RequestHeader, key: Bytes) -> Reply {
    if returns_key(header.opcode) {
        Reply {
            status: Status::KeyNotFound,
            key,
            ..Reply::ok(header)
        }
    } else {
        Reply::error(header, Status::KeyNotFound)
    }
}

/// A request that could not run.
enum Failure {
    Coordinator(CoordinatorError),
    Unavailable,
}

impl Failure {
    fn reply(self, header: &RequestHeader) -> Reply {
        match self {
            Failure::Coordinator(e) => Reply::error_with(header, Status::InternalError, &e.to_string()),
            Failure::Unavailable => Reply::error_with(header, Status::InternalError, "node is shutting down"),
        }
    }
}
