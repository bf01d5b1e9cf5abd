//! A real memcached for tests that compare Kai with it or point a client at it.

use super::{reserve_port, wait_until};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long memcached may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A memcached process on a free loopback port (UDP off), killed on drop.
pub struct Memcached {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
}

impl Memcached {
    /// Starts `memcached` with `extra` arguments; panics with a hint if it is not installed.
    pub fn start(extra: &[&str]) -> Memcached {
        Self::start_with_env(extra, &[])
    }

    /// [`Memcached::start`] with `env` set in its environment (e.g. SASL's configuration path).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &std::path::Path)]) -> Memcached {
        let port = reserve_port();
        // memcached refuses to run as root unless told which user to be.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let user: &[&str] = if root { &["-u", "root"] } else { &[] };
        let child = Command::new("memcached")
            .args(["-p", &port.to_string(), "-U", "0", "-l", "127.0.0.1"])
            .args(user)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("memcached must be installed (apt-get install memcached): {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until(START_TIMEOUT, "memcached to listen", || {
            TcpStream::connect(addr).is_ok()
        });
        Memcached { child, addr }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
