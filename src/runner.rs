//! Runs a plan into a run directory: opens (or resumes) its sample store, evaluates the missing
//! batches of this shard through the [`crate::engine`] pipeline while storing each one
//! durably, and decodes once every batch is in. `spex explain`, `spex sweep` and `spex merge`
//! are thin layers over this module.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::{self, EngineError, RunStats};
use crate::explain::{Collector, ExplainError, Explanation};
use crate::plan::{DecoderConfig, Plan};
use crate::rundir::{RunDir, RunDirError, RunInfo, StartMode};
use crate::store::{Shard, Store};
use crate::value::{ValueError, ValueFunction};

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run directory.
    pub out: PathBuf,
    /// What to do with a run already there.
    pub mode: StartMode,
    /// The share of batches to compute.
    pub shard: Shard,
    /// Masks per batch.
    pub batch_size: usize,
    /// Sync the store to disk every this many batches.
    pub sync_every: usize,
    /// Batches buffered between pipeline stages.
    pub queue: usize,
    /// Set (from a Ctrl-C handler, another thread) to stop before the next batch: the run ends
    /// with [`RunError::Interrupted`], every batch before it stored.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl RunOptions {
    /// Defaults: the whole run, batches of 256, synced after every batch, a queue of 4.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        RunOptions {
            out: out.into(),
            mode: StartMode::Fresh,
            shard: Shard::ALL,
            batch_size: 256,
            sync_every: 1,
            queue: 4,
            cancel: None,
        }
    }
}

/// Progress after each stored batch.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// The batch just stored.
    pub batch: usize,
    /// Masks of this run (or shard) stored so far, earlier runs included.
    pub done: usize,
    /// Masks of this run (or shard) in all.
    pub total: usize,
    /// Masks evaluated per second in this session so far.
    pub masks_per_second: f64,
}

/// How a run ended.
pub enum RunOutcome {
    /// Every batch is in and the run is decoded.
    Complete {
        /// The explanation.
        explanation: Box<Explanation>,
        /// Pipeline statistics of this session (zero when nothing was left to evaluate).
        stats: RunStats,
    },
    /// This shard's batches are all stored; `spex merge` decodes once every shard is done.
    ShardDone {
        /// Pipeline statistics of this session.
        stats: RunStats,
        /// The shard's store.
        store: PathBuf,
    },
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The run directory or its store is unusable.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// The value function could not be started.
    #[error("{0}")]
    Start(ValueError),
    /// Evaluation stopped; what was stored before is kept.
    #[error(
        "{error}\n{stored} of {total} batches are kept in {}; fix the problem and run the same command \
         with --resume to continue",
        store.display()
    )]
    Engine {
        /// Why.
        error: EngineError,
        /// Batches safely stored.
        stored: usize,
        /// Batches of the run (or shard).
        total: usize,
        /// The store.
        store: PathBuf,
    },
    /// The run was stopped (Ctrl-C) between batches; what was stored before is kept.
    #[error(
        "interrupted: {stored} of {total} batches are kept in {}; run the same command with --resume to continue",
        store.display()
    )]
    Interrupted {
        /// Batches safely stored.
        stored: usize,
        /// Batches of the run (or shard).
        total: usize,
        /// The store.
        store: PathBuf,
    },
    /// Decoding failed.
    #[error(transparent)]
    Explain(#[from] ExplainError),
}

/// Runs `plan` (queried through the value function `start` builds, only if anything is left to
/// evaluate) into `options.out`: [`evaluate_run`], then [`Evaluated::decode`].
pub fn run(
    plan: &Plan,
    info: &RunInfo,
    options: &RunOptions,
    start: &mut dyn FnMut() -> Result<Box<dyn ValueFunction>, ValueError>,
    decoder: &DecoderConfig,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<(RunDir, RunOutcome), RunError> {
    let (dir, evaluated) = evaluate_run(plan, info, options, start, progress)?;
    let outcome = evaluated.decode(&dir, decoder)?;
    Ok((dir, outcome))
}

/// A run (or shard) whose batches are all evaluated and stored, not yet decoded: a sweep
/// decodes one input while the next one runs.
pub struct Evaluated {
    plan: Plan,
    collector: Collector,
    shard: Shard,
    stats: RunStats,
    store: PathBuf,
}

/// The evaluating half of [`run`]: opens (or resumes) the run directory and evaluates the
/// missing batches of this shard.
pub fn evaluate_run(
    plan: &Plan,
    info: &RunInfo,
    options: &RunOptions,
    start: &mut dyn FnMut() -> Result<Box<dyn ValueFunction>, ValueError>,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<(RunDir, Evaluated), RunError> {
    let begun = RunDir::plan_begun_without_probes(&options.out, plan, options.mode);
    let plan = begun.unwrap_or_else(|| plan.clone());
    let (dir, mut store) =
        RunDir::open(&options.out, &plan, info, options.batch_size, options.shard, options.mode, options.sync_every)?;
    let mut collector = Collector::new(&plan);
    for (&b, values) in store.batches() {
        collector.push(b * options.batch_size, values);
    }
    let missing = store.missing();
    let mut stats = RunStats::default();
    if !missing.is_empty() {
        let mut f = start().map_err(RunError::Start)?;
        stats = evaluate(&mut *f, &plan, options, &missing, &mut store, &mut collector, progress)?;
    }
    let store = store.path().to_path_buf();
    Ok((dir, Evaluated { plan, collector, shard: options.shard, stats, store }))
}

impl Evaluated {
    /// The decoding half of [`run`]: decodes into `dir` (the run directory [`evaluate_run`]
    /// opened), or reports the shard done where other shards' batches are still missing.
    pub fn decode(self, dir: &RunDir, decoder: &DecoderConfig) -> Result<RunOutcome, RunError> {
        let Evaluated { plan, collector, shard, stats, store } = self;
        if shard != Shard::ALL && !collector.is_complete() {
            return Ok(RunOutcome::ShardDone { stats, store });
        }
        dir.write_values(collector.values())?;
        let mut explanation = collector.explain(&plan, decoder)?;
        explanation.timings.evaluate_seconds = stats.wall_seconds;
        explanation.timings.total_seconds += stats.wall_seconds;
        Ok(RunOutcome::Complete { explanation: Box::new(explanation), stats })
    }
}

fn evaluate(
    f: &mut dyn ValueFunction,
    plan: &Plan,
    options: &RunOptions,
    missing: &[usize],
    store: &mut Store,
    collector: &mut Collector,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<RunStats, RunError> {
    let header = store.header().clone();
    let total: usize = header.owned_batches().map(|b| header.batch_len(b)).sum();
    let mut done = total - missing.iter().map(|&b| header.batch_len(b)).sum::<usize>();
    let (clock, mut session) = (Instant::now(), 0usize);
    let cancel = options.cancel.as_deref();
    let outcome =
        engine::run(f, plan, plan.total_masks(), options.batch_size, missing, options.queue, cancel, &mut |batch| {
            store.append(batch.batch, &batch.values).map_err(|e| e.to_string())?;
            collector.push(batch.start, &batch.values);
            done += batch.values.len();
            session += batch.values.len();
            let masks_per_second = session as f64 / clock.elapsed().as_secs_f64().max(1e-9);
            progress(&Progress { batch: batch.batch, done, total, masks_per_second });
            Ok(())
        });
    let synced = store.sync();
    let stored = store.batches().len();
    let path = store.path().to_path_buf();
    let owned = header.owned_batches().count();
    let stats = outcome.map_err(|error| match error {
        EngineError::Interrupted => RunError::Interrupted { stored, total: owned, store: path },
        error => RunError::Engine { error, stored, total: owned, store: path },
    })?;
    synced.map_err(RunDirError::from)?;
    Ok(stats)
}

/// Why the stores in `dir` cannot be merged: the shard owning batch `missing` has no store, or
/// has not finished.
fn merge_gap(dir: &std::path::Path, stores: &[Store], missing: usize) -> String {
    let header = stores[0].header();
    let owner = Shard { index: missing % header.shard.count, count: header.shard.count };
    match stores.iter().find(|s| s.header().shard == owner) {
        Some(store) => format!(
            "shard {owner} is unfinished: {} of its {} batches are in {}; continue it (its command with --resume), \
             then merge",
            store.batches().len(),
            store.header().owned_batches().count(),
            store.path().display()
        ),
        None => format!(
            "shard {owner} has not started: {} holds no store of it; run it (the other shards' command with \
             --shard {owner}), then merge",
            dir.display()
        ),
    }
}

/// Decodes a sharded run from the shard stores in `dir`, once they hold every batch together.
pub fn merge(dir: &std::path::Path, decoder: &DecoderConfig) -> Result<(RunDir, Explanation), RunError> {
    let (run, stores) = RunDir::open_shards(dir)?;
    let plan = Plan::from_file(&stores[0].header().plan).map_err(ExplainError::from)?;
    let refs: Vec<&Store> = stores.iter().collect();
    let values = Store::assemble(&refs).map_err(|missing| RunDirError::Merge(merge_gap(dir, &stores, missing)))?;
    run.write_values(&values)?;
    let mut collector = Collector::new(&plan);
    collector.push(0, &values);
    Ok((run, collector.explain(&plan, decoder)?))
}
