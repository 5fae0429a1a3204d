//! The evaluation pipeline:
//!
//! ```text
//! producer thread ──masks──▶ bounded queue ──▶ worker (calling thread: the value function)
//!                                                  │ values
//!                                                  ▼
//!                               bounded queue ──▶ sink thread (store, progress, streaming decode)
//! ```
//!
//! The producer builds each batch's masks ahead of time (any batch can be built on its own, so a
//! run can skip finished batches or take a shard), the worker only evaluates, and the sink
//! persists and pre-processes results while the next batch is being evaluated. The value
//! function runs on the calling thread, so it needs no `Send` (GPU contexts are thread-bound).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;

use crate::mask::MaskBatch;
use crate::value::{ValueError, ValueFunction};

/// Something that can build the masks of any range of a run on its own.
pub trait MaskSource: Sync {
    /// Masks `start..end` of the run.
    fn masks(&self, start: usize, end: usize) -> MaskBatch;
}

impl MaskSource for MaskBatch {
    fn masks(&self, start: usize, end: usize) -> MaskBatch {
        self.slice(start..end).to_batch()
    }
}

/// One finished batch, as handed to the sink.
#[derive(Clone, Debug)]
pub struct BatchDone {
    /// Batch id: batch `b` holds masks `b·batch_size ..`.
    pub batch: usize,
    /// Index of its first mask.
    pub start: usize,
    /// Its values, one per mask.
    pub values: Vec<f64>,
    /// Seconds the value function took for it.
    pub seconds: f64,
}

/// Why evaluation stopped. Batches finished before the failure have reached the sink.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The value function failed.
    #[error("batch {batch} (masks {start}..{end}): {source}")]
    Value {
        /// Failing batch.
        batch: usize,
        /// Its first mask.
        start: usize,
        /// One past its last mask.
        end: usize,
        /// What the value function reported.
        source: ValueError,
    },
    /// The value function returned the wrong number of values.
    #[error("batch {batch}: the value function returned {found} values for {expected} masks")]
    WrongCount {
        /// Failing batch.
        batch: usize,
        /// Masks in the batch.
        expected: usize,
        /// Values returned.
        found: usize,
    },
    /// The value function returned NaN or infinity.
    #[error("batch {batch}: the value for mask {index} is {value}; values must be finite numbers")]
    NonFinite {
        /// Failing batch.
        batch: usize,
        /// 0-based index of the mask in the whole run.
        index: usize,
        /// The value.
        value: f64,
    },
    /// The sink failed (e.g. the store could not be written).
    #[error("{0}")]
    Sink(String),
    /// The caller asked to stop (Ctrl-C) before the next batch.
    #[error("interrupted")]
    Interrupted,
}

/// How a run went, for `spex bench` and the result's timings.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunStats {
    /// Batches evaluated.
    pub batches: usize,
    /// Masks evaluated.
    pub masks: usize,
    /// Wall-clock seconds of the whole pipeline.
    pub wall_seconds: f64,
    /// Seconds inside the value function.
    pub forward_seconds: f64,
    /// Seconds the worker waited for the producer (0 when masks are always ready).
    pub worker_wait_seconds: f64,
    /// Seconds the worker waited for the sink to accept a result (a full result queue).
    pub sink_wait_seconds: f64,
}

impl RunStats {
    /// Share of wall time not spent in the value function.
    pub fn overhead_share(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            (1.0 - self.forward_seconds / self.wall_seconds).max(0.0)
        } else {
            0.0
        }
    }

    /// Share of wall time the worker waited for masks.
    pub fn worker_idle_share(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            self.worker_wait_seconds / self.wall_seconds
        } else {
            0.0
        }
    }
}

/// Evaluates `batches` (ids into a run of `total` masks cut into batches of `batch_size`) with
/// `f`, handing each result to `sink` on a separate thread. `queue` bounds the batches buffered
/// between stages. Stops at the first error, or before the next batch once `cancel` is set
/// ([`EngineError::Interrupted`]); every batch finished before reaches the sink.
#[allow(clippy::too_many_arguments)]
pub fn run(
    f: &mut dyn ValueFunction,
    source: &dyn MaskSource,
    total: usize,
    batch_size: usize,
    batches: &[usize],
    queue: usize,
    cancel: Option<&AtomicBool>,
    sink: &mut (dyn FnMut(BatchDone) -> Result<(), String> + Send),
) -> Result<RunStats, EngineError> {
    let batch_size = batch_size.max(1);
    let clock = Instant::now();
    let stop = AtomicBool::new(false);
    let (mask_tx, mask_rx) = bounded::<(usize, usize, MaskBatch)>(queue.max(1));
    let (done_tx, done_rx) = bounded::<BatchDone>(queue.max(1));
    let mut stats = RunStats::default();
    let outcome = std::thread::scope(|scope| {
        scope.spawn(|| produce(source, total, batch_size, batches, &stop, mask_tx));
        let sink_thread = scope.spawn(|| consume(done_rx, sink, &stop));
        let worked = work(f, mask_rx, done_tx, (&stop, cancel), &mut stats);
        let sunk = sink_thread.join().expect("sink thread does not panic");
        worked.and(sunk.map_err(EngineError::Sink))
    });
    stats.wall_seconds = clock.elapsed().as_secs_f64();
    outcome.map(|_| stats)
}

fn produce(
    source: &dyn MaskSource,
    total: usize,
    batch_size: usize,
    batches: &[usize],
    stop: &AtomicBool,
    tx: Sender<(usize, usize, MaskBatch)>,
) {
    for &b in batches {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let start = b * batch_size;
        let end = (start + batch_size).min(total);
        if tx.send((b, start, source.masks(start, end))).is_err() {
            return;
        }
    }
}

/// The worker: `stop` is the pipeline's own flag (set by whichever stage ends first), `cancel`
/// the caller's.
fn work(
    f: &mut dyn ValueFunction,
    rx: Receiver<(usize, usize, MaskBatch)>,
    tx: Sender<BatchDone>,
    (stop, cancel): (&AtomicBool, Option<&AtomicBool>),
    stats: &mut RunStats,
) -> Result<(), EngineError> {
    let result = (|| loop {
        let waited = Instant::now();
        let Ok((batch, start, masks)) = rx.recv() else { return Ok(()) };
        stats.worker_wait_seconds += waited.elapsed().as_secs_f64();
        if stop.load(Ordering::Relaxed) {
            return Ok(()); // the sink failed; it reports why
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(EngineError::Interrupted);
        }
        let clock = Instant::now();
        let end = start + masks.len();
        f.begin_batch(batch);
        let values = f.evaluate(masks.as_slice()).map_err(|source| EngineError::Value { batch, start, end, source })?;
        let seconds = clock.elapsed().as_secs_f64();
        stats.forward_seconds += seconds;
        check(batch, start, masks.len(), &values)?;
        stats.batches += 1;
        stats.masks += masks.len();
        let waited = Instant::now();
        if tx.send(BatchDone { batch, start, values, seconds }).is_err() {
            return Ok(());
        }
        stats.sink_wait_seconds += waited.elapsed().as_secs_f64();
    })();
    stop.store(true, Ordering::Relaxed);
    result
}

fn check(batch: usize, start: usize, expected: usize, values: &[f64]) -> Result<(), EngineError> {
    if values.len() != expected {
        return Err(EngineError::WrongCount { batch, expected, found: values.len() });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(EngineError::NonFinite { batch, index: start + i, value: values[i] }),
        None => Ok(()),
    }
}

fn consume(
    rx: Receiver<BatchDone>,
    sink: &mut (dyn FnMut(BatchDone) -> Result<(), String> + Send),
    stop: &AtomicBool,
) -> Result<(), String> {
    while let Ok(done) = rx.recv() {
        if let Err(e) = sink(done) {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::MaskSlice;

    fn masks(rows: usize) -> MaskBatch {
        let text: Vec<String> = (0..rows).map(|i| format!("{:04b}", i % 16)).collect();
        MaskBatch::parse_rows(text.iter().map(String::as_str)).unwrap()
    }

    fn count(s: MaskSlice<'_>) -> Vec<f64> {
        s.iter().map(|r| r.count_kept() as f64).collect()
    }

    #[test]
    fn runs_the_requested_batches_through_the_sink() {
        let m = masks(10);
        let mut f = count;
        let mut seen = vec![];
        let stats = run(&mut f, &m, 10, 4, &[2, 0], 2, None, &mut |b| {
            seen.push((b.batch, b.start, b.values));
            Ok(())
        })
        .unwrap();
        assert_eq!(stats.batches, 2);
        assert_eq!(stats.masks, 6);
        assert_eq!(seen, vec![(2, 8, count(m.slice(8..10))), (0, 0, count(m.slice(0..4)))]);
    }

    #[test]
    fn errors_name_the_batch_and_earlier_batches_reach_the_sink() {
        let m = masks(10);
        let mut calls = 0;
        let mut f = |s: MaskSlice<'_>| {
            calls += 1;
            vec![1.0; if calls == 2 { s.len() - 1 } else { s.len() }]
        };
        let mut sunk = vec![];
        let err = run(&mut f, &m, 10, 4, &[0, 1, 2], 1, None, &mut |b| {
            sunk.push(b.batch);
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "batch 1: the value function returned 3 values for 4 masks");
        assert_eq!(sunk, vec![0]);
        let mut nan = |s: MaskSlice<'_>| vec![f64::NAN; s.len()];
        let err = run(&mut nan, &m, 10, 4, &[1], 1, None, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, EngineError::NonFinite { batch: 1, index: 4, .. }), "{err}");
    }

    #[test]
    fn a_failing_sink_stops_the_run() {
        let m = masks(40);
        let mut f = count;
        let mut evaluated = 0;
        let err = run(&mut f, &m, 40, 4, &(0..10).collect::<Vec<_>>(), 1, None, &mut |b| {
            evaluated += 1;
            if b.batch == 2 {
                Err("disk full".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert!(evaluated <= 3, "the sink kept receiving after failing");
    }

    #[test]
    fn a_cancelled_run_stops_before_its_next_batch() {
        let m = masks(40);
        let cancel = AtomicBool::new(false);
        let mut evaluated = 0;
        let mut f = |s: MaskSlice<'_>| {
            evaluated += 1;
            if evaluated == 3 {
                cancel.store(true, Ordering::Relaxed); // Ctrl-C during the third batch
            }
            count(s)
        };
        let mut sunk = vec![];
        let err = run(&mut f, &m, 40, 4, &(0..10).collect::<Vec<_>>(), 1, Some(&cancel), &mut |b| {
            sunk.push(b.batch);
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, EngineError::Interrupted), "{err}");
        assert_eq!(sunk, vec![0, 1, 2], "the batch under way finishes and is kept");
    }
}
