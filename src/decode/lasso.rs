//! The baseline everyone compares to: LASSO regression of uniformly sampled values on every
//! Fourier basis function up to a fixed order, with the penalty chosen by K-fold
//! cross-validation along a regularisation path (coordinate descent with active sets, warm
//! starts, parallel gradient checks).

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::DecodeError;
use crate::mask::MaskSlice;
use crate::subset::Subset;
use crate::transform::Fourier;

/// Settings of the LASSO baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LassoConfig {
    /// Highest interaction order in the regression; `None` = 2 where the design matrix fits in
    /// [`max_entries`](Self::max_entries), else 1.
    pub max_order: Option<usize>,
    /// Cross-validation folds for choosing the penalty.
    pub folds: usize,
    /// Points on the regularisation path, from the smallest penalty that zeroes every term down
    /// to `1e-3` of it.
    pub path_len: usize,
    /// Largest design matrix (samples × terms) accepted.
    pub max_entries: usize,
}

impl Default for LassoConfig {
    fn default() -> Self {
        LassoConfig { max_order: None, folds: 5, path_len: 30, max_entries: 100_000_000 }
    }
}

/// What the LASSO baseline did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LassoDiagnostics {
    /// Highest order regressed on.
    pub max_order: usize,
    /// Basis functions regressed on (including the constant).
    pub terms: usize,
    /// Penalty chosen by cross-validation (on the `1/(2N)`-scaled squared loss).
    pub lambda: f64,
    /// Mean squared validation error at that penalty.
    pub cv_mse: f64,
    /// Nonzero coefficients in the fit.
    pub nonzero: usize,
    /// Seconds spent.
    pub seconds: f64,
}

/// Output of [`decode`].
#[derive(Clone, Debug)]
pub struct LassoDecoded {
    /// The fitted sparse Fourier representation.
    pub fourier: Fourier,
    /// What happened.
    pub diagnostics: LassoDiagnostics,
}

/// Number of subsets of `n` players with at most `order` players.
pub fn count_terms(n: usize, order: usize) -> usize {
    let mut total = 0usize;
    let mut binom = 1usize;
    for d in 0..=order.min(n) {
        total = total.saturating_add(binom);
        binom = binom.saturating_mul(n - d) / (d + 1);
    }
    total
}

/// Fits the LASSO baseline to `values` sampled at `masks`.
pub fn decode(masks: MaskSlice<'_>, values: &[f64], config: &LassoConfig) -> Result<LassoDecoded, DecodeError> {
    super::check_values(values, masks.len())?;
    let clock = Instant::now();
    let n = masks.n();
    let order = match config.max_order {
        Some(order) => order,
        None if count_terms(n, 2).saturating_mul(masks.len()) <= config.max_entries => 2,
        None => 1,
    };
    let terms = count_terms(n, order);
    if terms.saturating_mul(masks.len()) > config.max_entries {
        return Err(DecodeError::TooLarge { rows: masks.len(), columns: terms, limit: config.max_entries });
    }
    if masks.len() < 2 * config.folds.max(2) {
        return Err(DecodeError::TooFewSamples { samples: masks.len(), needed: 2 * config.folds.max(2) });
    }
    let support = low_order_subsets(n, order);
    let x = SignMatrix::new(masks, &support);
    let path = penalty_path(&x, values, config.path_len);
    let (lambda, cv_mse) = cross_validate(&x, values, &path, config.folds);
    let path_to_best: Vec<f64> = path.iter().copied().take_while(|&l| l >= lambda).collect();
    let beta = fit_path(&x, values, &path_to_best);
    let mut fourier = Fourier::from_pairs(n, support.into_iter().zip(beta));
    fourier.prune(0.0);
    let diagnostics = LassoDiagnostics {
        max_order: order,
        terms,
        lambda,
        cv_mse,
        nonzero: fourier.len(),
        seconds: clock.elapsed().as_secs_f64(),
    };
    Ok(LassoDecoded { fourier, diagnostics })
}

/// Every subset of at most `order` players, the constant first.
fn low_order_subsets(n: usize, order: usize) -> Vec<Subset> {
    let mut out = vec![Subset::empty()];
    let mut frontier = vec![Vec::<u32>::new()];
    for _ in 0..order.min(n) {
        let mut next = Vec::new();
        for s in &frontier {
            let start = s.last().map_or(0, |&p| p + 1);
            for p in start..n as u32 {
                let mut t = s.clone();
                t.push(p);
                next.push(t);
            }
        }
        out.extend(next.iter().cloned().map(Subset::from_sorted));
        frontier = next;
    }
    out
}

/// Column-major `±1` design matrix in `f32` (exact for signs, half the memory of `f64`);
/// products accumulate in `f64`.
struct SignMatrix {
    rows: usize,
    cols: Vec<Vec<f32>>,
}

impl SignMatrix {
    fn new(masks: MaskSlice<'_>, support: &[Subset]) -> Self {
        let cols = support
            .par_iter()
            .map(|k| masks.iter().map(|m| if m.parity(k.players()) { -1.0 } else { 1.0 }).collect())
            .collect();
        SignMatrix { rows: masks.len(), cols }
    }

    /// `Σ_i x_ij r_i` over all rows (a residual is zero on rows outside the fit, which keeps
    /// this a contiguous, vectorisable loop).
    fn dot(&self, j: usize, r: &[f64]) -> f64 {
        self.cols[j].iter().zip(r).map(|(&x, &v)| x as f64 * v).sum()
    }

    /// `x_j · r / n` for every column, in parallel.
    fn gradients(&self, r: &[f64], n: f64) -> Vec<f64> {
        (0..self.cols.len()).into_par_iter().map(|j| self.dot(j, r) / n).collect()
    }
}

/// Log-spaced penalties from the smallest that zeroes every non-constant term down to 1e-3 of it.
fn penalty_path(x: &SignMatrix, y: &[f64], len: usize) -> Vec<f64> {
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let centred: Vec<f64> = y.iter().map(|v| v - mean).collect();
    let lmax = x.gradients(&centred, x.rows as f64)[1..].iter().fold(1e-300f64, |a, g| a.max(g.abs()));
    crate::decode::regress::logspace(lmax.log10(), lmax.log10() - 3.0, len.max(2))
}

/// Mean validation error of each penalty over `folds` interleaved folds; returns the best.
fn cross_validate(x: &SignMatrix, y: &[f64], path: &[f64], folds: usize) -> (f64, f64) {
    let folds = folds.max(2);
    let errors: Vec<Vec<f64>> = (0..folds)
        .map(|f| {
            let train: Vec<bool> = (0..x.rows).map(|i| i % folds != f).collect();
            let test: Vec<usize> = (0..x.rows).filter(|&i| !train[i]).collect();
            let mut fit = Fit::new(x, y, &train);
            path.iter()
                .map(|&lambda| {
                    fit.descend(x, lambda);
                    test_mse(x, y, &test, &fit.beta)
                })
                .collect()
        })
        .collect();
    (0..path.len())
        .map(|l| (path[l], errors.iter().map(|e| e[l]).sum::<f64>() / folds as f64))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("path is not empty")
}

fn test_mse(x: &SignMatrix, y: &[f64], rows: &[usize], beta: &[f64]) -> f64 {
    let active: Vec<usize> = (0..beta.len()).filter(|&j| beta[j] != 0.0).collect();
    rows.iter()
        .map(|&i| {
            let pred: f64 = active.iter().map(|&j| x.cols[j][i] as f64 * beta[j]).sum();
            (y[i] - pred).powi(2)
        })
        .sum::<f64>()
        / rows.len().max(1) as f64
}

/// Fits along `path` (warm starts) on all rows; returns the coefficients at its last penalty.
fn fit_path(x: &SignMatrix, y: &[f64], path: &[f64]) -> Vec<f64> {
    let mut fit = Fit::new(x, y, &vec![true; x.rows]);
    for &lambda in path {
        fit.descend(x, lambda);
    }
    fit.beta
}

/// A LASSO fit in progress on a subset of rows, warm-started from penalty to penalty.
struct Fit {
    beta: Vec<f64>,
    /// `y − Xβ` on the fitted rows, 0 elsewhere.
    resid: Vec<f64>,
    /// `x_j · resid / rows`, valid for the current `beta`.
    grads: Vec<f64>,
    /// 1 on the fitted rows, 0 on held-out ones.
    weight: Vec<f64>,
    rows: f64,
}

impl Fit {
    fn new(x: &SignMatrix, y: &[f64], used: &[bool]) -> Self {
        let resid: Vec<f64> = y.iter().zip(used).map(|(&v, &u)| if u { v } else { 0.0 }).collect();
        let rows = used.iter().filter(|&&u| u).count() as f64;
        let grads = x.gradients(&resid, rows);
        let weight = used.iter().map(|&u| if u { 1.0 } else { 0.0 }).collect();
        Fit { beta: vec![0.0; x.cols.len()], resid, grads, weight, rows }
    }

    /// Minimises `(1/2N)‖y − Xβ‖² + λ Σ_{j>0} |β_j|` (column 0, the constant, is not
    /// penalised). Columns have unit mean square, so each coordinate step soft-thresholds the
    /// partial correlation. Only the active set is swept; a parallel check of every column's
    /// gradient (the KKT conditions) adds violators until there are none.
    fn descend(&mut self, x: &SignMatrix, lambda: f64) {
        for _ in 0..100 {
            let violators: Vec<usize> = (1..self.beta.len())
                .filter(|&j| self.beta[j] == 0.0 && self.grads[j].abs() > lambda * (1.0 + 1e-9))
                .collect();
            let mut active: Vec<usize> = (0..self.beta.len()).filter(|&j| j == 0 || self.beta[j] != 0.0).collect();
            let done = violators.is_empty();
            active.extend(violators);
            self.sweep(x, lambda, &active);
            self.grads = x.gradients(&self.resid, self.rows);
            if done {
                return;
            }
        }
    }

    /// Cyclic coordinate descent over `active` until no coefficient moves by more than 1e-9.
    fn sweep(&mut self, x: &SignMatrix, lambda: f64, active: &[usize]) {
        for _ in 0..1000 {
            let mut max_change: f64 = 0.0;
            for &j in active {
                let old = self.beta[j];
                let z = old + x.dot(j, &self.resid) / self.rows;
                let new = if j == 0 { z } else { soft_threshold(z, lambda) };
                if new != old {
                    let delta = new - old;
                    // Rows outside the fit (weight 0) keep a zero residual.
                    for ((r, &xi), &w) in self.resid.iter_mut().zip(&x.cols[j]).zip(&self.weight) {
                        *r -= xi as f64 * delta * w;
                    }
                    self.beta[j] = new;
                    max_change = max_change.max(delta.abs());
                }
            }
            if max_change < 1e-9 {
                return;
            }
        }
    }
}

fn soft_threshold(z: f64, lambda: f64) -> f64 {
    if z > lambda {
        z - lambda
    } else if z < -lambda {
        z + lambda
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_counts() {
        assert_eq!(count_terms(10, 0), 1);
        assert_eq!(count_terms(10, 1), 11);
        assert_eq!(count_terms(10, 2), 56);
        assert_eq!(count_terms(3, 5), 8);
        assert_eq!(low_order_subsets(10, 2).len(), 56);
    }

    #[test]
    fn soft_threshold_shrinks_towards_zero() {
        assert_eq!(soft_threshold(3.0, 1.0), 2.0);
        assert_eq!(soft_threshold(-3.0, 1.0), -2.0);
        assert_eq!(soft_threshold(0.5, 1.0), 0.0);
    }
}
