//! Launch shapes of the kernels in `kernels/*.cu`: plain arithmetic, compiled in every build, so
//! that the device launches (`crate::cuda::kernels`, feature `cuda`) and the kernels' host
//! emulation (`tests/kernels_emulated.rs`) launch them identically.

/// Threads per block of every kernel (a multiple of the 32-thread warp).
pub const BLOCK: u32 = 256;

/// Picks per block of `score_direct_*` (`ROWS` in `kernels/score.cu`).
pub const DIRECT_ROWS: usize = 8;

/// A launch: blocks in x and y, [`BLOCK`] threads each, no dynamic shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Blocks along x.
    pub grid_x: u32,
    /// Blocks along y.
    pub grid_y: u32,
    /// Threads per block.
    pub block: u32,
}

/// `n` independent elements (the grid-stride kernels): enough blocks to cover them, capped (the
/// kernels stride over the rest) so huge batches need no special casing.
pub fn elementwise(n: usize) -> Shape {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 16) as u32;
    Shape { grid_x: blocks, grid_y: 1, block: BLOCK }
}

/// `compact_rows_*`: one block per row, capped (the kernel strides over the rest).
pub fn rows(batch: usize) -> Shape {
    Shape { grid_x: batch.clamp(1, 65_535) as u32, grid_y: 1, block: BLOCK }
}

/// `score_tile_*`: one warp per pick.
pub fn score_tile(picks: usize) -> Shape {
    let warps_per_block = BLOCK as usize / 32;
    Shape { grid_x: picks.div_ceil(warps_per_block).max(1) as u32, grid_y: 1, block: BLOCK }
}

/// Vocabulary slices of `score_direct_*`: enough blocks to fill a large GPU even for few picks.
pub fn direct_slices(picks: usize, vocab: usize) -> usize {
    let row_blocks = picks.div_ceil(DIRECT_ROWS).max(1);
    (1024usize.div_ceil(row_blocks)).clamp(1, vocab.div_ceil(256).max(1))
}

/// `score_direct_*` over `slices` vocabulary slices ([`direct_slices`]): blocks of
/// [`DIRECT_ROWS`] picks along x, slices along y.
pub fn score_direct(picks: usize, slices: usize) -> Shape {
    Shape { grid_x: picks.div_ceil(DIRECT_ROWS).max(1) as u32, grid_y: slices as u32, block: BLOCK }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_their_work() {
        assert_eq!(elementwise(0).grid_x, 1);
        assert_eq!(elementwise(257).grid_x, 2);
        assert_eq!(elementwise(usize::MAX / 2).grid_x, 1 << 16);
        assert_eq!((rows(0).grid_x, rows(300).grid_x, rows(1 << 20).grid_x), (1, 300, 65_535));
        // One warp per pick: 8 warps per 256-thread block.
        assert_eq!(score_tile(17).grid_x, 3);
        assert_eq!(score_direct(17, 5), Shape { grid_x: 3, grid_y: 5, block: BLOCK });
        // Few picks: many slices (bounded by 256 vocabulary entries per slice); many picks: one.
        assert_eq!(direct_slices(8, 1 << 20), 1024);
        assert_eq!(direct_slices(8, 1000), 4);
        assert_eq!(direct_slices(100_000, 1 << 20), 1);
    }
}
