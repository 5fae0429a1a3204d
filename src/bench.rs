//! Benchmarks that print figures (`spex bench …`, `cargo bench`): speed goals live here, never
//! in timed tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::DType;
use rand::Rng;
use serde::Serialize;

use crate::decode::spex::{decode, SpexDecoderConfig};
use crate::design::spex::{choose_parameters, SpexDesign, DEFAULT_T};
use crate::design::{rng, uniform::random_masks};
use crate::explain::Explanation;
use crate::faithfulness::faithfulness;
use crate::model::bert::{self, Bert, BertConfig};
use crate::model::llama::{self, Llama, LlamaConfig};
use crate::model::{LoadedModel, Model};
use crate::plan::{default_holdout, DecoderConfig, Method, Plan, PlanSpec};
use crate::planted::{planted_fourier, planted_moebius, standard_normal};
use crate::rundir::{RunInfo, StartMode};
use crate::runner::{self, RunOptions, RunOutcome};
use crate::value::encoder::{EncoderMetric, EncoderOptions, EncoderValue};
use crate::value::lm::{LmOptions, LmValue, Target};
use crate::value::players::{SetupError, TokenSpan, TokenizedPrompt};
use crate::value::setup::{self, ComputeDevice};
use crate::value::ValueFunction;

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
    let r2 = faithfulness(&decoded.fourier, holdout.as_slice(), &truth.eval_batch(holdout.as_slice()))
        .r2
        .unwrap_or(f64::NAN);
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

/// Filler text for benchmark prompts of a chosen token length.
pub const BENCH_TEXT: &str = "The history of the city begins with a small fishing village on the river, where traders \
    from the north and the south met to exchange salt, wool and grain. Over the centuries the village grew \
    into a market town, then into a walled city with a cathedral, a university and a busy port. ";

/// A prompt of exactly `fixed + len` tokens of [`BENCH_TEXT`]: `fixed` fixed ones (a template's
/// stand-in), then `len` players, one a token.
pub fn token_prompt(lm: &LoadedModel, fixed: usize, len: usize) -> Result<TokenizedPrompt, SetupError> {
    let all = fixed + len;
    let ids = lm.encode(&BENCH_TEXT.repeat(all / 40 + 2)).map_err(|e| SetupError::Invalid(e.to_string()))?;
    let spans = (fixed..all).map(TokenSpan::token).collect();
    TokenizedPrompt::new(ids[..all].to_vec(), spans)
}

/// The model `spex bench throughput` runs: a loaded model, prompted with [`BENCH_TEXT`], or
/// random weights of a named architecture, prompted with random token ids (no download, and its
/// tokenizer knows no text).
pub struct BenchModel {
    lm: Arc<LoadedModel>,
    random: bool,
    /// Fixed tokens before the players of every prompt.
    template: usize,
    /// [`LmOptions::reuse_prefix`].
    reuse_prefix: bool,
}

impl BenchModel {
    /// A loaded model.
    pub fn loaded(lm: Arc<LoadedModel>) -> Self {
        BenchModel { lm, random: false, template: 0, reuse_prefix: true }
    }

    /// The same model (shared, not drawn again) with `tokens` fixed tokens (a chat template's
    /// stand-in) before the players of every causal-LM prompt, run once or in every row
    /// ([`LmOptions::reuse_prefix`]).
    pub fn with_template(&self, tokens: usize, reuse_prefix: bool) -> Self {
        BenchModel { lm: self.lm.clone(), random: self.random, template: tokens, reuse_prefix }
    }

    /// Random weights of `shape` (one of [`llama::SHAPES`] or [`bert::SHAPES`]) drawn on the
    /// device `device` resolves to, in the dtype the forwards run in there (f32 on the CPU, bf16
    /// on a GPU).
    pub fn random(shape: &str, device: ComputeDevice) -> Result<Self, SetupError> {
        let device = device.resolve();
        let dtype = if device == ComputeDevice::Cuda { DType::BF16 } else { DType::F32 };
        let on = device.candle_device()?;
        let drawn = match (LlamaConfig::shape(shape), BertConfig::shape(shape)) {
            (Some(cfg), _) => Llama::random(cfg, &on, dtype).map(Model::Llama),
            (None, Some(cfg)) => Bert::random(cfg, &on, dtype).map(Model::Bert),
            (None, None) => {
                let known = [&llama::SHAPES[..], &bert::SHAPES[..]].concat().join(", ");
                return Err(SetupError::Invalid(format!("unknown shape {shape:?}; expected one of {known}")));
            }
        };
        let model = drawn.map_err(|e| SetupError::Invalid(e.to_string()))?;
        let tokenizer = tokenizers::Tokenizer::new(tokenizers::models::wordlevel::WordLevel::default());
        let source = format!("random weights, {shape} shape").into();
        let lm = Arc::new(LoadedModel { model, tokenizer, eos_ids: vec![], source, device_copies: Default::default() });
        Ok(BenchModel { lm, random: true, template: 0, reuse_prefix: true })
    }

    /// Fixed tokens before the players of every causal-LM prompt ([`BenchModel::with_template`]).
    pub fn template(&self) -> usize {
        self.template
    }

    /// The value function of a `len`-token prompt on a causal LM, every token a player
    /// (attention masking) after the template's fixed tokens, scoring the log-probability of a
    /// 4-token target.
    pub fn value(&self, len: usize) -> Result<LmValue, SetupError> {
        let (fixed, reuse_prefix) = (self.template, self.reuse_prefix);
        if !self.random {
            let target = Target::Text(" a walled city".into());
            let options = LmOptions { target, reuse_prefix, ..LmOptions::default() };
            return LmValue::from_tokens(self.lm.clone(), token_prompt(&self.lm, fixed, len)?, options);
        }
        let all = fixed + len;
        let ids = self.random_ids(len, all + 4);
        let prompt = TokenizedPrompt::new(ids[..all].to_vec(), (fixed..all).map(TokenSpan::token).collect())?;
        let options = LmOptions { target: Target::Tokens(ids[all..].to_vec()), reuse_prefix, ..LmOptions::default() };
        LmValue::from_tokens(self.lm.clone(), prompt, options)
    }

    /// The value function of a `len`-token prompt on an encoder, every token a player (attention
    /// masking): random weights score class 1 of their head, with a fixed `[CLS]`-like token
    /// before the players; a loaded model the cosine to the whole of [`BENCH_TEXT`].
    pub fn encoder_value(&self, len: usize) -> Result<EncoderValue, SetupError> {
        if self.template > 0 {
            return Err(SetupError::Invalid("a template of fixed tokens applies to causal LMs".into()));
        }
        if !self.random {
            let metric = EncoderMetric::Cosine { reference: BENCH_TEXT.into() };
            return EncoderValue::from_tokens(
                self.lm.clone(),
                token_prompt(&self.lm, 0, len)?,
                EncoderOptions::new(metric),
            );
        }
        let ids = self.random_ids(len, len + 1);
        let prompt = TokenizedPrompt::new(ids, (1..=len).map(TokenSpan::token).collect())?;
        EncoderValue::from_tokens(self.lm.clone(), prompt, EncoderOptions::new(EncoderMetric::ClassLogit { class: 1 }))
    }

    /// The game of a `len`-token prompt on `device`: [`BenchModel::value`] for a causal LM,
    /// [`BenchModel::encoder_value`] for an encoder.
    pub fn game_on(&self, len: usize, device: ComputeDevice) -> Result<Box<dyn ValueFunction + Send>, SetupError> {
        match self.lm.model.lm_head() {
            Some(_) => setup::lm_value_on(self.value(len)?, device),
            None => setup::encoder_value_on(self.encoder_value(len)?, device),
        }
    }

    /// `n` token ids drawn from the vocabulary, the same for every call with the same `len`.
    fn random_ids(&self, len: usize, n: usize) -> Vec<u32> {
        let mut r = rng(len as u64, 20);
        let vocab = self.lm.model.info().vocab_size as u32;
        (0..n).map(|_| r.random_range(0..vocab)).collect()
    }
}

/// One row of the engine throughput benchmark (`spex bench throughput`): a whole run through the
/// pipeline (masks, queues, model, durable store, decoding) on a model.
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputRow {
    /// Prompt tokens (each a player).
    pub prompt_tokens: usize,
    /// Fixed tokens before them ([`BenchModel::with_template`]).
    pub template_tokens: usize,
    /// Whether the template ran once ([`LmOptions::reuse_prefix`]).
    pub prefix_cache: bool,
    /// Masks per batch.
    pub batch: usize,
    /// Masks evaluated (design and held-out).
    pub masks: usize,
    /// Masked queries per second of evaluation.
    pub queries_per_second: f64,
    /// Prompt tokens × queries per second.
    pub tokens_per_second: f64,
    /// Milliseconds per query.
    pub ms_per_query: f64,
    /// Share of the run's wall time (evaluation and decoding) not spent in forward passes: mask
    /// generation, queues, store, and decoding not overlapped with forwards.
    pub overhead_share: f64,
    /// Share of the evaluation the model worker waited for masks.
    pub worker_idle_share: f64,
    /// Decoding and faithfulness seconds after the last batch.
    pub decode_seconds: f64,
    /// Where the forwards ran.
    pub device: String,
}

/// Runs a ProxySPEX plan of `budget` masks over a `len`-token prompt of `model`
/// ([`BenchModel::value`]) in batches of `batch` on `device`, with a durable store in `dir`, and
/// measures it.
pub fn throughput_row(
    model: &BenchModel,
    len: usize,
    batch: usize,
    budget: usize,
    dir: &Path,
    device: ComputeDevice,
) -> anyhow::Result<ThroughputRow> {
    let device = device.resolve();
    let mut f = model.game_on(len, device)?;
    // Warm up allocator, thread pool, caches and (on a GPU) the kernels of a full batch outside
    // the measurement; on the CPU a few masks do.
    let warm = if device == ComputeDevice::Cuda { batch } else { batch.min(4) };
    f.evaluate(random_masks(len, warm, &mut rng(9, 0)).as_slice())?;
    let plan = Plan::new(PlanSpec {
        method: Method::ProxySpex,
        budget,
        holdout: default_holdout(budget),
        ..PlanSpec::new(len)
    })?;
    let run = RunOptions { mode: StartMode::Force, batch_size: batch, ..RunOptions::new(dir) };
    let mut f = Some(f as Box<dyn ValueFunction>);
    let mut start = || Ok(f.take().expect("started once"));
    let (_, outcome) =
        runner::run(&plan, &RunInfo::new("bench"), &run, &mut start, &DecoderConfig::default(), &mut |_| {}).map_err(
            |e| match e {
                // The store is a scratch file: its advice to resume does not apply.
                runner::RunError::Engine { error, .. } => anyhow::Error::new(error),
                e => e.into(),
            },
        )?;
    let RunOutcome::Complete { explanation, stats } = outcome else { anyhow::bail!("an unsharded run completes") };
    let t = &explanation.timings;
    let after = t.decode_seconds + t.faithfulness_seconds;
    let wall = stats.wall_seconds;
    Ok(ThroughputRow {
        prompt_tokens: len,
        template_tokens: model.template,
        prefix_cache: model.reuse_prefix,
        batch,
        masks: stats.masks,
        queries_per_second: stats.masks as f64 / wall,
        tokens_per_second: (stats.masks * len) as f64 / wall,
        ms_per_query: 1e3 * wall / stats.masks as f64,
        overhead_share: 1.0 - stats.forward_seconds / (wall + after),
        worker_idle_share: stats.worker_idle_share(),
        decode_seconds: after,
        device: device.describe(),
    })
}

/// The throughput rows as a table; with a template, a column says how many fixed tokens came
/// first and whether they ran once (`+25 once`) or in every row (`+25 rows`).
pub fn format_throughput_table(rows: &[ThroughputRow]) -> String {
    let templated = rows.iter().any(|r| r.template_tokens > 0);
    let template = |r: &ThroughputRow| match (templated, r.prefix_cache) {
        (false, _) => String::new(),
        (true, cached) => {
            format!(" {:>10}", format!("+{} {}", r.template_tokens, if cached { "once" } else { "rows" }))
        }
    };
    let mut s = format!(
        "{:>7}{} {:>6} {:>6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}  device\n",
        "tokens",
        if templated { format!(" {:>10}", "template") } else { String::new() },
        "batch",
        "masks",
        "queries/s",
        "tokens/s",
        "ms/query",
        "overhead",
        "idle",
        "decode s"
    );
    for r in rows {
        s += &format!(
            "{:>7}{} {:>6} {:>6} {:>10.2} {:>10.0} {:>9.1} {:>8.2}% {:>8.2}% {:>9.3}  {}\n",
            r.prompt_tokens,
            template(r),
            r.batch,
            r.masks,
            r.queries_per_second,
            r.tokens_per_second,
            r.ms_per_query,
            100.0 * r.overhead_share,
            100.0 * r.worker_idle_share,
            r.decode_seconds,
            r.device
        );
    }
    s
}
