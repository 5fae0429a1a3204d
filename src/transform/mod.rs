//! Sparse representations of a set function `f: {0,1}^n -> R` and the transforms between them.
//!
//! * [`Fourier`]: `f(m) = Σ_k F(k) (-1)^{<m,k>}` (Walsh–Hadamard basis; what SPEX recovers).
//! * [`Moebius`]: `f(m) = Σ_{S ⊆ kept(m)} M(S)` (Harsanyi dividends, "present" convention).
//!
//! Both are [`Sparse`] maps from [`Subset`] to coefficient, tagged by their basis so that a Möbius
//! table is never evaluated as a Fourier one.
//!
//! * [`moebius`]: exact conversion between the two ([`Fourier::to_moebius`], [`Moebius::to_fourier`]).
//! * [`index`]: interaction indices (Shapley/Banzhaf values, SII, k-SII, STII, FSII, FBII, …)
//!   computed exactly from a Fourier form ([`interactions`]).

pub mod fwht;
pub mod index;
pub mod moebius;
mod spread;

pub use index::{interactions, Index, IndexError, Interactions};

use std::collections::BTreeMap;
use std::marker::PhantomData;

use rayon::prelude::*;

use crate::mask::{MaskRef, MaskSlice};
use crate::subset::Subset;

/// A basis of functions on `{0,1}^n` indexed by subsets.
pub trait Basis: Send + Sync + 'static {
    /// Name used in messages and output (`"fourier"`, `"moebius"`).
    const NAME: &'static str;
    /// The basis function of `players` evaluated at `mask`.
    fn basis_value(mask: MaskRef<'_>, players: &[u32]) -> f64;
}

/// Marker for the Fourier (Walsh–Hadamard, parity) basis: `(-1)^{<m,k>}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FourierBasis;

/// Marker for the Möbius (unanimity, AND) basis: `1` if every player of `S` is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoebiusBasis;

impl Basis for FourierBasis {
    const NAME: &'static str = "fourier";
    fn basis_value(mask: MaskRef<'_>, players: &[u32]) -> f64 {
        mask.fourier_sign(players)
    }
}

impl Basis for MoebiusBasis {
    const NAME: &'static str = "moebius";
    fn basis_value(mask: MaskRef<'_>, players: &[u32]) -> f64 {
        if mask.keeps_all(players) {
            1.0
        } else {
            0.0
        }
    }
}

/// A sparse expansion of a function over `n` players in basis `B`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sparse<B: Basis> {
    n: usize,
    /// In subset order, so that every sum over the coefficients (evaluations, the baseline,
    /// index conversions) adds them in one order: the same command gives the same figures to
    /// the last bit, run after run (a hash map's order changes from process to process).
    coefs: BTreeMap<Subset, f64>,
    _basis: PhantomData<B>,
}

/// A sparse Fourier (Walsh–Hadamard) expansion.
pub type Fourier = Sparse<FourierBasis>;
/// A sparse Möbius (Harsanyi) expansion.
pub type Moebius = Sparse<MoebiusBasis>;

impl<B: Basis> Sparse<B> {
    /// The zero function over `n` players.
    pub fn new(n: usize) -> Self {
        Sparse { n, coefs: BTreeMap::new(), _basis: PhantomData }
    }

    /// A function from `(subset, coefficient)` pairs; repeated subsets are summed.
    pub fn from_pairs(n: usize, pairs: impl IntoIterator<Item = (Subset, f64)>) -> Self {
        let mut s = Self::new(n);
        for (k, v) in pairs {
            s.add(k, v);
        }
        s
    }

    /// Number of players.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Adds `value` to the coefficient of `subset`.
    pub fn add(&mut self, subset: Subset, value: f64) {
        debug_assert!(subset.players().last().is_none_or(|&p| (p as usize) < self.n));
        *self.coefs.entry(subset).or_insert(0.0) += value;
    }

    /// The coefficient of `subset` (0 where absent).
    pub fn get(&self, subset: &Subset) -> f64 {
        self.coefs.get(subset).copied().unwrap_or(0.0)
    }

    /// Number of stored coefficients.
    pub fn len(&self) -> usize {
        self.coefs.len()
    }

    /// Whether no coefficient is stored.
    pub fn is_empty(&self) -> bool {
        self.coefs.is_empty()
    }

    /// Iterates `(subset, coefficient)` in subset order.
    pub fn iter(&self) -> impl Iterator<Item = (&Subset, f64)> {
        self.coefs.iter().map(|(k, &v)| (k, v))
    }

    /// The coefficients sorted by decreasing magnitude (ties by subset), for stable output.
    pub fn sorted(&self) -> Vec<(Subset, f64)> {
        let mut v: Vec<(Subset, f64)> = self.coefs.iter().map(|(k, &c)| (k.clone(), c)).collect();
        v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Largest subset size with a stored coefficient (0 for a constant or empty expansion).
    pub fn degree(&self) -> usize {
        self.coefs.keys().map(Subset::len).max().unwrap_or(0)
    }

    /// Multiplies every coefficient by `factor`.
    pub fn scale(&mut self, factor: f64) {
        self.coefs.values_mut().for_each(|c| *c *= factor);
    }

    /// Drops coefficients with `|c| <= tol`.
    pub fn prune(&mut self, tol: f64) {
        self.coefs.retain(|_, c| c.abs() > tol);
    }

    /// Keeps only subsets with at most `max_order` players.
    pub fn truncate_order(&self, max_order: usize) -> Self {
        Self::from_pairs(self.n, self.iter().filter(|(k, _)| k.len() <= max_order).map(|(k, v)| (k.clone(), v)))
    }

    /// The function's value at one mask.
    pub fn eval(&self, mask: MaskRef<'_>) -> f64 {
        self.coefs.iter().map(|(k, &c)| c * B::basis_value(mask, k.players())).sum()
    }

    /// The function's value at every mask of a batch (parallel over masks).
    pub fn eval_batch(&self, masks: MaskSlice<'_>) -> Vec<f64> {
        let terms: Vec<(&[u32], f64)> = self.coefs.iter().map(|(k, &c)| (k.players(), c)).collect();
        (0..masks.len())
            .into_par_iter()
            .map(|i| {
                let m = masks.row(i);
                terms.iter().map(|&(k, c)| c * B::basis_value(m, k)).sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::design::uniform::random_masks;

    /// Sums over the coefficients run in one order however the expansion was built: a hash
    /// map's order (which differs between maps and processes) changed the figures in the last
    /// bits from run to run.
    #[test]
    fn evaluation_is_bitwise_independent_of_insertion_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Distinct subsets (a repeated one would be summed in insertion order) of orders 1 to 3,
        // with magnitudes over 16 decades.
        let pairs: Vec<(Subset, f64)> = (0..300u32)
            .map(|i| {
                let players = [i, 300 + i % 7, 307 + i % 3];
                let value = 10f64.powi(rng.random_range(-8..8)) * rng.random::<f64>();
                (Subset::new(players[..1 + i as usize % 3].to_vec()), value)
            })
            .collect();
        let forward = Fourier::from_pairs(310, pairs.iter().cloned());
        let backward = Fourier::from_pairs(310, pairs.iter().rev().cloned());
        let masks = random_masks(310, 64, &mut rng);
        let bits = |f: &Fourier| f.eval_batch(masks.as_slice()).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&forward), bits(&backward));
        let mut keys: Vec<&Subset> = pairs.iter().map(|(k, _)| k).collect();
        keys.sort();
        assert!(forward.iter().map(|(k, _)| k).eq(keys), "iterated in subset order");
    }
}
