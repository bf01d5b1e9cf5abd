//! End-to-end: real clients that speak the memcached binary protocol, against one real `kai`
//! process, with and without SASL authentication (`auth_file`); and text clients under
//! memcached's text authentication. The scripts in `tests/frameworks/` are self-checking and
//! pass against a fresh memcached 1.6 too (without credentials).
//!
//! Prerequisites (Debian): `python3-pylibmc`, `libmemcached-tools`, `ruby-dalli ruby-rack
//! ruby-connection-pool`, `php-cli php-memcached`, `libsasl2-modules` (the PLAIN mechanism
//! for libmemcached's SASL). A missing one fails the test with the package to install.

mod common;

use common::KaiProcess;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

const USER: &str = "kaiuser";
const PASSWORD: &str = "s3cret:with colon";

fn node(dir: &Path) -> KaiProcess {
    KaiProcess::start(dir, &[])
}

/// A node requiring authentication as [`USER`]/[`PASSWORD`].
fn auth_node(dir: &Path) -> KaiProcess {
    std::fs::create_dir_all(dir).expect("node dir");
    let auth_file = dir.join("users");
    std::fs::write(&auth_file, format!("other:pw\n{USER}:{PASSWORD}\n")).expect("auth file");
    KaiProcess::start(
        &dir.join("data"),
        &[("auth_file", auth_file.to_str().expect("utf-8 path"))],
    )
}

/// Runs `program script HOST PORT extra…` and returns its stdout; fails with `install` as the
/// hint if the program is missing, and with its output if the script fails.
fn run_script(program: &str, install: &str, script: &str, kai: &KaiProcess, extra: &[&str]) -> String {
    let out = Command::new(program)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/frameworks")
                .join(script),
        )
        .arg(kai.addr.ip().to_string())
        .arg(kai.addr.port().to_string())
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed ({install}): {e}"));
    assert!(
        out.status.success(),
        "{script} failed (needs {install}):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn pylibmc_binary_protocol_works_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(dir.path());
    let out = run_script(
        "python3",
        "apt-get install python3-pylibmc",
        "pylibmc_binary.py",
        &kai,
        &[],
    );
    assert_eq!(out, "pylibmc binary ok");
}

#[test]
fn pylibmc_authenticates_with_sasl_plain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = auth_node(dir.path());
    let install = "apt-get install python3-pylibmc libsasl2-modules";
    let out = run_script("python3", install, "pylibmc_binary.py", &kai, &[USER, PASSWORD]);
    assert_eq!(out, "pylibmc binary ok");
}

#[test]
fn dalli_and_rack_sessions_work_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(dir.path());
    let install = "apt-get install ruby-dalli ruby-rack ruby-connection-pool";
    assert_eq!(run_script("ruby", install, "dalli_binary.rb", &kai, &[]), "dalli ok");
}

#[test]
fn dalli_authenticates_with_sasl_plain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = auth_node(dir.path());
    let install = "apt-get install ruby-dalli ruby-rack ruby-connection-pool";
    assert_eq!(
        run_script("ruby", install, "dalli_binary.rb", &kai, &[USER, PASSWORD]),
        "dalli ok"
    );
}

#[test]
fn php_memcached_binary_and_locked_sessions_work_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(dir.path());
    let install = "apt-get install php-cli php-memcached";
    assert_eq!(
        run_script("php", install, "php_memcached.php", &kai, &[]),
        "php-memcached ok"
    );
}

#[test]
fn php_memcached_authenticates_with_sasl_plain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = auth_node(dir.path());
    let install = "apt-get install php-cli php-memcached libsasl2-modules";
    assert_eq!(
        run_script("php", install, "php_memcached.php", &kai, &[USER, PASSWORD]),
        "php-memcached ok"
    );
}

/// Runs a libmemcached tool against `kai` in binary mode (plus `extra` options).
fn tool(kai: &KaiProcess, dir: &Path, name: &str, extra: &[&str], args: &[&str]) -> std::process::Output {
    Command::new(name)
        .arg(format!("--servers={}:{}", kai.addr.ip(), kai.addr.port()))
        .arg("--binary")
        .args(extra)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{name} must be installed (apt-get install libmemcached-tools): {e}"))
}

fn succeeded(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn libmemcached_tools_in_binary_mode_work_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir.path().join("data"));
    std::fs::write(dir.path().join("payload.txt"), b"copied in binary\n").expect("write payload");
    succeeded(tool(&kai, dir.path(), "memccp", &[], &["payload.txt"]));
    // memccat prints a newline after the value, as it does against memcached.
    assert_eq!(
        succeeded(tool(&kai, dir.path(), "memccat", &[], &["payload.txt"])),
        "copied in binary\n\n"
    );
    succeeded(tool(&kai, dir.path(), "memcrm", &[], &["payload.txt"]));
    assert!(!tool(&kai, dir.path(), "memccat", &[], &["payload.txt"])
        .status
        .success());
}

#[test]
fn libmemcached_tools_need_the_right_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = auth_node(&dir.path().join("node"));
    std::fs::write(dir.path().join("payload.txt"), b"secret payload").expect("write payload");
    let good = ["--username", USER, "--password", PASSWORD];
    succeeded(tool(&kai, dir.path(), "memccp", &good, &["payload.txt"]));
    assert_eq!(
        succeeded(tool(&kai, dir.path(), "memccat", &good, &["payload.txt"])),
        "secret payload\n"
    );
    let wrong = ["--username", USER, "--password", "wrong"];
    assert!(!tool(&kai, dir.path(), "memccat", &wrong, &["payload.txt"])
        .status
        .success());
    assert!(!tool(&kai, dir.path(), "memccat", &[], &["payload.txt"])
        .status
        .success());
}

#[test]
fn the_rust_memcache_crate_binary_protocol_works_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(dir.path());
    let client = memcache::connect(format!("memcache://{}", kai.addr)).expect("connect");
    client.set("rust", "binary", 0).expect("set");
    assert_eq!(client.get::<String>("rust").expect("get"), Some("binary".to_owned()));
    assert!(client.add("rust", "again", 0).is_err());
    // The crate's increment creates a missing key with initial value 0 (as memcached does).
    assert_eq!(client.increment("n", 1).expect("incr"), 0);
    assert_eq!(client.increment("n", 5).expect("incr"), 5);
    assert!(client.delete("rust").expect("delete"));
}

/// A raw binary request: opcode, key, value (no extras).
fn raw_binary(opcode: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80, opcode];
    out.extend((key.len() as u16).to_be_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend(((key.len() + value.len()) as u32).to_be_bytes());
    out.extend([0; 12]);
    out.extend(key);
    out.extend(value);
    out
}

/// Reads one binary reply: its status and value.
fn read_reply(stream: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut header = [0u8; 24];
    stream.read_exact(&mut header).ok()?;
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let skip = header[4] as usize + u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut body = vec![0u8; body_len];
    stream.read_exact(&mut body).ok()?;
    Some((status, body[skip..].to_vec()))
}

#[test]
fn binary_clients_must_authenticate_before_anything_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = auth_node(dir.path());
    let mut stream = TcpStream::connect(kai.addr).expect("connect");
    // Version and the mechanism list are open; PLAIN is the mechanism.
    stream.write_all(&raw_binary(0x0b, b"", b"")).expect("write");
    assert_eq!(read_reply(&mut stream).map(|r| r.0), Some(0));
    stream.write_all(&raw_binary(0x20, b"", b"")).expect("write");
    assert_eq!(read_reply(&mut stream), Some((0, b"PLAIN".to_vec())));
    // Wrong password: "Auth failure.", the connection stays for another try.
    stream
        .write_all(&raw_binary(0x21, b"PLAIN", format!("\0{USER}\0wrong").as_bytes()))
        .expect("write");
    assert_eq!(read_reply(&mut stream), Some((0x20, b"Auth failure.".to_vec())));
    stream
        .write_all(&raw_binary(0x21, b"PLAIN", format!("\0{USER}\0{PASSWORD}").as_bytes()))
        .expect("write");
    assert_eq!(read_reply(&mut stream), Some((0, b"Authenticated".to_vec())));
    stream.write_all(&raw_binary(0x00, b"k", b"")).expect("write");
    assert_eq!(read_reply(&mut stream).map(|r| r.0), Some(1), "authenticated: a miss");

    // Unauthenticated: a get is "Auth failure." and the connection is closed (memcached -S).
    let mut other = TcpStream::connect(kai.addr).expect("connect");
    other.write_all(&raw_binary(0x00, b"k", b"")).expect("write");
    assert_eq!(read_reply(&mut other), Some((0x20, b"Auth failure.".to_vec())));
    assert_eq!(read_reply(&mut other), None, "closed");
}

#[test]
fn text_clients_authenticate_like_memcached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = auth_node(dir.path());
    let stream = TcpStream::connect(kai.addr).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut ask = |request: &str| {
        writer.write_all(request.as_bytes()).expect("write");
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        line
    };
    assert_eq!(ask("get k\r\n"), "CLIENT_ERROR unauthenticated\r\n");
    assert_eq!(
        ask(&format!("set auth 0 0 {}\r\n{USER} wrong\r\n", USER.len() + 6)),
        "CLIENT_ERROR authentication failure\r\n"
    );
    let token = format!("{USER} {PASSWORD}");
    assert_eq!(
        ask(&format!("set auth 0 0 {}\r\n{token}\r\n", token.len())),
        "STORED\r\n"
    );
    assert_eq!(ask("set k 0 0 1\r\nv\r\n"), "STORED\r\n");
    assert_eq!(ask("get k\r\n"), "VALUE k 0 1\r\n");
    assert_eq!(ask(""), "v\r\n");
    assert_eq!(ask(""), "END\r\n");
}

#[test]
fn a_malformed_auth_file_stops_the_node_without_showing_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth_file = dir.path().join("users");
    std::fs::write(&auth_file, "alice:topsecret\nno-colon-here\n").expect("auth file");
    let out = Command::new(common::kai_bin())
        .args([
            "start",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--set")
        .arg(format!("auth_file={}", auth_file.display()))
        .output()
        .expect("run kai");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth_file") && stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains("topsecret"), "{stderr}");
}

#[test]
fn admin_commands_work_on_a_node_that_requires_client_authentication() {
    // They use the admin HTTP endpoint, not the memcache port, so no memcache credentials.
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = auth_node(dir.path());
    let admin = kai.admin.to_string();
    for command in ["stats", "healthcheck", "status"] {
        let out = Command::new(common::kai_bin())
            .args([command, "--admin", &admin])
            .output()
            .expect("run kai");
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
