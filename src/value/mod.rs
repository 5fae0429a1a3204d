//! Value functions: what the engine queries. A value function maps a batch of masks to one real
//! value per mask (a logit, a log-probability, a test loss, …). Models, external drivers and
//! demo games all implement the one trait [`ValueFunction`]; the math never sees more than that.

pub mod ablate;
pub mod demo;
pub mod driver;
pub mod encoder;
pub mod lm;
pub mod players;

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
