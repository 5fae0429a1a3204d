//! `spex explain` on the default model (SmolLM2-135M-Instruct): players and spans, the scored
//! target, what is recovered, and the errors of bad model input.
//!
//! Like `default_models.rs`, these need the model in the cache (`scripts/fetch-models.sh`); they
//! skip with a note without it unless `SPEX_REQUIRE_MODELS=1`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::cli::{json, SPEX};
use serde_json::Value;
use spex::model::cache::SMOLLM2;

fn have_model() -> bool {
    if SMOLLM2.cached().expect("cache directory").is_some() {
        return true;
    }
    assert!(
        std::env::var("SPEX_REQUIRE_MODELS").map_or(true, |v| v != "1"),
        "SPEX_REQUIRE_MODELS=1 but the default model is not cached (run scripts/fetch-models.sh)"
    );
    eprintln!("note: skipping: the default model is not cached (run scripts/fetch-models.sh)");
    false
}

fn spex<S: AsRef<std::ffi::OsStr>>(args: &[S], out: &Path) -> Output {
    Command::new(SPEX).args(args).args(["--quiet", "--out"]).arg(out).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `spex explain` of the one-token answer to "The capital of France is", and `extra` options.
fn paris(extra: &[&str]) -> Vec<String> {
    let base = ["explain", "--prompt", "The capital of France is", "--max-new-tokens", "1"];
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// [`paris`] as a sweep input.
const PARIS_INPUT: &str = r#"{"id": "paris", "prompt": "The capital of France is", "max_new_tokens": 1}"#;

#[test]
fn word_players_of_a_prompt_find_the_country_behind_the_answer() {
    if !have_model() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = spex(&paris(&["--budget", "400", "--index", "bv"]), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("\" Paris\""), "the greedy answer is the target: {stdout}");
    let result = json(&out.join("result.json"));
    let words = ["The", "capital", "of", "France", "is"];
    assert_eq!(result["players"], serde_json::json!(words));
    let input = &result["input"];
    let text = input["text"].as_str().unwrap();
    for (i, word) in words.iter().enumerate() {
        let span = &input["spans"][i];
        let (a, b) = (span[0].as_u64().unwrap() as usize, span[1].as_u64().unwrap() as usize);
        assert_eq!(&text[a..b], *word);
    }
    assert!(result["scored"].as_str().unwrap().contains("Paris"));
    assert!(result["model"].as_str().unwrap().contains("SmolLM2"));
    assert!(result["faithfulness"]["r2"].as_f64().unwrap() > 0.9, "{}", result["faithfulness"]);
    // Without "France" nothing points to Paris: it carries the largest Banzhaf value.
    let first = common::first_order_named(&result);
    let top = first.iter().max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    assert_eq!(top.1, "France", "{first:?}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("title=\"player 3: ") && html.contains(">France</span>"));
}

#[test]
fn head_players_are_named_by_layer_and_shown_as_a_heatmap() {
    if !have_model() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = spex(&paris(&["--players", "heads", "--budget", "200"]), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let result = json(&out.join("result.json"));
    assert_eq!(result["n"], 30 * 9);
    assert_eq!(result["players"][0], "L0H0");
    assert_eq!(result["players"][30 * 9 - 1], "L29H8");
    assert!(result["input"]["spans"].as_array().unwrap().iter().all(Value::is_null));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Attention heads: first-order value by layer × head") && html.contains("<th>L29</th>"));
}

#[test]
fn bad_model_input_fails_clearly_before_anything_is_written() {
    if !have_model() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 9] = [
        (&["explain", "--demo", "--prompt", "hi"], "drop them with --demo or --oracle"),
        (&["explain", "--prompt", "a b", "--target", " c", "--max-new-tokens", "2"], "cannot be used with"),
        (&["explain", "--prompt", "   "], "empty"),
        (&["explain", "--model", "/no/such/model.gguf"], "/no/such/model.gguf"),
        (
            &["explain", "--prompt", "The capital of France is", "--logit-diff", " Paris", " Lyon is"],
            "needs a single token",
        ),
        (&["explain", "--prompt", "a b", "--prefix", "x"], "the token \"xa\" runs across the edge"),
        (&["explain", "--players", "marked", "--prompt", "Fr[ance] is"], "\"ance\" starts no token"),
        (&["explain", "--prompt", "a b", "--reference", "c"], "applies to encoder models"),
        (&["explain", "--prompt", "The capital of France is", "--players", "everything"], "unknown players"),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("run{i}"));
        let o = spex(args, &out);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    // The encoder has no greedy answer to cut short.
    if let Ok(Some(encoder)) = spex::model::cache::MINILM.cached() {
        let out = tmp.path().join("encoder");
        let o =
            spex(&["explain", "--model", encoder.to_str().unwrap(), "--prompt", "a b", "--max-new-tokens", "2"], &out);
        assert!(stderr(&o).contains("(--max-new-tokens) applies to causal LMs"), "{}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn a_run_of_another_prompt_is_not_resumed() {
    if !have_model() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = spex(&paris(&["--budget", "100", "--shard", "0/2"]), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let italy = ["explain", "--prompt", "The capital of Italy is", "--max-new-tokens", "1", "--budget", "100"];
    let other = spex(&[&italy[..], &["--shard", "0/2", "--resume"]].concat(), &out);
    assert!(!other.status.success());
    assert!(stderr(&other).contains("Italy"), "the refusal names what differs: {}", stderr(&other));
}

#[test]
fn a_sweep_explains_each_input_as_explain_would_and_reuses_finished_ones() {
    if !have_model() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs.jsonl");
    std::fs::write(&inputs, format!("{PARIS_INPUT}\n{{\"id\": \"blank\", \"prompt\": \" \"}}\n")).unwrap();
    let out = tmp.path().join("sweep");
    let sweep = || {
        Command::new(SPEX)
            .args(["sweep", "--inputs"])
            .arg(&inputs)
            .args(["--budget", "200", "--log", "quiet", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = sweep();
    assert!(!first.status.success(), "a failed input makes the sweep fail at the end");
    let summary = json(&out.join("sweep.json"));
    assert_eq!(summary[0]["status"], "done");
    assert_eq!(summary[1]["status"], "failed");
    assert!(summary[1]["error"].as_str().unwrap().contains("empty"));

    let single = tmp.path().join("single");
    let o = spex(&paris(&["--budget", "200"]), &single);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (json(&out.join("paris/result.json")), json(&single.join("result.json")));
    assert_eq!(a["fourier"], b["fourier"]);
    assert_eq!(a["function"], b["function"]);

    let again = sweep();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("paris: reused"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(json(&out.join("paris/result.json"))["fourier"], a["fourier"]);
}

/// Ctrl-C (SIGINT) stops a sweep after the batch under way: the command says how many inputs
/// are finished and to rerun it, and the rerun continues the input from its store to the values
/// an uninterrupted sweep gives.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_sweep_with_the_advice_to_rerun() {
    if !have_model() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs.jsonl");
    std::fs::write(&inputs, format!("{PARIS_INPUT}\n")).unwrap();
    let sweep = |out: &Path| {
        let mut c = Command::new(SPEX);
        c.args(["sweep", "--inputs"]).arg(&inputs).args(["--budget", "200", "--batch-size", "2", "--log", "quiet"]);
        c.arg("--out").arg(out);
        c
    };
    let (reference, out) = (tmp.path().join("reference"), tmp.path().join("sweep"));
    assert!(sweep(&reference).output().unwrap().status.success());
    let child = sweep(&out).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let store = out.join("paris/samples.store");
    let o = common::cli::interrupt_once_stored(child, &store);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("interrupted: 0 of 1 inputs are finished; rerun the same command to continue"), "{err}");
    let kept = spex::store::Store::read(&store).unwrap().batches().len();
    // The design is the exhaustive table of the 5 words and its 32 held-out repeats: 32 batches.
    assert!((1..32).contains(&kept), "{kept} of 32 batches kept");
    assert!(sweep(&out).output().unwrap().status.success());
    let values = |d: &Path| std::fs::read_to_string(d.join("paris/values.txt")).unwrap();
    assert_eq!(values(&out), values(&reference));
}
