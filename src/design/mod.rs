//! Sampling designs: which masks to query.
//!
//! * [`spex`]: the SPEX design (random subsampling + BCH-coded delays).
//! * [`uniform`]: i.i.d. uniformly random masks (the regression baseline, ProxySPEX, hold-out sets).

pub mod spex;
pub mod uniform;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Independent random streams derived from one user seed, so that adding a consumer of
/// randomness never shifts another's draws.
pub mod stream {
    /// The design's own masks or matrices.
    pub const DESIGN: u64 = 0;
    /// Held-out masks for the faithfulness score.
    pub const HOLDOUT: u64 = 1;
    /// Anything a decoder randomises (cross-validation folds, tree sampling).
    pub const DECODER: u64 = 2;
}

/// A deterministic, portable random generator for `seed` and stream `stream` (see [`stream`]).
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}
