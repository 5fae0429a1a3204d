//! The SPEX sampling design (Kang et al., ICML 2025): `C` random subsampling matrices
//! `M_c ∈ GF(2)^{n×b}` and BCH-coded delays `d_0 = 0, d_1, …, d_{P−1}`; group `c`, delay `p`
//! samples the masks `{M_c·ℓ + d_p : ℓ ∈ GF(2)^b}`.
//!
//! After a `b`-dimensional Walsh–Hadamard transform over `ℓ`, every bin `j` of group `c` holds
//! `Σ_{k : M_cᵀk = j} F(k)(−1)^{<d_p,k>}`: the frequencies alias into `2^b` bins per group, and the
//! delays stamp each frequency with its BCH parity bits so that a bin with one frequency reveals it.
//!
//! Design and decode by hand (what [`crate::explain::Explainer`] does for you):
//!
//! ```
//! use spex::decode::spex::{decode, SpexDecoderConfig};
//! use spex::design::{rng, spex::{choose_parameters, SpexDesign}};
//! use spex::mask::MaskRef;
//! use spex::subset::Subset;
//!
//! let n = 100;
//! let (b, t) = choose_parameters(n, 10_000, 5).unwrap(); // largest design within 10 000 masks
//! let design = SpexDesign::new(n, b, t, &mut rng(0, 0)).unwrap();
//! let f = |m: MaskRef<'_>| if m.get(7) && m.get(42) { 1.0 } else { 0.0 };
//! let values: Vec<f64> = design.masks().iter().map(f).collect();
//! let decoded = decode(&design, &values, &SpexDecoderConfig::default()).unwrap();
//! // An AND of two players is (1 − χ_7 − χ_42 + χ_{7,42}) / 4 in the parity basis χ.
//! assert!((decoded.fourier.get(&Subset::new(vec![7, 42])) - 0.25).abs() < 1e-9);
//! assert!((decoded.fourier.get(&Subset::new(vec![7])) + 0.25).abs() < 1e-9);
//! ```

use rand::RngCore;

use crate::bch::{self, BchCode, BchError};
use crate::mask::{Mask, MaskBatch, MaskRef};

/// Number of subsampling groups, as in the reference.
pub const GROUPS: usize = 3;
/// Default degree parameter `t`: interactions up to this order are recoverable.
pub const DEFAULT_T: usize = 5;
/// Smallest useful number of subsampling bits (8 bins per group).
pub const MIN_B: u32 = 3;
/// Largest number of subsampling bits accepted (keeps `C·P·2^b` masks addressable).
pub const MAX_B: u32 = 24;
/// Smallest degree parameter the budget search falls back to.
pub const MIN_T: usize = 2;

/// Errors from building a SPEX design.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpexDesignError {
    /// The BCH code cannot be built.
    #[error(transparent)]
    Code(#[from] BchError),
    /// The budget is below `C·P·2^3` even at the smallest degree parameter.
    #[error(
        "a sample budget of {budget} is too small for SPEX with n = {n}: the minimum is {minimum} \
         (b = 3, t = {MIN_T}); {recommended} samples (b = 3, t = {t}) keep interactions up to order {t}"
    )]
    BudgetTooSmall {
        /// Players.
        n: usize,
        /// Budget asked for.
        budget: usize,
        /// Smallest budget SPEX runs with at all.
        minimum: usize,
        /// The degree parameter asked for.
        t: usize,
        /// Smallest budget at the degree parameter asked for.
        recommended: usize,
    },
    /// `b` outside `1..=MAX_B`.
    #[error("b = {0} subsampling bits is outside 1..={MAX_B}")]
    BadB(u32),
}

/// Number of samples `C·P·2^b` of a SPEX design for `n` players at degree parameter `t`.
pub fn num_samples(n: usize, b: u32, t: usize) -> Result<usize, BchError> {
    let (_, len, k) = bch::parameters(n, t)?;
    Ok((GROUPS * (len - k + 1)) << b)
}

/// The `(b, t)` the reference picks for a budget: the largest `b` with `C·P·2^b ≤ budget`
/// (at most `max(n, 3)` bits: more bins than frequencies buy nothing), lowering `t` towards
/// [`MIN_T`] only if even `b = 3` does not fit.
pub fn choose_parameters(n: usize, budget: usize, t: usize) -> Result<(u32, usize), SpexDesignError> {
    let b_cap = (n.max(MIN_B as usize) as u32).min(MAX_B);
    for t_try in (MIN_T..=t.max(MIN_T)).rev() {
        let per_bin = num_samples(n, 0, t_try)?;
        let mut b = 0;
        while b < b_cap && per_bin << (b + 1) <= budget {
            b += 1;
        }
        if b >= MIN_B {
            return Ok((b, t_try));
        }
    }
    Err(SpexDesignError::BudgetTooSmall {
        n,
        budget,
        minimum: num_samples(n, MIN_B, MIN_T)?,
        t,
        recommended: num_samples(n, MIN_B, t)?,
    })
}

/// A SPEX design: everything needed to generate its masks and to decode their values.
#[derive(Clone, Debug)]
pub struct SpexDesign {
    n: usize,
    b: u32,
    code: BchCode,
    /// `matrices[c][j]` is column `j` of `M_c`, as an `n`-bit mask.
    matrices: Vec<Vec<Mask>>,
    delays: Vec<Mask>,
}

impl SpexDesign {
    /// A design with `b` subsampling bits and degree parameter `t`, its matrices drawn from `rng`
    /// (i.i.d. fair bits, as the reference).
    pub fn new(n: usize, b: u32, t: usize, rng: &mut impl RngCore) -> Result<Self, SpexDesignError> {
        if !(1..=MAX_B).contains(&b) {
            return Err(SpexDesignError::BadB(b));
        }
        let code = BchCode::new(n, t)?;
        let matrices = (0..GROUPS).map(|_| (0..b).map(|_| random_mask(n, rng)).collect()).collect();
        Ok(Self::from_parts(code, b, matrices))
    }

    /// A design with explicit matrices (as read back from a design file). Each group needs `b`
    /// columns of `n` players.
    pub fn with_matrices(n: usize, t: usize, matrices: Vec<Vec<Mask>>) -> Result<Self, SpexDesignError> {
        let b = matrices.first().map_or(0, Vec::len) as u32;
        if !(1..=MAX_B).contains(&b) || matrices.iter().any(|m| m.len() != b as usize) {
            return Err(SpexDesignError::BadB(b));
        }
        assert!(matrices.iter().flatten().all(|c| c.n() == n), "matrix columns must have n players");
        Ok(Self::from_parts(BchCode::new(n, t)?, b, matrices))
    }

    fn from_parts(code: BchCode, b: u32, matrices: Vec<Vec<Mask>>) -> Self {
        let delays = code.delays();
        SpexDesign { n: code.n(), b, code, matrices, delays }
    }

    /// Players.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Subsampling bits per group (`2^b` bins per group).
    pub fn b(&self) -> u32 {
        self.b
    }

    /// Degree parameter of the delay code.
    pub fn t(&self) -> usize {
        self.code.t()
    }

    /// Number of subsampling groups `C`.
    pub fn groups(&self) -> usize {
        self.matrices.len()
    }

    /// Number of delays `P` (the zero delay plus one per parity bit).
    pub fn num_delays(&self) -> usize {
        self.delays.len()
    }

    /// Masks per block (one group, one delay): `2^b`.
    pub fn block_len(&self) -> usize {
        1 << self.b
    }

    /// Total samples `C·P·2^b`.
    pub fn num_samples(&self) -> usize {
        self.groups() * self.num_delays() * self.block_len()
    }

    /// The delay code.
    pub fn code(&self) -> &BchCode {
        &self.code
    }

    /// The delay masks.
    pub fn delays(&self) -> &[Mask] {
        &self.delays
    }

    /// The columns of every `M_c`.
    pub fn matrices(&self) -> &[Vec<Mask>] {
        &self.matrices
    }

    /// Bin of frequency `players` in group `c`: `M_cᵀk`, with column 0 as the most significant
    /// bit (the order in which `ℓ` is enumerated).
    pub fn bin(&self, c: usize, players: &[u32]) -> usize {
        self.matrices[c].iter().fold(0usize, |acc, col| (acc << 1) | col.as_ref().parity(players) as usize)
    }

    /// Every mask of the design, ordered by group, then delay, then `ℓ` from 0 to `2^b − 1`
    /// (`ℓ`'s first coordinate most significant), so sample `(c·P + p)·2^b + ℓ` is
    /// `M_c·ℓ + d_p`.
    pub fn masks(&self) -> MaskBatch {
        let mut batch = MaskBatch::with_capacity(self.n, self.num_samples());
        for c in 0..self.groups() {
            let span = self.span(c);
            for d in &self.delays {
                for base in &span {
                    let mut m = base.clone();
                    m.xor_assign(d.as_ref());
                    batch.push(m.as_ref()).expect("design masks have n players");
                }
            }
        }
        batch
    }

    /// Sample `index` of [`masks`](Self::masks), computed on its own (any worker can compute any
    /// batch without the others).
    pub fn mask(&self, index: usize) -> Mask {
        let per_group = self.num_delays() * self.block_len();
        let (c, rest) = (index / per_group, index % per_group);
        let (p, l) = (rest / self.block_len(), rest % self.block_len());
        let mut m = self.delays[p].clone();
        for (j, col) in self.matrices[c].iter().enumerate() {
            if l >> (self.b as usize - 1 - j) & 1 == 1 {
                m.xor_assign(col.as_ref());
            }
        }
        m
    }

    /// `M_c·ℓ` for every `ℓ`, each built from an earlier one with a single XOR.
    fn span(&self, c: usize) -> Vec<Mask> {
        let cols = &self.matrices[c];
        let mut span: Vec<Mask> = Vec::with_capacity(self.block_len());
        span.push(Mask::zeros(self.n));
        for l in 1..self.block_len() {
            let low = l.trailing_zeros() as usize; // lowest set bit of ℓ ↔ column b−1−low
            let mut m = span[l & (l - 1)].clone();
            m.xor_assign(cols[self.b as usize - 1 - low].as_ref());
            span.push(m);
        }
        span
    }

    /// `(-1)^{<d_p, k>}` for every delay: the signature a singleton with frequency `players`
    /// leaves across a bin's `P` entries.
    pub fn signature(&self, players: &[u32]) -> Vec<f64> {
        std::iter::once(1.0)
            .chain(self.code.signature(players).into_iter().map(|bit| if bit { -1.0 } else { 1.0 }))
            .collect()
    }

    /// Whether `mask` is sample `index` (used to check a masks file against its design).
    pub fn matches(&self, index: usize, mask: MaskRef<'_>) -> bool {
        self.mask(index).as_ref() == mask
    }
}

fn random_mask(n: usize, rng: &mut impl RngCore) -> Mask {
    crate::design::uniform::random_masks(n, 1, rng).row(0).to_mask()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::rng;

    #[test]
    fn sample_counts_match_reference_table() {
        // Appendix A of the reference (t = 5): n -> N at b = 4 / 6 / 8.
        for (n, counts) in [
            (11, [1008, 4032, 16128]),
            (36, [1344, 5376, 21504]),
            (200, [1968, 7872, 31488]),
            (466, [2208, 8832, 35328]),
            (973, [2448, 9792, 39168]),
            (1992, [2688, 10752, 43008]),
        ] {
            for (b, want) in [4, 6, 8].into_iter().zip(counts) {
                assert_eq!(num_samples(n, b, 5).unwrap(), want, "n={n} b={b}");
            }
        }
        assert_eq!(num_samples(1981, 8, 6).unwrap(), 51456);
    }

    #[test]
    fn budget_picks_largest_b_then_lowers_t() {
        // n = 1000, t = 5: P = 56, so 21 504 = 3·56·2^7 fits b = 7 exactly.
        assert_eq!(choose_parameters(1000, 21_504, 5), Ok((7, 5)));
        assert_eq!(choose_parameters(1000, 21_503, 5), Ok((6, 5)));
        // README example of the reference: 6 words, budget 1000 -> b = 3 (504 samples).
        assert_eq!(choose_parameters(6, 1000, 5), Ok((3, 5)));
        assert_eq!(choose_parameters(30, 1000, 5), Ok((3, 5)));
        // Too small for t = 5 at b = 3 (1 344 for n = 1000): t drops to the largest that fits.
        let (b, t) = choose_parameters(1000, 1000, 5).unwrap();
        assert_eq!(b, 3);
        assert!(t < 5 && num_samples(1000, 3, t).unwrap() <= 1000 && num_samples(1000, 3, t + 1).unwrap() > 1000);
        match choose_parameters(1000, 100, 5) {
            Err(SpexDesignError::BudgetTooSmall { minimum, .. }) => {
                assert_eq!(minimum, num_samples(1000, 3, 2).unwrap());
                assert!(choose_parameters(1000, minimum, 5).is_ok());
                assert!(choose_parameters(1000, minimum - 1, 5).is_err());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn masks_are_span_plus_delay_in_order() {
        let d = SpexDesign::new(70, 4, 3, &mut rng(1, 0)).unwrap();
        let masks = d.masks();
        assert_eq!(masks.len(), d.num_samples());
        for index in [0, 1, 5, 17, d.num_samples() / 2, d.num_samples() - 1] {
            assert_eq!(masks.row(index), d.mask(index).as_ref(), "sample {index}");
        }
        // ℓ = 0, p = 0 is the all-ablated mask in every group.
        assert_eq!(masks.row(0).count_kept(), 0);
    }
}
