//! Many inputs overnight: `spex sweep --inputs inputs.jsonl --out DIR` explains every input of a
//! JSON-lines file into its own run directory `DIR/<id>/`, and keeps `DIR/sweep.json`, a summary
//! rewritten after every input.
//!
//! The sweep is resumable as a whole: rerunning the same command skips the inputs whose result
//! is already there for the same model, input and design, continues an interrupted input from its
//! sample store, and starts the rest. One input failing (an empty prompt, a model that does not
//! load) is recorded in the summary and does not stop the others. Each distinct model is loaded
//! once, and let go after the last input that names it. The stages of consecutive inputs
//! overlap ([`run`]).
//!
//! An input line is an [`InputSpec`] as JSON plus an optional `"id"` (default: its 1-based line
//! number, `line-0001`):
//!
//! ```text
//! {"id": "paris", "prompt": "The capital of France is", "max_new_tokens": 1}
//! {"prompt": "I loved the acting but the plot was thin.", "players": "sentences"}
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::model::LoadedModel;
use crate::plan::{DecoderConfig, Plan, PlanSpec};
use crate::report::write_reports;
use crate::rundir::{RunDir, RunInfo, StartMode};
use crate::runner::{self, Progress, RunError, RunOptions, RunOutcome};
use crate::store::Shard;
use crate::transform::Index;
use crate::value::setup::{self, ComputeDevice, InputSpec, PreparedGame};
use crate::value::{ValueError, ValueFunction};

/// One input of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepInput {
    /// Names its run directory; unique within the sweep.
    pub id: String,
    /// What to explain.
    pub spec: InputSpec,
}

/// A bad inputs file.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a valid input.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No input at all.
    #[error("{0} holds no input (one JSON object per line)")]
    Empty(PathBuf),
}

/// Reads a JSON-lines inputs file; blank lines and lines starting with `#` are skipped.
pub fn read_inputs(path: &Path) -> Result<Vec<SweepInput>, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|source| SweepError::Io { path: path.to_path_buf(), source })?;
    let mut inputs: Vec<SweepInput> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| SweepError::Line { path: path.to_path_buf(), line: i + 1, message };
        let input = parse_line(line, i + 1).map_err(bad)?;
        if inputs.iter().any(|other| other.id == input.id) {
            return Err(bad(format!("id {:?} is used twice; ids name run directories", input.id)));
        }
        inputs.push(input);
    }
    if inputs.is_empty() {
        return Err(SweepError::Empty(path.to_path_buf()));
    }
    Ok(inputs)
}

fn parse_line(line: &str, number: usize) -> Result<SweepInput, String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| e.to_string())?;
    let id = match object.remove("id") {
        None => format!("line-{number:04}"),
        Some(serde_json::Value::String(id)) => id,
        Some(other) => return Err(format!("id must be a string, not {other}")),
    };
    let valid =
        !id.is_empty() && !id.starts_with('.') && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !valid {
        return Err(format!("id {id:?} must be letters, digits, '.', '_' or '-' (it names a directory)"));
    }
    if id.starts_with("sweep.") && id.ends_with(".json") {
        return Err(format!("id {id:?} is the name of the sweep's summary file"));
    }
    // The path names the field at fault ("logit_diff: invalid length 1, …").
    let spec = serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(|e| e.to_string())?;
    Ok(SweepInput { id, spec })
}

/// How a sweep runs; the design of each input comes from a function of its player count.
pub struct SweepOptions<'a> {
    /// The sweep directory.
    pub out: PathBuf,
    /// Where the forwards run.
    pub device: ComputeDevice,
    /// Redo every input of this sweep (or shard) from scratch.
    pub force: bool,
    /// This process's share of the inputs (input `k` belongs to shard `k % count`).
    pub shard: Shard,
    /// Masks per batch; `None`: [`ComputeDevice::model_batch_rows`] of the device each input
    /// runs on.
    pub batch_size: Option<usize>,
    /// Sync the stores every this many batches.
    pub sync_every: usize,
    /// The design for an input of `n` players (called from the thread that prepares inputs).
    pub plan_for: &'a (dyn Fn(usize) -> PlanSpec + Sync),
    /// Index of the reports.
    pub index: Index,
    /// Highest order reported (default: the design's degree).
    pub max_order: Option<usize>,
    /// Interactions kept in each summary entry.
    pub top: usize,
    /// Set (Ctrl-C) to stop the sweep after the current batch of the current input; the inputs
    /// after it are not started.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What became of one input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputOutcome {
    /// The input's id.
    pub id: String,
    /// Its run directory.
    pub dir: PathBuf,
    /// `done`, `reused` (finished by an earlier sweep) or `failed`.
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Players.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// What was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<String>,
    /// Faithfulness R² on held-out masks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2: Option<f64>,
    /// The strongest interactions: player names and value.
    #[serde(default)]
    pub top: Vec<(Vec<String>, f64)>,
    /// Seconds spent on the input in this sweep: its setup, evaluation and decoding (which
    /// overlap other inputs', so the sum over inputs exceeds the sweep's time).
    pub seconds: f64,
}

/// What a sweep reports while it runs.
pub enum SweepEvent<'a> {
    /// Input `index` (0-based, of `count` in this shard) starts.
    Start {
        /// Its id.
        id: &'a str,
        /// Position in this shard.
        index: usize,
        /// Inputs in this shard.
        count: usize,
    },
    /// A batch of the current input is stored.
    Batch(&'a Progress),
    /// An input is finished or failed: the current one, or the one before it (an input is
    /// decoded while the next one is evaluated, so its outcome may come after the next one's
    /// `Start`). Outcomes come in input order.
    Finished {
        /// What became of it.
        outcome: &'a InputOutcome,
        /// Seconds the rest of the sweep (this shard) should take at its pace so far: the
        /// seconds per input explained in this sweep (reused and failed ones cost next to
        /// nothing) times the inputs left. `None` until one is explained.
        remaining_seconds: Option<f64>,
    },
}

/// What a sweep did.
#[derive(Debug)]
pub struct SweepReport {
    /// Every input of this shard's outcome, in input order (fewer than [`SweepReport::count`]
    /// when the sweep was stopped).
    pub outcomes: Vec<InputOutcome>,
    /// Inputs of this shard.
    pub count: usize,
    /// The summary file: `out/sweep.json`, or `out/sweep.shard-I-of-K.json` for a shard.
    pub summary: PathBuf,
    /// Why the summary could not be written after the last input, if it could not (every
    /// input's own directory holds its result all the same).
    pub summary_error: Option<std::io::Error>,
}

/// Runs the inputs of this shard in order, rewriting the summary after each. Three stages
/// overlap, so that the device evaluating masks does not wait on the host's work between
/// inputs: the next input is prepared (its model loaded, the input tokenized, its greedy answer
/// generated: [`setup::prepare_on`]) while the current one is evaluated, and the one before is
/// decoded and its reports written meanwhile. Each input's [`SweepEvent::Finished`] comes once
/// it is decoded, between the batches of the next input or after them.
pub fn run(
    inputs: &[SweepInput],
    options: &SweepOptions<'_>,
    events: &mut (dyn FnMut(SweepEvent<'_>) + Send),
) -> SweepReport {
    let mine: Vec<&SweepInput> =
        inputs.iter().enumerate().filter(|(k, _)| options.shard.owns(*k)).map(|(_, i)| i).collect();
    let summary = summary_path(&options.out, options.shard);
    let summary_error = std::fs::create_dir_all(&options.out).err();
    let mut record = Record { outcomes: Vec::new(), count: mine.len(), clock: Instant::now(), summary, summary_error };
    std::thread::scope(|scope| {
        // Rendezvous: the preparing thread runs one input ahead of the evaluation, no more.
        let (ready_tx, ready_rx) = bounded::<InFlight<'_, Prepared>>(0);
        // One input waits for the decoding at most: a slow decoder holds the evaluation back
        // rather than piling up evaluated inputs.
        let (decode_tx, decode_rx) = bounded::<InFlight<'_, Stored>>(1);
        let (done_tx, done_rx) = unbounded::<InputOutcome>();
        scope.spawn(|| prepare_all(&mine, options, ready_tx));
        scope.spawn(move || {
            for job in decode_rx {
                // The receiver lives until every outcome is taken.
                let _ = done_tx.send(job.finish(|input, dir, e| decode_one(input, dir, e, options)));
            }
        });
        for (index, prepared) in ready_rx.iter().enumerate() {
            record.take_done(&done_rx, events);
            events(SweepEvent::Start { id: &prepared.input.id, index, count: mine.len() });
            let evaluated = prepared.then(|_, dir, p| {
                evaluate_one(dir, p, options, &mut |progress| {
                    record.take_done(&done_rx, events);
                    events(SweepEvent::Batch(progress));
                })
            });
            let cancelled = options.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
            if decode_tx.send(evaluated).is_err() || cancelled {
                break;
            }
        }
        drop((ready_rx, decode_tx));
        for outcome in done_rx {
            record.push(outcome, events);
        }
    });
    let Record { outcomes, count, summary, summary_error, .. } = record;
    SweepReport { outcomes, count, summary, summary_error }
}

/// The outcomes so far and the summary file they are written to after each.
struct Record {
    outcomes: Vec<InputOutcome>,
    /// Inputs of this shard.
    count: usize,
    /// Since the sweep began.
    clock: Instant,
    summary: PathBuf,
    summary_error: Option<std::io::Error>,
}

impl Record {
    /// Rewrites the summary with `outcome` and reports it. A summary that cannot be written
    /// loses nothing: every input's own directory holds its result; the next input tries again,
    /// and the last failure is reported.
    fn push(&mut self, outcome: InputOutcome, events: &mut (dyn FnMut(SweepEvent<'_>) + Send)) {
        self.outcomes.push(outcome);
        self.summary_error = write_summary(&self.summary, &self.outcomes).err();
        let explained = self.outcomes.iter().filter(|o| o.status == "done").count();
        let left = self.count - self.outcomes.len();
        let pace = self.clock.elapsed().as_secs_f64() / explained.max(1) as f64;
        let remaining_seconds = (explained > 0).then_some(pace * left as f64);
        events(SweepEvent::Finished { outcome: self.outcomes.last().expect("just pushed"), remaining_seconds });
    }

    /// [`Record::push`]es the outcomes decoded since the last call.
    fn take_done(&mut self, done: &Receiver<InputOutcome>, events: &mut (dyn FnMut(SweepEvent<'_>) + Send)) {
        for outcome in done.try_iter() {
            self.push(outcome, events);
        }
    }
}

/// An input between two stages of the sweep.
struct InFlight<'a, T> {
    input: &'a SweepInput,
    dir: PathBuf,
    /// Seconds spent on it so far, over the stages.
    seconds: f64,
    work: Next<T>,
}

/// What is left to do with an input.
enum Next<T> {
    /// The next stage, on the earlier one's result.
    Stage(T),
    /// Nothing: its outcome is known (reused, or failed).
    Outcome(InputOutcome),
}

impl<'a, T> InFlight<'a, T> {
    /// The next stage: `stage(input, run directory, work)` (timed), its error making the
    /// input's outcome.
    fn then<U>(self, stage: impl FnOnce(&'a SweepInput, &Path, T) -> Result<U, String>) -> InFlight<'a, U> {
        let clock = Instant::now();
        let InFlight { input, dir, seconds, work } = self;
        let work = match work {
            Next::Stage(w) => match stage(input, &dir, w) {
                Ok(next) => Next::Stage(next),
                Err(e) => Next::Outcome(failed(&input.id, &dir, e)),
            },
            Next::Outcome(o) => Next::Outcome(o),
        };
        InFlight { input, dir, seconds: seconds + clock.elapsed().as_secs_f64(), work }
    }

    /// The last stage: the outcome, with the seconds of every stage.
    fn finish(self, stage: impl FnOnce(&'a SweepInput, &Path, T) -> Result<InputOutcome, String>) -> InputOutcome {
        let done = self.then(stage);
        let (Next::Stage(mut outcome) | Next::Outcome(mut outcome)) = done.work;
        outcome.seconds = done.seconds;
        outcome
    }
}

/// An input ready to evaluate: its game set up on the CPU, and its design.
struct Prepared {
    game: PreparedGame,
    plan: Plan,
}

/// An input whose masks are all evaluated and stored.
struct Stored {
    run_dir: RunDir,
    evaluated: runner::Evaluated,
    info: RunInfo,
}

/// The preparing stage: each input of `mine` in turn, handed to the evaluation as it is taken.
fn prepare_all<'a>(mine: &[&'a SweepInput], options: &SweepOptions<'_>, ready: Sender<InFlight<'a, Prepared>>) {
    let mut models = Models::new(mine);
    for (k, &input) in mine.iter().enumerate() {
        if options.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            return;
        }
        let dir = options.out.join(&input.id);
        let reused = if options.force { None } else { finished_earlier(input, &dir, options) };
        let start = InFlight { input, dir, seconds: 0.0, work: reused.map_or(Next::Stage(()), Next::Outcome) };
        let prepared = start.then(|input, _, ()| prepare_one(input, options, &mut models));
        models.release_after(k);
        if ready.send(prepared).is_err() {
            return; // the sweep stopped
        }
    }
}

fn prepare_one(input: &SweepInput, options: &SweepOptions<'_>, models: &mut Models) -> Result<Prepared, String> {
    let (model, identity) = models.get(input.spec.model.as_deref())?;
    let game = setup::prepare_on(model, &identity, &input.spec, options.device).map_err(|e| e.to_string())?;
    let plan = Plan::new((options.plan_for)(game.players.len())).map_err(|e| e.to_string())?;
    Ok(Prepared { game, plan })
}

fn failed(id: &str, dir: &Path, error: String) -> InputOutcome {
    InputOutcome {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        status: "failed".into(),
        error: Some(error),
        n: None,
        scored: None,
        r2: None,
        top: Vec::new(),
        seconds: 0.0,
    }
}

/// Loaded models by path (`None`: the default model), each loaded once per sweep and let go
/// after the last input that names it: a sweep over several large models holds only those
/// still to come (and those the games in flight hold).
struct Models<M = (Arc<LoadedModel>, String)> {
    loaded: HashMap<Option<PathBuf>, M>,
    /// Per model, the position in the sweep of the last input that names it.
    last_use: HashMap<Option<PathBuf>, usize>,
}

impl<M> Models<M> {
    fn new(mine: &[&SweepInput]) -> Self {
        // Later inputs overwrite earlier ones: the last use remains.
        let last_use = mine.iter().enumerate().map(|(k, i)| (i.spec.model.clone(), k)).collect();
        Models { loaded: HashMap::new(), last_use }
    }

    /// Lets go of the models that no input after position `k` names.
    fn release_after(&mut self, k: usize) {
        let last_use = &self.last_use;
        self.loaded.retain(|path, _| last_use.get(path).is_some_and(|&last| last > k));
    }
}

impl Models {
    fn get(&mut self, path: Option<&Path>) -> Result<(Arc<LoadedModel>, String), String> {
        let key = path.map(Path::to_path_buf);
        if let Some(m) = self.loaded.get(&key) {
            return Ok(m.clone());
        }
        let loaded = setup::load_model(path).map_err(|e| e.to_string())?;
        self.loaded.insert(key, loaded.clone());
        Ok(loaded)
    }
}

/// The evaluating stage: places the game on its device and evaluates the missing batches.
fn evaluate_one(
    dir: &Path,
    Prepared { game, plan }: Prepared,
    options: &SweepOptions<'_>,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Stored, String> {
    let game = game.place().map_err(|e| e.to_string())?;
    let info = game.info();
    let mode = if options.force {
        StartMode::Force
    } else if dir.join("samples.store").exists() {
        StartMode::Resume
    } else {
        StartMode::Fresh
    };
    let batch_size = options.batch_size.unwrap_or_else(|| game.device.model_batch_rows());
    let run = RunOptions {
        mode,
        batch_size,
        sync_every: options.sync_every,
        cancel: options.cancel.clone(),
        ..RunOptions::new(dir)
    };
    let mut value = Some(game.value);
    let mut start = || -> Result<Box<dyn ValueFunction>, ValueError> { Ok(value.take().expect("started once")) };
    let (run_dir, evaluated) = runner::evaluate_run(&plan, &info, &run, &mut start, progress).map_err(sweep_error)?;
    Ok(Stored { run_dir, evaluated, info })
}

/// The decoding stage: decodes the stored values and writes the reports.
fn decode_one(
    input: &SweepInput,
    dir: &Path,
    Stored { run_dir, evaluated, info }: Stored,
    options: &SweepOptions<'_>,
) -> Result<InputOutcome, String> {
    let outcome = evaluated.decode(&run_dir, &DecoderConfig::default()).map_err(sweep_error)?;
    let RunOutcome::Complete { explanation, .. } = outcome else { unreachable!("a sweep input is never sharded") };
    let interactions = explanation
        .interactions(options.index, options.max_order.unwrap_or(explanation.degree))
        .map_err(|e| e.to_string())?;
    let result =
        write_reports(&run_dir, &explanation, &interactions, Some(&info), options.top).map_err(|e| e.to_string())?;
    Ok(summarise(&input.id, dir, "done", &result, options.top))
}

/// A run's error as a sweep reports it: a sweep resumes by being rerun as it was (it has no
/// `--resume`).
fn sweep_error(e: RunError) -> String {
    match e {
        RunError::Engine { error, stored, total, .. } => {
            format!("{error} ({stored} of {total} batches are kept; rerun the sweep to continue)")
        }
        RunError::Interrupted { stored, total, .. } => {
            format!("interrupted ({stored} of {total} batches are kept; rerun the sweep to continue)")
        }
        e => e.to_string(),
    }
}

/// The outcome of an input whose result an earlier sweep wrote for the same model, input and
/// design; `None` when it must be (re)computed.
fn finished_earlier(input: &SweepInput, dir: &Path, options: &SweepOptions<'_>) -> Option<InputOutcome> {
    let run = RunInfo::load(dir)?;
    let identity = setup::model_identity(input.spec.model.as_deref());
    // `auto` may have placed it on either device (the model decides, and it is not loaded here).
    let devices: &[ComputeDevice] = match options.device {
        ComputeDevice::Auto => &[ComputeDevice::Cpu, ComputeDevice::Cuda],
        ref one => std::slice::from_ref(one),
    };
    let same_function = devices.iter().any(|&d| run.function == setup::fingerprint(&identity, &input.spec, d));
    let plan = Plan::load(&dir.join("design.json")).ok()?;
    let result: crate::report::ResultFile =
        serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).ok()?).ok()?;
    let planned = Plan::new((options.plan_for)(plan.n())).ok()?;
    let same = same_function
        && planned.to_file() == plan.to_file()
        && result.index == options.index
        && options.max_order.is_none_or(|m| m == result.max_order);
    same.then(|| summarise(&input.id, dir, "reused", &result, options.top))
}

fn summarise(id: &str, dir: &Path, status: &str, result: &crate::report::ResultFile, top: usize) -> InputOutcome {
    let names = |e: &crate::report::Entry| {
        e.names.clone().unwrap_or_else(|| e.players.players().iter().map(|p| format!("#{p}")).collect())
    };
    InputOutcome {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        status: status.into(),
        error: None,
        n: Some(result.n),
        scored: result.scored.clone(),
        r2: result.faithfulness.r2,
        top: result
            .interactions
            .iter()
            .filter(|e| !e.players.is_empty())
            .take(top)
            .map(|e| (names(e), e.value))
            .collect(),
        seconds: 0.0,
    }
}

/// The summary file of `shard` in sweep directory `out`.
fn summary_path(out: &Path, shard: Shard) -> PathBuf {
    out.join(if shard == Shard::ALL {
        "sweep.json".to_string()
    } else {
        format!("sweep.shard-{}-of-{}.json", shard.index, shard.count)
    })
}

/// Writes the summary atomically (a temporary file renamed over it).
fn write_summary(path: &Path, outcomes: &[InputOutcome]) -> std::io::Result<()> {
    let name = path.file_name().expect("the summary has a file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(outcomes).expect("serialises") + "\n")?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SweepInput>, SweepError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inputs.jsonl");
        std::fs::write(&path, text).unwrap();
        read_inputs(&path)
    }

    #[test]
    fn inputs_get_ids_and_defaults() {
        let inputs =
            parse("# comment\n{\"id\": \"a\", \"prompt\": \"x y\", \"players\": \"tokens\"}\n\n{\"prompt\": \"z\"}\n")
                .unwrap();
        assert_eq!(inputs[0].id, "a");
        assert_eq!(inputs[0].spec.players, setup::Players::Tokens);
        assert_eq!(inputs[1].id, "line-0004");
        assert_eq!(inputs[1].spec, InputSpec::new("z"));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line, says) in [
            ("{\"prompt\": \"x\"}\n{\"prompt\": 3}\n", 2, "invalid type"),
            ("{\"prompt\": \"x\", \"player\": \"words\"}", 1, "unknown field `player`"),
            ("{\"id\": \"../x\", \"prompt\": \"x\"}", 1, "names a directory"),
            ("{\"id\": \"sweep.json\", \"prompt\": \"x\"}", 1, "summary file"),
            ("{\"id\": \"sweep.shard-0-of-2.json\", \"prompt\": \"x\"}", 1, "summary file"),
            ("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}", 2, "used twice"),
            ("not json", 1, "expected"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(matches!(&e, SweepError::Line { line: l, .. } if *l == line), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        assert!(matches!(parse("# nothing\n"), Err(SweepError::Empty(_))));
    }

    /// A model is let go after the last input that names it, not before.
    #[test]
    fn models_are_released_after_their_last_input() {
        let inputs: Vec<SweepInput> = ["a", "b", "a", "", "c"]
            .iter()
            .map(|m| SweepInput {
                id: format!("in-{m}"),
                spec: InputSpec { model: (!m.is_empty()).then(|| PathBuf::from(m)), ..InputSpec::new("x") },
            })
            .collect();
        let mine: Vec<&SweepInput> = inputs.iter().collect();
        let mut models = Models::<()>::new(&mine);
        let held = |models: &Models<()>| {
            let mut keys: Vec<String> = models
                .loaded
                .keys()
                .map(|k| k.as_ref().map_or("default".into(), |p| p.display().to_string()))
                .collect();
            keys.sort();
            keys
        };
        // Inputs name a, b, a, the default model, c: a is held until its second use.
        let want: [&[&str]; 5] = [&["a"], &["a"], &[], &[], &[]];
        for (k, input) in mine.iter().enumerate() {
            models.loaded.insert(input.spec.model.clone(), ());
            models.release_after(k);
            assert_eq!(held(&models), want[k], "after input {k}");
        }
    }

    /// The summary is written after every input, and a summary that cannot be written is
    /// reported, not passed over.
    #[test]
    fn the_summary_is_written_or_its_failure_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("no-model");
        let inputs: Vec<SweepInput> = ["a", "b"]
            .map(|id| SweepInput {
                id: id.into(),
                spec: InputSpec { model: Some(missing.clone()), ..InputSpec::new("x") },
            })
            .into();
        let plan_for = |n: usize| PlanSpec::new(n);
        let options = |out: PathBuf| SweepOptions {
            out,
            device: ComputeDevice::Cpu,
            force: false,
            shard: Shard::ALL,
            batch_size: None,
            sync_every: 1,
            plan_for: &plan_for,
            index: Index::Fbii,
            max_order: None,
            top: 3,
            cancel: None,
        };
        let report = run(&inputs, &options(tmp.path().join("ok")), &mut |_| {});
        assert!(report.summary_error.is_none());
        let written: Vec<InputOutcome> =
            serde_json::from_str(&std::fs::read_to_string(&report.summary).unwrap()).unwrap();
        assert_eq!(
            written.iter().map(|o| (o.id.as_str(), o.status.as_str())).collect::<Vec<_>>(),
            [("a", "failed"), ("b", "failed")]
        );
        let blocked = tmp.path().join("blocked");
        std::fs::create_dir_all(blocked.join("sweep.json")).unwrap();
        let report = run(&inputs, &options(blocked), &mut |_| {});
        assert_eq!(report.outcomes.len(), 2);
        assert!(report.summary_error.is_some(), "a directory in the summary's place must be reported");
    }
}
