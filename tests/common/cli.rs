//! Running the `spex` binary from integration tests.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The binary under test.
pub const SPEX: &str = env!("CARGO_BIN_EXE_spex");

/// Runs `spex args`.
pub fn spex(args: &[&str]) -> Output {
    Command::new(SPEX).args(args).output().expect("spex runs")
}

/// Runs `spex args`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = spex(args);
    assert!(out.status.success(), "spex {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `spex args`, which must fail without a panic; its standard error.
pub fn fails(args: &[&str]) -> String {
    let out = spex(args);
    assert!(!out.status.success(), "spex {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "spex {args:?} panicked:\n{err}");
    err
}

/// A JSON file.
pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
