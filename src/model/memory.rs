//! Batch sizing against device memory: how many rows fit, and running a sweep so that an
//! out-of-memory failure halves the batch and retries the same rows, losing nothing.
//!
//! Device-independent on purpose: the CUDA path supplies the free-memory figure and says which
//! errors are out-of-memory; the logic is tested here on the CPU with simulated failures.

use std::ops::Range;

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

/// Activation bytes per row of a decoder forward of `len` tokens, counted generously (an upper
/// bound, not a measurement): the residual stream and its norm, Q/K/V and the attention output,
/// the `[H, L, L]` scores and probabilities (plus the `[L, L]` bias), and the MLP's gate/up
/// products, each `elem_bytes` wide, times two for candle's temporaries.
pub fn decoder_row_bytes(
    len: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    inter: usize,
    elem_bytes: usize,
) -> usize {
    let per_token = 2 * hidden + (heads + 2 * kv_heads) * head_dim + heads * head_dim + 3 * inter;
    let attention = (2 * heads + 1) * len * len;
    2 * elem_bytes * (len * per_token + attention)
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

/// Evaluates rows `0..rows` in consecutive batches of at most `batch` rows with `eval` (which
/// returns one value per row of its range). When `eval` fails with an error `is_oom` accepts,
/// the batch is halved and the **same** range retried, so no row is skipped or computed twice
/// into the output; later batches keep the smaller size. Any other error, or out-of-memory at a
/// batch of one row, is returned.
pub fn sweep_halving<E>(
    rows: usize,
    batch: usize,
    is_oom: impl Fn(&E) -> bool,
    mut eval: impl FnMut(Range<usize>) -> Result<Vec<f64>, E>,
) -> Result<Sweep, E> {
    let mut out = Sweep { values: Vec::with_capacity(rows), batch: batch.max(1), halvings: 0 };
    let mut start = 0;
    while start < rows {
        let range = start..(start + out.batch).min(rows);
        match eval(range.clone()) {
            Ok(v) => {
                assert_eq!(v.len(), range.len(), "eval must return one value per row");
                out.values.extend(v);
                start = range.end;
            }
            Err(e) if is_oom(&e) && out.batch > 1 => {
                out.batch /= 2;
                out.halvings += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
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
        let s = sweep_halving(100, 64, |e| *e == Fail::Oom, device(20, &mut calls)).unwrap();
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
        let r = sweep_halving(10, 4, |e| *e == Fail::Oom, |_r: Range<usize>| Err::<Vec<f64>, _>(Fail::Other));
        assert_eq!(r.unwrap_err(), Fail::Other);
        let mut calls = Vec::new();
        let r = sweep_halving(10, 4, |e| *e == Fail::Oom, device(0, &mut calls));
        assert_eq!(r.unwrap_err(), Fail::Oom);
        assert_eq!(calls, [0..4, 0..2, 0..1]);
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
        assert!(decoder_row_bytes(64, 2048, 32, 8, 64, 8192, 2) > decoder_row_bytes(32, 2048, 32, 8, 64, 8192, 2));
    }
}
