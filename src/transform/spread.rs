//! The one engine behind every conversion in this module: spread each coefficient of a sparse
//! expansion onto the subsets of its support, with a weight that depends only on the sizes.
//!
//! Every map we need has this shape. Fourier → Möbius sends `F(U)` to each `S ⊆ U` with weight
//! `(−2)^{|S|}`; Möbius → Fourier sends `M(S)` to each `T ⊆ S` with `(−1)^{|T|} 2^{−|S|}`; and every
//! interaction index of a function given in the Fourier basis is `I(S) = Σ_{U ⊇ S} g(|U|, |S|) F(U)`
//! for a size-only kernel `g` (the indices are symmetric and linear, see `index.rs`). So one routine,
//! parameterised by a kernel table, does all of them, and its cost is the number of
//! (coefficient, subset) pairs with a non-zero weight.

use std::collections::HashMap;

use rayon::prelude::*;

use super::{Basis, Sparse};
use crate::subset::Subset;

/// Coefficients whose magnitude is at most this fraction of the largest one are treated as zero:
/// they are rounding residue of contributions that cancel exactly (e.g. the Möbius transform of a
/// function with a sparse Möbius form), and keeping them would make sparse outputs dense.
pub(crate) const RELATIVE_ZERO: f64 = 1e-14;

/// Work per rayon task, in (coefficient, subset) pairs. Below this the thread hand-off costs more
/// than the hashing it parallelises; the small inputs SPEX produces run as a single task.
const CHUNK_WORK: u64 = 1 << 14;

/// A size-only weight table: `weight(u, s)` for a source coefficient on `u` players spread onto a
/// subset of `s` of them, for `u ≤ max_u` and `s ≤ min(u, max_s)`.
pub(crate) struct Kernel {
    max_s: usize,
    table: Vec<Vec<f64>>,
}

impl Kernel {
    /// Tabulates `weight` once; it is called for every `(u, s)` with `u ≤ max_u`, `s ≤ min(u, max_s)`.
    pub(crate) fn new(max_u: usize, max_s: usize, mut weight: impl FnMut(usize, usize) -> f64) -> Self {
        let table = (0..=max_u).map(|u| (0..=u.min(max_s)).map(|s| weight(u, s)).collect()).collect();
        Kernel { max_s, table }
    }

    fn weight(&self, u: usize, s: usize) -> f64 {
        self.table[u][s]
    }

    /// Number of (coefficient, subset) pairs with a non-zero weight for one coefficient on `u`
    /// players, saturating (a parity over 1000 players has astronomically many subsets).
    fn work(&self, u: usize) -> u64 {
        (0..=u.min(self.max_s))
            .filter(|&s| self.weight(u, s) != 0.0)
            .fold(0u64, |acc, s| acc.saturating_add(binomial_saturating(u, s)))
    }
}

/// `C(n, k)` as `u64`, saturating at `u64::MAX` instead of overflowing.
pub(crate) fn binomial_saturating(n: usize, k: usize) -> u64 {
    if k > n {
        return 0;
    }
    let k = k.min(n - k) as u64;
    let n = n as u64;
    let mut c: u64 = 1;
    for i in 0..k {
        // c * (n - i) / (i + 1) is exact at every step (it is C(n, i + 1)); do it in u128 so the
        // intermediate product cannot overflow before we decide to saturate.
        let next = u128::from(c) * u128::from(n - i) / u128::from(i + 1);
        match u64::try_from(next) {
            Ok(v) => c = v,
            Err(_) => return u64::MAX,
        }
    }
    c
}

/// Total number of (coefficient, subset) pairs `spread` would visit.
pub(crate) fn total_work<B: Basis>(src: &Sparse<B>, kernel: &Kernel) -> u64 {
    src.coefs.keys().fold(0u64, |acc, k| acc.saturating_add(kernel.work(k.len())))
}

/// `out(S) = Σ_{U ⊇ S} weight(|U|, |S|) · src(U)` over the subsets `S` of each stored `U` with
/// `|S| ≤ max_s`. The caller has checked the work (`total_work`) and that the kernel covers the
/// source's degree.
///
/// The result is deterministic: sources are visited in subset order and cut into chunks by work
/// alone, so neither the thread count nor the hash seed changes the order of any floating-point sum.
pub(crate) fn spread<B: Basis>(src: &Sparse<B>, kernel: &Kernel) -> HashMap<Subset, f64> {
    let sources: Vec<(&Subset, f64)> = src.iter().collect();

    let mut chunks: Vec<&[(&Subset, f64)]> = Vec::new();
    let (mut start, mut acc) = (0, 0u64);
    for (i, (k, _)) in sources.iter().enumerate() {
        acc = acc.saturating_add(kernel.work(k.len()));
        if acc >= CHUNK_WORK {
            chunks.push(&sources[start..=i]);
            (start, acc) = (i + 1, 0);
        }
    }
    if start < sources.len() {
        chunks.push(&sources[start..]);
    }

    let spread_chunk = |chunk: &[(&Subset, f64)]| {
        let mut out: HashMap<Subset, f64> = HashMap::new();
        for &(k, c) in chunk {
            let players = k.players();
            let u = players.len();
            for s in 0..=u.min(kernel.max_s) {
                let w = kernel.weight(u, s) * c;
                if w == 0.0 {
                    continue;
                }
                for_each_combination(players, s, |sub| {
                    *out.entry(Subset::from_sorted(sub.to_vec())).or_insert(0.0) += w;
                });
            }
        }
        out
    };

    let mut parts: Vec<HashMap<Subset, f64>> = if chunks.len() > 1 {
        chunks.par_iter().map(|c| spread_chunk(c)).collect()
    } else {
        chunks.iter().map(|c| spread_chunk(c)).collect()
    };
    let Some(mut out) = (!parts.is_empty()).then(|| parts.remove(0)) else {
        return HashMap::new();
    };
    for part in parts {
        for (k, v) in part {
            *out.entry(k).or_insert(0.0) += v;
        }
    }
    out
}

/// Calls `f` with every `k`-element subset of `players` (ascending, so each is a valid sorted
/// subset), in lexicographic order of positions.
fn for_each_combination(players: &[u32], k: usize, mut f: impl FnMut(&[u32])) {
    let n = players.len();
    if k > n {
        return;
    }
    let mut idx: Vec<usize> = (0..k).collect();
    let mut buf: Vec<u32> = idx.iter().map(|&i| players[i]).collect();
    loop {
        f(&buf);
        // Advance the rightmost position that can still move right, then pack the rest after it.
        let Some(i) = (0..k).rev().find(|&i| idx[i] < n - k + i) else {
            return;
        };
        idx[i] += 1;
        for j in i + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
        for j in i..k {
            buf[j] = players[idx[j]];
        }
    }
}

/// Drops entries with `|c| ≤ RELATIVE_ZERO · max|c|` (see [`RELATIVE_ZERO`]), except `keep`.
/// NaN entries are kept so that a broken input stays visible downstream.
pub(crate) fn prune_relative(map: &mut HashMap<Subset, f64>, keep: Option<&Subset>) {
    let max = map.values().fold(0.0f64, |m, c| m.max(c.abs()));
    let tol = RELATIVE_ZERO * max;
    map.retain(|k, c| c.abs() > tol || c.is_nan() || keep == Some(k));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_are_complete_and_sorted() {
        let players = [2u32, 5, 7, 11, 13];
        for k in 0..=6 {
            let mut seen = Vec::new();
            for_each_combination(&players, k, |s| {
                assert!(s.windows(2).all(|w| w[0] < w[1]));
                seen.push(s.to_vec());
            });
            assert_eq!(seen.len() as u64, binomial_saturating(5, k));
            let mut dedup = seen.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), seen.len());
        }
    }

    #[test]
    fn binomial_saturates() {
        assert_eq!(binomial_saturating(10, 3), 120);
        assert_eq!(binomial_saturating(3, 4), 0);
        assert_eq!(binomial_saturating(62, 31), 465428353255261088);
        assert_eq!(binomial_saturating(1000, 500), u64::MAX);
    }
}
