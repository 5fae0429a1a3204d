//! Shortened binary BCH codes: the "joint-coded" delays of the SPEX design and their decoders.
//!
//! SPEX identifies the frequency `k` of a singleton bin from the signs `(-1)^{<d_p, k>}` it shows
//! under the delays `d_p`. Choosing the delays as the parity columns of a systematic BCH code
//! makes those signs the parity bits of the codeword `[k | parity(k)]`; decoding the received
//! word `[0 | parity]` then "corrects" exactly the positions of `k`, so every `k` of weight at
//! most `t` is recovered from `t·m + 1` delays instead of `n`.
//!
//! The code is the narrow-sense primitive binary BCH code of length `2^m − 1` and designed
//! distance `2t + 1` over the field `galois` uses (see [`field`]), shortened to `n` message bits, with the
//! parameter search of the reference (`sparse_transform.qsft.codes.BCH`), so delays match it.

pub mod field;

use field::{Field, MAX_M};

use crate::mask::Mask;

/// Largest supported degree parameter `t` (keeps the parity length within 256 bits).
pub const MAX_T: usize = 12;

/// Parity bits of one word, bit `q` = parity position `q` (0 = the highest-degree parity).
type Parity = [u64; 4];

/// Errors from choosing a code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BchError {
    /// `t` outside `1..=MAX_T`.
    #[error("degree parameter t = {0} is outside 1..={MAX_T}")]
    BadT(usize),
    /// `n` is zero.
    #[error("a code needs at least one player")]
    NoPlayers,
    /// No code of length below 2^20 has enough message bits.
    #[error("no BCH code of length < 2^{MAX_M} carries {n} message bits at t = {t}")]
    TooManyPlayers {
        /// Players requested.
        n: usize,
        /// Degree parameter.
        t: usize,
    },
}

/// A frequency recovered by decoding: the players of `k` and how many positions were corrected
/// in total (players plus flipped parity bits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedWord {
    /// The players of the decoded frequency, ascending.
    pub players: Vec<u32>,
    /// Positions corrected: `players.len()` plus parity bits that disagreed with the codeword.
    pub errors: usize,
}

/// A shortened binary BCH code carrying `n` message bits (one per player).
#[derive(Clone, Debug)]
pub struct BchCode {
    field: Field,
    n: usize,
    t: usize,
    /// Primitive length 2^m − 1.
    len: usize,
    /// Message bits of the unshortened code.
    k: usize,
    /// Parity bits, `len − k`.
    r: usize,
    /// Parity bits of each player's unit message.
    player_parity: Vec<Parity>,
}

/// `m`, length and dimension of the code the reference picks for `(n, t)`.
pub fn parameters(n: usize, t: usize) -> Result<(u32, usize, usize), BchError> {
    if !(1..=MAX_T).contains(&t) {
        return Err(BchError::BadT(t));
    }
    if n == 0 {
        return Err(BchError::NoPlayers);
    }
    let d = 2 * t + 1;
    let mut m = ((d + 1) as f64).log2().ceil() as u32;
    while m < MAX_M {
        let len = (1usize << m) - 1;
        let k = len - generator_degree(m, t);
        if k >= n {
            return Ok((m, len, k));
        }
        m += 1;
    }
    Err(BchError::TooManyPlayers { n, t })
}

/// The cyclotomic cosets mod `2^m − 1` that hold `1..=2t` (each coset = the exponents of the
/// conjugate roots of one minimal polynomial).
fn cosets(m: u32, t: usize) -> Vec<Vec<u64>> {
    let order = (1u64 << m) - 1;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for i in 1..=(2 * t as u64) {
        let i = i % order;
        if seen.contains(&i) {
            continue;
        }
        let mut coset = vec![];
        let mut j = i;
        while seen.insert(j) {
            coset.push(j);
            j = j * 2 % order;
        }
        out.push(coset);
    }
    out
}

/// Degree of the generator polynomial: the number of distinct conjugates of α^1..α^{2t}.
fn generator_degree(m: u32, t: usize) -> usize {
    cosets(m, t).iter().map(Vec::len).sum()
}

/// The generator `g(x) = lcm(minpoly(α^1), …, minpoly(α^{2t}))` as binary coefficients,
/// ascending degree.
fn generator(field: &Field, t: usize) -> Vec<bool> {
    let mut g: Vec<u32> = vec![1];
    for coset in cosets(field.m(), t) {
        for e in coset {
            // g <- g · (x + α^e)
            let root = field.alpha_pow(e);
            let mut next = vec![0u32; g.len() + 1];
            for (i, &c) in g.iter().enumerate() {
                next[i + 1] ^= c;
                next[i] ^= field.mul(c, root);
            }
            g = next;
        }
    }
    g.iter()
        .map(|&c| {
            debug_assert!(c <= 1, "minimal polynomials have binary coefficients");
            c == 1
        })
        .collect()
}

fn parity_get(p: &Parity, q: usize) -> bool {
    p[q / 64] >> (q % 64) & 1 == 1
}

fn parity_flip(p: &mut Parity, q: usize) {
    p[q / 64] ^= 1 << (q % 64);
}

impl BchCode {
    /// The code the reference uses for `n` players and degree parameter `t`.
    pub fn new(n: usize, t: usize) -> Result<Self, BchError> {
        let (m, len, k) = parameters(n, t)?;
        let field = Field::new(m);
        let g = generator(&field, t);
        let r = len - k;
        debug_assert_eq!(g.len(), r + 1);
        // Player i carries message degree len−1−s−i (s = k − n shortened positions), so its
        // parity is x^{len−1−s−i} mod g(x). Walk x^e mod g for e = 0..len as an LFSR.
        let s = k - n;
        let top = len - 1 - s; // degree of player 0
        let bottom = top + 1 - n; // degree of player n−1 (= r)
        let mut player_parity = vec![[0u64; 4]; n];
        let mut state = vec![false; r]; // coefficients of x^0..x^{r−1}
        state[0] = r > 0;
        for e in 0..=top {
            if e >= bottom {
                let word = &mut player_parity[top - e];
                for (deg, &bit) in state.iter().enumerate() {
                    if bit {
                        // parity position q holds the coefficient of x^{r−1−q}
                        parity_flip(word, r - 1 - deg);
                    }
                }
            }
            // state <- x · state mod g
            let carry = state[r - 1];
            for deg in (1..r).rev() {
                state[deg] = state[deg - 1] ^ (carry && g[deg]);
            }
            state[0] = carry && g[0];
        }
        Ok(BchCode { field, n, t, len, k, r, player_parity })
    }

    /// Number of message bits (players).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Degree parameter: every frequency of weight ≤ t is decodable.
    pub fn t(&self) -> usize {
        self.t
    }

    /// `(length, dimension)` of the unshortened primitive code, e.g. `(63, 36)`.
    pub fn code_size(&self) -> (usize, usize) {
        (self.len, self.k)
    }

    /// Number of parity bits.
    pub fn parity_len(&self) -> usize {
        self.r
    }

    /// Number of SPEX delays: the all-zero reference delay plus one per parity bit.
    pub fn num_delays(&self) -> usize {
        self.r + 1
    }

    /// The delay masks `d_0 = 0, d_1, …, d_r` over the `n` players: `d_p[i]` is parity bit `p−1`
    /// of player `i`'s unit message.
    pub fn delays(&self) -> Vec<Mask> {
        let mut rows = vec![Mask::zeros(self.n); self.r + 1];
        for (i, parity) in self.player_parity.iter().enumerate() {
            for (q, row) in rows[1..].iter_mut().enumerate() {
                if parity_get(parity, q) {
                    row.set(i, true);
                }
            }
        }
        rows
    }

    /// Parity bits `<d_p, k> mod 2` for `p = 1..=r` of the frequency with the given players:
    /// entry `q` is the sign bit (true = −1) under delay `q + 1`.
    pub fn signature(&self, players: &[u32]) -> Vec<bool> {
        let mut acc = [0u64; 4];
        for &i in players {
            let p = &self.player_parity[i as usize];
            for w in 0..4 {
                acc[w] ^= p[w];
            }
        }
        (0..self.r).map(|q| parity_get(&acc, q)).collect()
    }

    /// Hard-decision decoding of received parity bits (`true` = 1). Returns the frequency whose
    /// codeword is within `t` of `[0 | bits]`, or `None`.
    pub fn decode_hard(&self, bits: &[bool]) -> Option<DecodedWord> {
        assert_eq!(bits.len(), self.r, "expected {} parity bits", self.r);
        let syn = self.syndromes(bits.iter().enumerate().filter(|(_, &b)| b).map(|(q, _)| q));
        self.decode_syndromes(&syn)
    }

    /// Soft-decision (Chase-II) decoding from reliabilities `y_q` (sign negative = bit 1,
    /// magnitude = confidence), as the reference's `parity_decode_2chase_t2_max_likelihood`:
    /// hard-decode the signs; if that fails, flip the `d(d+1)/2` cheapest patterns of the
    /// `chase_depth` least reliable bits and keep every distinct success.
    ///
    /// Returns the distinct candidates best first — least total reliability on the bits they
    /// contradict (the maximum-likelihood order under sign noise), then fewest errors — so a
    /// caller can fall back to the next one if the first fails validation. The reference keeps
    /// only the candidate with the fewest errors.
    pub fn decode_soft(&self, y: &[f64], chase_depth: usize) -> Vec<DecodedWord> {
        assert_eq!(y.len(), self.r, "expected {} reliabilities", self.r);
        let hard: Vec<bool> = y.iter().map(|&v| v < 0.0).collect();
        if let Some(w) = self.decode_hard(&hard) {
            return vec![w];
        }
        let depth = chase_depth.min(self.r).min(16);
        let mut order: Vec<usize> = (0..self.r).collect();
        order.sort_by(|&a, &b| y[a].abs().total_cmp(&y[b].abs()));
        let weak = &order[..depth];
        let base = self.syndromes(hard.iter().enumerate().filter(|(_, &b)| b).map(|(q, _)| q));
        let flips: Vec<Vec<u32>> = weak.iter().map(|&q| self.syndromes(std::iter::once(q))).collect();
        // The d(d+1)/2 nonempty flip patterns of least total reliability.
        let mut patterns: Vec<(f64, u32)> = (1u32..(1 << depth))
            .map(|bits| ((0..depth).filter(|&j| bits >> j & 1 == 1).map(|j| y[weak[j]].abs()).sum(), bits))
            .collect();
        patterns.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        patterns.truncate(depth * (depth + 1) / 2);
        let mut found: Vec<(f64, DecodedWord)> = Vec::new();
        for (_, bits) in patterns {
            let mut syn = base.clone();
            for j in (0..depth).filter(|&j| bits >> j & 1 == 1) {
                syn.iter_mut().zip(&flips[j]).for_each(|(s, f)| *s ^= f);
            }
            if let Some(w) = self.decode_syndromes(&syn) {
                if found.iter().all(|(_, f)| f.players != w.players) {
                    found.push(self.score_against(w.players, &hard, y));
                }
            }
        }
        // Maximum likelihood under sign noise: least reliability on disagreeing bits first.
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.errors.cmp(&b.1.errors)));
        found.into_iter().map(|(_, w)| w).collect()
    }

    /// A candidate's soft cost (total reliability of the received bits its codeword contradicts)
    /// and its distance to the received hard word.
    fn score_against(&self, players: Vec<u32>, hard: &[bool], y: &[f64]) -> (f64, DecodedWord) {
        let sig = self.signature(&players);
        let (mut cost, mut mismatches) = (0.0, 0);
        for q in (0..self.r).filter(|&q| sig[q] != hard[q]) {
            cost += y[q].abs();
            mismatches += 1;
        }
        let errors = players.len() + mismatches;
        (cost, DecodedWord { players, errors })
    }

    /// Syndromes `S_j = r(α^j)`, j = 1..=2t, of a word whose 1-bits are the given parity positions.
    fn syndromes(&self, ones: impl Iterator<Item = usize>) -> Vec<u32> {
        let mut syn = vec![0u32; 2 * self.t];
        for q in ones {
            let degree = (self.r - 1 - q) as u64;
            for (j, s) in syn.iter_mut().enumerate() {
                *s ^= self.field.alpha_pow(degree * (j as u64 + 1));
            }
        }
        syn
    }

    /// Berlekamp–Massey, then root finding; `None` unless the error locator has exactly
    /// `deg ≤ t` distinct roots, all at live (unshortened) positions.
    fn decode_syndromes(&self, syn: &[u32]) -> Option<DecodedWord> {
        let lambda = self.berlekamp_massey(syn)?;
        let degree = lambda.len() - 1;
        if degree == 0 {
            return Some(DecodedWord { players: vec![], errors: 0 });
        }
        if degree >= 2 && !self.splits(&lambda) {
            return None;
        }
        let degrees = self.chien(&lambda)?;
        let mut players: Vec<u32> = Vec::with_capacity(degree);
        for e in degrees {
            if e >= self.r {
                // message degree e belongs to player len − 1 − s − e, with s = k − n
                players.push((self.len - 1 - (self.k - self.n) - e) as u32);
            }
        }
        players.sort_unstable();
        Some(DecodedWord { players, errors: degree })
    }

    /// Error-locator polynomial (ascending coefficients, trimmed), or `None` if its degree
    /// exceeds `t`.
    fn berlekamp_massey(&self, syn: &[u32]) -> Option<Vec<u32>> {
        let f = &self.field;
        let mut c = vec![0u32; syn.len() + 2];
        let mut b = vec![0u32; syn.len() + 2];
        c[0] = 1;
        b[0] = 1;
        let (mut l, mut shift, mut last) = (0usize, 1usize, 1u32);
        for i in 0..syn.len() {
            let mut d = syn[i];
            for j in 1..=l {
                d ^= f.mul(c[j], syn[i - j]);
            }
            if d == 0 {
                shift += 1;
                continue;
            }
            let coef = f.mul(d, f.inv(last));
            let prev = c.clone();
            for j in 0..c.len() - shift {
                c[j + shift] ^= f.mul(coef, b[j]);
            }
            if 2 * l <= i {
                l = i + 1 - l;
                b = prev;
                last = d;
                shift = 1;
            } else {
                shift += 1;
            }
        }
        let degree = c.iter().rposition(|&x| x != 0).unwrap_or(0);
        if l > self.t || degree != l {
            return None;
        }
        c.truncate(l + 1);
        Some(c)
    }

    /// Whether `lambda` splits into distinct linear factors over GF(2^m), i.e. divides
    /// `x^{2^m} − x`. Cheap (m squarings mod λ) and rejects most failed decodes before the
    /// position-by-position root search.
    fn splits(&self, lambda: &[u32]) -> bool {
        let f = &self.field;
        let deg = lambda.len() - 1;
        let inv_lead = f.inv(lambda[deg]);
        let monic: Vec<u32> = lambda.iter().map(|&c| f.mul(c, inv_lead)).collect();
        // a(x) = x mod λ, then square m times.
        let mut a = vec![0u32; deg];
        a[1] = 1;
        for _ in 0..f.m() {
            let mut sq = vec![0u32; 2 * deg - 1];
            for (i, &c) in a.iter().enumerate() {
                sq[2 * i] = f.square(c);
            }
            for top in (deg..sq.len()).rev() {
                let c = sq[top];
                if c != 0 {
                    for (j, &mc) in monic.iter().enumerate() {
                        sq[top - deg + j] ^= f.mul(c, mc);
                    }
                }
            }
            a.copy_from_slice(&sq[..deg]);
        }
        a.iter().enumerate().all(|(i, &c)| c == u32::from(i == 1))
    }

    /// Degrees `e` of the live codeword positions with `λ(α^{−e}) = 0`; `None` unless all
    /// `deg λ` roots are found there.
    fn chien(&self, lambda: &[u32]) -> Option<Vec<usize>> {
        let f = &self.field;
        let order = f.order() as u64;
        let want = lambda.len() - 1;
        let live = self.r + self.n; // degrees 0..r are parity, r..r+n the players
        let mut roots = Vec::with_capacity(want);
        for e in 0..live {
            let mut v = 0u32;
            for (i, &c) in lambda.iter().enumerate() {
                if c != 0 {
                    // c · α^{−i e}
                    let exp = (f.log(c) as u64 + (order - (i as u64 * e as u64) % order)) % order;
                    v ^= f.alpha_pow(exp);
                }
            }
            if v == 0 {
                roots.push(e);
                if roots.len() == want {
                    return Some(roots);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_table_matches_reference() {
        // (n, t) -> (len, k), from the reference's Appendix A (galois 0.4.11).
        let table = [
            ((11, 5), (31, 11)),
            ((12, 5), (63, 36)),
            ((36, 5), (63, 36)),
            ((37, 5), (127, 92)),
            ((215, 5), (255, 215)),
            ((216, 5), (511, 466)),
            ((973, 5), (1023, 973)),
            ((974, 5), (2047, 1992)),
            ((7, 2), (15, 7)),
            ((1004, 2), (2047, 2025)),
            ((16, 3), (31, 16)),
            ((2000, 4), (2047, 2003)),
            ((1981, 6), (2047, 1981)),
        ];
        for ((n, t), (len, k)) in table {
            let (_, l, kk) = parameters(n, t).unwrap();
            assert_eq!((l, kk), (len, k), "n={n} t={t}");
        }
    }

    #[test]
    fn every_low_weight_frequency_decodes_hard() {
        let code = BchCode::new(20, 3).unwrap();
        let mut count = 0;
        for a in 0..20u32 {
            for b in a + 1..20 {
                for c in [None, Some(b + 1), Some(19)] {
                    let mut k = vec![a, b];
                    if let Some(c) = c.filter(|&c| c > b && c < 20) {
                        k.push(c);
                    }
                    let sig = code.signature(&k);
                    let w = code.decode_hard(&sig).expect("decodable");
                    assert_eq!(w.players, k);
                    count += 1;
                }
            }
        }
        assert!(count > 300);
        assert_eq!(code.decode_hard(&vec![false; code.parity_len()]).unwrap().players, Vec::<u32>::new());
    }

    #[test]
    fn corrects_parity_errors_up_to_t() {
        let code = BchCode::new(50, 5).unwrap();
        let k = vec![3u32, 17, 40];
        let mut sig = code.signature(&k);
        sig[0] ^= true;
        sig[7] ^= true;
        assert_eq!(code.decode_hard(&sig).unwrap(), DecodedWord { players: k.clone(), errors: 5 });
        sig[9] ^= true; // 6 errors > t
        assert_ne!(code.decode_hard(&sig).map(|w| w.players), Some(k));
    }

    #[test]
    fn soft_decoding_recovers_from_unreliable_flips() {
        let code = BchCode::new(100, 4).unwrap();
        let k = vec![5u32, 60, 99];
        let sig = code.signature(&k);
        let mut y: Vec<f64> = sig.iter().map(|&b| if b { -1.0 } else { 1.0 }).collect();
        // Flip three bits with low reliability: 3 + 3 = 6 > t errors for the hard decoder.
        for q in [1, 4, 11] {
            y[q] = -0.1 * y[q].signum();
        }
        let hard: Vec<bool> = y.iter().map(|&v| v < 0.0).collect();
        assert_ne!(code.decode_hard(&hard).map(|w| w.players), Some(k.clone()));
        let cands = code.decode_soft(&y, 4);
        assert_eq!(cands.first().map(|w| w.players.clone()), Some(k));
    }
}
