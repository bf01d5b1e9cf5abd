//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by PyPI's `selenium`) loads `/` from a node of a 3-node cluster,
//! shows the three members up and the ring drawn; a node is killed and the page shows it
//! suspect or down. Screenshots are kept under the target directory
//! (`target/tmp/dashboard-*.png`). Skipped, with a notice, where Chromium or selenium is missing.

mod common;

use common::admin::json;
use common::processes::ProcessCluster;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn browser_available() -> bool {
    std::path::Path::new("/usr/bin/chromedriver").exists()
        && Command::new("python3")
            .args(["-c", "import selenium"])
            .output()
            .is_ok_and(|o| o.status.success())
}

#[test]
fn the_dashboard_shows_a_killed_node_turning_suspect_or_down() {
    if !browser_available() {
        eprintln!("NOTICE: chromium-driver or selenium missing (apt-get install chromium chromium-driver; pip install selenium); skipping the browser test");
        return;
    }
    let mut cluster = ProcessCluster::start(3, (3, 2, 2));
    let mut c = cluster.client(0);
    for i in 0..50 {
        assert_eq!(c.set(&format!("k{i}"), b"v"), "STORED\r\n");
    }
    let victim = json(cluster.nodes[2].admin, "/api/v1/status")["node"]
        .as_str()
        .expect("node name")
        .to_owned();
    // Traffic through node 0 (which stays up) for the page's ops/s and p99 charts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, addr) = (std::sync::Arc::clone(&stop), cluster.nodes[0].addr);
        std::thread::spawn(move || {
            let mut c = common::Client::connect(addr);
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                c.try_set(&format!("load{}", i % 100), b"x");
            }
        })
    };
    let shots = env!("CARGO_TARGET_TMPDIR");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/dashboard/browser.py");
    let mut browser = Command::new("python3")
        .args([
            script,
            &format!("http://{}/", cluster.nodes[0].admin),
            shots,
            &victim,
            "3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the browser script");
    let mut lines = BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    let ring = next();
    assert!(ring.starts_with("RING 1024 buckets in 3 colours"), "{ring}");
    assert_eq!(next(), "READY", "the page showed three members up");

    cluster.nodes[2].kill9();
    writeln!(browser.stdin.as_mut().expect("stdin"), "killed").expect("tell the browser");
    let seen = next();
    assert!(seen == "SEEN suspect" || seen == "SEEN down", "{seen:?}");
    assert!(browser.wait().expect("browser script").success());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().expect("load thread");
    let shot = std::path::Path::new(shots).join(format!("dashboard-{}.png", &seen[5..]));
    assert!(shot.exists(), "screenshot {} saved", shot.display());
    eprintln!("screenshots in {shots}");
}
