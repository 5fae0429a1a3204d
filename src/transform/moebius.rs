//! Exact conversion between the Fourier (parity) and Möbius (AND) bases.
//!
//! With `1 = kept`, each Fourier basis function factors as
//! `(−1)^{<m,U>} = Π_{i∈U} (1 − 2 m_i) = Σ_{S⊆U} (−2)^{|S|} Π_{i∈S} m_i`, which gives
//!
//! * `M(S) = (−2)^{|S|} Σ_{T⊇S} F(T)` (Fourier → Möbius), and, from `m_i = (1 − (−1)^{m_i}) / 2`,
//! * `F(T) = (−1)^{|T|} Σ_{S⊇T} 2^{−|S|} M(S)` (Möbius → Fourier).
//!
//! Both touch every subset of every stored coefficient, so the cost is `Σ_k 2^{|k|}`: cheap for the
//! low orders SPEX recovers, hopeless for a parity over many players, hence
//! [`MAX_EXPANSION_ORDER`].

use super::spread::{prune_relative, spread, Kernel};
use super::{Basis, Fourier, Moebius, Sparse};

/// Largest coefficient order the full conversions expand: one coefficient of order `k` becomes
/// `2^k` coefficients, and at `k = 20` that is already a million entries. (The interaction indices
/// in [`super::index`] only need subsets up to their order and are not bound by this.)
pub const MAX_EXPANSION_ORDER: usize = 20;

/// A coefficient is of too high an order to expand into all its subsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a coefficient of order {order} would expand into 2^{order} subsets; the Fourier/Möbius conversion supports orders up to {limit}")]
pub struct ExpansionError {
    /// Order of the offending coefficient (the expansion's degree).
    pub order: usize,
    /// [`MAX_EXPANSION_ORDER`].
    pub limit: usize,
}

/// Spreads every coefficient of `src` onto all its subsets with weight `weight(|source|, |target|)`
/// and drops the cancellation residue (see `spread::RELATIVE_ZERO`).
fn expand<A: Basis, B: Basis>(
    src: &Sparse<A>,
    weight: impl FnMut(usize, usize) -> f64,
) -> Result<Sparse<B>, ExpansionError> {
    let degree = src.degree();
    if degree > MAX_EXPANSION_ORDER {
        return Err(ExpansionError { order: degree, limit: MAX_EXPANSION_ORDER });
    }
    let kernel = Kernel::new(degree, degree, weight);
    let mut coefs = spread(src, &kernel);
    prune_relative(&mut coefs, None);
    Ok(Sparse { n: src.n, coefs: coefs.into_iter().collect(), _basis: std::marker::PhantomData })
}

/// `(−2)^s` and `2^{−u}` exactly (powers of two are exact in `f64` far beyond any order we allow).
fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

impl Fourier {
    /// The Möbius form of the same function: `M(S) = (−2)^{|S|} Σ_{T⊇S} F(T)`.
    ///
    /// Runs in `O(Σ_k 2^{|k|})` (in parallel for large inputs). Entries that cancel to within
    /// `1e-14` of the largest magnitude are dropped.
    ///
    /// # Panics
    /// If a coefficient has more than [`MAX_EXPANSION_ORDER`] players; use
    /// [`Fourier::try_to_moebius`] where the input is not known to be low-order.
    pub fn to_moebius(&self) -> Moebius {
        self.try_to_moebius().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Fourier::to_moebius`], refusing inputs with a coefficient above [`MAX_EXPANSION_ORDER`].
    pub fn try_to_moebius(&self) -> Result<Moebius, ExpansionError> {
        expand(self, |_u, s| {
            let sign = if s % 2 == 0 { 1.0 } else { -1.0 };
            sign * pow2(s as i32)
        })
    }
}

impl Moebius {
    /// The Fourier form of the same function: `F(T) = (−1)^{|T|} Σ_{S⊇T} 2^{−|S|} M(S)`.
    ///
    /// Runs in `O(Σ_S 2^{|S|})` (in parallel for large inputs). Entries that cancel to within
    /// `1e-14` of the largest magnitude are dropped.
    ///
    /// # Panics
    /// If a coefficient has more than [`MAX_EXPANSION_ORDER`] players; use
    /// [`Moebius::try_to_fourier`] where the input is not known to be low-order.
    pub fn to_fourier(&self) -> Fourier {
        self.try_to_fourier().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Moebius::to_fourier`], refusing inputs with a coefficient above [`MAX_EXPANSION_ORDER`].
    pub fn try_to_fourier(&self) -> Result<Fourier, ExpansionError> {
        expand(self, |u, t| {
            let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
            sign * pow2(-(u as i32))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subset::Subset;

    fn s(v: &[u32]) -> Subset {
        Subset::new(v.to_vec())
    }

    #[test]
    fn single_parity_expands_to_signed_powers_of_two() {
        // (−1)^{m0 + m1} = 1 − 2 m0 − 2 m1 + 4 m0 m1.
        let f = Fourier::from_pairs(3, [(s(&[0, 1]), 1.0)]);
        let m = f.to_moebius();
        assert_eq!(m.len(), 4);
        assert_eq!(m.get(&s(&[])), 1.0);
        assert_eq!(m.get(&s(&[0])), -2.0);
        assert_eq!(m.get(&s(&[1])), -2.0);
        assert_eq!(m.get(&s(&[0, 1])), 4.0);
        assert_eq!(m.to_fourier(), f);
    }

    #[test]
    fn cancellation_is_dropped() {
        // m0 in the Fourier basis is (1 − (−1)^{m0}) / 2: its Möbius form has one term.
        let f = Fourier::from_pairs(2, [(s(&[]), 0.5), (s(&[0]), -0.5)]);
        let m = f.to_moebius();
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&s(&[0])), 1.0);
    }

    #[test]
    fn refuses_huge_orders() {
        let f = Fourier::from_pairs(40, [(Subset::new((0..30).collect()), 1.0)]);
        assert_eq!(f.try_to_moebius(), Err(ExpansionError { order: 30, limit: MAX_EXPANSION_ORDER }));
        assert!(Fourier::new(5).to_moebius().is_empty());
    }
}
