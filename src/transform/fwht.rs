//! Fast Walsh–Hadamard transform.

use rayon::prelude::*;

/// In-place, unnormalised Walsh–Hadamard transform of a block of length `2^b`:
/// `x[j] <- Σ_l x[l] (-1)^{popcount(j & l)}`. Applying it twice multiplies by `2^b`.
///
/// Panics if the length is not a power of two (a programming error: blocks are `2^b` by design).
pub fn fwht(x: &mut [f64]) {
    let len = x.len();
    assert!(len.is_power_of_two(), "FWHT length {len} is not a power of two");
    let mut h = 1;
    while h < len {
        for block in x.chunks_exact_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
                let (u, v) = (*a, *b);
                *a = u + v;
                *b = u - v;
            }
        }
        h *= 2;
    }
}

/// Transforms every consecutive block of `block_len` values of `data` in place, in parallel
/// across blocks (rayon). `data.len()` must be a multiple of `block_len`.
pub fn fwht_blocks(data: &mut [f64], block_len: usize) {
    assert!(block_len > 0 && data.len() % block_len == 0, "data is not a whole number of blocks");
    data.par_chunks_exact_mut(block_len).for_each(fwht);
}
