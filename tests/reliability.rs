//! Reliability of runs: kill -9 at random points then resume, sharded runs merged, a full disk,
//! and the reports a finished run leaves.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::cli::SPEX;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use spex::store::Store;

/// The demo served over the driver protocol, slowed down so a run takes a while.
fn slow_driver() -> String {
    format!("while IFS= read -r line; do sleep 0.01; printf '%s\\n' \"$line\" | {SPEX} demo-oracle; done")
}

/// `spex explain` of the demo through a slow driver, batches of 100 unless `extra` says.
fn explain_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["explain", "--oracle", &slow_driver(), "--n", "14", "--budget", "3000", "--quiet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !extra.contains(&"--batch-size") {
        args.extend(["--batch-size".into(), "100".into()]);
    }
    args.extend(["--out".into(), out.to_str().unwrap().into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `spex explain` of the built-in demo (players named) with `extra` options.
fn demo_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["explain", "--demo", "--budget", "3000", "--batch-size", "100", "--quiet", "--out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(out.to_str().unwrap().into());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(args: &[String]) -> Output {
    Command::new(SPEX).args(args).output().unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fourier(result: &Value) -> Value {
    result["fourier"].clone()
}

#[test]
fn kill_9_at_random_points_then_resume_equals_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let o = run(&explain_args(&reference, &[]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected_values = read(&reference.join("values.txt"));
    let expected = fourier(&serde_json::from_str(&read(&reference.join("result.json"))).unwrap());
    let total_batches = 30; // 2 688 design + 300 held-out masks in batches of 100
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let trials: usize = std::env::var("SPEX_KILL_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    for trial in 0..trials {
        let out = tmp.path().join(format!("trial{trial}"));
        // Kill it, resume, kill again at another point, …, until a resume finishes.
        let mut kills = 0;
        loop {
            let mode: &[&str] = if out.join("samples.store").exists() { &["--resume"] } else { &[] };
            let mut child = Command::new(SPEX)
                .args(explain_args(&out, mode))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
            if child.try_wait().unwrap().is_some() {
                break;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            if let Ok(store) = Store::open(&out.join("samples.store"), 1) {
                // Every stored batch is whole and stored once.
                assert!(store.batches().len() <= total_batches);
                for (b, v) in store.batches() {
                    assert_eq!(v.len(), store.header().batch_len(*b), "trial {trial}: batch {b}");
                }
            }
        }
        let store = Store::open(&out.join("samples.store"), 1).unwrap();
        assert_eq!(store.batches().len(), total_batches, "trial {trial} after {kills} kills");
        assert_eq!(read(&out.join("values.txt")), expected_values, "trial {trial} after {kills} kills");
        let got = fourier(&serde_json::from_str(&read(&out.join("result.json"))).unwrap());
        assert_eq!(got, expected, "trial {trial}");
    }
}

/// Ctrl-C (SIGINT) stops a run after its current batch, names what is kept and how to go on,
/// and the resumed run equals an uninterrupted one.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_between_batches_with_the_resume_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, out) = (tmp.path().join("reference"), tmp.path().join("run"));
    assert!(run(&explain_args(&reference, &[])).status.success());
    let child = Command::new(SPEX).args(explain_args(&out, &[])).stderr(Stdio::piped()).spawn().unwrap();
    // The handler is installed before the store is created.
    let o = common::cli::interrupt_once_stored(child, &out.join("samples.store"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("stopping after the current batch"), "{err}");
    assert!(err.contains("interrupted: ") && err.contains("run the same command with --resume"), "{err}");
    let kept = Store::open(&out.join("samples.store"), 1).unwrap().batches().len();
    assert!((1..30).contains(&kept), "{kept} batches kept");
    assert!(run(&explain_args(&out, &["--resume"])).status.success());
    assert_eq!(read(&out.join("values.txt")), read(&reference.join("values.txt")));
}

#[test]
fn sharded_runs_merged_equal_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    assert!(run(&demo_args(&whole, &["--method", "proxyspex"])).status.success());
    let sharded = tmp.path().join("sharded");
    let merge = || Command::new(SPEX).arg("merge").arg(&sharded).output().unwrap();
    for shard in ["0/3", "2/3"] {
        let o = run(&demo_args(&sharded, &["--method", "proxyspex", "--shard", shard]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("spex merge"));
    }
    let o = merge();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("shard 1/3 has not started"), "{err}");
    // A shard of another run is refused before it writes anything.
    let design = read(&sharded.join("design.json"));
    let o = run(&demo_args(&sharded, &["--method", "proxyspex", "--shard", "1/3", "--seed", "5"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("belongs to another run (its design differs)"), "{err}");
    assert_eq!(read(&sharded.join("design.json")), design);
    assert!(!sharded.join("samples.shard-1-of-3.store").exists());
    assert!(run(&demo_args(&sharded, &["--method", "proxyspex", "--shard", "1/3"])).status.success());
    // A shard cut short (here: its store's tail cut off) is named as unfinished.
    let shard1 = sharded.join("samples.shard-1-of-3.store");
    let full = std::fs::read(&shard1).unwrap();
    std::fs::write(&shard1, &full[..full.len() * 2 / 3]).unwrap();
    let err = String::from_utf8_lossy(&merge().stderr).into_owned();
    assert!(err.contains("shard 1/3 is unfinished: ") && err.contains("(its command with --resume)"), "{err}");
    std::fs::write(&shard1, &full).unwrap();
    // A merge only reads: a half-written record of a shard still running stays where it is.
    let shard0 = sharded.join("samples.shard-0-of-3.store");
    let mut bytes = std::fs::read(&shard0).unwrap();
    bytes.extend_from_slice(&[0x44, 0x52, 0x43, 0x52, 7]);
    std::fs::write(&shard0, &bytes).unwrap();
    let o = merge();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&shard0).unwrap(), bytes);
    assert_eq!(read(&sharded.join("values.txt")), read(&whole.join("values.txt")));
    let a: Value = serde_json::from_str(&read(&whole.join("result.json"))).unwrap();
    let b: Value = serde_json::from_str(&read(&sharded.join("result.json"))).unwrap();
    assert_eq!(fourier(&a), fourier(&b));
    assert_eq!(a["interactions"], b["interactions"]);
    assert_eq!(b["players"][3], "like", "merge keeps the players' names");
}

/// A report that cannot be written (here: a directory in its place; a full disk alike) says that
/// every sample is kept, and rerunning the command writes it without querying again.
#[test]
fn a_report_that_cannot_be_written_loses_no_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    assert!(run(&demo_args(&out, &[])).status.success());
    let values = read(&out.join("values.txt"));
    std::fs::remove_file(out.join("report.html")).unwrap();
    std::fs::create_dir(out.join("report.html")).unwrap();
    let o = run(&demo_args(&out, &[]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("report.html: "), "{err}");
    assert!(err.contains("every sample is kept in the run's store") && err.contains("run the same command again"));
    std::fs::remove_dir(out.join("report.html")).unwrap();
    let o = run(&demo_args(&out, &[]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("report.html").is_file());
    assert_eq!(read(&out.join("values.txt")), values);
}

#[test]
fn finished_runs_leave_every_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(SPEX)
        .args(["explain", "--demo", "--quiet", "--index", "fourier", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = read(&out.join("interactions.csv"));
    assert!(csv.starts_with("rank,order,players,names,value\n1,"), "{csv}");
    assert!(
        csv.lines().any(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(",2,2 3,not like,")),
        "{csv}"
    );
    let shapiq: Value = serde_json::from_str(&read(&out.join("shapiq.json"))).unwrap();
    // shapiq has no Fourier index, so the export holds the Möbius form.
    assert_eq!(shapiq["metadata"]["index"], "Moebius");
    let close = |key: &str, want: f64| (shapiq["data"][key].as_f64().unwrap() - want).abs() < 1e-9;
    assert!(close("2,3", -3.5) && close("10,11,12,13", 1.0), "{shapiq}");
    let html = read(&out.join("report.html"));
    assert!(html.contains("<svg") && html.contains("not") && html.contains("faithfulness R² 1.0000"));
    assert!(!html.contains("http://") && !html.contains("https://"), "the report must not load anything");
}

#[test]
fn a_full_disk_stops_the_run_cleanly_and_keeps_earlier_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=24k", "tmpfs"]).arg(&mount).output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("note: cannot mount a small tmpfs here (needs root); disk-full test not run");
        return;
    }
    let out = mount.join("run");
    let o = run(&explain_args(&out, &["--batch-size", "50"]));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let store_copy = tmp.path().join("copy.store");
    std::fs::copy(out.join("samples.store"), &store_copy).unwrap();
    let _ = Command::new("umount").arg(&mount).output();
    assert!(!o.status.success(), "the run should not fit in 24 KiB");
    assert!(err.contains("No space left on device") && err.contains("safely stored"), "{err}");
    let store = Store::open(&store_copy, 1).unwrap();
    assert!(!store.batches().is_empty(), "earlier batches are intact");
    for (b, v) in store.batches() {
        assert_eq!(v.len(), store.header().batch_len(*b));
    }
}
