//! End-to-end on Docker: the `FROM scratch` image and the docker-compose cluster of
//! `deploy/`, with a node killed and restarted and a node cut off and reconnected. Skipped, with
//! a notice, where `docker info` fails.

mod common;

use common::{reserve_port, wait_until, Client};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Longest the cluster may take to (re)settle.
const SETTLE: Duration = Duration::from_secs(90);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn docker_available() -> bool {
    let ok = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    ok(Command::new("docker").arg("info")) && ok(Command::new("docker-compose").arg("version"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A compose project that is torn down (containers, network, volumes, image) when dropped,
/// whether the test passed or not.
struct Compose {
    project: String,
    image: String,
    ports: [u16; 3],
}

impl Compose {
    fn command(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(deploy_dir())
            .args(["-p", &self.project, "-f", "docker-compose.yml"])
            .env("KAI_IMAGE", &self.image)
            .env("COMPOSE_PROJECT_NAME", &self.project);
        for (i, port) in self.ports.iter().enumerate() {
            cmd.env(format!("KAI{}_PORT", i + 1), port.to_string());
        }
        cmd
    }

    fn container(&self, node: usize) -> String {
        format!("{}-kai{}", self.project, node + 1)
    }

    fn client(&self, node: usize) -> Client {
        Client::connect(format!("127.0.0.1:{}", self.ports[node]).parse().expect("addr"))
    }

    /// Stats of a node, or `None` if it cannot be reached.
    fn stats(&self, node: usize) -> Option<std::collections::HashMap<String, String>> {
        let addr = format!("127.0.0.1:{}", self.ports[node]).parse().ok()?;
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        Some(self.client(node).stats())
    }

    fn wait_ready(&self, node: usize) {
        wait_until(SETTLE, "a container node in a settled 3-node cluster", || {
            self.stats(node).is_some_and(|s| {
                s.get("kai_members").map(String::as_str) == Some("3")
                    && s.get("kai_rings_active").map(String::as_str) == Some("1")
                    && s.get("kai_majority").map(String::as_str) == Some("1")
            })
        });
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.command().args(["down", "-v", "--remove-orphans"]).output();
        let _ = Command::new("docker").args(["rmi", "-f", &self.image]).output();
    }
}

#[test]
fn the_compose_cluster_survives_a_kill_and_a_partition_without_losing_writes() {
    if !docker_available() {
        eprintln!("NOTICE: docker or docker-compose not available; skipping the docker cluster test");
        return;
    }
    let id = std::process::id();
    let compose = Compose {
        project: format!("kaitest{id}"),
        image: format!("kai:test-{id}"),
        ports: [reserve_port(), reserve_port(), reserve_port()],
    };
    run(Command::new(deploy_dir().join("build-image.sh")).args([
        "--binary",
        common::kai_bin(),
        "--tag",
        &compose.image,
    ]));
    run(compose.command().args(["up", "-d", "kai1", "kai2", "kai3"]));
    for node in 0..3 {
        compose.wait_ready(node);
    }

    // Acknowledged writes, by key: the value that must be read back.
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    let write = |node: usize, key: &str, value: &str, acknowledged: &mut BTreeMap<String, String>| {
        if compose.client(node).set(key, value.as_bytes()) == "STORED\r\n" {
            acknowledged.insert(key.to_owned(), value.to_owned());
        }
    };
    for i in 0..60 {
        write(i % 3, &format!("k{i}"), &format!("start{i}"), &mut acknowledged);
    }
    assert_eq!(acknowledged.len(), 60, "every node accepts quorum writes");
    for (i, (key, value)) in acknowledged.iter().enumerate() {
        assert_eq!(compose.client((i + 1) % 3).get(key).as_deref(), Some(value.as_bytes()));
    }

    // kill -9 a container: the other two keep a quorum.
    run(Command::new("docker").args(["kill", &compose.container(2)]));
    for i in 0..30 {
        write(i % 2, &format!("k{i}"), &format!("killed{i}"), &mut acknowledged);
    }
    assert!(acknowledged.values().filter(|v| v.starts_with("killed")).count() == 30);
    run(compose.command().args(["start", "kai3"]));
    compose.wait_ready(2);

    // Cut a node off its network: the other two keep a quorum; it refuses to serve.
    let network = format!("{}_kai", compose.project);
    run(Command::new("docker").args(["network", "disconnect", &network, &compose.container(1)]));
    wait_until(SETTLE, "the cut-off node to notice it lost its majority", || {
        let out = Command::new("docker")
            .args(["exec", &compose.container(1), "/kai", "healthcheck", "--ready"])
            .output();
        out.is_ok_and(|o| !o.status.success())
    });
    for i in 30..60 {
        let node = if i % 2 == 0 { 0 } else { 2 };
        write(node, &format!("k{i}"), &format!("cut{i}"), &mut acknowledged);
    }
    assert!(acknowledged.values().filter(|v| v.starts_with("cut")).count() == 30);
    run(Command::new("docker").args(["network", "connect", &network, &compose.container(1)]));
    for node in 0..3 {
        compose.wait_ready(node);
    }

    for node in 0..3 {
        let mut c = compose.client(node);
        for (key, value) in &acknowledged {
            assert_eq!(
                c.get(key).as_deref(),
                Some(value.as_bytes()),
                "{key} through kai{}",
                node + 1
            );
        }
    }
}
