//! End-to-end: real memcache clients and Django's cache framework against one real `kai`
//! process, each on the paths its framework takes every day (locks, rate limiters, optimistic
//! updates, sessions). The Python scripts in `tests/frameworks/` are self-checking and pass
//! against memcached 1.6 too (`python3 tests/frameworks/<script> 127.0.0.1 11211 ...`).
//!
//! Prerequisites: `pip install pymemcache django`, Debian's `python3-pylibmc`.

mod common;

use common::{python, KaiProcess};

fn node(dir: &tempfile::TempDir) -> KaiProcess {
    KaiProcess::start(dir.path(), &[])
}

/// Runs `script` with the node's host and port, then `extra` arguments.
fn run(kai: &KaiProcess, script: &str, extra: &[&str]) -> String {
    let mut args = vec![kai.addr.ip().to_string(), kai.addr.port().to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    python(script, &args).trim().to_string()
}

#[test]
fn django_cache_api_works_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let script = include_str!("frameworks/django_cache.py");
    // Each backend uses its own KEY_PREFIX, so both runs start from an empty key space.
    for backend in ["PyMemcacheCache", "PyLibMCCache"] {
        assert_eq!(run(&kai, script, &[backend]), format!("django ok {backend}"));
    }
}

#[test]
fn pylibmc_text_protocol_works_against_kai() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let script = include_str!("frameworks/pylibmc_text.py");
    assert_eq!(run(&kai, script, &[]), "pylibmc ok");
}

#[test]
fn pymemcache_common_framework_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kai = node(&dir);
    let script = include_str!("frameworks/pymemcache_paths.py");
    let out = run(&kai, script, &[]);
    assert!(out.starts_with("pymemcache ok"), "{out}");
}
