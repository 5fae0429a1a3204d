//! The evaluation loop: feeds a value function consecutive batches of masks, checks what comes
//! back, and hands every batch to an observer (progress, durable storage) before the next.

use std::time::Instant;

use crate::mask::MaskSlice;
use crate::value::{ValueError, ValueFunction};

/// One finished batch, as shown to the observer.
#[derive(Clone, Copy, Debug)]
pub struct BatchDone<'a> {
    /// Batch id: index of its first mask divided by the batch size.
    pub batch: usize,
    /// Index of its first mask.
    pub start: usize,
    /// Its values, one per mask.
    pub values: &'a [f64],
    /// Masks evaluated so far, this batch included.
    pub done: usize,
    /// Masks in the whole run.
    pub total: usize,
    /// Seconds the value function took for this batch.
    pub seconds: f64,
}

/// Why evaluation stopped. The values received before the failing batch are kept by the caller.
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
    /// The observer failed (e.g. the values file could not be written).
    #[error("after batch {batch}: {message}")]
    Observer {
        /// Batch whose values could not be handed on.
        batch: usize,
        /// What went wrong.
        message: String,
    },
}

/// Evaluates `masks` in batches of `batch_size`, appending to `values`; masks before
/// `values.len()` count as done already (a resumed run). After each batch, `on_batch` sees its
/// values. On error, `values` holds every value received before the failing batch.
pub fn evaluate<F: ValueFunction + ?Sized>(
    f: &mut F,
    masks: MaskSlice<'_>,
    batch_size: usize,
    values: &mut Vec<f64>,
    on_batch: &mut dyn FnMut(&BatchDone<'_>) -> Result<(), String>,
) -> Result<(), EngineError> {
    let batch_size = batch_size.max(1);
    assert!(values.len() <= masks.len(), "more values than masks");
    while values.len() < masks.len() {
        let start = values.len();
        let end = (start + batch_size).min(masks.len());
        let batch = start / batch_size;
        let clock = Instant::now();
        let got = f
            .evaluate(masks.slice(start..end))
            .map_err(|source| EngineError::Value { batch, start, end, source })?;
        let seconds = clock.elapsed().as_secs_f64();
        if got.len() != end - start {
            return Err(EngineError::WrongCount { batch, expected: end - start, found: got.len() });
        }
        if let Some(i) = got.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::NonFinite { batch, index: start + i, value: got[i] });
        }
        let done = BatchDone { batch, start, values: &got, done: end, total: masks.len(), seconds };
        on_batch(&done).map_err(|message| EngineError::Observer { batch, message })?;
        values.extend_from_slice(&got);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::MaskBatch;

    fn masks(rows: usize) -> MaskBatch {
        let text: Vec<String> = (0..rows).map(|i| format!("{:04b}", i % 16)).collect();
        MaskBatch::parse_rows(text.iter().map(String::as_str)).unwrap()
    }

    #[test]
    fn batches_resume_and_report() {
        let m = masks(10);
        let mut f = |s: MaskSlice<'_>| s.iter().map(|r| r.count_kept() as f64).collect::<Vec<_>>();
        let mut values = vec![0.0, 1.0, 1.0]; // masks 0..3 already done
        let mut seen = vec![];
        evaluate(&mut f, m.as_slice(), 4, &mut values, &mut |b| {
            seen.push((b.batch, b.start, b.values.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 3, 4), (1, 7, 3)]);
        let expected: Vec<f64> = m.iter().map(|r| r.count_kept() as f64).collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn bad_batches_are_named_and_earlier_values_kept() {
        let m = masks(10);
        let mut calls = 0;
        let mut f = |s: MaskSlice<'_>| {
            calls += 1;
            if calls == 2 {
                vec![1.0; s.len() - 1]
            } else {
                vec![1.0; s.len()]
            }
        };
        let mut values = vec![];
        let err = evaluate(&mut f, m.as_slice(), 4, &mut values, &mut |_| Ok(())).unwrap_err();
        assert_eq!(err.to_string(), "batch 1: the value function returned 3 values for 4 masks");
        assert_eq!(values.len(), 4);
        let mut nan = |s: MaskSlice<'_>| vec![f64::NAN; s.len()];
        let err = evaluate(&mut nan, m.as_slice(), 4, &mut values, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, EngineError::NonFinite { batch: 1, index: 4, .. }), "{err}");
    }
}
