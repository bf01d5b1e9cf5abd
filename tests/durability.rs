//! Durability: kill -9 every node of a cluster in the middle of a write load; after restarting,
//! every acknowledged write is readable.

mod common;

use common::processes::ProcessCluster;
use common::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writers run this long before every node is killed.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1500);

fn kill_everything_mid_load(fsync: bool) {
    let mut cluster = ProcessCluster::start_with(3, (3, 2, 2), &[("fsync", if fsync { "true" } else { "false" })]);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..6)
        .map(|t| {
            let (acknowledged, running) = (Arc::clone(&acknowledged), Arc::clone(&running));
            let addr = cluster.nodes[t % 3].addr;
            std::thread::spawn(move || {
                let Ok(stream) = std::net::TcpStream::connect(addr) else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut c = Client::from_stream(stream);
                let mut i = 0;
                while running.load(Ordering::Relaxed) {
                    let key = format!("d{t}-{i}");
                    match c.try_set(&key, key.as_bytes()) {
                        Some(reply) if reply == "STORED\r\n" => acknowledged.lock().expect("lock").push(key),
                        Some(_) => {}
                        None => return,
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(LOAD_BEFORE_KILL);
    for node in &mut cluster.nodes {
        node.signal("KILL");
    }
    running.store(false, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() > 100,
        "too few writes before the kill: {}",
        acknowledged.len()
    );
    for i in 0..3 {
        cluster.nodes[i].kill9();
    }
    for i in 0..3 {
        cluster.nodes[i].restart();
    }
    for i in 0..3 {
        cluster.wait_settled(i, 3);
    }
    let mut c = cluster.client(1);
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| c.get(k).as_deref() != Some(k.as_bytes()))
        .collect();
    eprintln!(
        "fsync={fsync}: {} acknowledged writes before every node was killed; {} lost",
        acknowledged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[test]
fn acknowledged_writes_survive_killing_every_node() {
    kill_everything_mid_load(false);
}

#[test]
fn acknowledged_writes_survive_killing_every_node_with_fsync() {
    kill_everything_mid_load(true);
}
