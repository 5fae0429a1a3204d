//! Regression of sampled values on a fixed support of Fourier basis functions: the refinement
//! step shared by the SPEX decoder (least squares on the peeled support) and ProxySPEX (ridge with
//! its strength chosen by leave-one-out cross-validation).
//!
//! Everything accumulates in f64.

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rayon::prelude::*;

use crate::mask::MaskSlice;
use crate::subset::Subset;
use crate::transform::{Basis, FourierBasis};

/// The `rows x support.len()` design matrix of Fourier basis functions `(-1)^{<m,k>}`.
pub fn fourier_features(masks: MaskSlice<'_>, support: &[Subset]) -> DMatrix<f64> {
    let rows = masks.len();
    let mut x = DMatrix::zeros(rows, support.len());
    if rows == 0 {
        return x;
    }
    // Column-major storage: each column is one contiguous chunk.
    x.as_mut_slice().par_chunks_exact_mut(rows).zip(support.par_iter()).for_each(|(col, k)| {
        for (c, m) in col.iter_mut().zip(masks.iter()) {
            *c = FourierBasis::basis_value(m, k.players());
        }
    });
    x
}

/// Eigen-decomposition of `XᵀX`, reused for every regularisation strength.
pub struct Gram {
    eig: SymmetricEigen<f64, nalgebra::Dyn>,
    /// `Vᵀ Xᵀ y`: the response in the eigenbasis.
    xty_rot: DVector<f64>,
}

/// Entries of the design matrix built at once by [`Gram::of_fourier_features`] (32 MiB of f64).
const FEATURE_BLOCK_ENTRIES: usize = 1 << 22;

impl Gram {
    /// Prepares the regression of `y` on the columns of `x`.
    pub fn new(x: &DMatrix<f64>, y: &[f64]) -> Self {
        let mut xtx = DMatrix::zeros(x.ncols(), x.ncols());
        let mut xty = DVector::zeros(x.ncols());
        accumulate(&mut xtx, &mut xty, x, y);
        Gram::from_normal_equations(xtx, xty)
    }

    /// The same as `Gram::new(&fourier_features(masks, support), y)`, accumulated over blocks of
    /// rows: memory for `XᵀX` and one block, never the whole `rows × k` design matrix.
    pub fn of_fourier_features(masks: MaskSlice<'_>, support: &[Subset], y: &[f64]) -> Self {
        Gram::of_fourier_features_by(masks, support, y, (FEATURE_BLOCK_ENTRIES / support.len().max(1)).max(1))
    }

    fn of_fourier_features_by(masks: MaskSlice<'_>, support: &[Subset], y: &[f64], block: usize) -> Self {
        let k = support.len();
        let mut xtx = DMatrix::zeros(k, k);
        let mut xty = DVector::zeros(k);
        for start in (0..masks.len()).step_by(block) {
            let end = (start + block).min(masks.len());
            accumulate(&mut xtx, &mut xty, &fourier_features(masks.slice(start..end), support), &y[start..end]);
        }
        Gram::from_normal_equations(xtx, xty)
    }

    fn from_normal_equations(xtx: DMatrix<f64>, xty: DVector<f64>) -> Self {
        let eig = SymmetricEigen::new(xtx);
        let xty_rot = eig.eigenvectors.tr_mul(&xty);
        Gram { eig, xty_rot }
    }

    /// Ridge coefficients `argmin ‖y − Xβ‖² + α‖β‖²`. With `alpha = 0` this is the minimum-norm
    /// least-squares solution (directions with negligible eigenvalues are dropped rather than
    /// amplified, so a rank-deficient support cannot blow up).
    pub fn solve(&self, alpha: f64) -> Vec<f64> {
        let lmax = self.eig.eigenvalues.iter().cloned().fold(0.0, f64::max);
        let floor = lmax * 1e-12;
        let scaled = DVector::from_iterator(
            self.xty_rot.len(),
            self.eig.eigenvalues.iter().zip(self.xty_rot.iter()).map(|(&l, &r)| {
                if l + alpha <= floor {
                    0.0
                } else {
                    r / (l + alpha)
                }
            }),
        );
        (&self.eig.eigenvectors * scaled).iter().copied().collect()
    }
}

/// Adds `xᵀx` and `xᵀy` of a block of rows.
fn accumulate(xtx: &mut DMatrix<f64>, xty: &mut DVector<f64>, x: &DMatrix<f64>, y: &[f64]) {
    // `gemm` on the transpose goes through the blocked GEMM (matrixmultiply); `tr_mul` takes one
    // dot product per entry, several times slower once the support has hundreds of columns.
    xtx.gemm(1.0, &x.transpose(), x, 1.0);
    *xty += x.tr_mul(&DVector::from_column_slice(y));
}

/// Result of [`ridge_cv`].
#[derive(Clone, Debug)]
pub struct RidgeFit {
    /// Coefficients, one per column.
    pub coef: Vec<f64>,
    /// The regularisation strength chosen.
    pub alpha: f64,
    /// Mean squared leave-one-out error at that strength.
    pub loo_mse: f64,
}

/// Ridge regression without intercept, choosing `alpha` from `alphas` by exact leave-one-out
/// error (the efficient closed form that scikit-learn's `RidgeCV` uses by default).
///
/// Needs `x.nrows() >= 1`; with an empty support the fit is empty.
pub fn ridge_cv(x: &DMatrix<f64>, y: &[f64], alphas: &[f64]) -> RidgeFit {
    assert!(!alphas.is_empty(), "ridge_cv needs at least one alpha");
    let gram = Gram::new(x, y);
    // Left singular vectors scaled: U_j = X v_j, with ‖U_j‖² = λ_j.
    let xv = x * &gram.eig.eigenvectors;
    let lambdas = &gram.eig.eigenvalues;
    let lmax = lambdas.iter().cloned().fold(0.0, f64::max);
    let floor = lmax * 1e-12;
    // Every alpha at once, as two matrix products over the eigenbasis:
    //   predictions  P[i, a] = Σ_j U_ij · (Vᵀ Xᵀ y)_j / (λ_j + α_a)   (the fit of `Gram::solve`),
    //   hat diagonal H[i, a] = Σ_j U_ij² / (λ_j + α_a).
    let k = lambdas.len();
    let inv = |j: usize, alpha: f64| lambdas[j] + alpha;
    let wp = DMatrix::from_fn(k, alphas.len(), |j, a| {
        if inv(j, alphas[a]) <= floor {
            0.0
        } else {
            gram.xty_rot[j] / inv(j, alphas[a])
        }
    });
    let wh =
        DMatrix::from_fn(k, alphas.len(), |j, a| if inv(j, alphas[a]) > 0.0 { 1.0 / inv(j, alphas[a]) } else { 0.0 });
    let pred = &xv * wp;
    let hat = xv.map(|u| u * u) * wh;
    let rows = x.nrows();
    let mut best: Option<(usize, f64)> = None;
    for a in 0..alphas.len() {
        let loo_mse = (0..rows)
            .map(|i| {
                let r = (y[i] - pred[(i, a)]) / (1.0 - hat[(i, a)]).max(1e-12);
                r * r
            })
            .sum::<f64>()
            / rows as f64;
        if best.is_none_or(|(_, b)| loo_mse < b) {
            best = Some((a, loo_mse));
        }
    }
    let (a, loo_mse) = best.expect("alphas is not empty");
    RidgeFit { coef: gram.solve(alphas[a]), alpha: alphas[a], loo_mse }
}

/// `n` values spaced evenly on a log scale from `10^lo` to `10^hi` (numpy's `logspace`).
pub fn logspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![10f64.powf(lo)],
        _ => (0..n).map(|i| 10f64.powf(lo + (hi - lo) * i as f64 / (n - 1) as f64)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> (DMatrix<f64>, Vec<f64>) {
        // y = 2 x0 - x1 + small deterministic noise
        let rows = 40;
        let x = DMatrix::from_fn(rows, 3, |i, j| (((i * 7 + j * 13) % 11) as f64 - 5.0) / 3.0);
        let y = (0..rows).map(|i| 2.0 * x[(i, 0)] - x[(i, 1)] + 0.01 * ((i % 5) as f64 - 2.0)).collect();
        (x, y)
    }

    #[test]
    fn least_squares_matches_normal_equations() {
        let (x, y) = toy();
        let beta = Gram::new(&x, &y).solve(0.0);
        let xtx = x.tr_mul(&x);
        let xty = x.tr_mul(&DVector::from_column_slice(&y));
        let direct = xtx.cholesky().unwrap().solve(&xty);
        for (a, b) in beta.iter().zip(direct.iter()) {
            assert!((a - b).abs() < 1e-10, "{a} vs {b}");
        }
        assert!((beta[0] - 2.0).abs() < 0.05 && (beta[1] + 1.0).abs() < 0.05);
    }

    #[test]
    fn loo_formula_matches_explicit_leave_one_out() {
        let (x, y) = toy();
        let alpha = 0.7;
        let fit = ridge_cv(&x, &y, &[alpha]);
        let mut mse = 0.0;
        for i in 0..x.nrows() {
            let keep: Vec<usize> = (0..x.nrows()).filter(|&r| r != i).collect();
            let xi = x.select_rows(&keep);
            let yi: Vec<f64> = keep.iter().map(|&r| y[r]).collect();
            let b = Gram::new(&xi, &yi).solve(alpha);
            let pred: f64 = (0..3).map(|j| x[(i, j)] * b[j]).sum();
            mse += (y[i] - pred).powi(2);
        }
        mse /= x.nrows() as f64;
        assert!((fit.loo_mse - mse).abs() < 1e-10 * mse.max(1.0), "{} vs {}", fit.loo_mse, mse);
    }

    #[test]
    fn the_blocked_gram_of_fourier_features_is_the_whole_one() {
        use crate::mask::{Mask, MaskBatch};
        let n = 9;
        let mut masks = MaskBatch::new(n);
        for r in 0..300usize {
            let bits: Vec<bool> = (0..n).map(|i| ((r * 2654435761) >> i) % 3 == 0).collect();
            masks.push(Mask::from_bools(&bits).as_ref()).unwrap();
        }
        let pairs = (0..n as u32).flat_map(|i| (i + 1..n as u32).map(move |j| Subset::from_sorted(vec![i, j])));
        let support: Vec<Subset> = [Subset::empty()]
            .into_iter()
            .chain((0..n as u32).map(|i| Subset::from_sorted(vec![i])))
            .chain(pairs)
            .collect();
        let y: Vec<f64> = (0..300).map(|r| ((r * 37) % 17) as f64 - 8.0).collect();
        let whole = Gram::new(&fourier_features(masks.as_slice(), &support), &y).solve(0.0);
        // Blocks of 7 rows, the last one short.
        let blocked = Gram::of_fourier_features_by(masks.as_slice(), &support, &y, 7).solve(0.0);
        for (a, b) in whole.iter().zip(&blocked) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn logspace_endpoints() {
        let a = logspace(-6.0, 6.0, 100);
        assert_eq!(a.len(), 100);
        assert!((a[0] - 1e-6).abs() < 1e-18 && (a[99] - 1e6).abs() < 1e-6);
    }
}
