//! Faithfulness: how well a recovered representation predicts the function on masks it was not
//! fitted to, as R² on held-out uniformly random masks (the SPEX papers' measure).

use serde::{Deserialize, Serialize};

use crate::mask::MaskSlice;
use crate::transform::{Basis, Sparse};

/// A faithfulness score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Faithfulness {
    /// `1 − ‖y − ŷ‖² / ‖y − ȳ‖²` on the held-out masks; `None` when the held-out values are all
    /// equal (R² is undefined there) or there are none.
    pub r2: Option<f64>,
    /// Number of held-out masks.
    pub masks: usize,
    /// Mean squared error of the prediction on the held-out masks (defined even when R² is not).
    pub mse: Option<f64>,
}

/// `⌊log2 max|v|⌋`, kept within ±1000 so that `2^±exponent` is a normal number; `None` when
/// every value is 0. Dividing by that power of two is exact, which lets R² and the decoders
/// ([`crate::plan::Plan::decode_streamed`]) work in units where nothing overflows or vanishes.
pub(crate) fn largest_power_of_two(values: &[f64]) -> Option<i32> {
    let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    (largest > 0.0).then(|| (largest.log2().floor() as i32).clamp(-1000, 1000))
}

/// R² of `predicted` against `actual`; `None` if `actual` has no variance or is empty.
pub fn r2(predicted: &[f64], actual: &[f64]) -> Option<f64> {
    assert_eq!(predicted.len(), actual.len(), "r2 needs one prediction per value");
    if actual.is_empty() {
        return None;
    }
    // R² does not change with the units: in units of the largest value's power of two (an exact
    // division), squares neither overflow (values of 1e200) nor vanish below the threshold
    // (values of 1e-20).
    let unit = 2f64.powi(largest_power_of_two(actual)?);
    let mean = actual.iter().map(|y| y / unit).sum::<f64>() / actual.len() as f64;
    let total: f64 = actual.iter().map(|y| (y / unit - mean).powi(2)).sum();
    let residual: f64 = predicted.iter().zip(actual).map(|(p, y)| ((y - p) / unit).powi(2)).sum();
    // Variance indistinguishable from rounding error of the mean: R² is undefined.
    if total <= 1e-24 * actual.len() as f64 * mean * mean {
        return None;
    }
    Some(1.0 - residual / total)
}

/// Scores `repr` on held-out `masks` with true `values`.
pub fn faithfulness<B: Basis>(repr: &Sparse<B>, masks: MaskSlice<'_>, values: &[f64]) -> Faithfulness {
    Faithfulness::from_predictions(&repr.eval_batch(masks), values)
}

impl Faithfulness {
    /// The score of `predicted` values against the true `values` of the same held-out masks.
    pub fn from_predictions(predicted: &[f64], values: &[f64]) -> Self {
        let mse = (!values.is_empty())
            .then(|| predicted.iter().zip(values).map(|(p, y)| (y - p).powi(2)).sum::<f64>() / values.len() as f64);
        Faithfulness { r2: r2(predicted, values), masks: values.len(), mse }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r2_known_values() {
        assert_eq!(r2(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), Some(1.0));
        assert_eq!(r2(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]), Some(0.0));
        assert_eq!(r2(&[0.0, 0.0], &[5.0, 5.0]), None);
        assert_eq!(r2(&[0.0, 0.0], &[0.0, 0.0]), None);
        assert_eq!(r2(&[], &[]), None);
        // The same at any scale: tiny, huge, and a constant with rounding noise.
        for unit in [1e-100, 1e-20, 1e200] {
            let r = r2(&[2.0 * unit, 2.0 * unit, 2.0 * unit], &[unit, 2.0 * unit, 3.0 * unit]).unwrap();
            assert!(r.abs() < 1e-12, "{unit}: {r}");
        }
        assert_eq!(r2(&[1.0, 1.0], &[1e20, 1e20 * (1.0 + f64::EPSILON)]), None);
    }
}
