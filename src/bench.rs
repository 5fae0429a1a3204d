//! Benchmarks that print figures (`spex bench …`, `cargo bench`): speed goals live here, never
//! in timed tests.

use std::time::Instant;

use serde::Serialize;

use crate::decode::spex::{decode, SpexDecoderConfig};
use crate::design::spex::{choose_parameters, SpexDesign, DEFAULT_T};
use crate::design::{rng, uniform::random_masks};
use crate::faithfulness::faithfulness;
use crate::planted::planted_fourier;

/// One row of the SPEX decode benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct DecodeRow {
    /// Players.
    pub n: usize,
    /// Samples the design used.
    pub samples: usize,
    /// Subsampling bits.
    pub b: u32,
    /// Degree parameter.
    pub t: usize,
    /// Seconds to generate the design's masks.
    pub design_seconds: f64,
    /// Seconds to decode (transforms, peeling, refit).
    pub decode_seconds: f64,
    /// Held-out R² against the planted function on 1 000 uniform masks.
    pub r2: f64,
    /// Planted coefficients recovered exactly (support and value within 1e-6).
    pub recovered: usize,
    /// Planted coefficients.
    pub planted: usize,
}

/// Plants `terms` Fourier coefficients of degree ≤ `degree` over `n` players, samples a SPEX
/// design of at most `budget` masks, decodes, and measures.
pub fn decode_row(n: usize, budget: usize, terms: usize, degree: usize, seed: u64) -> anyhow::Result<DecodeRow> {
    let truth = planted_fourier(n, terms, degree, &mut rng(seed, 10));
    let (b, t) = choose_parameters(n, budget, DEFAULT_T)?;
    let clock = Instant::now();
    let design = SpexDesign::new(n, b, t, &mut rng(seed, 0))?;
    let masks = design.masks();
    let design_seconds = clock.elapsed().as_secs_f64();
    let values = truth.eval_batch(masks.as_slice());
    let clock = Instant::now();
    let decoded = decode(&design, &values, &SpexDecoderConfig::default())?;
    let decode_seconds = clock.elapsed().as_secs_f64();
    let holdout = random_masks(n, 1000, &mut rng(seed, 1));
    let r2 = faithfulness(&decoded.fourier, holdout.as_slice(), &truth.eval_batch(holdout.as_slice())).r2.unwrap_or(f64::NAN);
    let recovered = truth.iter().filter(|(k, v)| (decoded.fourier.get(k) - v).abs() < 1e-6).count();
    Ok(DecodeRow {
        n,
        samples: design.num_samples(),
        b,
        t,
        design_seconds,
        decode_seconds,
        r2,
        recovered,
        planted: truth.len(),
    })
}

/// Formats rows as an aligned text table.
pub fn format_decode_table(rows: &[DecodeRow]) -> String {
    let mut s = format!(
        "{:>6} {:>8} {:>3} {:>3} {:>10} {:>10} {:>8} {:>9}\n",
        "n", "samples", "b", "t", "design s", "decode s", "R²", "recovered"
    );
    for r in rows {
        s += &format!(
            "{:>6} {:>8} {:>3} {:>3} {:>10.4} {:>10.4} {:>8.5} {:>5}/{:<3}\n",
            r.n, r.samples, r.b, r.t, r.design_seconds, r.decode_seconds, r.r2, r.recovered, r.planted
        );
    }
    s
}
