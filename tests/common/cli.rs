//! Running the `spex` binary from integration tests.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

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

/// Sends `child` (a run writing the sample store `store`) a Ctrl-C (SIGINT) once a batch is
/// stored (a Ctrl-C before the first batch would rightly keep none; `Store::read` only reads),
/// and waits for it.
#[cfg(unix)]
pub fn interrupt_once_stored(child: Child, store: &Path) -> Output {
    let stored = || spex::store::Store::read(store).map_or(0, |s| s.batches().len());
    for _ in 0..400 {
        if stored() >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // SAFETY: kill(2) on the pid of a child the caller spawned and has not waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    child.wait_with_output().unwrap()
}

/// A JSON file.
pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
