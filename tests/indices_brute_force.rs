//! Every interaction index against its brute-force definition, computed from the function's values
//! on all 2^n masks (marginal contributions, discrete derivatives, least squares), never from Möbius
//! or Fourier formulas.

mod common;

use common::{assert_close, binom, bits_of, derivative, fact, size, subset_of};
use nalgebra::{DMatrix, DVector};
use spex::subset::Subset;
use spex::transform::{interactions, Fourier, Index, IndexError, Interactions};

/// Bitmasks of all subsets of `n` players with at most `max` members.
fn subsets_up_to(n: usize, max: usize) -> Vec<u32> {
    (0..1u32 << n).filter(|&m| size(m) <= max).collect()
}

/// Subsets of the players outside `s`.
fn outside(n: usize, s: u32) -> impl Iterator<Item = u32> {
    let rest = ((1u32 << n) - 1) & !s;
    common::submasks(rest)
}

/// Shapley value of player `i`: weighted marginal contributions.
fn shapley_value(f: &[f64], n: usize, i: usize) -> f64 {
    outside(n, 1 << i)
        .map(|t| {
            let k = size(t);
            fact(k) * fact(n - k - 1) / fact(n) * (f[(t | 1 << i) as usize] - f[t as usize])
        })
        .sum()
}

/// Banzhaf value of player `i`: mean marginal contribution.
fn banzhaf_value(f: &[f64], n: usize, i: usize) -> f64 {
    outside(n, 1 << i).map(|t| f[(t | 1 << i) as usize] - f[t as usize]).sum::<f64>() / (1u64 << (n - 1)) as f64
}

/// Shapley interaction index (Grabisch & Roubens 1999):
/// `Σ_{T⊆N∖S} (n−t−s)! t! / (n−s+1)! Δ_S f(T)`.
fn sii(f: &[f64], n: usize, s: u32) -> f64 {
    let k = size(s);
    outside(n, s).map(|t| fact(n - size(t) - k) * fact(size(t)) / fact(n - k + 1) * derivative(f, s, t)).sum()
}

/// Banzhaf interaction index (Grabisch 2000): `2^{−(n−s)} Σ_{T⊆N∖S} Δ_S f(T)`.
fn bii(f: &[f64], n: usize, s: u32) -> f64 {
    outside(n, s).map(|t| derivative(f, s, t)).sum::<f64>() / (1u64 << (n - size(s))) as f64
}

/// Shapley–Taylor index of order ℓ (Sundararajan et al. 2020): `Δ_S f(∅)` below the top order,
/// `(ℓ/n) Σ_{T⊆N∖S} Δ_S f(T) / C(n−1, |T|)` at `|S| = ℓ`.
fn stii(f: &[f64], n: usize, ell: usize, s: u32) -> f64 {
    if size(s) < ell {
        derivative(f, s, 0)
    } else {
        ell as f64 / n as f64 * outside(n, s).map(|t| derivative(f, s, t) / binom(n - 1, size(t))).sum::<f64>()
    }
}

/// Bernoulli numbers with `B_1 = −1/2`.
const BERNOULLI: [f64; 9] = [1.0, -0.5, 1.0 / 6.0, 0.0, -1.0 / 30.0, 0.0, 1.0 / 42.0, 0.0, -1.0 / 30.0];

/// k-SII by its definition from SII (Bordt & von Luxburg 2023): for `1 ≤ |S| ≤ k`,
/// `Σ_{T⊇S, |T|≤k} B_{|T|−|S|} SII(T)`, and `f(∅)` for the empty set.
fn ksii(f: &[f64], n: usize, k: usize) -> Vec<(u32, f64)> {
    let sets = subsets_up_to(n, k);
    let sii_values: Vec<(u32, f64)> = sets.iter().filter(|&&t| t != 0).map(|&t| (t, sii(f, n, t))).collect();
    sets.iter()
        .map(|&s| {
            if s == 0 {
                return (0, f[0]);
            }
            let v = sii_values.iter().filter(|(t, _)| t & s == s).map(|&(t, v)| BERNOULLI[size(t) - size(s)] * v).sum();
            (s, v)
        })
        .collect()
}

/// The AND-basis design matrix over all masks: column `j` is `Π_{i∈S_j} m_i`.
fn and_design(n: usize, sets: &[u32]) -> DMatrix<f64> {
    DMatrix::from_fn(1 << n, sets.len(), |m, j| if (m as u32) & sets[j] == sets[j] { 1.0 } else { 0.0 })
}

/// Faith-Banzhaf of order ℓ: least-squares fit of `f` by AND functions of order ≤ ℓ, uniform weights.
fn fbii(f: &[f64], n: usize, ell: usize) -> Vec<(u32, f64)> {
    let sets = subsets_up_to(n, ell);
    let a = and_design(n, &sets);
    let y = DVector::from_column_slice(f);
    // Householder QR: R β = Qᵀ y. (nalgebra's SVD solve was off by ~1e-5 on one of these
    // well-conditioned problems, so it is not used as the reference.)
    let qr = a.qr();
    let beta = qr.r().solve_upper_triangular(&(qr.q().transpose() * y)).expect("AND features are independent");
    sets.iter().copied().zip(beta.iter().copied()).collect()
}

/// Faith-Shap of order ℓ (Tsai et al. 2023): minimise `Σ_S μ(|S|) (f(S) − Σ_{T⊆S,|T|≤ℓ} β_T)²` with
/// Shapley-kernel weights `μ(s) = (n−1) / (C(n,s) s (n−s))` for `0 < s < n`, subject to fitting
/// `f(∅)` and `f(N)` exactly. Solved through its KKT system.
fn fsii(f: &[f64], n: usize, ell: usize) -> Vec<(u32, f64)> {
    let sets = subsets_up_to(n, ell);
    let p = sets.len();
    let a = and_design(n, &sets);
    let full = (1u32 << n) - 1;
    let weights = DVector::from_fn(1 << n, |m, _| {
        let s = size(m as u32);
        if s == 0 || s == n {
            0.0
        } else {
            (n - 1) as f64 / (binom(n, s) * s as f64 * (n - s) as f64)
        }
    });
    let y = DVector::from_column_slice(f);
    let aw = DMatrix::from_fn(1 << n, p, |i, j| a[(i, j)] * weights[i]);
    let h = a.transpose() * &aw;
    let g = aw.transpose() * &y;
    // [H Cᵀ; C 0] [β; λ] = [g; d] with constraint rows "value at ∅" and "value at N".
    let mut kkt = DMatrix::zeros(p + 2, p + 2);
    kkt.view_mut((0, 0), (p, p)).copy_from(&h);
    for (j, &t) in sets.iter().enumerate() {
        let at_empty = if t == 0 { 1.0 } else { 0.0 };
        kkt[(p, j)] = at_empty;
        kkt[(j, p)] = at_empty;
        kkt[(p + 1, j)] = 1.0; // every T ⊆ N
        kkt[(j, p + 1)] = 1.0;
    }
    let mut rhs = DVector::zeros(p + 2);
    rhs.rows_mut(0, p).copy_from(&g);
    rhs[p] = f[0];
    rhs[p + 1] = f[full as usize];
    let sol = kkt.lu().solve(&rhs).expect("KKT system is regular");
    sets.iter().copied().zip(sol.iter().copied()).collect()
}

/// A function given by its values and by a Fourier form of it.
struct Case {
    name: String,
    n: usize,
    values: Vec<f64>,
    fourier: Fourier,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (n, seed) in [(6, 1), (8, 2)] {
        let values = common::dense_function(n, seed);
        let fourier = common::fourier_from_table(&common::fourier_table(&values, n), n);
        out.push(Case { name: format!("dense n={n}"), n, values, fourier });
    }
    for (n, terms, degree, seed) in [(8, 12, 3, 3), (8, 20, 5, 4), (7, 6, 7, 5)] {
        let fourier = common::sparse_fourier(n, terms, degree, seed);
        let values = common::values_of_fourier(&fourier);
        out.push(Case { name: format!("sparse n={n} degree≤{degree}"), n, values, fourier });
    }
    out
}

fn scale(values: &[f64]) -> f64 {
    values.iter().fold(1.0f64, |m, v| m.max(v.abs()))
}

/// `got` agrees with `want` on every subset of size ≤ `got.max_order`, lists nothing larger, and
/// lists the empty set.
fn assert_index(got: &Interactions, want: &[(u32, f64)], tol: f64, what: &str) {
    assert!(got.values.iter().all(|(s, _)| s.len() <= got.max_order), "{what}: entry above max_order");
    assert!(got.values.iter().any(|(s, _)| s.is_empty()), "{what}: no empty-set entry");
    let sorted = got.values.windows(2).all(|w| w[0].1.abs() >= w[1].1.abs());
    assert!(sorted, "{what}: values not sorted by magnitude");
    for &(s, v) in want {
        assert_close(got.get(&subset_of(s)), v, tol, &format!("{what} at {}", subset_of(s)));
    }
}

#[test]
fn shapley_and_banzhaf_values() {
    for case in cases() {
        let (n, f) = (case.n, &case.values);
        let tol = 1e-10 * scale(f);
        let sv = interactions(&case.fourier, Index::Sv, 7).unwrap();
        assert_eq!(sv.max_order, 1);
        let mut want: Vec<(u32, f64)> = (0..n).map(|i| (1 << i, shapley_value(f, n, i))).collect();
        want.push((0, f[0])); // shapiq's baseline: the value with every player ablated
        assert_index(&sv, &want, tol, &format!("{} SV", case.name));
        // Efficiency: f(∅) + Σ φ_i = f(N).
        let total: f64 = sv.values.iter().map(|(_, v)| v).sum();
        assert_close(total, f[(1 << n) - 1], tol, "SV efficiency");

        let bv = interactions(&case.fourier, Index::Bv, 3).unwrap();
        assert_eq!(bv.max_order, 1);
        let mut want: Vec<(u32, f64)> = (0..n).map(|i| (1 << i, banzhaf_value(f, n, i))).collect();
        // BV's empty entry is the intercept of the best linear fit (BV = FBII at order 1).
        want.push((0, fbii(f, n, 1)[0].1));
        assert_index(&bv, &want, tol, &format!("{} BV", case.name));
    }
}

#[test]
fn shapley_and_banzhaf_interaction_indices() {
    for case in cases() {
        let (n, f) = (case.n, &case.values);
        let tol = 1e-10 * scale(f) * 8.0;
        for ell in 1..=3 {
            let sets = subsets_up_to(n, ell);
            let got = interactions(&case.fourier, Index::Sii, ell).unwrap();
            let want: Vec<(u32, f64)> = sets.iter().map(|&s| (s, if s == 0 { f[0] } else { sii(f, n, s) })).collect();
            assert_index(&got, &want, tol, &format!("{} SII ℓ={ell}", case.name));

            // BII includes ∅ by Grabisch's formula: the mean of f.
            let got = interactions(&case.fourier, Index::Bii, ell).unwrap();
            let want: Vec<(u32, f64)> = sets.iter().map(|&s| (s, bii(f, n, s))).collect();
            assert_index(&got, &want, tol, &format!("{} BII ℓ={ell}", case.name));
            // The cheap cross-check from the spec: BII(S) = (−2)^{|S|} F(S).
            for &s in &sets {
                let k = subset_of(s);
                let expected = (-2f64).powi(size(s) as i32) * case.fourier.get(&k);
                assert_close(got.get(&k), expected, tol, "BII = (−2)^|S| F(S)");
            }
        }
    }
}

#[test]
fn shapley_taylor_index() {
    for case in cases() {
        let (n, f) = (case.n, &case.values);
        let tol = 1e-10 * scale(f) * 8.0;
        for ell in 1..=3 {
            let got = interactions(&case.fourier, Index::Stii, ell).unwrap();
            let want: Vec<(u32, f64)> = subsets_up_to(n, ell).iter().map(|&s| (s, stii(f, n, ell, s))).collect();
            assert_index(&got, &want, tol, &format!("{} STII ℓ={ell}", case.name));
            // Efficiency: the values (with ∅ = f(∅)) sum to f(N).
            let total: f64 = got.values.iter().map(|(_, v)| v).sum();
            assert_close(total, f[(1 << n) - 1], tol, "STII efficiency");
        }
    }
}

#[test]
fn k_shapley_interaction_index() {
    for case in cases() {
        let (n, f) = (case.n, &case.values);
        let tol = 1e-10 * scale(f) * 8.0;
        for k in 1..=4 {
            let got = interactions(&case.fourier, Index::Ksii, k).unwrap();
            assert_index(&got, &ksii(f, n, k), tol, &format!("{} k-SII k={k}", case.name));
            // Efficiency: Σ_{|S|≤k} k-SII(S) = f(N) (the empty entry is f(∅)).
            let total: f64 = got.values.iter().map(|(_, v)| v).sum();
            assert_close(total, f[(1 << n) - 1], tol, &format!("{} k-SII k={k} efficiency", case.name));
            // The top order coincides with SII.
            for (s, v) in got.values.iter().filter(|(s, _)| s.len() == k) {
                assert_close(*v, sii(f, n, bits_of(s)), tol, "k-SII top order = SII");
            }
        }
    }
}

#[test]
fn faith_banzhaf_is_the_uniform_least_squares_fit() {
    for case in cases() {
        let (n, f) = (case.n, &case.values);
        let tol = 1e-9 * scale(f);
        for ell in 0..=3 {
            let got = interactions(&case.fourier, Index::Fbii, ell).unwrap();
            assert_index(&got, &fbii(f, n, ell), tol, &format!("{} FBII ℓ={ell}", case.name));
        }
    }
}

#[test]
fn faith_shapley_is_the_constrained_shapley_kernel_fit() {
    for case in cases() {
        let (n, f) = (case.n, &case.values);
        let tol = 1e-9 * scale(f);
        for ell in 1..=3 {
            let got = interactions(&case.fourier, Index::Fsii, ell).unwrap();
            let want = fsii(f, n, ell);
            assert_eq!(want[0].0, 0);
            assert_close(want[0].1, f[0], 1e-12, "the KKT solution fixes ∅ to f(∅)");
            assert_index(&got, &want, tol, &format!("{} FSII ℓ={ell}", case.name));
        }
        // Order 1 is the Shapley value.
        let fs1 = interactions(&case.fourier, Index::Fsii, 1).unwrap();
        for i in 0..n {
            assert_close(fs1.get(&subset_of(1 << i)), shapley_value(f, n, i), tol, "FSII_1 = SV");
        }
    }
}

#[test]
fn full_order_indices_reduce_to_moebius() {
    // At ℓ = n, k-SII, STII, FSII and FBII all equal the Möbius transform; larger ℓ is capped at n.
    let n = 6;
    let values = common::dense_function(n, 9);
    let fourier = common::fourier_from_table(&common::fourier_table(&values, n), n);
    let m = common::moebius_table(&values, n);
    let want: Vec<(u32, f64)> = m.iter().enumerate().map(|(s, &v)| (s as u32, v)).collect();
    for index in [Index::Moebius, Index::Ksii, Index::Stii, Index::Fsii, Index::Fbii] {
        let got = interactions(&fourier, index, n + 3).unwrap();
        assert_eq!(got.max_order, n);
        assert_index(&got, &want, 1e-9, &format!("{index} at ℓ = n"));
    }
    // Fourier at max order ℓ: exactly the coefficients of order ≤ ℓ.
    let got = interactions(&fourier, Index::Fourier, 2).unwrap();
    let f_table = common::fourier_table(&values, n);
    let want: Vec<(u32, f64)> = subsets_up_to(n, 2).into_iter().map(|s| (s, f_table[s as usize])).collect();
    assert_index(&got, &want, 1e-12, "fourier ℓ=2");
    assert_eq!(got.values.len(), want.len());
}

/// Index values of a single parity `χ_U` at `S ⊆ U`, by `(index, |U|, ℓ, |S|, value)`, computed in
/// exact rational arithmetic (Python `fractions`) from the Möbius-form weights that shapiq uses,
/// summed against `M(T) = (−2)^{|T|}` for `T ⊆ U`. In floating point that sum cancels
/// catastrophically at these orders, so these pin down the high-order closed forms.
const PARITY_KERNELS: &[(Index, usize, usize, usize, f64)] = &[
    (Index::Stii, 17, 3, 1, -2.0),
    (Index::Fsii, 17, 3, 1, -0.6130030959752322),
    (Index::Ksii, 17, 3, 1, -10.784313725490197),
    (Index::Sii, 17, 3, 1, -0.11764705882352941),
    (Index::Stii, 17, 3, 2, 4.0),
    (Index::Fsii, 17, 3, 2, 0.18575851393188855),
    (Index::Ksii, 17, 3, 2, 4.0),
    (Index::Sii, 17, 3, 2, 0.0),
    (Index::Stii, 17, 3, 3, -0.7529411764705882),
    (Index::Fsii, 17, 3, 3, -0.02476780185758514),
    (Index::Ksii, 17, 3, 3, -0.5333333333333333),
    (Index::Sii, 17, 3, 3, -0.5333333333333333),
    (Index::Stii, 30, 2, 1, -2.0),
    (Index::Fsii, 30, 2, 1, -0.1935483870967742),
    (Index::Ksii, 30, 2, 1, -2.0),
    (Index::Sii, 30, 2, 1, 0.0),
    (Index::Stii, 30, 2, 2, 0.13793103448275862),
    (Index::Fsii, 30, 2, 2, 0.013348164627363738),
    (Index::Ksii, 30, 2, 2, 0.13793103448275862),
    (Index::Sii, 30, 2, 2, 0.13793103448275862),
    (Index::Stii, 31, 3, 1, -2.0),
    (Index::Fsii, 31, 3, 1, -0.35777126099706746),
    (Index::Ksii, 31, 3, 1, -20.06451612903226),
    (Index::Sii, 31, 3, 1, -0.06451612903225806),
    (Index::Stii, 31, 3, 2, 4.0),
    (Index::Fsii, 31, 3, 2, 0.05865102639296188),
    (Index::Ksii, 31, 3, 2, 4.0),
    (Index::Sii, 31, 3, 2, 0.0),
    (Index::Stii, 31, 3, 3, -0.40044493882091214),
    (Index::Fsii, 31, 3, 3, -0.0040448983719284055),
    (Index::Ksii, 31, 3, 3, -0.27586206896551724),
    (Index::Sii, 31, 3, 3, -0.27586206896551724),
    (Index::Stii, 40, 4, 1, -2.0),
    (Index::Fsii, 40, 4, 1, -0.44809982983550767),
    (Index::Ksii, 40, 4, 1, -2.0),
    (Index::Sii, 40, 4, 1, 0.0),
    (Index::Stii, 40, 4, 2, 4.0),
    (Index::Fsii, 40, 4, 2, 0.10035341856101924),
    (Index::Ksii, 40, 4, 2, 50.76923076923077),
    (Index::Sii, 40, 4, 2, 0.10256410256410256),
    (Index::Stii, 40, 4, 3, -8.0),
    (Index::Fsii, 40, 4, 3, -0.012216937911776256),
    (Index::Ksii, 40, 4, 3, -8.0),
    (Index::Sii, 40, 4, 3, 0.0),
    (Index::Stii, 40, 4, 4, 0.8316008316008316),
    (Index::Fsii, 40, 4, 4, 0.0006603750222581759),
    (Index::Ksii, 40, 4, 4, 0.43243243243243246),
    (Index::Sii, 40, 4, 4, 0.43243243243243246),
];

#[test]
fn high_order_coefficients_are_converted_accurately() {
    for &(index, u, ell, s, want) in PARITY_KERNELS {
        // The parity over players 3..3+u of u+5; S = the first s of them.
        let parity = Fourier::from_pairs(u + 5, [(Subset::new((3..3 + u as u32).collect()), 1.0)]);
        let got = interactions(&parity, index, ell).unwrap();
        let at = Subset::new((3..3 + s as u32).collect());
        assert_close(got.get(&at), want, 1e-12 * want.abs().max(1.0), &format!("{index} |U|={u} ℓ={ell} |S|={s}"));
        assert_eq!(got.get(&Subset::new(vec![0])), 0.0, "players outside U get nothing");
    }
    // Efficiency survives at high order: f(∅) = f(N) = 1 for a parity of even order.
    let parity = Fourier::from_pairs(40, [(Subset::new((0..30).collect()), 1.0)]);
    for index in [Index::Stii, Index::Ksii, Index::Fsii, Index::Sv] {
        let got = interactions(&parity, index, 3).unwrap();
        let total: f64 = got.values.iter().map(|(_, v)| v).sum();
        assert_close(total, 1.0, 1e-9, &format!("{index} efficiency on χ_30"));
    }
}

#[test]
fn errors() {
    let f = common::sparse_fourier(10, 5, 3, 1);
    for index in [Index::Sii, Index::Ksii, Index::Stii, Index::Fsii] {
        assert_eq!(interactions(&f, index, 0), Err(IndexError::ZeroOrder { index }));
    }
    // Order 0 is meaningful for these: the constant fit / coefficients.
    for index in [Index::Fourier, Index::Moebius, Index::Bii, Index::Fbii] {
        let got = interactions(&f, index, 0).unwrap();
        assert_eq!(got.values.len(), 1);
    }
    // A parity over 1000 players at order 3 would spread onto C(1000, 3) ≈ 1.7e8 subsets.
    let wide = Fourier::from_pairs(1000, [(Subset::new((0..1000).collect()), 1.0)]);
    assert!(matches!(interactions(&wide, Index::Moebius, 3), Err(IndexError::TooManyTerms { .. })));
    // k-SII at a very high order: the Bernoulli-weighted sums for an order-20 coefficient lose
    // too many digits, which must be reported rather than returned.
    let deep = Fourier::from_pairs(40, [(Subset::new((0..20).collect()), 1.0)]);
    assert_eq!(
        interactions(&deep, Index::Ksii, 20),
        Err(IndexError::OrderTooLarge { index: Index::Ksii, max_order: 20, order: 20 })
    );
    assert!(interactions(&deep, Index::Ksii, 4).is_ok());
}
