//! Value functions: what the engine queries. A value function maps a batch of masks to one real
//! value per mask (a logit, a log-probability, a test loss, …). Models, external drivers and
//! demo games all implement the one trait [`ValueFunction`]; the math never sees more than that.
//!
//! # Transformers as value functions
//!
//! [`lm::LmValue`] (causal LMs) and [`encoder::EncoderValue`] (BERT-family encoders) turn one
//! input and a batch of masks into batched forward passes of ablated copies of the input, each
//! row with its own mask (rows of similar lengths share a pass, at most `max_batch_tokens`
//! positions of the full input per pass: [`crate::model::memory::plan_forwards`]):
//!
//! * [`players`]: what the players are — spans of the input ([`players::Unit`]: tokens, words,
//!   sentences, marked byte spans; a fixed prefix/suffix such as a chat template is never
//!   ablated) and attention heads ([`players::HeadPlayer`], query heads under grouped-query
//!   attention) — and how an ablated one is removed ([`players::TokenMode`]: `Attention`,
//!   `Replace`, `Remove`; [`players::HeadMode`]: `Zero`, `Mean`). Mask bits: token players
//!   first, then head players.
//! * [`ablate`]: the one place where masks become per-row token ids, position ids, key
//!   visibility (→ [`crate::model::ops::attention_bias`]) and head gates.
//! * [`lm`]: log-probability of a target continuation, teacher-forced in the same pass (default
//!   target: the model's greedy answer on the unablated prompt), or a logit difference.
//! * [`encoder`]: cosine similarity of the pooled embedding to a reference text's, or a class
//!   logit / log-odds.
//!
//! ```no_run
//! use std::sync::Arc;
//! use spex::mask::MaskBatch;
//! use spex::model::cache::load_default_lm;
//! use spex::value::lm::{LmOptions, LmValue};
//! use spex::value::players::{HeadPlayer, Prompt, Unit};
//! use spex::value::ValueFunction;
//!
//! let lm = Arc::new(load_default_lm()?); // SmolLM2-135M-Instruct, fetched on first use
//! // Words of the question are players; the chat template around them is fixed.
//! let prompt = Prompt::new("What is the capital of France?")
//!     .with_prefix("<|im_start|>user\n")
//!     .with_suffix("<|im_end|>\n<|im_start|>assistant\n")
//!     .with_unit(Unit::Words);
//! // Two attention heads join the six words as players 6 and 7.
//! let heads = vec![HeadPlayer { layer: 3, head: 0 }, HeadPlayer { layer: 20, head: 5 }];
//! let mut f = LmValue::new(lm, &prompt, LmOptions { heads, ..LmOptions::default() })?;
//! println!("{:?} -> {:?}", f.player_labels(), f.target_text());
//! let masks = MaskBatch::parse_rows(["11111111", "11111011", "11111110"])?;
//! let log_p = f.evaluate(masks.as_slice())?; // log p(greedy answer | ablated input), per mask
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`data`] retrains models on subsets of their training examples (data attribution); [`driver`]
//! talks to external programs over the JSON-lines protocol; [`demo`] is the built-in toy.

pub mod ablate;
pub mod data;
pub mod demo;
pub mod driver;
pub mod encoder;
pub mod lm;
pub mod players;
pub mod setup;

use rayon::prelude::*;

use crate::mask::{MaskRef, MaskSlice};

/// Why a value function could not evaluate a batch.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The function failed; the message says why.
    #[error("{0}")]
    Failed(String),
    /// An I/O error while talking to the function (a driver's pipes, a file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A function of masks, evaluated a batch at a time.
///
/// Implementations return exactly one finite value per mask, in order; the engine checks both
/// and reports a violation as an error naming the batch. Closures `FnMut(MaskSlice) -> Vec<f64>`
/// implement this trait; wrap a per-mask closure in [`PerMask`].
pub trait ValueFunction {
    /// Evaluates `masks`, returning one value per row.
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError>;

    /// Called by the engine before [`evaluate`](Self::evaluate) with the id of the batch about to
    /// be evaluated (batch `b` holds masks `b·batch_size ..` of the run). Most value functions
    /// ignore it; the driver protocol uses it as the request id.
    fn begin_batch(&mut self, _batch: usize) {}
}

impl<F> ValueFunction for F
where
    F: FnMut(MaskSlice<'_>) -> Vec<f64>,
{
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
        Ok(self(masks))
    }
}

/// Adapts a per-mask function `Fn(MaskRef) -> f64` into a [`ValueFunction`], evaluating the rows
/// of a batch in parallel.
///
/// ```
/// use spex::value::{PerMask, ValueFunction};
/// use spex::mask::MaskBatch;
/// let mut f = PerMask(|m: spex::mask::MaskRef<'_>| m.count_kept() as f64);
/// let masks = MaskBatch::parse_rows(["110", "001"]).unwrap();
/// assert_eq!(f.evaluate(masks.as_slice()).unwrap(), vec![2.0, 1.0]);
/// ```
pub struct PerMask<F>(pub F);

impl<F> ValueFunction for PerMask<F>
where
    F: Fn(MaskRef<'_>) -> f64 + Sync,
{
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
        Ok((0..masks.len()).into_par_iter().map(|i| (self.0)(masks.row(i))).collect())
    }
}

/// One value function per device (multi-GPU on one box): each batch of masks is cut into one
/// contiguous part per worker, the parts are evaluated at the same time on one thread per
/// worker, and the values are joined in mask order. The workers must compute the same function
/// (copies of one game on different devices); the first error, by worker, is returned.
pub struct PerDevice<W> {
    workers: Vec<W>,
}

impl<W: ValueFunction + Send> PerDevice<W> {
    /// The workers, one per device, in device order; there must be at least one.
    pub fn new(workers: Vec<W>) -> Result<Self, ValueError> {
        if workers.is_empty() {
            return Err(ValueError::Failed("no device to evaluate on".into()));
        }
        Ok(PerDevice { workers })
    }

    /// Devices in use.
    pub fn devices(&self) -> usize {
        self.workers.len()
    }
}

impl<W: ValueFunction + Send> ValueFunction for PerDevice<W> {
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
        let per = masks.len().div_ceil(self.workers.len()).max(1);
        let results: Vec<Result<Vec<f64>, ValueError>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .enumerate()
                .filter(|(d, _)| d * per < masks.len())
                .map(|(d, w)| {
                    let part = masks.slice(d * per..((d + 1) * per).min(masks.len()));
                    s.spawn(move || w.evaluate(part))
                })
                .collect();
            // A worker's panic is that device's error, not the caller's crash.
            let joined = |(d, h): (usize, std::thread::ScopedJoinHandle<'_, _>)| {
                h.join().unwrap_or_else(|_| Err(ValueError::Failed(format!("the worker of device {d} panicked"))))
            };
            handles.into_iter().enumerate().map(joined).collect()
        });
        let mut out = Vec::with_capacity(masks.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    fn begin_batch(&mut self, batch: usize) {
        self.workers.iter_mut().for_each(|w| w.begin_batch(batch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::MaskBatch;

    /// Worker `id`: logs `(id, rows)` of each part it gets and returns the rows' kept counts.
    fn worker(log: &std::sync::Mutex<Vec<(usize, usize)>>, id: usize) -> impl ValueFunction + Send + '_ {
        move |m: MaskSlice<'_>| {
            log.lock().unwrap().push((id, m.len()));
            m.iter().map(|r| r.count_kept() as f64).collect()
        }
    }

    #[test]
    fn parts_are_contiguous_and_joined_in_mask_order() {
        let rows: Vec<String> = (0..7).map(|i| format!("{:03b}", i)).collect();
        let masks = MaskBatch::parse_rows(rows.iter().map(String::as_str)).unwrap();
        let log = std::sync::Mutex::new(Vec::new());
        let mut f = PerDevice::new((0..3).map(|d| worker(&log, d)).collect()).unwrap();
        assert_eq!(f.devices(), 3);
        let want: Vec<f64> = masks.iter().map(|r| r.count_kept() as f64).collect();
        assert_eq!(f.evaluate(masks.as_slice()).unwrap(), want);
        let mut parts = log.lock().unwrap().clone();
        parts.sort();
        assert_eq!(parts, [(0, 3), (1, 3), (2, 1)]);
        // Fewer masks than devices: the idle workers get nothing, not an empty batch.
        log.lock().unwrap().clear();
        assert_eq!(f.evaluate(masks.as_slice().slice(0..2)).unwrap(), want[..2]);
        assert_eq!(log.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_worker_error_or_panic_is_the_batch_error() {
        let masks = MaskBatch::parse_rows(["10", "01", "11"]).unwrap();
        let fails = |m: MaskSlice<'_>| -> Result<Vec<f64>, ValueError> {
            Err(ValueError::Failed(format!("device out of luck on {} rows", m.len())))
        };
        let ok = |m: MaskSlice<'_>| -> Result<Vec<f64>, ValueError> { Ok(vec![1.0; m.len()]) };
        struct Worker(fn(MaskSlice<'_>) -> Result<Vec<f64>, ValueError>);
        impl ValueFunction for Worker {
            fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
                (self.0)(masks)
            }
        }
        let mut f = PerDevice::new(vec![Worker(ok), Worker(fails)]).unwrap();
        assert_eq!(f.evaluate(masks.as_slice()).unwrap_err().to_string(), "device out of luck on 1 rows");
        let mut f = PerDevice::new(vec![Worker(ok), Worker(|_| panic!("boom"))]).unwrap();
        assert_eq!(f.evaluate(masks.as_slice()).unwrap_err().to_string(), "the worker of device 1 panicked");
        assert!(PerDevice::<Worker>::new(Vec::new()).is_err());
    }
}
