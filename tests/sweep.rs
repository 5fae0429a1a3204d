//! `spex::sweep` on a tiny random Llama: its stages overlap (the next input prepared and the one
//! before decoded while one is evaluated), and what each input gets must still equal a run of
//! its own, with the events and the summary in input order.

mod models_common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use models_common::{byte_bpe, llama_weights, write_llama_hf, LlamaSpec};
use serde_json::Value;
use spex::plan::{DecoderConfig, Plan, PlanSpec};
use spex::report::{write_reports, ResultFile};
use spex::runner::{self, RunOptions, RunOutcome};
use spex::store::Shard;
use spex::sweep::{self, InputOutcome, SweepEvent, SweepInput, SweepOptions};
use spex::transform::Index;
use spex::value::setup::{self, ComputeDevice, InputSpec};
use spex::value::{ValueError, ValueFunction};

const BATCH: usize = 16;

/// Every input's design: all 2^n masks (n ≤ 6 here), so that the test is quick and exact.
fn plan_for(n: usize) -> PlanSpec {
    PlanSpec::with_defaults(n, None, Some(64))
}

fn options<'a>(out: &Path, plan_for: &'a (dyn Fn(usize) -> PlanSpec + Sync)) -> SweepOptions<'a> {
    SweepOptions {
        out: out.to_path_buf(),
        device: ComputeDevice::Cpu,
        force: false,
        shard: Shard::ALL,
        batch_size: Some(BATCH),
        sync_every: 1,
        plan_for,
        index: Index::Fbii,
        max_order: None,
        top: 3,
        cancel: None,
    }
}

fn tiny_model(dir: &Path) -> PathBuf {
    let tok = byte_bpe();
    let spec = LlamaSpec::tiny(tok.tokens.len());
    write_llama_hf(dir, &spec, &llama_weights(&spec, 7), &tok);
    dir.to_path_buf()
}

fn input(id: &str, model: &Path, spec: InputSpec) -> SweepInput {
    SweepInput { id: id.into(), spec: InputSpec { model: Some(model.to_path_buf()), ..spec } }
}

/// What the events said, one line each: "start a", "batch a", "finished a failed"; and the
/// sweep's time left after each outcome.
fn sweep_logged(inputs: &[SweepInput], options: &SweepOptions<'_>) -> (sweep::SweepReport, Vec<String>) {
    sweep_timed(inputs, options).0
}

fn sweep_timed(
    inputs: &[SweepInput],
    options: &SweepOptions<'_>,
) -> ((sweep::SweepReport, Vec<String>), Vec<Option<f64>>) {
    let (mut log, mut remaining) = (Vec::new(), Vec::new());
    let mut current = String::new();
    let report = sweep::run(inputs, options, &mut |e| match e {
        SweepEvent::Start { id, .. } => {
            current = id.to_string();
            log.push(format!("start {id}"));
        }
        SweepEvent::Batch(_) => log.push(format!("batch {current}")),
        SweepEvent::Finished { outcome: o, remaining_seconds } => {
            log.push(format!("finished {} {}", o.id, o.status));
            remaining.push(remaining_seconds);
        }
    });
    ((report, log), remaining)
}

/// The input explained by a run of its own (`runner::run`, as `spex explain` does): its result
/// file as JSON.
fn run_alone(input: &SweepInput, out: &Path) -> Value {
    let (model, identity) = setup::load_model(input.spec.model.as_deref()).unwrap();
    let game = setup::build(model, &identity, &input.spec).unwrap();
    let plan = Plan::new(plan_for(game.players.len())).unwrap();
    let info = game.info();
    let mut value = Some(game.value);
    let mut start = || -> Result<Box<dyn ValueFunction>, ValueError> { Ok(value.take().unwrap()) };
    let run = RunOptions { batch_size: BATCH, ..RunOptions::new(out) };
    let (dir, outcome) = runner::run(&plan, &info, &run, &mut start, &DecoderConfig::default(), &mut |_| {}).unwrap();
    let RunOutcome::Complete { explanation, .. } = outcome else { panic!("not sharded") };
    let interactions = explanation.interactions(Index::Fbii, explanation.degree).unwrap();
    serde_json::to_value(write_reports(&dir, &explanation, &interactions, Some(&info), 3).unwrap()).unwrap()
}

/// The same interactions with the same values, up to the last bits of the f64 sums (the
/// decoders' parallel reductions may add in another order).
fn assert_same_terms(a: &Value, b: &Value) {
    let terms = |v: &Value| -> Vec<(Value, f64)> {
        v.as_array().unwrap().iter().map(|e| (e["players"].clone(), e["value"].as_f64().unwrap())).collect()
    };
    let (a, b) = (terms(a), terms(b));
    assert_eq!(a.len(), b.len());
    let scale = a.iter().map(|t| t.1.abs()).fold(1.0, f64::max);
    for (x, y) in a.iter().zip(&b) {
        assert!(x.0 == y.0 && (x.1 - y.1).abs() <= 1e-12 * scale, "{x:?} vs {y:?}");
    }
}

fn result_json(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap()
}

fn statuses(outcomes: &[InputOutcome]) -> Vec<(&str, &str)> {
    outcomes.iter().map(|o| (o.id.as_str(), o.status.as_str())).collect()
}

#[test]
fn a_sweep_gives_each_input_what_a_run_of_its_own_gives_in_input_order() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let inputs = [
        input("a", &model, InputSpec { max_new_tokens: Some(2), ..InputSpec::new("the cat sat on") }),
        input("blank", &model, InputSpec::new(" ")),
        input("lost", &tmp.path().join("no-model"), InputSpec::new("the dog")),
        input("b", &model, InputSpec { prefix: "hello: ".into(), ..InputSpec::new("the dog sat on the mat") }),
        input("c", &model, InputSpec { target: Some(" mat".into()), ..InputSpec::new("a cat on") }),
    ];
    let out = tmp.path().join("sweep");
    let ((report, log), remaining) = sweep_timed(&inputs, &options(&out, &plan_for));
    let expected = [("a", "done"), ("blank", "failed"), ("lost", "failed"), ("b", "done"), ("c", "done")];
    // The time left: after the first input, its time for each of the 4 left; none at the end.
    let elapsed = report.outcomes[0].seconds;
    assert!(remaining[0].is_some_and(|r| r >= 4.0 * elapsed * 0.99), "{remaining:?}, first input {elapsed} s");
    assert_eq!(remaining[4], Some(0.0));
    assert_eq!(statuses(&report.outcomes), expected);
    assert!(report.outcomes[1].error.as_deref().unwrap().contains("empty"), "{:?}", report.outcomes[1]);
    assert!(report.outcomes[2].error.as_deref().unwrap().contains("no-model"), "{:?}", report.outcomes[2]);

    // Events: starts and outcomes in input order, each outcome after its start, and every
    // batch inside the input it belongs to (after its start, before the next start).
    let at = |line: &str| log.iter().position(|l| l == line).unwrap_or_else(|| panic!("no {line:?} in {log:?}"));
    for (k, (id, status)) in expected.iter().enumerate() {
        assert!(at(&format!("start {id}")) < at(&format!("finished {id} {status}")), "{log:?}");
        if let Some((next, _)) = expected.get(k + 1) {
            assert!(at(&format!("start {id}")) < at(&format!("start {next}")), "{log:?}");
            assert!(at(&format!("finished {id} {status}")) < at(&format!("finished {next} {}", expected[k + 1].1)));
        }
    }
    for (k, line) in log.iter().enumerate().filter(|(_, l)| l.starts_with("batch ")) {
        let id = &line["batch ".len()..];
        let next_start = log[k..].iter().position(|l| l.starts_with("start ")).map(|p| p + k);
        assert!(at(&format!("start {id}")) < k && next_start.is_none_or(|s| s > k), "{log:?}");
    }
    let masks_b = Plan::new(plan_for(6)).unwrap().total_masks();
    assert_eq!(log.iter().filter(|l| *l == "batch b").count(), masks_b.div_ceil(BATCH), "{log:?}");

    let summary: Vec<InputOutcome> = serde_json::from_str(&std::fs::read_to_string(&report.summary).unwrap()).unwrap();
    assert_eq!(statuses(&summary), expected);

    for (k, id) in [(0, "a"), (3, "b"), (4, "c")] {
        let alone = run_alone(&inputs[k], &tmp.path().join(format!("alone-{id}")));
        let swept = result_json(&out.join(id));
        let values = |d: &Path| std::fs::read_to_string(d.join("values.txt")).unwrap();
        assert_eq!(values(&out.join(id)), values(&tmp.path().join(format!("alone-{id}"))), "{id}: the values");
        for field in ["players", "n", "scored"] {
            assert_eq!(swept[field], alone[field], "{id}: {field}");
        }
        for extreme in ["all_ablated", "all_kept"] {
            let v = |r: &Value| r["measured"][extreme].as_f64().unwrap();
            assert!((v(&swept) - v(&alone)).abs() < 1e-12 * v(&alone).abs().max(1.0), "{id}: {extreme}");
        }
        assert_same_terms(&swept["fourier"], &alone["fourier"]);
        assert_same_terms(&swept["interactions"], &alone["interactions"]);
    }

    // Rerun: the finished inputs are reused with the same summary entries, the failed ones
    // fail again.
    let ((again, _), remaining) = sweep_timed(&inputs, &options(&out, &plan_for));
    let reused = [("a", "reused"), ("blank", "failed"), ("lost", "failed"), ("b", "reused"), ("c", "reused")];
    assert_eq!(statuses(&again.outcomes), reused);
    assert!(remaining.iter().all(Option::is_none), "nothing explained, no pace: {remaining:?}");
    for k in [0, 3, 4] {
        assert_eq!((&again.outcomes[k].top, again.outcomes[k].r2), (&report.outcomes[k].top, report.outcomes[k].r2));
    }
}

/// Ctrl-C during an input stops the sweep there: that input's batches so far are kept (a
/// rerun continues it), and the inputs after it are neither run nor started, though the next
/// one may have been prepared meanwhile.
#[test]
fn a_cancelled_sweep_stops_at_the_input_under_way() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let inputs: Vec<SweepInput> = ["the cat sat", "the dog sat on the mat", "a cat on the mat"]
        .iter()
        .enumerate()
        .map(|(k, p)| input(&format!("in{k}"), &model, InputSpec { max_new_tokens: Some(1), ..InputSpec::new(*p) }))
        .collect();
    let out = tmp.path().join("sweep");
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = SweepOptions { cancel: Some(cancel.clone()), ..options(&out, &plan_for) };
    let mut log = Vec::new();
    let report = sweep::run(&inputs, &opts, &mut |e| match e {
        SweepEvent::Start { id, .. } => log.push(format!("start {id}")),
        SweepEvent::Batch(p) => {
            // Stop during the second input, after its first batch.
            if log.contains(&"start in1".to_string()) && p.done == BATCH {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        SweepEvent::Finished { outcome: o, .. } => log.push(format!("finished {} {}", o.id, o.status)),
    });
    assert_eq!(statuses(&report.outcomes), [("in0", "done"), ("in1", "failed")]);
    assert_eq!(report.count, 3, "the shard's inputs, not only those started");
    assert!(report.outcomes[1].error.as_deref().unwrap().contains("interrupted"), "{:?}", report.outcomes[1]);
    assert!(!log.contains(&"start in2".to_string()), "{log:?}");
    assert!(!out.join("in2").exists(), "a prepared input writes nothing before it runs");

    // The rerun reuses the first, continues the second from its store, runs the third.
    let (again, _) = sweep_logged(&inputs, &options(&out, &plan_for));
    assert_eq!(statuses(&again.outcomes), [("in0", "reused"), ("in1", "done"), ("in2", "done")]);
    let alone = run_alone(&inputs[1], &tmp.path().join("alone"));
    assert_same_terms(&result_json(&out.join("in1"))["fourier"], &alone["fourier"]);
}

/// `ResultFile` is what `result.json` holds: the sweep's reports are the library's.
#[test]
fn the_summary_entries_come_from_the_result_files() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let inputs = [input("a", &model, InputSpec { max_new_tokens: Some(1), ..InputSpec::new("the cat sat on") })];
    let out = tmp.path().join("sweep");
    let (report, _) = sweep_logged(&inputs, &options(&out, &plan_for));
    let result: ResultFile = serde_json::from_value(result_json(&out.join("a"))).unwrap();
    let o = &report.outcomes[0];
    assert_eq!((o.n, o.r2, o.scored.clone()), (Some(result.n), result.faithfulness.r2, result.scored.clone()));
    assert!(o.seconds > 0.0, "the seconds of every stage are counted");
}
