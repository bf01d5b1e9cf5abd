//! A memcache client that records a linearizability history and survives node failures.

use super::linearizability::{check, ArithOutcome, CasOutcome, History, MetaGetOutcome, Op, Operation};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Fewest completed operations a history run must have to prove anything.
const MIN_COMPLETED: usize = 300;
/// Lifetime of the stale-while-revalidate items: long enough that no run (nor a node's clock
/// jumped ahead by a month) sees one expire.
const SWR_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Every key the clients use (a `flush_all` is recorded on each).
const KEYS: [&str; 7] = ["lin0", "lin1", "lin2", "ctr0", "ctr1", "swr0", "swr1"];

/// History clients running against a cluster.
pub struct HistoryRun {
    history: Arc<History>,
    running: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl HistoryRun {
    /// Starts `count` clients, client `i` talking to `addrs[i % len]`, each running random
    /// operations: get/set/delete/add/cas/append on three keys, get/set/incr/decr/touch/add on two
    /// counters, the meta protocol's stale-while-revalidate family (`mg` with `N`/`R`, `md … I`,
    /// `ms`, `md`) on two more, and now and then a `flush_all`.
    pub fn start(addrs: &[SocketAddr], count: usize) -> Self {
        let history = Arc::new(History::default());
        let running = Arc::new(AtomicBool::new(true));
        let clients = run_history_clients(addrs, count, Arc::clone(&history), Arc::clone(&running));
        HistoryRun {
            history,
            running,
            clients,
        }
    }

    /// Stops the clients and checks the history: panics on a linearizability violation, if
    /// too few operations completed, or if no client was handed a recache win (the run would
    /// prove nothing about the stale-while-revalidate family).
    pub fn finish(self) -> RunSummary {
        self.running.store(false, Ordering::Relaxed);
        for c in self.clients {
            c.join().expect("client thread");
        }
        let ops = self.history.operations();
        let completed = ops.iter().filter(|o| o.completed.is_some()).count();
        assert!(completed > MIN_COMPLETED, "too few operations completed: {completed}");
        let wins = ops
            .iter()
            .filter(|o| {
                matches!(
                    o.op,
                    Op::MetaGet {
                        outcome: Some(MetaGetOutcome::Hit { won: true, .. }),
                        ..
                    }
                )
            })
            .count();
        assert!(wins > 0, "no client was handed a recache win");
        if let Err(violation) = check(&ops) {
            panic!("{violation}");
        }
        RunSummary {
            operations: ops.len(),
            completed,
            wins,
        }
    }
}

/// What a checked history run did.
pub struct RunSummary {
    /// Operations recorded.
    pub operations: usize,
    /// Of which completed (outcome known).
    pub completed: usize,
    /// Recache wins (`W`) handed out.
    pub wins: usize,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} operations ({} completed, {} recache wins)",
            self.operations, self.completed, self.wins
        )
    }
}

/// Starts `count` client threads recording into `history` until `running` turns false.
fn run_history_clients(
    addrs: &[SocketAddr],
    count: usize,
    history: Arc<History>,
    running: Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|id| {
            let (history, running) = (Arc::clone(&history), Arc::clone(&running));
            let addr = addrs[id % addrs.len()];
            std::thread::spawn(move || {
                // Absolute times (over 30 days from now): the same instants on every node.
                let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
                let expires = (now + SWR_LIFETIME).as_secs();
                let mut client = HistoryClient {
                    id,
                    addr,
                    conn: None,
                    swr_expires: expires,
                    swr_recache_below: expires + SWR_LIFETIME.as_secs(),
                };
                let mut rng = rand::rngs::StdRng::seed_from_u64(id as u64);
                let mut seq = 0;
                while running.load(Ordering::Relaxed) {
                    client.run_one(&mut rng, &history, &mut seq);
                }
            })
        })
        .collect()
}

/// One client connection of [`run_history_clients`].
struct HistoryClient {
    id: usize,
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    /// Absolute expiry of every stale-while-revalidate item (`ms … T`, `mg … N`).
    swr_expires: u64,
    /// Absolute `R` limit, beyond `swr_expires`: every such item qualifies for recache.
    swr_recache_below: u64,
}

/// Reply timeout of history clients: longer than a quorum round, shorter than a pause.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after failing to reach a node, so a client does not spin while its node is down.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

impl HistoryClient {
    fn connection(&mut self) -> Option<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, CLIENT_TIMEOUT).ok()?;
            stream.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
            self.conn = Some(BufReader::new(stream));
        }
        self.conn.as_mut()
    }

    /// Sends `request`, reads the reply. `Err(())` if it could not be sent (it did not happen),
    /// `Ok(None)` if the reply was lost (it may have happened); a fresh connection is used next.
    fn exchange(&mut self, request: &[u8], multi_line: bool) -> Result<Option<Vec<String>>, ()> {
        let Some(conn) = self.connection() else {
            std::thread::sleep(RECONNECT_PAUSE);
            return Err(());
        };
        if conn.get_mut().write_all(request).is_err() {
            self.conn = None;
            return Err(());
        }
        let result = (|| {
            let conn = self.conn.as_mut()?;
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                if conn.read_line(&mut line).ok()? == 0 {
                    return None;
                }
                let done = !multi_line || line == "END\r\n" || line.starts_with("SERVER_ERROR");
                let data_len = match line.strip_prefix("VALUE ") {
                    Some(rest) => rest.trim_end().split(' ').nth(2),
                    None => line
                        .strip_prefix("VA ")
                        .and_then(|rest| rest.trim_end().split(' ').next()),
                };
                if let Some(len) = data_len {
                    let mut data = vec![0; len.parse::<usize>().ok()? + 2];
                    conn.read_exact(&mut data).ok()?;
                    lines.push(String::from_utf8_lossy(&data[..data.len() - 2]).into_owned());
                }
                lines.push(line);
                if done {
                    return Some(lines);
                }
            }
        })();
        if result.is_none() {
            self.conn = None;
        }
        Ok(result)
    }

    fn run_one(&mut self, rng: &mut rand::rngs::StdRng, history: &History, seq: &mut u64) {
        *seq += 1;
        // Unique per write, so a value names its version (what `cas` relies on in the model).
        let unique = format!("{}", (self.id as u64 + 1) * 1_000_000_000 + *seq);
        let roll = rng.random_range(0..100);
        if roll == 0 {
            return self.flush_all(history);
        }
        let (counter, swr) = (roll % 3 == 0, roll % 6 == 1);
        let key = if counter {
            format!("ctr{}", rng.random_range(0..2))
        } else if swr {
            format!("swr{}", rng.random_range(0..2))
        } else {
            format!("lin{}", rng.random_range(0..3))
        };
        let invoked = history.now();
        let choice = rng.random_range(0..20);
        let recorded = if counter {
            self.counter_op(&key, choice, &unique)
        } else if swr {
            self.stale_while_revalidate_op(&key, choice, &unique)
        } else if choice == 19 {
            return self.gets_then_cas(&key, history, &unique);
        } else {
            self.register_op(&key, choice, &unique)
        };
        let Some((op, known)) = recorded else {
            return;
        };
        let completed = known.then(|| history.now());
        history.record(Operation {
            client: self.id,
            key,
            op,
            invoked,
            completed,
        });
    }

    /// A storage command's single-line reply: `None` if it could not be sent, else the reply
    /// line if one arrived.
    fn single(&mut self, request: String) -> Option<Option<String>> {
        match self.exchange(request.as_bytes(), false) {
            Err(()) => None,
            Ok(reply) => Some(reply.map(|l| l[0].clone())),
        }
    }

    fn get(&mut self, key: &str) -> Option<(Op, bool)> {
        match self.exchange(format!("get {key}\r\n").as_bytes(), true) {
            Err(()) => None,
            Ok(Some(lines)) if lines.last().map(String::as_str) == Some("END\r\n") => {
                Some((Op::Get(lines.first().filter(|_| lines.len() == 3).cloned()), true))
            }
            Ok(_) => Some((Op::Get(None), false)),
        }
    }

    fn register_op(&mut self, key: &str, choice: u32, unique: &str) -> Option<(Op, bool)> {
        let len = unique.len();
        Some(match choice {
            0..=8 => return self.get(key),
            9..=13 => {
                let reply = self.single(format!("set {key} 0 0 {len}\r\n{unique}\r\n"))?;
                (Op::Set(unique.to_owned()), reply.as_deref() == Some("STORED\r\n"))
            }
            14 | 15 => match self.single(format!("delete {key}\r\n"))?.as_deref() {
                Some("DELETED\r\n") => (Op::Delete(Some(true)), true),
                Some("NOT_FOUND\r\n") => (Op::Delete(Some(false)), true),
                _ => (Op::Delete(None), false),
            },
            16 | 17 => {
                let stored = stored_or_not(self.single(format!("add {key} 0 0 {len}\r\n{unique}\r\n"))?);
                (Op::Add(unique.to_owned(), stored), stored.is_some())
            }
            _ => {
                let suffix = format!("+{unique}");
                let request = format!("append {key} 0 0 {}\r\n{suffix}\r\n", suffix.len());
                let stored = stored_or_not(self.single(request)?);
                (Op::Append(suffix, stored), stored.is_some())
            }
        })
    }

    fn counter_op(&mut self, key: &str, choice: u32, unique: &str) -> Option<(Op, bool)> {
        Some(match choice {
            0..=6 => return self.get(key),
            7 | 8 => {
                let reply = self.single(format!("set {key} 0 0 {}\r\n{unique}\r\n", unique.len()))?;
                (Op::Set(unique.to_owned()), reply.as_deref() == Some("STORED\r\n"))
            }
            9 => {
                let stored = stored_or_not(self.single(format!("add {key} 0 0 1\r\n0\r\n"))?);
                (Op::Add("0".to_owned(), stored), stored.is_some())
            }
            10 => {
                let touched = match self.single(format!("touch {key} 0\r\n"))?.as_deref() {
                    Some("TOUCHED\r\n") => Some(true),
                    Some("NOT_FOUND\r\n") => Some(false),
                    _ => None,
                };
                (Op::Touch(touched), touched.is_some())
            }
            11 => match self.single(format!("delete {key}\r\n"))?.as_deref() {
                Some("DELETED\r\n") => (Op::Delete(Some(true)), true),
                Some("NOT_FOUND\r\n") => (Op::Delete(Some(false)), true),
                _ => (Op::Delete(None), false),
            },
            _ => {
                let (command, delta): (&str, i64) = if choice % 4 == 0 { ("decr", -3) } else { ("incr", 7) };
                let reply = self.single(format!("{command} {key} {}\r\n", delta.unsigned_abs()))?;
                let outcome = match reply.as_deref().map(str::trim_end) {
                    Some("NOT_FOUND") => Some(ArithOutcome::NotFound),
                    Some(line) if line.starts_with("CLIENT_ERROR cannot increment") => Some(ArithOutcome::NonNumeric),
                    Some(line) => line.parse().ok().map(ArithOutcome::Number),
                    None => None,
                };
                (Op::Arith(delta, outcome), outcome.is_some())
            }
        })
    }

    /// The meta protocol's stale-while-revalidate family: `mg` (plain, `N` vivify, `R` recache),
    /// `md … I` invalidate, and the writes that end a revalidation (`ms`) or the item (`md`).
    fn stale_while_revalidate_op(&mut self, key: &str, choice: u32, unique: &str) -> Option<(Op, bool)> {
        let (expires, recache_below) = (self.swr_expires, self.swr_recache_below);
        let (vivify, recache) = match choice {
            0..=5 => (false, false),
            6..=8 => (true, false),
            9 | 10 => (false, true),
            11 => (true, true),
            12..=14 => {
                let found = match self.single(format!("md {key} I\r\n"))?.as_deref() {
                    Some("HD\r\n") => Some(true),
                    Some("NF\r\n") => Some(false),
                    _ => None,
                };
                return Some((Op::Invalidate(found), found.is_some()));
            }
            15..=17 => {
                let request = format!("ms {key} {} T{expires}\r\n{unique}\r\n", unique.len());
                let reply = self.single(request)?;
                return Some((Op::Set(unique.to_owned()), reply.as_deref() == Some("HD\r\n")));
            }
            18 => {
                return Some(match self.single(format!("md {key}\r\n"))?.as_deref() {
                    Some("HD\r\n") => (Op::Delete(Some(true)), true),
                    Some("NF\r\n") => (Op::Delete(Some(false)), true),
                    _ => (Op::Delete(None), false),
                })
            }
            _ => return self.get(key),
        };
        let mut request = format!("mg {key} v");
        if vivify {
            request.push_str(&format!(" N{expires}"));
        }
        if recache {
            request.push_str(&format!(" R{recache_below}"));
        }
        request.push_str("\r\n");
        let outcome = match self.exchange(request.as_bytes(), false) {
            Err(()) => return None,
            Ok(reply) => reply.as_deref().and_then(meta_get_outcome),
        };
        let known = outcome.is_some();
        Some((
            Op::MetaGet {
                vivify,
                recache,
                outcome,
            },
            known,
        ))
    }

    /// `gets`, then `cas` of the version it returned: recorded as a read and a cas.
    fn gets_then_cas(&mut self, key: &str, history: &History, unique: &str) {
        let invoked = history.now();
        let Ok(Some(lines)) = self.exchange(format!("gets {key}\r\n").as_bytes(), true) else {
            return;
        };
        if lines.last().map(String::as_str) != Some("END\r\n") {
            return;
        }
        let seen = lines.first().filter(|_| lines.len() == 3).cloned();
        history.record(Operation {
            client: self.id,
            key: key.to_owned(),
            op: Op::Get(seen.clone()),
            invoked,
            completed: Some(history.now()),
        });
        let (Some(expected), Some(cas)) = (seen, lines.get(1).and_then(|l| l.trim_end().split(' ').nth(4))) else {
            return;
        };
        let invoked = history.now();
        let request = format!("cas {key} 0 0 {} {cas}\r\n{unique}\r\n", unique.len());
        let Some(reply) = self.single(request) else {
            return;
        };
        let outcome = match reply.as_deref() {
            Some("STORED\r\n") => Some(CasOutcome::Stored),
            Some("EXISTS\r\n") => Some(CasOutcome::Exists),
            Some("NOT_FOUND\r\n") => Some(CasOutcome::NotFound),
            _ => None,
        };
        history.record(Operation {
            client: self.id,
            key: key.to_owned(),
            op: Op::Cas {
                expected,
                value: unique.to_owned(),
                outcome,
            },
            invoked,
            completed: outcome.map(|_| history.now()),
        });
    }

    /// `flush_all`, recorded as a deletion of every key the clients use.
    fn flush_all(&mut self, history: &History) {
        let invoked = history.now();
        let Some(reply) = self.single("flush_all\r\n".to_owned()) else {
            return;
        };
        let completed = (reply.as_deref() == Some("OK\r\n")).then(|| history.now());
        for key in KEYS {
            history.record(Operation {
                client: self.id,
                key: key.to_owned(),
                op: Op::Flush,
                invoked,
                completed,
            });
        }
    }
}

/// The answer of an `mg … v` from its reply (`[data, "VA …"]` or `["EN"]`); `None` for
/// anything else (an error: unknown).
fn meta_get_outcome(lines: &[String]) -> Option<MetaGetOutcome> {
    match lines {
        [line] if line == "EN\r\n" => Some(MetaGetOutcome::Miss),
        [value, line] if line.starts_with("VA ") => {
            let flags: Vec<&str> = line.trim_end().split(' ').skip(2).collect();
            Some(MetaGetOutcome::Hit {
                value: value.clone(),
                won: flags.contains(&"W"),
                stale: flags.contains(&"X"),
                win_taken: flags.contains(&"Z"),
            })
        }
        _ => None,
    }
}

/// `STORED` → stored, `NOT_STORED` → not, anything else (an error, no reply) → unknown.
fn stored_or_not(reply: Option<String>) -> Option<bool> {
    match reply.as_deref() {
        Some("STORED\r\n") => Some(true),
        Some("NOT_STORED\r\n") => Some(false),
        _ => None,
    }
}
