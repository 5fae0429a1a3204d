//! Interaction indices computed exactly from a sparse Fourier representation.
//!
//! Every index here is linear in the function and symmetric in the players, so the index of a
//! single parity `χ_U(m) = (−1)^{<m,U>}` at a set `S` depends only on `|U|` and `|S|` (and is zero
//! unless `S ⊆ U`). Writing that value as a kernel `g(|U|, |S|)`,
//!
//! ```text
//! I(S) = Σ_{U ⊇ S} g(|U|, |S|) F(U),   |S| ≤ ℓ,
//! ```
//!
//! so an index costs `Σ_U Σ_{s ≤ ℓ} C(|U|, s)` work instead of the `Σ_U 2^{|U|}` of going through
//! the full Möbius form. The kernels follow from the Möbius-form definitions (spec §2.4 and shapiq's
//! `MoebiusConverter`) by substituting `M(T) = (−2)^{|T|} Σ_{U⊇T} F(U)`; where the resulting
//! alternating sum has a closed form we use it, because summing it term by term loses about
//! `2 log10(2) |U|` digits to cancellation:
//!
//! * SII: a Beta integral gives `g(u, s) = (−2)^s / (u − s + 1)` when `u − s` is even, else 0.
//! * STII top order: `g(u, ℓ) = (−2)^ℓ (ℓ / 2^{ℓ−1}) Σ_{j<ℓ, u−ℓ+j even} C(ℓ−1, j) / (u − ℓ + j + 1)`,
//!   a sum of positive terms.
//! * BII, FBII, Möbius: powers of −2 (FBII_ℓ is the Möbius form of the Fourier expansion
//!   truncated to order ℓ, the L2 projection onto functions of order ≤ ℓ).
//! * FSII: the Möbius weights of Tsai et al. are a Beta integral too; summed under the integral
//!   they leave at most `|S|` terms of moderate size (see `fsii_terms`).
//! * k-SII is the Bernoulli-weighted sum of SII kernels (`≤ ℓ` terms). They do not cancel badly,
//!   but the kernel grows quickly with `|U|` at high ℓ. Every kernel entry carries a rounding bound,
//!   and a coefficient order whose kernel cannot be trusted to about `1e-10` (relative to its value
//!   or `2^{|S|}`) is refused with [`IndexError::OrderTooLarge`] instead of answered wrongly. The
//!   same check guards FSII. Neither triggers for ℓ ≤ 8 at any coefficient order below 400; it takes
//!   ℓ ≳ 12 with coefficients of order ≳ 100, or ℓ ≈ 20 with order ≈ 20–30, to trigger it.
//!
//! # Empty-set conventions
//!
//! Every index reports a value for `∅`. They follow shapiq 1.4.1 where shapiq defines the index:
//! SV, SII, k-SII, STII and FSII report `M(∅) = f(∅)` (the value with every player ablated; shapiq
//! stores it as `baseline_value`, and for SII/SV not as an entry). FBII and BV report the intercept
//! of the least-squares fit (`Σ_{|U|≤ℓ} F(U)`), which is *not* `f(∅)`. BII (not in shapiq) follows
//! Grabisch's formula at `S = ∅`: the mean of `f` over uniformly random masks, `F(∅)`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::spread::{prune_relative, spread, total_work, Kernel};
use super::Fourier;
use crate::subset::Subset;

/// An interaction index (or attribution) that [`interactions`] can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Index {
    /// Fourier (Walsh–Hadamard) coefficients `F(S)`, `f(m) = Σ_S F(S) (−1)^{<m,S>}`, as decoded.
    Fourier,
    /// Möbius (Harsanyi) dividends `M(S)`, `f(m) = Σ_{S ⊆ kept(m)} M(S)`.
    Moebius,
    /// Banzhaf values (order 1; shapiq's `BV`, i.e. Faith-Banzhaf at order 1).
    Bv,
    /// Shapley values (order 1; shapiq's `SV`).
    Sv,
    /// Banzhaf interaction index (Grabisch 2000): `Σ_{T⊇S} 2^{−(|T|−|S|)} M(T)`.
    Bii,
    /// Shapley interaction index (Grabisch & Roubens 1999): `Σ_{T⊇S} M(T) / (|T|−|S|+1)`.
    Sii,
    /// k-Shapley interaction index (Bordt & von Luxburg 2023): SII aggregated with Bernoulli numbers so that it is efficient.
    Ksii,
    /// Shapley–Taylor interaction index (Sundararajan et al. 2020).
    Stii,
    /// Faith-Banzhaf interaction index (Tsai et al. 2023): best L2 fit of order ≤ ℓ under uniform masks.
    Fbii,
    /// Faith-Shapley interaction index (Tsai et al. 2023): Shapley-kernel weighted best fit of order ≤ ℓ, exact at ∅ and N.
    Fsii,
}

impl Index {
    /// Every index, in CLI order.
    pub const ALL: [Index; 10] = [
        Index::Fourier,
        Index::Moebius,
        Index::Bv,
        Index::Sv,
        Index::Bii,
        Index::Sii,
        Index::Ksii,
        Index::Stii,
        Index::Fbii,
        Index::Fsii,
    ];

    /// The CLI / serde name (`"ksii"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Index::Fourier => "fourier",
            Index::Moebius => "moebius",
            Index::Bv => "bv",
            Index::Sv => "sv",
            Index::Bii => "bii",
            Index::Sii => "sii",
            Index::Ksii => "ksii",
            Index::Stii => "stii",
            Index::Fbii => "fbii",
            Index::Fsii => "fsii",
        }
    }

    /// Whether the index is meaningless at `max_order = 0` (its definition needs order-1 terms; e.g.
    /// Faith-Shap at order 0 would have to match both `f(∅)` and `f(N)` with one constant).
    fn needs_positive_order(self) -> bool {
        matches!(self, Index::Sii | Index::Ksii | Index::Stii | Index::Fsii)
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Index {
    type Err = IndexError;

    /// Parses the CLI names and, case-insensitively, shapiq's spellings (`k-SII`, `FSII`, `Moebius`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_lowercase().as_str() {
            "fourier" => Index::Fourier,
            "moebius" | "mobius" | "möbius" => Index::Moebius,
            "bv" => Index::Bv,
            "sv" => Index::Sv,
            "bii" => Index::Bii,
            "sii" => Index::Sii,
            "ksii" | "k-sii" => Index::Ksii,
            "stii" => Index::Stii,
            "fbii" => Index::Fbii,
            "fsii" => Index::Fsii,
            _ => return Err(IndexError::UnknownIndex(s.to_string())),
        })
    }
}

/// Why an index could not be computed (or named).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The name is not one of the indices.
    #[error("unknown index {0:?}; expected one of fourier, moebius, bv, sv, bii, sii, ksii, stii, fbii, fsii")]
    UnknownIndex(String),
    /// The index needs `max_order ≥ 1`.
    #[error("index {index} needs max_order >= 1")]
    ZeroOrder {
        /// The index asked for.
        index: Index,
    },
    /// Spreading the coefficients onto all subsets up to the order would take too long / too much
    /// memory (e.g. a parity over hundreds of players at order 3).
    #[error("index {index} up to order {max_order} needs {terms} coefficient-subset terms (limit {limit}); lower max_order or prune high-order coefficients")]
    TooManyTerms {
        /// The index asked for.
        index: Index,
        /// The effective order.
        max_order: usize,
        /// Work the computation would need (saturating).
        terms: u64,
        /// [`MAX_TERMS`].
        limit: u64,
    },
    /// A coefficient's order is too high for this index's kernel to be computed accurately in
    /// double precision (only k-SII or FSII at unrealistically high `max_order`).
    #[error("index {index} at order {max_order} cannot be computed accurately for a Fourier coefficient of order {order} (cancellation in double precision); prune high-order coefficients or use another index")]
    OrderTooLarge {
        /// The index asked for.
        index: Index,
        /// The effective order.
        max_order: usize,
        /// The smallest offending coefficient order.
        order: usize,
    },
}

/// Limit on (coefficient, subset) terms per computation: far above real SPEX outputs (thousands of
/// coefficients of order ≤ 5 need at most a few hundred thousand), low enough to refuse before
/// exhausting memory.
pub const MAX_TERMS: u64 = 1 << 24;

/// Accepted rounding bound of a kernel entry, relative to its value or to `2^{|S|}` (its value at
/// `U = S`), whichever is larger.
const KERNEL_TOL: f64 = 1e-10;

/// An interaction index evaluated on a function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interactions {
    /// Which index.
    pub index: Index,
    /// The order the values were computed at: the requested one capped at `n`, and 1 for SV/BV.
    pub max_order: usize,
    /// Number of players.
    pub n: usize,
    /// `(subset, value)` for `|subset| ≤ max_order`, sorted by decreasing `|value|` (ties by
    /// subset). The empty set is always present (see the module docs for its meaning per index);
    /// other subsets are listed when their value is not zero (to within `1e-14` of the largest).
    pub values: Vec<(Subset, f64)>,
}

impl Interactions {
    /// The value of `subset` (0 when not listed).
    pub fn get(&self, subset: &Subset) -> f64 {
        self.values.iter().find(|(s, _)| s == subset).map_or(0.0, |&(_, v)| v)
    }
}

/// `(−2)^s`.
fn neg2_pow(s: usize) -> f64 {
    let p = 2f64.powi(s as i32);
    if s % 2 == 0 {
        p
    } else {
        -p
    }
}

/// `(−1)^k`.
fn sign(k: usize) -> f64 {
    if k % 2 == 0 {
        1.0
    } else {
        -1.0
    }
}

/// `C(n, k)` in floating point (relative error a few ulps; huge values become `inf`, which the
/// rounding bound then rejects).
fn binom(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64)
}

/// Bernoulli numbers `B_0..=B_30` with `B_1 = −1/2` (scipy's `bernoulli`, which shapiq uses), as
/// exact fractions: the usual recurrence loses digits quickly, and k-SII needs `B_{|T|−|S|}`.
const BERNOULLI: [(f64, f64); 31] = [
    (1.0, 1.0),
    (-1.0, 2.0),
    (1.0, 6.0),
    (0.0, 1.0),
    (-1.0, 30.0),
    (0.0, 1.0),
    (1.0, 42.0),
    (0.0, 1.0),
    (-1.0, 30.0),
    (0.0, 1.0),
    (5.0, 66.0),
    (0.0, 1.0),
    (-691.0, 2730.0),
    (0.0, 1.0),
    (7.0, 6.0),
    (0.0, 1.0),
    (-3617.0, 510.0),
    (0.0, 1.0),
    (43867.0, 798.0),
    (0.0, 1.0),
    (-174611.0, 330.0),
    (0.0, 1.0),
    (854513.0, 138.0),
    (0.0, 1.0),
    (-236364091.0, 2730.0),
    (0.0, 1.0),
    (8553103.0, 6.0),
    (0.0, 1.0),
    (-23749461029.0, 870.0),
    (0.0, 1.0),
    (8615841276005.0, 14322.0),
];

fn bernoulli(m: usize) -> f64 {
    // Past the table the aggregation is far beyond double precision anyway; NaN makes the
    // rounding check refuse it.
    BERNOULLI.get(m).map_or(f64::NAN, |&(p, q)| p / q)
}

/// SII kernel for `s ≥ 1`: `∫_0^1 (1 − 2p)^{u−s} dp · (−2)^s` (the SII weights are a Beta mixture of
/// product measures, under which `E[χ_V] = (1 − 2p)^{|V|}`).
fn sii_kernel(u: usize, s: usize) -> f64 {
    let d = u - s;
    if d % 2 == 0 {
        neg2_pow(s) / (d + 1) as f64
    } else {
        0.0
    }
}

/// STII top-order kernel: `(−2)^ℓ ∫_0^1 (1 − 2p)^{u−ℓ} ℓ (1 − p)^{ℓ−1} dp`, expanded in
/// `x = 1 − 2p` into positive terms.
fn stii_top_kernel(u: usize, ell: usize) -> f64 {
    let d = u - ell;
    let sum: f64 = (0..ell).filter(|j| (d + j) % 2 == 0).map(|j| binom(ell - 1, j) / (d + j + 1) as f64).sum();
    neg2_pow(ell) * ell as f64 / 2f64.powi(ell as i32 - 1) * sum
}

/// `∫_0^1 p^a (1 − p)^b (1 − 2p)^e dp` for `a ≤ b`, accurately for any `e`.
///
/// With `x = 1 − 2p` this is `2^{−a−b−1} ∫_{−1}^{1} (1 − x²)^a (1 + x)^{b−a} x^e dx`; expanding
/// `(1 + x)^{b−a}` leaves only positive terms `C(b−a, i) B((e+i+1)/2, a+1)` (odd powers vanish), so
/// nothing cancels even when the integral is tiny.
fn moment(a: usize, b: usize, e: usize) -> f64 {
    debug_assert!(a <= b);
    let beta = |z: f64| (0..=a).fold(1.0, |acc, q| acc * (q.max(1) as f64) / (z + q as f64));
    let sum: f64 =
        (0..=b - a).filter(|i| (e + i) % 2 == 0).map(|i| binom(b - a, i) * beta((e + i + 1) as f64 / 2.0)).sum();
    sum * 2f64.powi(-((a + b + 1) as i32))
}

/// FSII kernel for `1 ≤ s ≤ ℓ`.
///
/// shapiq's Möbius weights (Tsai et al. 2023 eq. 16) are, for `|T| = t > ℓ`,
/// `w(t, s) = (−1)^{ℓ−s} (s/(ℓ+s)) C(ℓ, s) C(t−1, ℓ) / C(t+ℓ−1, ℓ+s)`, and `1` for `T = S`. Summing
/// them against `M(T) = (−2)^t` directly cancels catastrophically past order ~13. Instead write
/// `1/C(t+ℓ−1, ℓ+s) = (ℓ+s) B(t−s, ℓ+s)` as a Beta integral (the `C(t−1, ℓ)` factor already vanishes
/// for `t ≤ ℓ`, so the sum may run over every `t`), expand `C(s−1+j, ℓ)` by Vandermonde and sum the
/// binomial series under the integral:
///
/// `g(u, s) = (−2)^s [1 + (−1)^{ℓ−s} s C(ℓ, s) Σ_r C(s−1, ℓ−r) C(d, r) (−2)^r K(r−1, ℓ+s−1, d−r)]`
///
/// with `d = u − s`, `ℓ−s+1 ≤ r ≤ min(ℓ, d)` and `K` = [`moment`]: at most `s` terms of moderate size.
/// Returns the terms of the bracket (times `(−2)^s`) for the rounding bound.
fn fsii_terms(u: usize, s: usize, ell: usize) -> impl Iterator<Item = f64> {
    let d = u - s;
    let scale = neg2_pow(s);
    let factor = sign(ell - s) * s as f64 * binom(ell, s);
    let tail = (ell - s + 1..=ell.min(d)).map(move |r| {
        scale * factor * binom(s - 1, ell - r) * binom(d, r) * neg2_pow(r) * moment(r - 1, ell + s - 1, d - r)
    });
    std::iter::once(scale).chain(tail)
}

/// Kernel value `g(u, s)` of `index` at order `ell`, with a bound on its rounding error.
fn kernel(index: Index, ell: usize, u: usize, s: usize) -> (f64, f64) {
    // Closed forms: a few ulps of their own size.
    let exact = |v: f64| (v, 4.0 * f64::EPSILON * v.abs());
    match index {
        Index::Fourier => exact(if u == s { 1.0 } else { 0.0 }),
        Index::Moebius => exact(neg2_pow(s)),
        Index::Bii => exact(if u == s { neg2_pow(s) } else { 0.0 }),
        Index::Fbii | Index::Bv => exact(if u <= ell { neg2_pow(s) } else { 0.0 }),
        Index::Sii | Index::Sv => exact(if s == 0 { 1.0 } else { sii_kernel(u, s) }),
        Index::Stii => exact(if s == 0 {
            1.0
        } else if s < ell {
            neg2_pow(s)
        } else {
            stii_top_kernel(u, ell)
        }),
        Index::Ksii => {
            if s == 0 {
                return exact(1.0);
            }
            // k-SII(S) = Σ_{T⊇S, |T|≤ℓ} B_{|T|−|S|} SII(T), and SII(T) = Σ_{U⊇T} g_SII(|U|, |T|) F(U).
            let terms = (s..=u.min(ell)).map(|t| binom(u - s, t - s) * bernoulli(t - s) * sii_kernel(u, t));
            summed(terms)
        }
        Index::Fsii => {
            if s == 0 {
                return exact(1.0);
            }
            summed(fsii_terms(u, s, ell))
        }
    }
}

/// Sum of `terms` and a rounding bound for it (`Σ|term| · (count + 4) · ε`, each term itself being
/// a product of a few correctly rounded factors).
fn summed(terms: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut sum, mut magnitude, mut count) = (0.0, 0.0, 0usize);
    for t in terms {
        sum += t;
        magnitude += t.abs();
        count += 1;
    }
    (sum, magnitude * (count + 4) as f64 * f64::EPSILON)
}

/// Whether `index` can be reported up to `max_order` at all, whatever the coefficients: lets a
/// caller refuse a bad request before it spends queries on it.
///
/// # Errors
/// [`IndexError::ZeroOrder`] for SII, k-SII, STII and FSII at `max_order = 0`.
pub fn check_order(index: Index, max_order: usize) -> Result<(), IndexError> {
    if max_order == 0 && index.needs_positive_order() {
        return Err(IndexError::ZeroOrder { index });
    }
    Ok(())
}

/// The index `index` of the function with Fourier form `fourier`, for subsets up to `max_order`
/// players.
///
/// Semantics match shapiq 1.4.1's `MoebiusConverter` for SV, BV, SII, k-SII, STII, FBII and FSII
/// (including their empty-set values, see the module docs); BII follows Grabisch (2000), and
/// `fourier`/`moebius` return the coefficients of order ≤ `max_order`. `max_order` is capped at `n`
/// (no index changes past it) and ignored by SV and BV (always order 1).
///
/// # Errors
/// [`IndexError::ZeroOrder`] for SII, k-SII, STII and FSII at `max_order = 0`;
/// [`IndexError::TooManyTerms`] if the work exceeds [`MAX_TERMS`];
/// [`IndexError::OrderTooLarge`] if k-SII or FSII at a high order meets a coefficient of too high
/// an order to convert accurately.
pub fn interactions(fourier: &Fourier, index: Index, max_order: usize) -> Result<Interactions, IndexError> {
    check_order(index, max_order)?;
    let n = fourier.n();
    let ell = match index {
        Index::Sv | Index::Bv => 1,
        _ => max_order.min(n),
    };

    // Only orders that occur need a trustworthy kernel.
    let orders: BTreeSet<usize> = fourier.iter().map(|(k, _)| k.len()).collect();
    let mut inaccurate: Option<usize> = None;
    let table = Kernel::new(fourier.degree(), ell, |u, s| {
        let (value, error) = kernel(index, ell, u, s);
        let accurate = value.is_finite() && error <= KERNEL_TOL * value.abs().max(2f64.powi(s as i32));
        if orders.contains(&u) && !accurate {
            inaccurate = Some(inaccurate.map_or(u, |o| o.min(u)));
        }
        value
    });
    if let Some(order) = inaccurate {
        return Err(IndexError::OrderTooLarge { index, max_order: ell, order });
    }
    let terms = total_work(fourier, &table);
    if terms > MAX_TERMS {
        return Err(IndexError::TooManyTerms { index, max_order: ell, terms, limit: MAX_TERMS });
    }

    let mut map = spread(fourier, &table);
    let empty = Subset::empty();
    map.entry(empty.clone()).or_insert(0.0);
    prune_relative(&mut map, Some(&empty));
    let mut values: Vec<(Subset, f64)> = map.into_iter().collect();
    values.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
    Ok(Interactions { index, max_order: ell, n, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for index in Index::ALL {
            assert_eq!(index.to_string().parse::<Index>(), Ok(index));
            let json = serde_json::to_string(&index).unwrap();
            assert_eq!(json, format!("\"{index}\""));
            assert_eq!(serde_json::from_str::<Index>(&json).unwrap(), index);
        }
        for (shapiq, ours) in [
            ("k-SII", Index::Ksii),
            ("FSII", Index::Fsii),
            ("FBII", Index::Fbii),
            ("STII", Index::Stii),
            ("SII", Index::Sii),
            ("SV", Index::Sv),
            ("BV", Index::Bv),
            ("BII", Index::Bii),
            ("Moebius", Index::Moebius),
            ("Möbius", Index::Moebius),
        ] {
            assert_eq!(shapiq.parse::<Index>(), Ok(ours));
        }
        assert!(matches!("shapley".parse::<Index>(), Err(IndexError::UnknownIndex(_))));
    }

    #[test]
    fn bernoulli_table_satisfies_recurrence() {
        // Σ_{k=0}^{m} C(m+1, k) B_k = 0 for m ≥ 1.
        for m in 1..=20 {
            let s: f64 = (0..=m).map(|k| binom(m + 1, k) * bernoulli(k)).sum();
            let scale: f64 = (0..=m).map(|k| (binom(m + 1, k) * bernoulli(k)).abs()).sum();
            assert!(s.abs() <= 1e-14 * scale, "m = {m}: {s}");
        }
    }

    #[test]
    fn stii_top_kernel_is_one_at_its_own_order() {
        for ell in 1..10 {
            assert!((stii_top_kernel(ell, ell) - neg2_pow(ell)).abs() < 1e-12 * neg2_pow(ell).abs());
        }
    }
}
