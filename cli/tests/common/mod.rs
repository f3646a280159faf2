//! Running the built `omendb` binary from the tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `omendb` with `args`.
pub fn omendb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omendb")).args(args).output().unwrap()
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = omendb(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 1 and a message naming `needle`.
pub fn refused(args: &[&str], needle: &str) {
    let out = omendb(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: the message {stderr:?} does not name {needle:?}");
}

/// An empty scratch directory for test `name` of this process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omendb-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
