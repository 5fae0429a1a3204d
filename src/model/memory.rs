//! Cutting a batch of rows into forward passes: how many rows fit in device memory, which rows
//! share a pass (sorted by length, so that a pass pads its rows only to its own longest), and
//! running the passes so that an out-of-memory failure halves them and retries the same rows,
//! losing nothing.
//!
//! Device-independent on purpose: the CUDA path supplies the free-memory figure and says which
//! errors are out-of-memory; the logic is tested here on the CPU with simulated failures.

use std::ops::Range;

use candle_core::Device;

use super::{Model, ModelInfo};

/// [`plan_forwards`]'s `min_tokens` on the CPU. Measured with `spex bench throughput --shape
/// smollm2-135m` on 2 cores (64-token prompts, uniform masks): against one pass per batch, 128
/// masks per batch ran 29 % faster with 1 024 (24 % with 512, 14 % with 256, where the small
/// passes' fixed costs start to show), 32 masks per batch within noise, and 32 masks of
/// 128-token prompts 6 % faster.
pub const CPU_MIN_FORWARD_TOKENS: usize = 1024;

/// [`plan_forwards`]'s smallest `min_tokens` on a GPU: below about this many positions per
/// forward pass the device waits on kernel launches and small GEMMs rather than computing.
pub const GPU_MIN_FORWARD_TOKENS: usize = 16_384;

/// The least work, in FLOPs, of a forward pass on a GPU: about 40 ms at 500 TFLOP/s, so that
/// the host's fixed time between passes (preparing the next chunk, reading the values back)
/// stays a small share of the device's time. For a model of 1 B weights that is about 10 000
/// positions (so [`GPU_MIN_FORWARD_TOKENS`] binds), for one of 100 M weights 100 000 (a batch is
/// then sorted but rarely split). Judgements, not yet measurements: `scripts/gpu-check.sh`
/// compares planned passes with unplanned ones.
pub const GPU_MIN_PASS_FLOP: f64 = 2e13;

/// [`plan_forwards`]'s `min_tokens` for forwards on `device` of a model doing
/// `flops_per_token` ([`crate::model::ModelInfo::flops_per_token`]).
pub fn min_forward_tokens(device: &Device, flops_per_token: f64) -> usize {
    if device.is_cpu() {
        CPU_MIN_FORWARD_TOKENS
    } else {
        gpu_min_forward_tokens(flops_per_token)
    }
}

/// [`min_forward_tokens`] on a GPU: the positions of [`GPU_MIN_PASS_FLOP`], at least
/// [`GPU_MIN_FORWARD_TOKENS`].
pub fn gpu_min_forward_tokens(flops_per_token: f64) -> usize {
    GPU_MIN_FORWARD_TOKENS.max((GPU_MIN_PASS_FLOP / flops_per_token.max(1.0)).ceil() as usize)
}

/// [`plan_forwards`] for forward passes of `model`: with the [`min_forward_tokens`] of its
/// device and size.
pub fn plan_for(model: &Model, lengths: &[usize], max_rows: usize) -> ForwardPlan {
    plan_forwards(lengths, max_rows, min_forward_tokens(model.device(), model.info().flops_per_token()))
}

/// How a batch of rows is cut into forward passes ([`plan_forwards`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardPlan {
    /// The rows in evaluation order: a permutation of `0..B`, shortest rows first.
    pub order: Vec<usize>,
    /// Consecutive ranges of `order`, one per forward pass, covering it in order.
    pub pieces: Vec<Range<usize>>,
    /// Per piece, the length of its longest row: the positions its forward runs per row.
    pub slots: Vec<usize>,
}

impl ForwardPlan {
    /// Values computed in evaluation order (`values[i]` belongs to row `order[i]`), put back in
    /// row order.
    pub fn restore(&self, values: Vec<f64>) -> Vec<f64> {
        assert_eq!(values.len(), self.order.len(), "one value per row");
        let mut out = vec![0.0; values.len()];
        for (&row, v) in self.order.iter().zip(values) {
            out[row] = v;
        }
        out
    }

    /// Rows of `lengths[r]` positions in their own order, in consecutive passes of `max_rows`
    /// (the last one shorter): no planning, for comparison with [`plan_forwards`].
    pub fn in_order(lengths: &[usize], max_rows: usize) -> ForwardPlan {
        let rows = lengths.len();
        let pieces: Vec<Range<usize>> =
            (0..rows).step_by(max_rows.max(1)).map(|s| s..(s + max_rows.max(1)).min(rows)).collect();
        let slots = pieces.iter().map(|p| lengths[p.clone()].iter().copied().max().unwrap_or(0)).collect();
        ForwardPlan { order: (0..rows).collect(), pieces, slots }
    }

    /// Positions run over the whole batch, padding included: `Σ rows × slots` per piece.
    pub fn slots_run(&self) -> usize {
        self.pieces.iter().zip(&self.slots).map(|(p, s)| p.len() * s).sum()
    }
}

/// Cuts rows of `lengths[r]` positions into forward passes of at most `max_rows` rows. Rows
/// are sorted by length and each pass is padded to its own longest row, so a pass of `k` rows
/// whose longest has `s` positions runs `k × s`; a pass costs at least `min_tokens` positions
/// (below that its fixed costs dominate), so splitting stops where it would no longer pay.
/// The cut minimises that total cost over all cuts between rows of different lengths (dynamic
/// programming over the distinct lengths); a stretch of more than `max_rows` rows is split into
/// near-equal passes. `min_tokens = 0` gives no padding at all; `usize::MAX` the fewest passes.
pub fn plan_forwards(lengths: &[usize], max_rows: usize, min_tokens: usize) -> ForwardPlan {
    let max_rows = max_rows.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&r| lengths[r]); // stable: equal rows keep their order
    let sorted: Vec<usize> = order.iter().map(|&r| lengths[r]).collect();
    // Boundaries between runs of equal length (and both ends): the only cuts considered.
    let mut bounds = vec![0];
    bounds.extend((1..=sorted.len()).filter(|&j| j == sorted.len() || sorted[j] != sorted[j - 1]));
    let cost = |from: usize, to: usize| -> f64 {
        let slots = sorted[to - 1];
        even_split(from..to, max_rows).map(|p| ((p.len() * slots) as f64).max(min_tokens as f64)).sum()
    };
    // best[g]: the cheapest cut of rows 0..bounds[g], and the boundary its last chunk starts at.
    let mut best: Vec<(f64, usize)> = vec![(0.0, 0)];
    for g in 1..bounds.len() {
        let candidates = (0..g).map(|h| (best[h].0 + cost(bounds[h], bounds[g]), h));
        // Strictly cheaper only: among equal costs the longest last chunk (fewest passes) wins.
        best.push(candidates.fold((f64::INFINITY, 0), |a, c| if c.0 < a.0 { c } else { a }));
    }
    let mut chunks = Vec::new();
    let mut g = bounds.len() - 1;
    while g > 0 {
        let h = best[g].1;
        chunks.push(bounds[h]..bounds[g]);
        g = h;
    }
    let pieces: Vec<Range<usize>> = chunks.into_iter().rev().flat_map(|c| even_split(c, max_rows)).collect();
    let slots = pieces.iter().map(|p| sorted[p.end - 1]).collect();
    ForwardPlan { order, pieces, slots }
}

/// `range` cut into the fewest consecutive pieces of at most `max_rows`, as equal as possible.
fn even_split(range: Range<usize>, max_rows: usize) -> impl Iterator<Item = Range<usize>> {
    let n = range.len();
    let parts = n.div_ceil(max_rows).max(1);
    let (base, extra) = (n / parts, n % parts);
    (0..parts).filter(move |_| n > 0).map(move |k| {
        let start = range.start + k * base + k.min(extra);
        start..start + base + usize::from(k < extra)
    })
}

/// Rows per batch that fit in `free_bytes` of device memory, keeping `headroom` (a fraction in
/// `[0, 1)`) free for the allocator's fragmentation and the libraries' workspaces: `fixed_bytes`
/// (weights, per-input tables) once, then `bytes_per_row` per row. At least 1 (the sweep's
/// halving finds out if even that fails), at most `max_rows`.
pub fn auto_batch_rows(
    free_bytes: usize,
    fixed_bytes: usize,
    bytes_per_row: usize,
    headroom: f64,
    max_rows: usize,
) -> usize {
    let usable = (free_bytes as f64 * (1.0 - headroom.clamp(0.0, 0.99))) as usize;
    let rows = usable.saturating_sub(fixed_bytes) / bytes_per_row.max(1);
    rows.clamp(1, max_rows.max(1))
}

/// Activation bytes per row of a decoder forward of `queries` new positions attending `keys`
/// positions (more behind a cached prefix, whose keys every row attends), counted generously (an
/// upper bound, not a measurement): per new position the residual stream and its norm, Q/K/V and
/// the attention output and the MLP's gate/up products; per key its key and value (a prefix's
/// joined to the row's); the `[H, queries, keys]` scores and probabilities plus the bias; each
/// `elem_bytes` wide, times two for candle's temporaries.
pub fn decoder_row_bytes(info: &ModelInfo, queries: usize, keys: usize, elem_bytes: usize) -> usize {
    let (heads, kv_heads, d) = (info.num_heads, info.num_kv_heads, info.head_dim);
    let per_token = 2 * info.hidden_size + (heads + 2 * kv_heads) * d + heads * d + 3 * info.mlp_size;
    let per_key = 2 * kv_heads * d;
    let attention = (2 * heads + 1) * queries * keys;
    2 * elem_bytes * (queries * per_token + keys * per_key + attention)
}

/// Whether a candle error is the device running out of memory (the driver's
/// `CUDA_ERROR_OUT_OF_MEMORY`, cuBLAS's `CUBLAS_STATUS_ALLOC_FAILED`), which a smaller batch may
/// avoid: candle passes them on as text, so the text is what can be matched.
pub fn is_out_of_memory(e: &candle_core::Error) -> bool {
    let msg = e.to_string();
    ["OUT_OF_MEMORY", "out of memory", "ALLOC_FAILED"].iter().any(|m| msg.contains(m))
}

/// Outcome of [`sweep_halving`].
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// One value per row, in row order.
    pub values: Vec<f64>,
    /// The batch size in use at the end (smaller than the start after out-of-memory retries).
    pub batch: usize,
    /// How many times the batch was halved.
    pub halvings: usize,
}

/// Evaluates the consecutive row ranges `pieces` (a [`ForwardPlan`]'s) in order, each in
/// batches of at most `batch` rows, with `eval(range, next)`: it returns one value per row of
/// `range`, and `next` is the range evaluated after it if it succeeds (for prefetching). When
/// `eval` fails with an error `is_oom` accepts, the batch is halved and the **same** rows
/// retried, so no row is skipped or computed twice into the output; later batches keep the
/// smaller size. Any other error, or out-of-memory at a batch of one row, is returned.
pub fn sweep_halving<E>(
    pieces: &[Range<usize>],
    batch: usize,
    is_oom: impl Fn(&E) -> bool,
    mut eval: impl FnMut(Range<usize>, Option<Range<usize>>) -> Result<Vec<f64>, E>,
) -> Result<Sweep, E> {
    let rows = pieces.iter().map(|p| p.len()).sum();
    let mut out = Sweep { values: Vec::with_capacity(rows), batch: batch.max(1), halvings: 0 };
    let mut range = batch_at(pieces, 0, out.batch);
    while let Some(r) = range {
        let next = batch_at(pieces, r.end, out.batch);
        match eval(r.clone(), next.clone()) {
            Ok(v) => {
                assert_eq!(v.len(), r.len(), "eval must return one value per row");
                out.values.extend(v);
                range = next;
            }
            Err(e) if is_oom(&e) && out.batch > 1 => {
                out.batch /= 2;
                out.halvings += 1;
                range = batch_at(pieces, r.start, out.batch);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The batch of at most `batch` rows that starts at row `at` within its piece (`None` past the
/// last piece or at an empty one's end).
fn batch_at(pieces: &[Range<usize>], at: usize, batch: usize) -> Option<Range<usize>> {
    let piece = pieces.iter().find(|p| p.contains(&at))?;
    Some(at..(at + batch).min(piece.end))
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // lists of row ranges, one range long
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Fail {
        Oom,
        Other,
    }

    /// A fake device that runs out of memory above `limit` rows; values are row index squared.
    fn device(limit: usize, calls: &mut Vec<Range<usize>>) -> impl FnMut(Range<usize>) -> Result<Vec<f64>, Fail> + '_ {
        move |r: Range<usize>| {
            calls.push(r.clone());
            if r.len() > limit {
                Err(Fail::Oom)
            } else {
                Ok(r.map(|i| (i * i) as f64).collect())
            }
        }
    }

    #[test]
    fn oom_halves_and_retries_without_losing_rows() {
        let mut calls = Vec::new();
        let mut dev = device(20, &mut calls);
        let s = sweep_halving(&[0..100], 64, |e| *e == Fail::Oom, |r, _| dev(r)).unwrap();
        drop(dev);
        let want: Vec<f64> = (0..100).map(|i| (i * i) as f64).collect();
        assert_eq!(s.values, want);
        assert_eq!((s.batch, s.halvings), (16, 2));
        // 64 and 32 fail at row 0, then 16-row batches cover everything exactly once.
        assert_eq!(calls[..3], [0..64, 0..32, 0..16]);
        let done: usize = calls[2..].iter().map(|r| r.len()).sum();
        assert_eq!(done, 100);
    }

    #[test]
    fn other_errors_and_oom_at_one_row_are_returned() {
        let r = sweep_halving(&[0..10], 4, |e| *e == Fail::Oom, |_r, _| Err::<Vec<f64>, _>(Fail::Other));
        assert_eq!(r.unwrap_err(), Fail::Other);
        let mut calls = Vec::new();
        let mut dev = device(0, &mut calls);
        let r = sweep_halving(&[0..10], 4, |e| *e == Fail::Oom, |r, _| dev(r));
        drop(dev);
        assert_eq!(r.unwrap_err(), Fail::Oom);
        assert_eq!(calls, [0..4, 0..2, 0..1]);
    }

    #[test]
    fn halving_stays_within_pieces_and_prefetch_names_the_next_batch() {
        let pieces = [0..10, 10..30, 30..31];
        let (mut calls, mut nexts) = (Vec::new(), Vec::new());
        let mut dev = device(5, &mut calls);
        let s = sweep_halving(
            &pieces,
            16,
            |e| *e == Fail::Oom,
            |r, next| {
                nexts.push(next);
                dev(r)
            },
        )
        .unwrap();
        drop(dev);
        assert_eq!(s.values, (0..31).map(|i| (i * i) as f64).collect::<Vec<_>>());
        assert_eq!((s.batch, s.halvings), (4, 2));
        let want = [0..10, 0..8, 0..4, 4..8, 8..10, 10..14, 14..18, 18..22, 22..26, 26..30, 30..31];
        assert_eq!(calls, want);
        // After each call that succeeded, the next call is the range it was told of.
        for (k, next) in nexts.iter().enumerate().skip(2) {
            assert_eq!(*next, want.get(k + 1).cloned(), "call {k}");
        }
    }

    /// Lengths drawn like the rows of uniform masks: a base plus a binomial count.
    fn binomial_lengths(rows: usize, players: usize, seed: u64) -> Vec<usize> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut bit = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x & 1 == 1
        };
        (0..rows).map(|_| 4 + (0..players).filter(|_| bit()).count()).collect()
    }

    /// The cost [`plan_forwards`] minimises, of cutting the sorted lengths at `cuts`.
    fn cost_of(sorted: &[usize], cuts: &[usize], max_rows: usize, min_tokens: usize) -> f64 {
        cuts.windows(2)
            .map(|w| {
                let slots = sorted[w[1] - 1];
                even_split(w[0]..w[1], max_rows).map(|p| ((p.len() * slots) as f64).max(min_tokens as f64)).sum::<f64>()
            })
            .sum()
    }

    #[test]
    fn plan_is_the_cheapest_cut_brute_force() {
        for seed in 0..40u64 {
            let rows = 1 + (seed as usize * 7) % 14;
            let lengths = binomial_lengths(rows, 8, seed);
            let (max_rows, min_tokens) = (2 + seed as usize % 5, [0, 10, 30, 80][seed as usize % 4]);
            let plan = plan_forwards(&lengths, max_rows, min_tokens);
            let mut sorted = lengths.clone();
            sorted.sort();
            // Every cut between distinct lengths, by brute force over the subsets of boundaries.
            let inner: Vec<usize> = (1..rows).filter(|&j| sorted[j] != sorted[j - 1]).collect();
            let brute = (0..1u32 << inner.len())
                .map(|set| {
                    let mut cuts = vec![0];
                    cuts.extend(inner.iter().enumerate().filter(|(k, _)| set >> k & 1 == 1).map(|(_, &j)| j));
                    cuts.push(rows);
                    cost_of(&sorted, &cuts, max_rows, min_tokens)
                })
                .fold(f64::INFINITY, f64::min);
            let planned: f64 =
                plan.pieces.iter().zip(&plan.slots).map(|(p, &s)| ((p.len() * s) as f64).max(min_tokens as f64)).sum();
            assert_eq!(planned, brute, "seed {seed}: lengths {lengths:?}");
            // The plan's shape: sorted order, consecutive pieces of at most max_rows, true slots.
            let mut seen = plan.order.clone();
            seen.sort();
            assert_eq!(seen, (0..rows).collect::<Vec<_>>());
            assert!(plan.order.windows(2).all(|w| lengths[w[0]] <= lengths[w[1]]));
            assert_eq!(plan.pieces.first().unwrap().start, 0);
            assert_eq!(plan.pieces.last().unwrap().end, rows);
            assert!(plan.pieces.windows(2).all(|w| w[0].end == w[1].start));
            for (p, &s) in plan.pieces.iter().zip(&plan.slots) {
                assert!(!p.is_empty() && p.len() <= max_rows);
                assert_eq!(s, p.clone().map(|i| lengths[plan.order[i]]).max().unwrap());
            }
        }
    }

    #[test]
    fn plan_extremes_no_padding_or_fewest_passes() {
        let lengths = binomial_lengths(1024, 128, 3);
        let exact = plan_forwards(&lengths, 4096, 0);
        assert_eq!(exact.slots_run(), lengths.iter().sum::<usize>());
        let fewest = plan_forwards(&lengths, 300, usize::MAX);
        assert_eq!(fewest.pieces.len(), 4); // ⌈1024 / 300⌉
        let one = plan_forwards(&lengths, 4096, usize::MAX);
        assert_eq!(one.pieces, [0..1024]);
        assert_eq!(one.slots_run(), 1024 * lengths.iter().max().unwrap());
        let unplanned = ForwardPlan::in_order(&lengths, 300);
        assert_eq!(unplanned.pieces, [0..300, 300..600, 600..900, 900..1024]);
        assert_eq!(unplanned.slots[3], *lengths[900..].iter().max().unwrap());
        assert!(fewest.slots_run() < unplanned.slots_run(), "sorting alone saves padding");
        // A GPU-sized floor still cuts the padding of 1 024 rows of about 70 positions.
        let gpu = plan_forwards(&lengths, 4096, GPU_MIN_FORWARD_TOKENS);
        assert!(gpu.pieces.len() > 1 && gpu.slots_run() < one.slots_run());
        assert!(plan_forwards(&[], 8, 0).pieces.is_empty());
    }

    #[test]
    fn gpu_floor_follows_the_model_size() {
        use crate::model::{Family, ModelInfo};
        let info = |family, num_layers, num_heads, num_kv_heads, head_dim, hidden_size, mlp_size| ModelInfo {
            family,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            hidden_size,
            mlp_size,
            vocab_size: 1000,
            max_positions: 512,
            causal: family != Family::Bert,
        };
        // Llama 3.2 1B: 973 078 528 weights in its layers' matrices (1 235 814 400 parameters
        // less the tied embedding and the norms); SmolLM2-135M: 106 168 320; BERT-base: 84 934 656.
        let llama_1b = info(Family::Llama, 16, 32, 8, 64, 2048, 8192).flops_per_token();
        let smollm2 = info(Family::Llama, 30, 9, 3, 64, 576, 1536).flops_per_token();
        let bert = info(Family::Bert, 12, 12, 12, 64, 768, 3072).flops_per_token();
        assert_eq!((llama_1b, smollm2, bert), (2.0 * 973_078_528.0, 2.0 * 106_168_320.0, 2.0 * 84_934_656.0));
        assert_eq!(gpu_min_forward_tokens(llama_1b), GPU_MIN_FORWARD_TOKENS);
        assert_eq!(gpu_min_forward_tokens(smollm2), 94_191); // ⌈2e13 / 212 336 640⌉
        assert_eq!(min_forward_tokens(&Device::Cpu, smollm2), CPU_MIN_FORWARD_TOKENS);
    }

    #[test]
    fn restore_puts_values_back_in_row_order() {
        let lengths = [5, 3, 9, 3, 1];
        let plan = plan_forwards(&lengths, 2, 0);
        assert_eq!(plan.order, [4, 1, 3, 0, 2]);
        let values: Vec<f64> = plan.order.iter().map(|&r| r as f64 * 10.0).collect();
        assert_eq!(plan.restore(values), [0.0, 10.0, 20.0, 30.0, 40.0]);
    }

    #[test]
    fn out_of_memory_is_told_from_other_errors() {
        let candle = |m: &str| candle_core::Error::Msg(m.into());
        assert!(is_out_of_memory(&candle("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")")));
        assert!(is_out_of_memory(&candle("cublas error: CUBLAS_STATUS_ALLOC_FAILED")));
        assert!(!is_out_of_memory(&candle("DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, \"an illegal memory access\")")));
        use crate::model::ModelError;
        assert!(ModelError::Candle(candle("CUDA_ERROR_OUT_OF_MEMORY")).is_out_of_memory());
        assert!(!ModelError::Input("out of memory".into()).is_out_of_memory());
    }

    #[test]
    fn auto_batch_keeps_headroom_and_bounds() {
        // 10 GB free, 10 % headroom, 1 GB fixed: 8 GB for rows of 100 MB = 80 rows.
        assert_eq!(auto_batch_rows(10_000_000_000, 1_000_000_000, 100_000_000, 0.1, 1000), 80);
        assert_eq!(auto_batch_rows(10_000_000_000, 1_000_000_000, 100_000_000, 0.1, 32), 32);
        assert_eq!(auto_batch_rows(1_000, 1_000_000_000, 100_000_000, 0.1, 32), 1);
    }

    /// Llama 3.2 1B's shape.
    fn llama_1b() -> ModelInfo {
        ModelInfo {
            family: crate::model::Family::Llama,
            num_layers: 16,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 64,
            hidden_size: 2048,
            mlp_size: 8192,
            vocab_size: 128_256,
            max_positions: 131_072,
            causal: true,
        }
    }

    #[test]
    fn a_row_behind_a_prefix_needs_less_memory_than_the_whole_input() {
        let info = llama_1b();
        let bytes = |q, k| decoder_row_bytes(&info, q, k, 2);
        assert!(bytes(64, 64) > bytes(32, 32));
        // 32 new positions behind a 96-token prefix attend 128 keys: more than a 32-token row
        // needs, far less than the 128-token row it stands for.
        assert!(bytes(32, 32) < bytes(32, 128) && 2 * bytes(32, 128) < bytes(128, 128));
        // The formula: per new position, per key, per score; twice for temporaries.
        let per_token = 2 * 2048 + (32 + 16) * 64 + 32 * 64 + 3 * 8192;
        assert_eq!(bytes(32, 128), 2 * 2 * (32 * per_token + 128 * 2 * 8 * 64 + 65 * 32 * 128));
    }
}
