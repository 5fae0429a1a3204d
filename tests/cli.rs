//! The `spex` command line end to end: design → values → decode, the driver protocol with
//! well-behaved and misbehaving drivers, resume, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::cli::{fails, json, ok, SPEX};
use serde_json::Value;
use spex::io::read_masks;
use spex::value::demo;

/// `(players, value)` pairs of a result's interactions, rounded, sorted by players.
fn interactions(result: &Value) -> Vec<(Vec<u64>, f64)> {
    let mut v: Vec<(Vec<u64>, f64)> = result["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let players = e["players"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
            (players, (e["value"].as_f64().unwrap() * 1e6).round() / 1e6)
        })
        .filter(|(_, v)| *v != 0.0)
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn demo_truth() -> Vec<(Vec<u64>, f64)> {
    let mut v: Vec<(Vec<u64>, f64)> =
        demo::TERMS.iter().map(|(p, w)| (p.iter().map(|&x| x as u64).collect(), *w)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn design_values_decode_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("masks.txt");
    let m = masks.to_str().unwrap();
    ok(&["design", "--n", "14", "--budget", "3000", "--seed", "4", "--out", m]);
    let design = json(&dir.path().join("masks.txt.design.json"));
    assert_eq!(design["method"], "spex");
    let batch = read_masks(&masks, None).unwrap();
    // Design, held-out, then the probe of the one extreme SPEX's design lacks: every player kept.
    assert_eq!(design["probes"], serde_json::json!(["all_kept"]));
    assert_eq!(batch.len() as u64, design["masks"].as_u64().unwrap() + design["holdout"].as_u64().unwrap() + 1);
    assert_eq!(batch.row(batch.len() - 1).count_kept(), 14);
    let values: String = batch.iter().map(|r| format!("{}\n", demo::demo_logit(r))).collect();
    let v = dir.path().join("values.txt");
    std::fs::write(&v, values).unwrap();
    let out = dir.path().join("result.json");
    let stdout = ok(&[
        "decode",
        "--masks",
        m,
        "--values",
        v.to_str().unwrap(),
        "--index",
        "moebius",
        "--max-order",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("top 10 interactions (moebius, order ≤ 5)"), "{stdout}");
    let result = json(&out);
    assert_eq!(result["schema"], "spex-result/1");
    assert_eq!(interactions(&result), demo_truth());
    assert!(result["faithfulness"]["r2"].as_f64().unwrap() > 0.999999);
    assert!(result["baseline"].as_f64().unwrap().abs() < 1e-9);
    let all_kept = demo::demo_logit(batch.row(batch.len() - 1));
    assert_eq!(result["measured"], serde_json::json!({"all_ablated": 0.0, "all_kept": all_kept}));
}

#[test]
fn decode_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("masks.txt");
    let m = masks.to_str().unwrap();
    ok(&["design", "--n", "10", "--budget", "2000", "--holdout", "0", "--out", m]);
    let rows = read_masks(&masks, None).unwrap().len();
    let v = dir.path().join("values.txt");
    let vs = v.to_str().unwrap();
    // Wrong count.
    std::fs::write(&v, "1\n".repeat(rows - 1)).unwrap();
    assert!(fails(&["decode", "--masks", m, "--values", vs]).contains(&format!("expected {rows} values")));
    // NaN, named by line.
    std::fs::write(&v, format!("{}nan\n", "1\n".repeat(5))).unwrap();
    assert!(fails(&["decode", "--masks", m, "--values", vs]).contains("values.txt:6: value NaN is not finite"));
    // An edited mask.
    std::fs::write(&v, "1\n".repeat(rows)).unwrap();
    let text = std::fs::read_to_string(&masks).unwrap();
    let edited = text.replacen("\n0000000000\n", "\n0000000001\n", 1);
    std::fs::write(&masks, &edited).unwrap();
    assert!(fails(&["decode", "--masks", m, "--values", vs]).contains("differs from its design"));
    // A row of the wrong width / a bad character.
    std::fs::write(&masks, text.replacen("\n0000000000\n", "\n000000000\n", 1)).unwrap();
    assert!(fails(&["decode", "--masks", m, "--values", vs]).contains("mask has 9 players, expected 10"));
    std::fs::write(&masks, text.replacen("\n0000000000\n", "\n00000x0000\n", 1)).unwrap();
    assert!(fails(&["decode", "--masks", m, "--values", vs]).contains("invalid character 'x'"));
}

#[test]
fn design_rejects_bad_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.txt");
    let m = m.to_str().unwrap();
    assert!(fails(&["design", "--n", "0", "--budget", "1000", "--out", m]).contains("n = 0"));
    let err = fails(&["design", "--n", "1000", "--budget", "100", "--out", m]);
    assert!(err.contains("too small for SPEX with n = 1000: the minimum is"), "{err}");
    assert!(
        fails(&["design", "--n", "10", "--budget", "100", "--method", "nope", "--out", m]).contains("unknown method")
    );
}

#[test]
fn design_never_replaces_another_design_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("m.txt");
    let m = masks.to_str().unwrap();
    let first = ["design", "--n", "8", "--budget", "1000", "--out", m];
    let out = ok(&first);
    let before = std::fs::read_to_string(&masks).unwrap();
    // The size written is said (a design for n = 100 000 players is gigabytes).
    assert!(out.contains(&format!("masks ({:.1} kB) to", before.len() as f64 / 1e3)), "{out}");
    // The same design again is harmless; another one would orphan values computed for the first.
    ok(&first);
    let err = fails(&["design", "--n", "8", "--budget", "1000", "--seed", "1", "--out", m]);
    assert!(err.contains("holds another design") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&masks).unwrap(), before);
    ok(&["design", "--n", "8", "--budget", "1000", "--seed", "1", "--out", m, "--force"]);
    assert_ne!(std::fs::read_to_string(&masks).unwrap(), before);
    // A file that is no masks file is not overwritten either.
    let other = dir.path().join("values.txt");
    std::fs::write(&other, "1\n2\n").unwrap();
    let err = fails(&["design", "--n", "8", "--budget", "1000", "--out", other.to_str().unwrap()]);
    assert!(err.contains("is not the masks file of a design"), "{err}");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "1\n2\n");
}

#[test]
fn small_games_default_to_the_exact_table() {
    let dir = tempfile::tempdir().unwrap();
    let design = |args: &[&str]| {
        let masks = dir.path().join("m.txt");
        ok(&[&["design", "--out", masks.to_str().unwrap(), "--force"], args].concat());
        json(&dir.path().join("m.txt.design.json"))
    };
    // 2^8 masks are fewer than SPEX's default design for n = 8 (16 128), and exact.
    let d = design(&["--n", "8"]);
    assert_eq!((d["method"].as_str(), d["masks"].as_u64()), (Some("exhaustive"), Some(256)));
    // A budget below 2^n, or more players than fit, keeps SPEX.
    assert_eq!(design(&["--n", "9", "--budget", "500"])["method"], "spex");
    assert_eq!(design(&["--n", "20"])["method"], "spex");
    // An explicit exhaustive needs no --budget.
    assert_eq!(design(&["--n", "13", "--method", "exhaustive"])["masks"], 8192);
    // The demo shows SPEX, although its 2^14 masks would fit.
    assert!(ok(&["explain", "--demo", "--out", dir.path().join("demo").to_str().unwrap(), "-q"]).starts_with("spex:"));
}

#[test]
fn decode_says_when_no_interaction_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("m.txt");
    let m = masks.to_str().unwrap();
    ok(&["design", "--n", "6", "--method", "exhaustive", "--out", m]);
    let rows = read_masks(&masks, None).unwrap();
    let v = dir.path().join("v.txt");
    // A function of no player.
    std::fs::write(&v, "2\n".repeat(rows.len())).unwrap();
    let out = ok(&["decode", "--masks", m, "--values", v.to_str().unwrap()]);
    assert!(out.contains("none (every one is zero)") && !out.contains("note: R²"), "{out}");
    let out = ok(&["decode", "--masks", m, "--values", v.to_str().unwrap(), "--max-order", "0"]);
    assert!(out.contains("none (order 0 holds only the empty set)"), "{out}");
}

#[test]
fn tiny_and_huge_values_print_in_scientific_notation() {
    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("m.txt");
    let m = masks.to_str().unwrap();
    ok(&["design", "--n", "4", "--out", m]);
    let rows = read_masks(&masks, None).unwrap();
    let v = dir.path().join("v.txt");
    for (unit, expected) in [(1e-8, "+3.000e-8  {1,2}"), (1e200, "+3.000e200  {1,2}"), (1.0, "+3.0000  {1,2}")] {
        let values: String =
            rows.iter().map(|r| format!("{:e}\n", unit * 3.0 * (r.get(1) && r.get(2)) as u8 as f64)).collect();
        std::fs::write(&v, values).unwrap();
        let out = ok(&["decode", "--masks", m, "--values", v.to_str().unwrap(), "--index", "moebius"]);
        assert!(out.contains(expected) && out.contains("R² = 1.0000"), "{unit}: {out}");
    }
}

#[test]
fn a_poor_fit_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("m.txt");
    let m = masks.to_str().unwrap();
    ok(&["design", "--n", "12", "--method", "uniform", "--budget", "400", "--out", m]);
    // Values no sparse low-order sum fits: a hash of each mask.
    let values: String = (0..read_masks(&masks, None).unwrap().len())
        .map(|i| format!("{}\n", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60))
        .collect();
    let v = dir.path().join("v.txt");
    std::fs::write(&v, values).unwrap();
    let out = ok(&["decode", "--masks", m, "--values", v.to_str().unwrap()]);
    assert!(out.contains("note: R² below 0.5"), "{out}");
}

fn oracle_cmd(script: &str) -> String {
    format!("SPEX={SPEX}; {script}")
}

/// A driver that answers the first `good` batches through `spex demo-oracle`, then does `then`
/// while the file `flag` exists (so a test can "fix the problem" by deleting it and resume with
/// the very same command).
fn flaky(good: usize, then: &str, flag: &Path) -> String {
    oracle_cmd(&format!(
        "i=0; while IFS= read -r line; do i=$((i+1)); if [ $i -gt {good} ] && [ -e '{}' ]; then {then}; fi; \
         printf '%s\\n' \"$line\" | \"$SPEX\" demo-oracle; done",
        flag.display()
    ))
}

fn explain(out: &Path, oracle: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "explain".to_string(),
        "--oracle".into(),
        oracle.into(),
        "--n".into(),
        "14".into(),
        "--budget".into(),
        "3000".into(),
        "--batch-size".into(),
        "500".into(),
        "--index".into(),
        "moebius".into(),
        "--max-order".into(),
        "5".into(),
        "--quiet".into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(SPEX).args(&args).output().unwrap()
}

/// Values safely stored in a run directory's sample store.
fn values_kept(dir: &Path) -> usize {
    let store = spex::store::Store::open(&dir.join("samples.store"), 1).unwrap();
    store.batches().values().map(Vec::len).sum()
}

#[test]
fn explain_through_the_driver_protocol_recovers_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let called = dir.path().join("called");
    let driver = oracle_cmd(&format!("touch '{}'; \"$SPEX\" demo-oracle", called.display()));
    let o = explain(&out, &driver, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let result = json(&out.join("result.json"));
    assert_eq!(interactions(&result), demo_truth());
    assert!(result["faithfulness"]["r2"].as_f64().unwrap() > 0.999999);
    // Running again reuses the finished run: the driver is not even started.
    std::fs::remove_file(&called).unwrap();
    let again = explain(&out, &driver, &[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(!called.exists(), "a finished run was recomputed");
    assert_eq!(interactions(&json(&out.join("result.json"))), demo_truth());
}

#[test]
fn misbehaving_drivers_fail_cleanly_and_resume_completes() {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = reference_dir.path().join("ref");
    assert!(explain(&reference, &oracle_cmd("\"$SPEX\" demo-oracle"), &[]).status.success());
    let reference_values = std::fs::read_to_string(reference.join("values.txt")).unwrap();
    let wrong_count = "id=$(printf '%s' \"$line\" | sed 's/.*\"id\":\\([0-9]*\\).*/\\1/'); \
                       echo \"{\\\"id\\\":$id,\\\"values\\\":[1]}\"; continue";
    let cases: [(&str, usize, &str, &[&str], &str); 4] = [
        ("malformed", 2, "echo 'this is not json'", &[], "malformed answer to batch 2"),
        ("early exit", 2, "exit 3", &[], "before answering batch 2"),
        ("hang", 2, "sleep 30", &["--timeout", "1"], "did not answer batch 2 within 1.0 s"),
        ("wrong count", 2, wrong_count, &[], "returned 1 values for the 500 masks of batch 2"),
    ];
    for (name, good, then, extra, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (out, flag) = (dir.path().join("run"), dir.path().join("broken"));
        std::fs::write(&flag, "").unwrap();
        let driver = flaky(good, then, &flag);
        let o = explain(&out, &driver, extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: should fail");
        assert!(err.contains(message), "{name}: {err}");
        assert!(err.contains("--resume"), "{name}: {err}");
        assert_eq!(values_kept(&out), good * 500, "{name}: values kept");
        // Without --resume the unfinished run is protected.
        let o = explain(&out, &driver, extra);
        assert!(String::from_utf8_lossy(&o.stderr).contains("unfinished run"), "{name}");
        // Fix the problem, resume the same command: the values equal an uninterrupted run's.
        std::fs::remove_file(&flag).unwrap();
        let o = explain(&out, &driver, &[&["--resume"], extra].concat());
        assert!(o.status.success(), "{name}: resume failed: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read_to_string(out.join("values.txt")).unwrap(), reference_values, "{name}");
        assert_eq!(interactions(&json(&out.join("result.json"))), demo_truth(), "{name}");
    }
}

#[test]
fn a_driver_that_cannot_start_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let o = explain(&dir.path().join("run"), "no-such-driver-xyz", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    // Depending on timing the failure shows when sending or when reading; both name the batch
    // and the driver's exit status.
    assert!(!o.status.success() && err.contains("batch 0") && err.contains("exit status: 127"), "{err}");
}

#[test]
fn resume_refuses_another_function_or_design() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let bad = flaky(1, "exit 1", &dir.path().join("missing-flag-means-healthy"));
    let bad = bad.replace("-e '", "! -e '");
    assert!(!explain(&out, &bad, &[]).status.success());
    let other = explain(&out, &oracle_cmd("\"$SPEX\" demo-oracle"), &["--resume"]);
    assert!(String::from_utf8_lossy(&other.stderr).contains("value function"));
    let other = explain(&out, &bad, &["--resume", "--seed", "9"]);
    assert!(String::from_utf8_lossy(&other.stderr).contains("its design"));
    let fresh = explain(&out, &oracle_cmd("\"$SPEX\" demo-oracle"), &["--force"]);
    assert!(fresh.status.success());
}

#[test]
fn bad_run_options_are_refused_before_any_query() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--batch-size", "0"], "at least 1, not 0"),
        (&["--sync-every", "0"], "at least 1, not 0"),
        (&["--degree", "0"], "degree 0"),
        (&["--index", "sii", "--max-order", "0"], "needs max_order >= 1"),
        // Driver options mean nothing to the demo.
        (&["--n", "7"], "'--demo' cannot be used with '--n <N>'"),
        (&["--timeout", "5"], "'--demo' cannot be used with '--timeout <TIMEOUT>'"),
    ];
    for (extra, expected) in cases {
        let args: Vec<&str> = ["explain", "--demo", "--quiet", "--out", o].iter().chain(extra).copied().collect();
        let err = fails(&args);
        assert!(err.contains(expected), "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?} wrote a run directory");
    }
}

#[test]
fn a_driver_timeout_is_a_positive_number_of_seconds() {
    for bad in ["0", "nan", "inf", "-1", "soon"] {
        let err = fails(&["explain", "--oracle", "true", "--n", "3", "--quiet", "--timeout", bad]);
        assert!(err.contains("--timeout"), "{bad}: {err}");
    }
}

/// A directory holding files a run writes, but no run, is someone else's: nothing is overwritten.
#[test]
fn a_run_never_overwrites_files_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("result.json"), "my own").unwrap();
    for extra in [&[][..], &["--force"]] {
        let args: Vec<&str> =
            ["explain", "--demo", "--quiet", "--out", mine.to_str().unwrap()].iter().chain(extra).copied().collect();
        let err = fails(&args);
        assert!(err.contains("holds result.json but no spex run"), "{extra:?}: {err}");
    }
    assert_eq!(std::fs::read_to_string(mine.join("result.json")).unwrap(), "my own");
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
}

#[test]
fn errors_name_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = fails(&["merge", missing.to_str().unwrap()]);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

#[test]
fn builtin_demo_runs_with_demo_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(SPEX).current_dir(dir.path()).args(["explain", "--demo", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("not like") && stdout.contains("not bad"), "{stdout}");
    // SPEX's design queries both extremes, so the summary checks the representation against them.
    assert!(
        stdout.contains("0.0000 (measured 0.0000) with every player ablated, 0.9000 (measured 0.9000)"),
        "{stdout}"
    );
    let result = json(&PathBuf::from(dir.path()).join("spex-out/result.json"));
    assert!((result["measured"]["all_kept"].as_f64().unwrap() - 0.9).abs() < 1e-12, "{}", result["measured"]);
    assert_eq!(result["players"][2], "not");
    assert!(result["faithfulness"]["r2"].as_f64().unwrap() > 0.999999);
}

#[test]
fn proxyspex_exhaustive_and_auto_recover_the_demo_and_say_why() {
    // 2^14 = 16 384 masks: auto tabulates the demo exhaustively once the budget covers them.
    for (method, budget, chosen) in
        [("proxyspex", "3000", "proxyspex"), ("auto", "3000", "proxyspex"), ("auto", "16384", "exhaustive")]
    {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let o = Command::new(SPEX)
            .args([
                "explain", "--demo", "--quiet", "--method", method, "--budget", budget, "--index", "moebius", "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let result = json(&out.join("result.json"));
        assert_eq!(result["method"], chosen);
        assert_eq!(result["diagnostics"]["decoder"], chosen);
        assert_eq!(result["choice"].is_string(), method == "auto", "{method}");
        assert_eq!(interactions(&result), demo_truth(), "{method}");
    }
}

#[test]
fn resume_takes_the_run_directory_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = |extra: &[&str]| {
        Command::new(SPEX).args(["explain", "--demo", "--quiet", "--budget", "3000"]).args(extra).output().unwrap()
    };
    let first = run(&["--shard", "0/2", "--out", out.to_str().unwrap()]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    // Nothing is left of shard 0: resuming evaluates nothing and says so.
    let again = run(&["--shard", "0/2", "--resume", out.to_str().unwrap()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(": 0 masks in"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let other = dir.path().join("other");
    let both = run(&["--resume", out.to_str().unwrap(), "--out", other.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&both.stderr).contains("name different runs"));
    let missing = run(&["--resume", other.to_str().unwrap()]);
    assert!(!missing.status.success() && !other.join("samples.store").exists());
}

/// An unfinished run begun before spex probed the extreme masks (its store's plan has no
/// probes) resumes as it began, to the result an uninterrupted run gives, instead of being
/// refused as another design.
#[test]
fn a_run_begun_before_probes_resumes_as_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_arg = out.to_str().unwrap();
    let args = |extra: &[&'static str]| {
        let base = ["explain", "--demo", "--quiet", "--method", "uniform", "--budget", "2000", "--out", out_arg];
        [&base[..], extra].concat()
    };
    ok(&args(&[]));
    let full = json(&out.join("result.json"));
    assert!(full["measured"]["all_kept"].is_number(), "the probe measured it: {}", full["measured"]);
    // The store as an older spex began it: its plan without probes, only batch 0 stored.
    let path = out.join("samples.store");
    let store = spex::store::Store::open(&path, 1).unwrap();
    let (mut header, first) = (store.header().clone(), store.batches()[&0].clone());
    drop(store);
    let probes = std::mem::take(&mut header.plan.probes).len();
    header.total_masks -= probes;
    for file in [&path, &out.join("result.json"), &out.join("values.txt")] {
        std::fs::remove_file(file).unwrap();
    }
    spex::store::Store::create(&path, header.clone(), 1).unwrap().append(0, &first).unwrap();
    ok(&args(&["--resume"]));
    let resumed = json(&out.join("result.json"));
    assert_eq!(resumed["interactions"], full["interactions"]);
    assert_eq!(resumed["faithfulness"], full["faithfulness"]);
    assert!(resumed["measured"]["all_kept"].is_null(), "{}", resumed["measured"]);
    let values = std::fs::read_to_string(out.join("values.txt")).unwrap();
    assert_eq!(values.lines().filter(|l| !l.starts_with('#')).count(), header.total_masks);
}

/// `spex bench throughput --shape` needs no download: whole runs on random weights of the
/// default model's architecture, with figures that agree with each other.
#[test]
fn bench_throughput_runs_on_random_weights_of_a_shape() {
    let bench = |extra: &[&str]| {
        let base =
            ["bench", "throughput", "--shape", "smollm2-135m", "--lengths", "6", "--batches", "64", "--budget", "60"];
        ok(&[&base[..], extra].concat())
    };
    let out = bench(&["--json"]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    let row = &rows.as_array().unwrap()[0];
    // 60 design masks, 100 held out (the least `default_holdout` gives).
    assert_eq!(
        (row["prompt_tokens"].as_u64(), row["batch"].as_u64(), row["masks"].as_u64()),
        (Some(6), Some(64), Some(160))
    );
    let (qps, ms) = (row["queries_per_second"].as_f64().unwrap(), row["ms_per_query"].as_f64().unwrap());
    assert!((qps * ms / 1e3 - 1.0).abs() < 1e-9 && qps > 0.0, "{row}");
    assert!((row["tokens_per_second"].as_f64().unwrap() - 6.0 * qps).abs() < 1e-6 * qps, "{row}");
    assert!(row["device"].as_str().unwrap().starts_with("cpu"), "{row}");
    let table = bench(&["--template", "4"]);
    assert!(table.contains("template") && table.contains("+4 once"), "{table}");
    let err = fails(&["bench", "throughput", "--shape", "llama-70b"]);
    assert!(err.contains("expected one of smollm2-135m, llama-1b, bert-base"), "{err}");
    let err = fails(&["bench", "throughput", "--shape", "llama-1b", "--model", "x"]);
    assert!(err.contains("cannot be used with"), "{err}");
    for (option, value) in [("--batches", "8,0"), ("--lengths", "0")] {
        let err = fails(&["bench", "throughput", "--shape", "smollm2-135m", option, value]);
        assert!(err.contains("at least 1, not 0"), "{option} {value}: {err}");
    }
    // A configuration the model cannot take fails alone: the figures measured still print.
    let o = common::cli::spex(&[
        "bench",
        "throughput",
        "--shape",
        "bert-base",
        "--lengths",
        "600,6",
        "--batches",
        "64",
        "--budget",
        "60",
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("600 tokens, batch 64: failed: ") && stderr.contains("1 of 2 configurations failed"),
        "{stderr}"
    );
    assert!(stdout.lines().any(|l| l.split_whitespace().take(2).eq(["6", "64"])), "{stdout}");
}
