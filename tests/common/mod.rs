//! Brute-force references shared by the integration tests.
//!
//! A set function over `n ≤ ~12` players is a table `f[m]` indexed by the bitmask `m` of kept
//! players (bit `i` = player `i`). Everything here is computed from that table by the textbook
//! definitions, independently of the crate's conversions, so that a test comparing the two can fail.
#![allow(dead_code)] // each test binary uses a different part

pub mod cli;
pub mod planted;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spex::subset::Subset;
use spex::transform::{Fourier, Moebius};

/// A seeded RNG, so failures reproduce.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// The subset of players in bitmask `m`.
pub fn subset_of(m: u32) -> Subset {
    Subset::from_sorted((0..32).filter(|i| m >> i & 1 == 1).collect())
}

/// The bitmask of a subset.
pub fn bits_of(s: &Subset) -> u32 {
    s.players().iter().fold(0, |m, &p| m | 1 << p)
}

/// Number of players in a bitmask.
pub fn size(m: u32) -> usize {
    m.count_ones() as usize
}

/// Every submask of `m` (including 0 and `m`).
pub fn submasks(m: u32) -> impl Iterator<Item = u32> {
    // Standard walk: s = (s - 1) & m visits every submask once, down to 0.
    let mut s = Some(m);
    std::iter::from_fn(move || {
        let cur = s?;
        s = if cur == 0 { None } else { Some((cur - 1) & m) };
        Some(cur)
    })
}

/// `n!` as f64.
pub fn fact(n: usize) -> f64 {
    (1..=n).map(|i| i as f64).product()
}

/// `C(n, k)` as f64.
pub fn binom(n: usize, k: usize) -> f64 {
    if k > n {
        0.0
    } else {
        fact(n) / (fact(k) * fact(n - k))
    }
}

/// A dense random function: every value uniform in [-1, 1].
pub fn dense_function(n: usize, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    (0..1usize << n).map(|_| r.random_range(-1.0..1.0)).collect()
}

/// A random sparse Fourier expansion with `terms` coefficients of order ≤ `degree`.
pub fn sparse_fourier(n: usize, terms: usize, degree: usize, seed: u64) -> Fourier {
    let mut r = rng(seed);
    let mut f = Fourier::new(n);
    for _ in 0..terms {
        let k = r.random_range(0..=degree.min(n));
        let mut players: Vec<u32> = Vec::new();
        while players.len() < k {
            let p = r.random_range(0..n as u32);
            if !players.contains(&p) {
                players.push(p);
            }
        }
        f.add(Subset::new(players), r.random_range(-1.0..1.0));
    }
    f
}

/// Values of a Fourier expansion at every mask, by the definition `Σ_k F(k)(−1)^{|m ∧ k|}`.
pub fn values_of_fourier(f: &Fourier) -> Vec<f64> {
    let n = f.n();
    let terms: Vec<(u32, f64)> = f.iter().map(|(k, c)| (bits_of(k), c)).collect();
    (0..1u32 << n)
        .map(|m| terms.iter().map(|&(k, c)| if (m & k).count_ones() % 2 == 0 { c } else { -c }).sum())
        .collect()
}

/// `F(k) = 2^{−n} Σ_m f(m) (−1)^{|m ∧ k|}` for every `k`, directly (O(4^n)).
pub fn fourier_table(f: &[f64], n: usize) -> Vec<f64> {
    let scale = 1.0 / f.len() as f64;
    (0..1u32 << n)
        .map(|k| {
            scale
                * (0..1u32 << n)
                    .map(|m| if (m & k).count_ones() % 2 == 0 { f[m as usize] } else { -f[m as usize] })
                    .sum::<f64>()
        })
        .collect()
}

/// `M(S) = Σ_{T⊆S} (−1)^{|S|−|T|} f(T)` for every `S` (Möbius inversion, O(3^n)).
pub fn moebius_table(f: &[f64], n: usize) -> Vec<f64> {
    (0..1u32 << n)
        .map(|s| submasks(s).map(|t| if size(s ^ t) % 2 == 0 { f[t as usize] } else { -f[t as usize] }).sum())
        .collect()
}

/// A table as a sparse Fourier expansion (every entry stored).
pub fn fourier_from_table(table: &[f64], n: usize) -> Fourier {
    Fourier::from_pairs(n, table.iter().enumerate().map(|(m, &c)| (subset_of(m as u32), c)))
}

/// A table as a sparse Möbius expansion (every entry stored).
pub fn moebius_from_table(table: &[f64], n: usize) -> Moebius {
    Moebius::from_pairs(n, table.iter().enumerate().map(|(m, &c)| (subset_of(m as u32), c)))
}

/// Discrete derivative `Δ_S f(T) = Σ_{L⊆S} (−1)^{|S|−|L|} f(T ∪ L)` (T disjoint from S).
pub fn derivative(f: &[f64], s: u32, t: u32) -> f64 {
    submasks(s).map(|l| if size(s ^ l) % 2 == 0 { f[(t | l) as usize] } else { -f[(t | l) as usize] }).sum()
}

/// Asserts `|a − b| ≤ tol`, with context.
pub fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (diff {:e}, tol {tol:e})", (a - b).abs());
}

/// The order-1 entries of a `result.json`: (value, player name), in file order.
pub fn first_order_named(result: &serde_json::Value) -> Vec<(f64, String)> {
    result["interactions"]
        .as_array()
        .expect("interactions")
        .iter()
        .filter(|e| e["players"].as_array().is_some_and(|p| p.len() == 1))
        .map(|e| (e["value"].as_f64().expect("value"), e["names"][0].as_str().expect("named players").to_string()))
        .collect()
}
