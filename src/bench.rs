//! Benchmarks that print figures (`spex bench …`, `cargo bench`): speed goals live here, never
//! in timed tests.

use std::time::Instant;

use serde::Serialize;

use crate::decode::spex::{decode, SpexDecoderConfig};
use crate::design::spex::{choose_parameters, SpexDesign, DEFAULT_T};
use crate::design::{rng, uniform::random_masks};
use crate::explain::Explanation;
use crate::plan::{DecoderConfig, Method, Plan, PlanSpec};
use crate::faithfulness::faithfulness;
use crate::planted::{planted_fourier, planted_moebius, standard_normal};

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

/// One point of the R²-against-budget curve.
#[derive(Clone, Debug, Serialize)]
pub struct CurvePoint {
    /// Method.
    pub method: Method,
    /// Players.
    pub n: usize,
    /// Budget asked for.
    pub budget: usize,
    /// Masks the design used (`None` when the method cannot run at this budget).
    pub used: Option<usize>,
    /// Mean held-out R² over the seeds (`None` when the method cannot run).
    pub r2: Option<f64>,
    /// Mean decode seconds.
    pub decode_seconds: Option<f64>,
}

/// Planted test functions for the curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Sparse in the Fourier basis (random parities): SPEX's home ground.
    Fourier,
    /// Sparse in the Möbius basis (AND interactions, hierarchical): ProxySPEX's.
    Moebius,
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fourier" => Ok(Family::Fourier),
            "moebius" => Ok(Family::Moebius),
            other => Err(format!("unknown family {other:?}; expected fourier or moebius")),
        }
    }
}

/// The setting of a curve: which planted functions, how noisy, how many seeds.
#[derive(Clone, Copy, Debug)]
pub struct CurveSetting {
    /// Function family.
    pub family: Family,
    /// Planted interactions.
    pub terms: usize,
    /// Their largest order.
    pub degree: usize,
    /// Standard deviation of Gaussian noise added to every queried value (not to the held-out
    /// truth the R² is measured against).
    pub noise: f64,
    /// Seeds averaged.
    pub seeds: u64,
}

/// R² against budget of `method` on planted functions, averaged over seeds, scored against the
/// noise-free function on 1 000 held-out masks.
pub fn curve_point(method: Method, n: usize, budget: usize, setting: &CurveSetting) -> CurvePoint {
    let mut runs = Vec::new();
    let seeds = setting.seeds;
    for seed in 0..seeds {
        let truth = match setting.family {
            Family::Fourier => planted_fourier(n, setting.terms, setting.degree, &mut rng(seed, 10)),
            Family::Moebius => planted_moebius(n, setting.terms, setting.degree, &mut rng(seed, 10)),
        };
        let spec = PlanSpec { method, budget, seed, holdout: 1000, ..PlanSpec::new(n) };
        let Ok(plan) = Plan::new(spec) else { break };
        let design = plan.design_masks();
        let mut noise = rng(seed, 12);
        let values: Vec<f64> = truth
            .eval_batch(design.as_slice())
            .into_iter()
            .map(|v| v + setting.noise * standard_normal(&mut noise))
            .collect();
        let clock = Instant::now();
        let Ok(e) = Explanation::decode(&plan, &values, &DecoderConfig::default()) else { break };
        let seconds = clock.elapsed().as_secs_f64();
        let holdout = plan.holdout().as_slice();
        let r2 = faithfulness(&e.fourier, holdout, &truth.eval_batch(holdout)).r2.unwrap_or(f64::NAN);
        runs.push((plan.budget_used(), r2, seconds));
    }
    let mean = |f: fn(&(usize, f64, f64)) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
    let ok = runs.len() as u64 == seeds && seeds > 0;
    CurvePoint {
        method,
        n,
        budget,
        used: ok.then(|| runs[0].0),
        r2: ok.then(|| mean(|r| r.1)),
        decode_seconds: ok.then(|| mean(|r| r.2)),
    }
}

/// Formats curve points as a table: one row per (n, budget), one column pair per method.
pub fn format_curve_table(points: &[CurvePoint]) -> String {
    let mut methods: Vec<Method> = Vec::new();
    for p in points {
        if !methods.contains(&p.method) {
            methods.push(p.method);
        }
    }
    let mut s = format!("{:>6} {:>8}", "n", "budget");
    for m in &methods {
        s += &format!(" {:>18}", format!("{m} R² (s)"));
    }
    s.push('\n');
    let mut keys: Vec<(usize, usize)> = points.iter().map(|p| (p.n, p.budget)).collect();
    keys.dedup();
    for (n, budget) in keys {
        s += &format!("{n:>6} {budget:>8}");
        for m in &methods {
            let cell = points
                .iter()
                .find(|p| p.n == n && p.budget == budget && p.method == *m)
                .and_then(|p| Some(format!("{:.3} ({:.2})", p.r2?, p.decode_seconds?)))
                .unwrap_or_else(|| "—".to_string());
            s += &format!(" {cell:>18}");
        }
        s.push('\n');
    }
    s
}
