//! A memcache client that records a linearizability history and survives node failures.

use super::linearizability::{check, History, Op, Operation};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Fewest completed operations a history run must have to prove anything.
const MIN_COMPLETED: usize = 300;

/// History clients running against a cluster.
pub struct HistoryRun {
    history: Arc<History>,
    running: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl HistoryRun {
    /// Starts `count` clients, client `i` talking to `addrs[i % len]`, each running random
    /// get/set/delete on three keys.
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

    /// Stops the clients and checks the history: panics on a linearizability violation or if
    /// too few operations completed. Returns `(operations, completed)`.
    pub fn finish(self) -> (usize, usize) {
        self.running.store(false, Ordering::Relaxed);
        for c in self.clients {
            c.join().expect("client thread");
        }
        let ops = self.history.operations();
        let completed = ops.iter().filter(|o| o.completed.is_some()).count();
        assert!(completed > MIN_COMPLETED, "too few operations completed: {completed}");
        if let Err(violation) = check(&ops) {
            panic!("{violation}");
        }
        (ops.len(), completed)
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
                let mut client = HistoryClient { id, addr, conn: None };
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
                if let Some(len) = line.strip_prefix("VALUE ").and_then(|l| l.trim_end().split(' ').nth(2)) {
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
        let key = format!("lin{}", rng.random_range(0..3));
        let invoked = history.now();
        let (op, known) = match rng.random_range(0..10) {
            0..=4 => match self.exchange(format!("get {key}\r\n").as_bytes(), true) {
                Err(()) => return,
                Ok(Some(lines)) if lines.last().map(String::as_str) == Some("END\r\n") => {
                    (Op::Get(lines.first().filter(|_| lines.len() == 3).cloned()), true)
                }
                Ok(_) => (Op::Get(None), false),
            },
            5..=8 => {
                *seq += 1;
                let value = format!("c{}-{seq}", self.id);
                let request = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
                match self.exchange(request.as_bytes(), false) {
                    Err(()) => return,
                    Ok(reply) => (Op::Set(value), reply.is_some_and(|l| l[0] == "STORED\r\n")),
                }
            }
            _ => match self.exchange(format!("delete {key}\r\n").as_bytes(), false) {
                Err(()) => return,
                Ok(Some(lines)) if lines[0] == "DELETED\r\n" => (Op::Delete(Some(true)), true),
                Ok(Some(lines)) if lines[0] == "NOT_FOUND\r\n" => (Op::Delete(Some(false)), true),
                Ok(_) => (Op::Delete(None), false),
            },
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
}
