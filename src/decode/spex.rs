//! The SPEX peeling decoder: Walsh–Hadamard transforms of each sample block, bin classification
//! (zero-ton / singleton / multiton) with BCH decoding of the delay signature, peeling across
//! the subsampling groups, and a least-squares refit of the recovered support.

use std::collections::HashMap;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::regress::Gram;
use super::DecodeError;
use crate::design::spex::SpexDesign;
use crate::subset::Subset;
use crate::transform::fwht::fwht;
use crate::transform::Fourier;

/// Settings of the SPEX decoder. `Default` gives the reference's choices (soft decoding with
/// Chase depth `t`, residual cutoff 0.9, at most 100 peeling rounds) plus a least-squares refit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpexDecoderConfig {
    /// Soft (Chase) BCH decoding from the bin's sign reliabilities; `false` = hard decisions.
    pub soft: bool,
    /// Least reliable parity bits the Chase decoder flips; `None` = the degree parameter `t`.
    pub chase_depth: Option<usize>,
    /// A decoded frequency is accepted when the bin keeps less than this share of its energy
    /// after removing it ("multi-detect").
    pub residual_cutoff: f64,
    /// Upper bound on peeling rounds.
    pub max_iterations: usize,
    /// Standard deviation of additive noise on the values, if known: bins whose energy is
    /// within the noise floor are treated as empty.
    pub noise_sd: f64,
    /// Refit the recovered support by least squares on all samples (the reference reports the
    /// peeled values as they are).
    pub refit: bool,
    /// Largest refit attempted, in multiply-adds: `samples · k²` for the Gram matrix of `k`
    /// recovered terms plus `10 · k³` for its eigendecomposition. A larger one would take CPU
    /// hours (a dense function of thousands of players); its peeled values stand, and
    /// [`SpexDiagnostics::refit_skipped`] says so.
    #[serde(default = "default_refit_max_work")]
    pub refit_max_work: f64,
}

fn default_refit_max_work() -> f64 {
    2e11
}

impl Default for SpexDecoderConfig {
    fn default() -> Self {
        SpexDecoderConfig {
            soft: true,
            chase_depth: None,
            residual_cutoff: 0.9,
            max_iterations: 100,
            noise_sd: 0.0,
            refit: true,
            refit_max_work: default_refit_max_work(),
        }
    }
}

/// What the decoder saw and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpexDiagnostics {
    /// Bins in all groups, `C·2^b`.
    pub bins: usize,
    /// Bins that were empty from the start.
    pub zerotons: usize,
    /// Bins still holding energy the decoder could not explain when peeling stopped.
    pub unresolved_bins: usize,
    /// Distinct frequencies recovered.
    pub peeled: usize,
    /// Peeling rounds run.
    pub iterations: usize,
    /// Share of the bins' initial energy left unexplained after peeling (0 = everything peeled).
    pub residual_energy: f64,
    /// Seconds spent in the Walsh–Hadamard transforms.
    pub transform_seconds: f64,
    /// Seconds spent classifying and peeling bins.
    pub peel_seconds: f64,
    /// Seconds spent in the least-squares refit (0 without refit).
    pub refit_seconds: f64,
    /// Whether the refit was skipped as too large ([`SpexDecoderConfig::refit_max_work`]).
    #[serde(default)]
    pub refit_skipped: bool,
}

/// Output of [`decode`].
#[derive(Clone, Debug)]
pub struct SpexDecoded {
    /// The recovered sparse Fourier representation.
    pub fourier: Fourier,
    /// What happened on the way.
    pub diagnostics: SpexDiagnostics,
}

/// The classification of one bin.
enum Bin {
    Zero,
    Single(Vec<u32>, f64),
    Multi,
}

/// Decodes the values of a SPEX design (in the order of [`SpexDesign::masks`]).
pub fn decode(design: &SpexDesign, values: &[f64], config: &SpexDecoderConfig) -> Result<SpexDecoded, DecodeError> {
    super::check_values(values, design.num_samples())?;
    let clock = Instant::now();
    let mut bins = StreamingBins::new(design);
    bins.push(0, values);
    let transform_seconds = clock.elapsed().as_secs_f64();
    let mut out = decode_bins(design, bins, values, config)?;
    out.diagnostics.transform_seconds = transform_seconds;
    Ok(out)
}

/// Decodes from block transforms already computed (by a [`StreamingBins`] fed while the values
/// arrived) and the values themselves (for the refit).
pub fn decode_bins(
    design: &SpexDesign,
    bins: StreamingBins,
    values: &[f64],
    config: &SpexDecoderConfig,
) -> Result<SpexDecoded, DecodeError> {
    super::check_values(values, design.num_samples())?;
    let mut bins = bins.into_bins();
    let mut diag = SpexDiagnostics { bins: design.groups() * design.block_len(), ..Default::default() };
    let clock = Instant::now();
    let p = design.num_delays();
    let mean_square = values.iter().map(|v| v * v).sum::<f64>() / values.len() as f64;
    let cutoff = p as f64 * (1e-12 * mean_square + 1.5 * config.noise_sd.powi(2) / design.block_len() as f64);
    let initial: f64 = bins.iter().map(|v| v * v).sum();
    diag.zerotons = bins.chunks_exact(p).filter(|u| energy(u) <= cutoff).count();
    let peeled = peel(design, &mut bins, cutoff, config, &mut diag);
    diag.unresolved_bins = bins.chunks_exact(p).filter(|u| energy(u) > cutoff).count();
    diag.residual_energy = if initial > 0.0 { bins.iter().map(|v| v * v).sum::<f64>() / initial } else { 0.0 };
    diag.peeled = peeled.len();
    diag.peel_seconds = clock.elapsed().as_secs_f64();

    let mut fourier = Fourier::from_pairs(design.n(), peeled);
    if config.refit {
        let (rows, k) = (values.len() as f64, fourier.len() as f64 + 1.0);
        diag.refit_skipped = rows * k * k + 10.0 * k.powi(3) > config.refit_max_work;
        if !diag.refit_skipped {
            let clock = Instant::now();
            fourier = refit(design, values, &fourier);
            diag.refit_seconds = clock.elapsed().as_secs_f64();
        }
    }
    Ok(SpexDecoded { fourier, diagnostics: diag })
}

/// The decoder's first step done as values arrive: each (group, delay) block of `2^b` samples
/// is Walsh–Hadamard transformed as soon as its last value is in, and scattered into bin
/// vectors — entry `(c·2^b + j)·P + p` is `U_{c,p}[j] = 2^{-b} Σ_ℓ f(M_c ℓ + d_p)(−1)^{<j,ℓ>}`.
pub struct StreamingBins {
    delays: usize,
    block_len: usize,
    raw: Vec<f64>,
    filled: Vec<usize>,
    bins: Vec<f64>,
}

impl StreamingBins {
    /// Empty bins for `design`.
    pub fn new(design: &SpexDesign) -> Self {
        let total = design.num_samples();
        StreamingBins {
            delays: design.num_delays(),
            block_len: design.block_len(),
            raw: vec![0.0; total],
            filled: vec![0; total / design.block_len()],
            bins: vec![0.0; total],
        }
    }

    /// Takes the values of samples `start..start + values.len()` (indices past the design, such
    /// as held-out masks, are ignored); every block this completes is transformed now. Each
    /// sample must be pushed once.
    pub fn push(&mut self, start: usize, values: &[f64]) {
        let end = (start + values.len()).min(self.raw.len());
        if start >= end {
            return;
        }
        self.raw[start..end].copy_from_slice(&values[..end - start]);
        let mut i = start;
        while i < end {
            let block = i / self.block_len;
            let upto = end.min((block + 1) * self.block_len);
            self.filled[block] += upto - i;
            if self.filled[block] == self.block_len {
                self.transform(block);
            }
            i = upto;
        }
    }

    fn transform(&mut self, block: usize) {
        let len = self.block_len;
        let mut u = self.raw[block * len..(block + 1) * len].to_vec();
        fwht(&mut u);
        let (c, delay) = (block / self.delays, block % self.delays);
        for (j, v) in u.into_iter().enumerate() {
            self.bins[(c * len + j) * self.delays + delay] = v / len as f64;
        }
    }

    /// Whether every block is in.
    pub fn is_complete(&self) -> bool {
        self.filled.iter().all(|&f| f == self.block_len)
    }

    /// The bin vectors (every block must be complete).
    fn into_bins(self) -> Vec<f64> {
        assert!(self.is_complete(), "every block must be in before decoding");
        self.bins
    }
}

fn energy(u: &[f64]) -> f64 {
    u.iter().map(|v| v * v).sum()
}

/// Peels singletons until none is left; returns every `(frequency, coefficient)` recovered.
fn peel(
    design: &SpexDesign,
    bins: &mut [f64],
    cutoff: f64,
    config: &SpexDecoderConfig,
    diag: &mut SpexDiagnostics,
) -> Vec<(Subset, f64)> {
    let p = design.num_delays();
    let mut to_check = vec![true; design.groups() * design.block_len()];
    let mut found: HashMap<Subset, f64> = HashMap::new();
    let mut order: Vec<Subset> = Vec::new(); // first-peel order, for deterministic output
    let mut history: Vec<usize> = Vec::new();
    for _ in 0..config.max_iterations {
        diag.iterations += 1;
        let outcomes: Vec<(usize, Bin)> = bins
            .par_chunks_exact(p)
            .enumerate()
            .filter(|(id, _)| to_check[*id])
            .map(|(id, u)| (id, classify(design, id, u, cutoff, config)))
            .collect();
        let singles = collect_singletons(outcomes, &mut to_check);
        if singles.is_empty() {
            break;
        }
        for (k, rho) in singles {
            subtract(design, bins, &mut to_check, &k, rho);
            let key = Subset::from_sorted(k);
            if !found.contains_key(&key) {
                order.push(key.clone());
            }
            *found.entry(key).or_insert(0.0) += rho;
        }
        // Stop when 15 rounds added no new frequency (the reference's trap exit).
        history.push(found.len());
        if history.len() > 15 && history[history.len() - 16] == found.len() {
            break;
        }
    }
    order
        .into_iter()
        .map(|k| {
            let v = found[&k];
            (k, v)
        })
        .collect()
}

/// Marks zero-tons and multitons as checked and averages the coefficient of every frequency
/// found in several bins this round (the reference's `peel_average`).
fn collect_singletons(outcomes: Vec<(usize, Bin)>, to_check: &mut [bool]) -> Vec<(Vec<u32>, f64)> {
    let mut sums: Vec<(Vec<u32>, f64, usize)> = Vec::new();
    for (id, outcome) in outcomes {
        match outcome {
            Bin::Zero | Bin::Multi => to_check[id] = false,
            Bin::Single(k, rho) => match sums.iter_mut().find(|(kk, _, _)| *kk == k) {
                Some(entry) => {
                    entry.1 += rho;
                    entry.2 += 1;
                }
                None => sums.push((k, rho, 1)),
            },
        }
    }
    sums.into_iter().map(|(k, sum, count)| (k, sum / count as f64)).collect()
}

/// Removes `rho · signature(k)` from the bin `k` falls in, in every group, and flags those bins.
fn subtract(design: &SpexDesign, bins: &mut [f64], to_check: &mut [bool], k: &[u32], rho: f64) {
    let p = design.num_delays();
    let signature = design.signature(k);
    for c in 0..design.groups() {
        let id = c * design.block_len() + design.bin(c, k);
        for (v, s) in bins[id * p..(id + 1) * p].iter_mut().zip(&signature) {
            *v -= rho * s;
        }
        to_check[id] = true;
    }
}

/// Classifies one bin: empty, explained by one frequency (which), or not.
fn classify(design: &SpexDesign, id: usize, u: &[f64], cutoff: f64, config: &SpexDecoderConfig) -> Bin {
    let total = energy(u);
    if total <= cutoff {
        return Bin::Zero;
    }
    let (c, j) = (id / design.block_len(), id % design.block_len());
    // Signs relative to the zero delay carry the parity bits; magnitudes their reliability.
    let reference = if u[0] < 0.0 { -1.0 } else { 1.0 };
    let y: Vec<f64> = u[1..].iter().map(|v| v * reference).collect();
    let code = design.code();
    let candidates = if config.soft {
        code.decode_soft(&y, config.chase_depth.unwrap_or(code.t()))
    } else {
        code.decode_hard(&y.iter().map(|&v| v < 0.0).collect::<Vec<_>>()).into_iter().collect()
    };
    for word in candidates {
        if design.bin(c, &word.players) != j {
            continue;
        }
        let signature = design.signature(&word.players);
        let rho = u.iter().zip(&signature).map(|(a, b)| a * b).sum::<f64>() / u.len() as f64;
        let residual: f64 = u.iter().zip(&signature).map(|(a, s)| (a - rho * s).powi(2)).sum();
        if residual < config.residual_cutoff * total {
            return Bin::Single(word.players, rho);
        }
    }
    Bin::Multi
}

/// Least squares of all samples on the recovered support plus the constant.
fn refit(design: &SpexDesign, values: &[f64], peeled: &Fourier) -> Fourier {
    let mut support: Vec<Subset> = peeled.iter().map(|(k, _)| k.clone()).collect();
    if !support.iter().any(Subset::is_empty) {
        support.push(Subset::empty());
    }
    support.sort();
    let coef = Gram::of_fourier_features(design.masks().as_slice(), &support, values).solve(0.0);
    let mut out = Fourier::from_pairs(design.n(), support.into_iter().zip(coef));
    out.prune(0.0);
    out
}
