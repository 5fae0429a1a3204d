//! Kernel test cases shared by the device tests (`tests/gpu.rs`) and the kernels' host emulation
//! (`tests/kernels_emulated.rs`): random inputs, already rounded to the storage type where the
//! kernel reads it (`round`), and the CPU reference each kernel is compared with.
//!
//! Tolerances. Masking kernels (bias, ids, gates) are exact: their values are 0, −∞, 1 or copies.
//! Head gating with 0/1 gates is exact in every dtype (the result is the input or the fill, each
//! rounded once). Scoring accumulates in f32 in a different order than the CPU: |Δ| ≤ 1e-4 ·
//! max(1, |log p|) for f32; the bf16/f16 kernels are compared with a twin fed the *same rounded*
//! inputs, so the same tolerance holds.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use rand::Rng;
use spex::model::ops;

use crate::models_common::{assert_close, rng};

/// Scoring tolerance (see the module docs).
pub const SCORE_TOL: f64 = 1e-4;

/// Position → player map of `len` positions over `players` players, about 20 % fixed (−1).
pub fn random_owners(len: usize, players: usize, rng: &mut impl Rng) -> Vec<i32> {
    (0..len).map(|_| if rng.random_bool(0.2) { -1 } else { rng.random_range(0..players) as i32 }).collect()
}

/// A compaction case over `len` base positions: owners ([`random_owners`]), read flags (every
/// seventh position, as i32 for the kernel and bool for the twin) and base ids.
pub fn compaction_case(seed: u64, players: usize, len: usize) -> (Vec<i32>, Vec<i32>, Vec<bool>, Vec<u32>) {
    let owners = random_owners(len, players, &mut rng(seed));
    let read: Vec<bool> = (0..len).map(|p| p % 7 == 3).collect();
    let ids = (0..len as u32).map(|p| 1000 + p).collect();
    (owners, read.iter().map(|&r| r as i32).collect(), read, ids)
}

/// The slot counts a compaction case is run at: exactly the longest row, with spare padding, and
/// too few (positions dropped from the front).
pub fn compaction_slots(need: usize) -> [usize; 3] {
    [need, need + 3, need.saturating_sub(2).max(1)]
}

/// Replace-mode base ids and a (layer, head) → mask-bit map (about 30 % never gated, −1).
pub fn ids_and_head_bits(seed: u64, players: usize, len: usize, layers: usize, heads: usize) -> (Vec<u32>, Vec<i32>) {
    let mut rng = rng(seed);
    let ids = (0..len).map(|_| rng.random_range(0..1000)).collect();
    let bits = (0..layers * heads)
        .map(|_| if rng.random_bool(0.3) { -1 } else { rng.random_range(0..players) as i32 })
        .collect();
    (ids, bits)
}

/// Head gating inputs for `[B, T, H, D]`: `x`, `fill` `[H, D]` and 0/1 gates `[B, H]`.
pub fn head_gate_case(seed: u64, [b, t, h, d]: [usize; 4], round: fn(f32) -> f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = rng(seed);
    let x = (0..b * t * h * d).map(|_| round(rng.random_range(-2.0..2.0))).collect();
    let fill = (0..h * d).map(|_| round(rng.random_range(-1.0..1.0))).collect();
    let gate = (0..b * h).map(|_| if rng.random_bool(0.5) { 1.0 } else { 0.0 }).collect();
    (x, fill, gate)
}

/// Random scoring problem: hidden `[n, e]`, LM head `[v, e]`, one target per pick.
pub fn scoring_problem(
    seed: u64,
    n: usize,
    v: usize,
    e: usize,
    round: fn(f32) -> f32,
) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let mut rng = rng(seed);
    let mut r = |k: usize, s: f32| -> Vec<f32> { (0..k).map(|_| round(rng.random_range(-s..s))).collect() };
    let hidden = r(n * e, 1.0);
    let head = r(v * e, 0.5);
    let mut rng2 = crate::models_common::rng(seed + 1000);
    let targets = (0..n).map(|_| rng2.random_range(0..v as u32)).collect();
    (hidden, head, targets)
}

/// The CPU twin of fused scoring, `ops::score_targets`, on one row of `n` positions.
pub fn cpu_scores(hidden: &[f32], head: &[f32], targets: &[u32], n: usize, v: usize, e: usize) -> Vec<f32> {
    let h = Tensor::from_slice(hidden, (1, n, e), &Device::Cpu).unwrap();
    let w = Tensor::from_slice(head, (v, e), &Device::Cpu).unwrap();
    let picks: Vec<(usize, usize, u32)> = targets.iter().enumerate().map(|(i, &t)| (0, i, t)).collect();
    ops::score_targets(&h, &w, &picks).unwrap()
}

/// Vocabulary tiles `(v0, vt)` fed to `score_tile_*`, uneven and out of order, covering
/// [`TILED_VOCAB`].
pub const TILES: [(usize, usize); 3] = [(700, 300), (0, 333), (333, 367)];
/// The vocabulary [`TILES`] cover.
pub const TILED_VOCAB: usize = 1000;

/// Logits `[n, v]` as a GEMM would produce them, rounded to the tile's storage type.
pub fn tile_logits(hidden: &[f32], head: &[f32], n: usize, v: usize, e: usize, round: fn(f32) -> f32) -> Vec<f32> {
    (0..n * v).map(|i| round((0..e).map(|k| hidden[(i / v) * e + k] * head[(i % v) * e + k]).sum::<f32>())).collect()
}

/// Columns `v0 .. v0 + vt` of every row of `logits` (`[n, v]`), each row padded to `ld`.
pub fn tile_of(logits: &[f32], n: usize, v: usize, (v0, vt): (usize, usize), ld: usize) -> Vec<f32> {
    (0..n).flat_map(|r| (0..ld).map(move |c| if c < vt { logits[r * v + v0 + c] } else { f32::NAN })).collect()
}

/// Log-softmax of each row of `logits` at its target, in f64.
pub fn lse_scores(logits: &[f32], targets: &[u32], v: usize) -> Vec<f32> {
    logits
        .chunks(v)
        .zip(targets)
        .map(|(row, &t)| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            (row[t as usize] as f64 - lse) as f32
        })
        .collect()
}

/// Every score within [`SCORE_TOL`] of its reference.
pub fn assert_scores(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(*g as f64, *w as f64, SCORE_TOL, &format!("{what} pick {i}"));
    }
}
