//! A plan: the method, its design, the held-out masks for the faithfulness score and probes of
//! the extreme masks the design lacks; everything needed to produce the masks of a run and to
//! decode their values later. A plan is saved as a
//! small JSON "design file" beside the masks so that `spex decode` needs nothing else.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decode::exhaustive::{self, ExhaustiveDiagnostics};
use crate::decode::lasso::{self, LassoConfig, LassoDiagnostics};
use crate::decode::proxyspex::{self, ProxyConfig, ProxyDiagnostics};
use crate::decode::spex::{self as spex_decoder, SpexDecoderConfig, SpexDiagnostics, StreamingBins};
use crate::decode::DecodeError;
use crate::design::spex::{self, SpexDesign, SpexDesignError};
use crate::design::{rng, stream, uniform};
use crate::engine::MaskSource;
use crate::faithfulness::largest_power_of_two;
use crate::mask::{Mask, MaskBatch, MaskError};
use crate::transform::Fourier;

/// How masks are chosen and decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// SPEX: BCH-coded aliasing design, peeling decoder.
    Spex,
    /// Uniformly random masks, LASSO on low-order Fourier terms (the baseline).
    Uniform,
    /// ProxySPEX: uniformly random masks in complementary pairs, gradient-boosted trees read off
    /// as Fourier coefficients.
    #[serde(rename = "proxyspex")]
    ProxySpex,
    /// Every one of the `2^n` masks, decoded exactly by one Walsh–Hadamard transform (a handful
    /// of players).
    Exhaustive,
    /// Choose from the number of players and the budget (see [`choose_method`]).
    Auto,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Spex => "spex",
            Method::Uniform => "uniform",
            Method::ProxySpex => "proxyspex",
            Method::Exhaustive => "exhaustive",
            Method::Auto => "auto",
        })
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "spex" => Ok(Method::Spex),
            "uniform" => Ok(Method::Uniform),
            "proxyspex" | "proxy-spex" => Ok(Method::ProxySpex),
            "exhaustive" => Ok(Method::Exhaustive),
            "auto" => Ok(Method::Auto),
            other => Err(format!("unknown method {other:?}; expected spex, proxyspex, uniform, exhaustive or auto")),
        }
    }
}

/// What to plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSpec {
    /// Players.
    pub n: usize,
    /// Method.
    pub method: Method,
    /// Most design masks to query (the held-out masks come on top).
    pub budget: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// SPEX degree parameter `t` (largest recoverable interaction order).
    pub degree: usize,
    /// Held-out masks for the faithfulness score.
    pub holdout: usize,
}

impl PlanSpec {
    /// Defaults for `n` players: SPEX at the reference's `b = 8` budget, seed 0, `t = 5`, and
    /// [`default_holdout`] held-out masks.
    pub fn new(n: usize) -> Self {
        let budget = spex::num_samples(n.max(1), 8, spex::DEFAULT_T).unwrap_or(0);
        PlanSpec { n, method: Method::Spex, budget, seed: 0, degree: spex::DEFAULT_T, holdout: default_holdout(budget) }
    }

    /// Defaults for `n` players where the method, the budget or both may be left open. An open
    /// method is the exact table when all 2^n masks fit the budget (SPEX's default budget when
    /// that is open too): it is exact and no larger than the SPEX design that budget allows;
    /// otherwise SPEX. An open budget is 2^n for the table, the reference's `b = 8` design for
    /// SPEX, and [`DEFAULT_SAMPLED_BUDGET`] for the other methods.
    pub fn with_defaults(n: usize, method: Option<Method>, budget: Option<usize>) -> Self {
        let spex = PlanSpec::new(n);
        let all_masks = (n <= exhaustive::MAX_PLAYERS).then(|| 1usize << n);
        let method = method.unwrap_or_else(|| {
            let fits = all_masks.is_some_and(|all| all <= budget.unwrap_or(spex.budget));
            if fits {
                Method::Exhaustive
            } else {
                Method::Spex
            }
        });
        let budget = budget.unwrap_or(match method {
            Method::Spex => spex.budget,
            Method::Exhaustive => all_masks.unwrap_or(usize::MAX),
            Method::Uniform | Method::ProxySpex | Method::Auto => DEFAULT_SAMPLED_BUDGET,
        });
        PlanSpec { method, budget, holdout: default_holdout(budget), ..spex }
    }
}

/// Budget of uniform, ProxySPEX and `auto` plans when none is given.
pub const DEFAULT_SAMPLED_BUDGET: usize = 5000;

/// Held-out masks by default: a tenth of the budget, at least 100 and at most 1 000 (the
/// reference's test-set size).
pub fn default_holdout(budget: usize) -> usize {
    (budget / 10).clamp(100, 1000)
}

/// Why a plan could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No players.
    #[error("n = 0: there must be at least one player")]
    NoPlayers,
    /// A degree of 0: no interaction order is sought.
    #[error("degree 0: the largest interaction order sought must be at least 1")]
    ZeroDegree,
    /// The SPEX design cannot be built.
    #[error(transparent)]
    Spex(#[from] SpexDesignError),
    /// A sampling method needs more masks than the budget gives.
    #[error("a mask budget of {budget} is too small for {method}; it needs at least {minimum}")]
    BudgetTooSmall {
        /// Budget asked for.
        budget: usize,
        /// Smallest accepted.
        minimum: usize,
        /// The method.
        method: Method,
    },
    /// The design file is malformed or inconsistent.
    #[error("design file: {0}")]
    File(String),
    /// Too many players to query every mask.
    #[error("n = {n}: too many players to query all 2^n masks (at most {max}); use spex or proxyspex", max = exhaustive::MAX_PLAYERS)]
    TooManyForExhaustive {
        /// Players.
        n: usize,
    },
}

/// Smallest budget of the uniform baseline (its cross-validation needs a few masks per fold).
pub const UNIFORM_MIN_BUDGET: usize = 20;

/// The method `auto` picks for `n` players, a budget and the highest interaction order sought,
/// with the reason in words. Grounded in `spex bench curve` (R² against budget of both methods on
/// planted functions; figures in the README):
///
/// * when the budget covers all `2^n` masks, the exhaustive table is exact and cheapest;
/// * below SPEX's smallest design at that order, only ProxySPEX can run;
/// * boosted trees of depth ≤ [`AUTO_PROXY_MAX_DEPTH`] carry no interaction of higher order, so
///   for a higher expected order SPEX is chosen;
/// * interactions in real models are hierarchical (an effect of a group comes with effects of its
///   subsets), which spreads each one over many Fourier terms. SPEX peels them exactly once its
///   design has enough bins, `3·2^b` with `b ≥` [`AUTO_SPEX_MIN_B`]; with fewer bins ProxySPEX is
///   as good or far better (n = 256, 2 000 masks: R² 1.00 against 0.39) and SPEX is chosen only
///   from there on, where it is as accurate and decodes in milliseconds.
pub fn choose_method(n: usize, budget: usize, degree: usize) -> (Method, String) {
    if n <= exhaustive::MAX_PLAYERS && 1usize << n <= budget {
        return (
            Method::Exhaustive,
            format!("auto chose exhaustive: all 2^{n} = {} masks fit the budget {budget}, so every coefficient is computed exactly", 1usize << n),
        );
    }
    let t = degree.clamp(1, crate::bch::MAX_T);
    let spex_b = spex::choose_parameters(n.max(1), budget, t).ok().filter(|&(_, tt)| tt == t).map(|(b, _)| b);
    let Some(b) = spex_b else {
        let minimum = spex::num_samples(n.max(1), spex::MIN_B, t).unwrap_or(usize::MAX);
        return (
            Method::ProxySpex,
            format!("auto chose proxyspex: the budget {budget} is below SPEX's smallest design for n = {n}, t = {t} ({minimum} masks)"),
        );
    };
    if degree > AUTO_PROXY_MAX_DEPTH {
        return (
            Method::Spex,
            format!("auto chose spex: interactions up to order {degree} are sought, beyond ProxySPEX's trees (depth ≤ {AUTO_PROXY_MAX_DEPTH})"),
        );
    }
    if b < AUTO_SPEX_MIN_B {
        return (
            Method::ProxySpex,
            format!("auto chose proxyspex: the budget {budget} gives SPEX only 3·2^{b} bins for n = {n}, too few to peel hierarchical interactions; boosted trees need far fewer samples"),
        );
    }
    (
        Method::Spex,
        format!("auto chose spex: the budget {budget} gives SPEX 3·2^{b} bins for n = {n}, enough to peel sparse interactions exactly, and it decodes in milliseconds"),
    )
}

/// Fewest subsampling bits at which `auto` trusts SPEX.
pub const AUTO_SPEX_MIN_B: u32 = 7;

/// Deepest trees ProxySPEX grows by default (`ProxyConfig::max_depths`).
pub const AUTO_PROXY_MAX_DEPTH: usize = 5;

/// The design of a plan.
#[derive(Clone, Debug)]
pub enum Design {
    /// A SPEX design.
    Spex(SpexDesign),
    /// Uniformly random masks.
    Uniform(MaskBatch),
    /// Uniformly random masks in complementary pairs, for ProxySPEX.
    Proxy(MaskBatch),
    /// All `2^n` masks, in table order (see [`exhaustive::mask`]).
    Exhaustive,
}

/// Something about the two extreme masks: every player ablated, every player kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Extremes<T> {
    /// With every player ablated.
    pub all_ablated: Option<T>,
    /// With every player kept.
    pub all_kept: Option<T>,
}

impl<T: Copy> Extremes<T> {
    /// Each one mapped by `f`, which may find nothing.
    pub fn and_then<U>(self, f: impl Fn(T) -> Option<U>) -> Extremes<U> {
        Extremes { all_ablated: self.all_ablated.and_then(&f), all_kept: self.all_kept.and_then(&f) }
    }

    /// The extremes that have nothing.
    pub fn missing(&self) -> Vec<Extreme> {
        let ablated = self.all_ablated.is_none().then_some(Extreme::AllAblated);
        ablated.into_iter().chain(self.all_kept.is_none().then_some(Extreme::AllKept)).collect()
    }

    fn get_mut(&mut self, which: Extreme) -> &mut Option<T> {
        match which {
            Extreme::AllAblated => &mut self.all_ablated,
            Extreme::AllKept => &mut self.all_kept,
        }
    }
}

/// One of the two extreme masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Extreme {
    /// Every player ablated.
    AllAblated,
    /// Every player kept.
    AllKept,
}

impl fmt::Display for Extreme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Extreme::AllAblated => "every player ablated",
            Extreme::AllKept => "every player kept",
        })
    }
}

impl Extreme {
    /// The mask of `n` players.
    pub fn mask(self, n: usize) -> Mask {
        match self {
            Extreme::AllAblated => Mask::zeros(n),
            Extreme::AllKept => Mask::ones(n),
        }
    }
}

/// A plan: design, held-out masks, and probes of the extreme masks the design lacks.
#[derive(Clone, Debug)]
pub struct Plan {
    spec: PlanSpec,
    design: Design,
    holdout: MaskBatch,
    /// Extreme masks queried after the held-out ones.
    probes: Vec<Extreme>,
    /// Where the run first queries each extreme mask.
    extremes: Extremes<usize>,
    /// Why `auto` chose the method, when it did.
    choice: Option<String>,
}

impl Plan {
    /// Plans `spec`, choosing the design's size from the budget (and, for `auto`, the method).
    pub fn new(spec: PlanSpec) -> Result<Self, PlanError> {
        if spec.n == 0 {
            return Err(PlanError::NoPlayers);
        }
        if spec.degree == 0 {
            // SPEX would otherwise quietly run at its smallest t.
            return Err(PlanError::ZeroDegree);
        }
        let (method, choice) = match spec.method {
            Method::Auto => {
                let (m, why) = choose_method(spec.n, spec.budget, spec.degree);
                (m, Some(why))
            }
            m => (m, None),
        };
        // Held-out masks of an exhaustive table re-query masks already in it: a determinism check
        // that needs no more masks than the table has.
        let holdout = if method == Method::Exhaustive {
            spec.holdout.min(1 << spec.n.min(exhaustive::MAX_PLAYERS))
        } else {
            spec.holdout
        };
        let spec = PlanSpec { method, holdout, ..spec };
        let design = match spec.method {
            Method::Spex => {
                let (b, t) = spex::choose_parameters(spec.n, spec.budget, spec.degree)?;
                Design::Spex(SpexDesign::new(spec.n, b, t, &mut rng(spec.seed, stream::DESIGN))?)
            }
            Method::Uniform => {
                if spec.budget < UNIFORM_MIN_BUDGET {
                    return Err(PlanError::BudgetTooSmall {
                        budget: spec.budget,
                        minimum: UNIFORM_MIN_BUDGET,
                        method: Method::Uniform,
                    });
                }
                Design::Uniform(uniform_masks(spec.n, spec.budget, spec.seed))
            }
            Method::ProxySpex => {
                let minimum = ProxyConfig::default().min_samples();
                if spec.budget < minimum {
                    return Err(PlanError::BudgetTooSmall { budget: spec.budget, minimum, method: Method::ProxySpex });
                }
                Design::Proxy(proxy_masks(spec.n, spec.budget, spec.seed))
            }
            Method::Exhaustive => {
                let needed = exhaustive_masks(spec.n)?;
                if spec.budget < needed {
                    return Err(PlanError::BudgetTooSmall {
                        budget: spec.budget,
                        minimum: needed,
                        method: Method::Exhaustive,
                    });
                }
                Design::Exhaustive
            }
            Method::Auto => unreachable!("auto is resolved above"),
        };
        let holdout = holdout_masks(spec.n, spec.holdout, spec.seed);
        let mut plan = Plan::without_probes(spec, design, holdout, choice);
        // The decoded values at the extremes are extrapolations where no sample is near them
        // (random designs hold neither mask): two queries measure them. Held-out masks off
        // (`holdout = 0`) means no checks at all.
        if plan.spec.holdout > 0 {
            plan.add_probes(plan.extremes.missing());
        }
        Ok(plan)
    }

    fn without_probes(spec: PlanSpec, design: Design, holdout: MaskBatch, choice: Option<String>) -> Self {
        let mut plan = Plan { spec, design, holdout, probes: Vec::new(), extremes: Extremes::default(), choice };
        plan.extremes = plan.find_extremes();
        plan
    }

    /// Appends `probes` to the run's masks, recording where each extreme is first queried.
    fn add_probes(&mut self, probes: Vec<Extreme>) {
        for (k, &probe) in probes.iter().enumerate() {
            let at = self.total_masks() + k;
            self.extremes.get_mut(probe).get_or_insert(at);
        }
        self.probes = probes;
    }

    /// Why `auto` chose the method (`None` when the method was given).
    pub fn choice(&self) -> Option<&str> {
        self.choice.as_deref()
    }

    /// What was asked for.
    pub fn spec(&self) -> &PlanSpec {
        &self.spec
    }

    /// The design.
    pub fn design(&self) -> &Design {
        &self.design
    }

    /// Players.
    pub fn n(&self) -> usize {
        self.spec.n
    }

    /// Design masks actually queried (at most the budget).
    pub fn budget_used(&self) -> usize {
        match &self.design {
            Design::Spex(d) => d.num_samples(),
            Design::Uniform(m) | Design::Proxy(m) => m.len(),
            Design::Exhaustive => 1 << self.spec.n,
        }
    }

    /// The design's masks.
    pub fn design_masks(&self) -> MaskBatch {
        match &self.design {
            Design::Spex(d) => d.masks(),
            Design::Uniform(m) | Design::Proxy(m) => m.clone(),
            Design::Exhaustive => exhaustive::masks(self.spec.n),
        }
    }

    /// The held-out masks.
    pub fn holdout(&self) -> &MaskBatch {
        &self.holdout
    }

    /// The extreme masks probed after the held-out masks: those the design and the held-out
    /// masks lack (none without held-out masks).
    pub fn probes(&self) -> &[Extreme] {
        &self.probes
    }

    /// Masks in the whole run: the design's, the held-out ones and the probes.
    pub fn total_masks(&self) -> usize {
        self.budget_used() + self.holdout.len() + self.probes.len()
    }

    /// Every mask of the run: the design's, then the held-out ones, then the probes.
    pub fn all_masks(&self) -> MaskBatch {
        self.masks(0, self.total_masks())
    }

    /// Where the run queries the two extreme masks, as positions in [`all_masks`](Self::all_masks)
    /// order: the first mask ablating every player and the first keeping every player.
    pub fn extreme_masks(&self) -> Extremes<usize> {
        self.extremes
    }

    fn find_extremes(&self) -> Extremes<usize> {
        // In chunks: the masks of a large design together take far more memory than decoding.
        const CHUNK: usize = 4096;
        let mut found = Extremes::default();
        for start in (0..self.total_masks()).step_by(CHUNK) {
            let chunk = self.masks(start, (start + CHUNK).min(self.total_masks()));
            for (i, mask) in chunk.iter().enumerate() {
                let kept = mask.count_kept();
                if kept == 0 && found.all_ablated.is_none() {
                    found.all_ablated = Some(start + i);
                } else if kept == self.spec.n && found.all_kept.is_none() {
                    found.all_kept = Some(start + i);
                }
            }
        }
        found
    }

    /// Decodes the design's values (in the order of [`design_masks`](Self::design_masks)).
    pub fn decode(&self, values: &[f64], config: &DecoderConfig) -> Result<Decoded, DecodeError> {
        self.decode_streamed(values, None, config)
    }

    /// [`decode`](Self::decode), reusing SPEX block transforms computed while the values
    /// arrived (see [`Plan::streaming_bins`]).
    ///
    /// Values of extreme magnitude (largest beyond 2^±[`EXTREME_EXPONENT`]) are decoded scaled
    /// by a power of two, which is exact: the decoders' sums of squares overflow above about
    /// 1e154, and their tolerances are set for values far from underflow. The diagnostics are
    /// then in the scaled units.
    pub fn decode_streamed(
        &self,
        values: &[f64],
        bins: Option<StreamingBins>,
        config: &DecoderConfig,
    ) -> Result<Decoded, DecodeError> {
        let Some(exponent) = extreme_exponent(values) else {
            return self.decode_as_given(values, bins, config);
        };
        let scaled: Vec<f64> = values.iter().map(|v| v * 2f64.powi(-exponent)).collect();
        // The streamed bins hold the unscaled values; the decoder recomputes them.
        let mut decoded = self.decode_as_given(&scaled, None, config)?;
        decoded.fourier.scale(2f64.powi(exponent));
        Ok(decoded)
    }

    fn decode_as_given(
        &self,
        values: &[f64],
        bins: Option<StreamingBins>,
        config: &DecoderConfig,
    ) -> Result<Decoded, DecodeError> {
        match &self.design {
            Design::Spex(d) => {
                let out = match bins {
                    Some(bins) => spex_decoder::decode_bins(d, bins, values, &config.spex)?,
                    None => spex_decoder::decode(d, values, &config.spex)?,
                };
                Ok(Decoded { fourier: out.fourier, degree: d.t(), diagnostics: Diagnostics::Spex(out.diagnostics) })
            }
            Design::Uniform(masks) => {
                let out = lasso::decode(masks.as_slice(), values, &config.lasso)?;
                let degree = out.diagnostics.max_order;
                Ok(Decoded { fourier: out.fourier, degree, diagnostics: Diagnostics::Lasso(out.diagnostics) })
            }
            Design::Proxy(masks) => {
                let proxy = ProxyConfig { seed: self.spec.seed, ..config.proxy.clone() };
                let out = proxyspex::decode(masks.as_slice(), values, &proxy)?;
                let degree = out.fourier.degree();
                Ok(Decoded { fourier: out.fourier, degree, diagnostics: Diagnostics::ProxySpex(out.diagnostics) })
            }
            Design::Exhaustive => {
                let (fourier, diagnostics) = exhaustive::decode(self.spec.n, values)?;
                Ok(Decoded { fourier, degree: self.spec.n, diagnostics: Diagnostics::Exhaustive(diagnostics) })
            }
        }
    }

    /// Streaming block transforms for a SPEX design (`None` for the other methods, whose
    /// decoders need every value at once).
    pub fn streaming_bins(&self) -> Option<StreamingBins> {
        match &self.design {
            Design::Spex(d) => Some(StreamingBins::new(d)),
            Design::Uniform(_) | Design::Proxy(_) | Design::Exhaustive => None,
        }
    }

    /// The design file contents.
    pub fn to_file(&self) -> PlanFile {
        let spex = match &self.design {
            Design::Spex(d) => Some(SpexFile {
                b: d.b(),
                t: d.t(),
                groups: d.groups(),
                delays: d.num_delays(),
                code: d.code().code_size(),
                matrices: d.matrices().iter().map(|m| m.iter().map(|c| c.to_string()).collect()).collect(),
            }),
            Design::Uniform(_) | Design::Proxy(_) | Design::Exhaustive => None,
        };
        PlanFile {
            format: PLAN_FORMAT.to_string(),
            method: self.spec.method,
            n: self.spec.n,
            seed: self.spec.seed,
            budget: Budget { requested: self.spec.budget, used: self.budget_used() },
            degree: self.spec.degree,
            masks: self.budget_used(),
            holdout: self.holdout.len(),
            probes: self.probes.clone(),
            choice: self.choice.clone(),
            spex,
        }
    }

    /// Rebuilds a plan from its design file, checking that it is consistent.
    pub fn from_file(file: &PlanFile) -> Result<Self, PlanError> {
        if file.format != PLAN_FORMAT {
            return Err(PlanError::File(format!("format {:?} is not {PLAN_FORMAT:?}", file.format)));
        }
        let spec = PlanSpec {
            n: file.n,
            method: file.method,
            budget: file.budget.requested,
            seed: file.seed,
            degree: file.degree,
            holdout: file.holdout,
        };
        if spec.n == 0 {
            return Err(PlanError::NoPlayers);
        }
        let design = match (file.method, &file.spex) {
            (Method::Spex, Some(s)) => Design::Spex(spex_from_file(file.n, s)?),
            (Method::Spex, None) => return Err(PlanError::File("method spex without a \"spex\" section".into())),
            (Method::Uniform, _) => Design::Uniform(uniform_masks(file.n, file.masks, file.seed)),
            (Method::ProxySpex, _) => Design::Proxy(proxy_masks(file.n, file.masks, file.seed)),
            (Method::Exhaustive, _) => {
                exhaustive_masks(file.n)?;
                Design::Exhaustive
            }
            (Method::Auto, _) => return Err(PlanError::File("method auto must be resolved in a design file".into())),
        };
        let holdout = holdout_masks(spec.n, spec.holdout, spec.seed);
        let mut plan = Plan::without_probes(spec, design, holdout, file.choice.clone());
        // As recorded: a design file from before probes has none.
        plan.add_probes(file.probes.clone());
        if plan.budget_used() != file.masks {
            return Err(PlanError::File(format!(
                "says {} masks but its design has {}",
                file.masks,
                plan.budget_used()
            )));
        }
        Ok(plan)
    }

    /// Writes the design file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json())
    }

    /// The text of the design file [`save`](Plan::save) writes.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_file()).expect("plan serialises") + "\n"
    }

    /// Reads a design file.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::File(format!("{}: {e}", path.display())))?;
        let file: PlanFile =
            serde_json::from_str(&text).map_err(|e| PlanError::File(format!("{}: {e}", path.display())))?;
        Plan::from_file(&file)
    }
}

impl MaskSource for Plan {
    /// Masks `start..end` of [`all_masks`](Plan::all_masks), built on their own (a SPEX mask
    /// from its index, the others sliced from their stored draws).
    fn masks(&self, start: usize, end: usize) -> MaskBatch {
        let design_len = self.budget_used();
        let mut out = MaskBatch::with_capacity(self.n(), end - start);
        for i in start..end.min(design_len) {
            match &self.design {
                Design::Spex(d) => out.push(d.mask(i).as_ref()),
                Design::Uniform(m) | Design::Proxy(m) => out.push(m.row(i)),
                Design::Exhaustive => out.push(exhaustive::mask(self.n(), i).as_ref()),
            }
            .expect("same players");
        }
        let holdout_end = design_len + self.holdout.len();
        if end > design_len && start < holdout_end {
            let range = start.max(design_len) - design_len..end.min(holdout_end) - design_len;
            out.extend(self.holdout.slice(range)).expect("same players");
        }
        for k in start.max(holdout_end)..end {
            out.push(self.probes[k - holdout_end].mask(self.n()).as_ref()).expect("same players");
        }
        out
    }
}

/// `2^n`, or an error when `n` is too large to tabulate.
fn exhaustive_masks(n: usize) -> Result<usize, PlanError> {
    if n > exhaustive::MAX_PLAYERS {
        return Err(PlanError::TooManyForExhaustive { n });
    }
    Ok(1 << n)
}

fn uniform_masks(n: usize, count: usize, seed: u64) -> MaskBatch {
    uniform::random_masks(n, count, &mut rng(seed, stream::DESIGN))
}

fn proxy_masks(n: usize, count: usize, seed: u64) -> MaskBatch {
    uniform::paired_random_masks(n, count, &mut rng(seed, stream::DESIGN))
}

fn holdout_masks(n: usize, count: usize, seed: u64) -> MaskBatch {
    uniform::random_masks(n, count, &mut rng(seed, stream::HOLDOUT))
}

fn spex_from_file(n: usize, s: &SpexFile) -> Result<SpexDesign, PlanError> {
    let bad = |e: MaskError| PlanError::File(format!("subsampling matrix column: {e}"));
    let matrices = s
        .matrices
        .iter()
        .map(|group| group.iter().map(|c| Mask::parse(c).map_err(bad)).collect::<Result<Vec<_>, _>>())
        .collect::<Result<Vec<_>, _>>()?;
    if matrices.iter().flatten().any(|c| c.n() != n) || matrices.len() != s.groups {
        return Err(PlanError::File(format!("expected {} groups of columns with {n} players each", s.groups)));
    }
    let design = SpexDesign::with_matrices(n, s.t, matrices)?;
    if design.num_delays() != s.delays || design.code().code_size() != s.code || design.b() != s.b {
        return Err(PlanError::File(format!(
            "delay code BCH{:?} with {} delays at b = {} does not match this spex's BCH{:?} with {} delays",
            s.code,
            s.delays,
            s.b,
            design.code().code_size(),
            design.num_delays()
        )));
    }
    Ok(design)
}

/// Version tag of the design file format.
pub const PLAN_FORMAT: &str = "spex-design/1";

/// Budget asked for and used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Masks asked for.
    pub requested: usize,
    /// Design masks actually queried (held-out masks not included).
    pub used: usize,
}

/// The design file: a plan as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    /// Always [`PLAN_FORMAT`].
    pub format: String,
    /// Method.
    pub method: Method,
    /// Players.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// Budget asked for and used.
    pub budget: Budget,
    /// Degree parameter asked for (SPEX may lower it to fit the budget; see `spex.t`).
    pub degree: usize,
    /// Design masks: the first lines of the masks file.
    pub masks: usize,
    /// Held-out masks for the faithfulness score: the lines after the design masks.
    pub holdout: usize,
    /// Extreme masks probed: the lines after the held-out masks (absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<Extreme>,
    /// Why `auto` chose the method, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
    /// SPEX design parameters (method `spex` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spex: Option<SpexFile>,
}

/// SPEX section of the design file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpexFile {
    /// Subsampling bits per group.
    pub b: u32,
    /// Degree parameter of the delay code.
    pub t: usize,
    /// Subsampling groups `C`.
    pub groups: usize,
    /// Delays `P`.
    pub delays: usize,
    /// `(length, dimension)` of the BCH code before shortening.
    pub code: (usize, usize),
    /// Columns of each `M_c` as strings of '0'/'1' over the players.
    pub matrices: Vec<Vec<String>>,
}

/// Settings of every decoder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// SPEX peeling decoder.
    pub spex: SpexDecoderConfig,
    /// LASSO baseline.
    pub lasso: LassoConfig,
    /// ProxySPEX (its seed is replaced by the plan's).
    pub proxy: ProxyConfig,
}

/// What the decoder reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decoder", rename_all = "lowercase")]
pub enum Diagnostics {
    /// From the SPEX decoder.
    Spex(SpexDiagnostics),
    /// From the LASSO baseline.
    Lasso(LassoDiagnostics),
    /// From ProxySPEX.
    #[serde(rename = "proxyspex")]
    ProxySpex(ProxyDiagnostics),
    /// From the exhaustive transform.
    Exhaustive(ExhaustiveDiagnostics),
}

/// Largest magnitude, as a power of two, beyond which [`Plan::decode_streamed`] scales values.
pub const EXTREME_EXPONENT: i32 = 128;

/// The power of two to scale `values` by, when their largest magnitude is extreme.
fn extreme_exponent(values: &[f64]) -> Option<i32> {
    largest_power_of_two(values).filter(|e| e.abs() > EXTREME_EXPONENT)
}

/// A decoded representation and the decoder's report.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// The sparse Fourier representation.
    pub fourier: Fourier,
    /// Highest interaction order the decoder could recover (SPEX's `t`, LASSO's order, the
    /// order of ProxySPEX's result).
    pub degree: usize,
    /// What the decoder saw and did.
    pub diagnostics: Diagnostics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_file_round_trips() {
        for method in [Method::Spex, Method::Uniform, Method::ProxySpex, Method::Auto] {
            let spec = PlanSpec { method, budget: 3000, holdout: 50, ..PlanSpec::new(40) };
            let plan = Plan::new(spec).unwrap();
            let back = Plan::from_file(&plan.to_file()).unwrap();
            assert_eq!(back.all_masks(), plan.all_masks(), "{method}");
            assert_eq!(back.to_file(), plan.to_file());
        }
    }

    #[test]
    fn any_range_of_masks_builds_on_its_own() {
        for method in [Method::Spex, Method::ProxySpex] {
            let plan = Plan::new(PlanSpec { method, budget: 3000, holdout: 50, ..PlanSpec::new(40) }).unwrap();
            let all = plan.all_masks();
            let total = plan.total_masks();
            let probes = [(total - 7, total), (total - 1, total), (total, total)];
            for (a, b) in [(0, 10), (plan.budget_used() - 3, plan.budget_used() + 4)].into_iter().chain(probes) {
                assert_eq!(plan.masks(a, b), all.slice(a..b).to_batch(), "{method} {a}..{b}");
            }
        }
    }

    #[test]
    fn missing_extremes_are_probed_after_the_held_out_masks() {
        let spec = PlanSpec { method: Method::ProxySpex, budget: 3000, holdout: 50, ..PlanSpec::new(40) };
        let plan = Plan::new(spec.clone()).unwrap();
        let checks = plan.budget_used() + 50;
        assert_eq!(plan.probes(), [Extreme::AllAblated, Extreme::AllKept]);
        let all = plan.all_masks();
        assert_eq!((all.len(), all.row(checks).count_kept(), all.row(checks + 1).count_kept()), (checks + 2, 0, 40));
        assert_eq!(plan.extreme_masks(), Extremes { all_ablated: Some(checks), all_kept: Some(checks + 1) });
        // A design file from before probes (no "probes" field) reads as it was: without them.
        let mut old = plan.to_file();
        old.probes.clear();
        let text = serde_json::to_string(&old).unwrap();
        assert!(!text.contains("probes") && plan.to_json().contains("\"all_kept\""));
        let back = Plan::from_file(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!((back.total_masks(), back.extreme_masks()), (checks, Extremes::default()));
        // Without held-out masks nothing is probed; an exhaustive table holds both extremes.
        assert!(Plan::new(PlanSpec { holdout: 0, ..spec }).unwrap().probes().is_empty());
        let table = Plan::new(PlanSpec { method: Method::Exhaustive, budget: 64, ..PlanSpec::new(6) }).unwrap();
        assert_eq!((table.probes(), table.extreme_masks().all_kept), (&[][..], Some(63)));
    }

    #[test]
    fn edited_design_file_is_refused() {
        let plan = Plan::new(PlanSpec { budget: 3000, ..PlanSpec::new(40) }).unwrap();
        let mut file = plan.to_file();
        file.spex.as_mut().unwrap().delays += 1;
        assert!(Plan::from_file(&file).unwrap_err().to_string().contains("does not match"));
        let mut file = plan.to_file();
        file.spex.as_mut().unwrap().matrices[0][0].push('1');
        assert!(Plan::from_file(&file).is_err());
        let mut file = plan.to_file();
        file.format = "other".into();
        assert!(Plan::from_file(&file).is_err());
    }

    #[test]
    fn auto_resolves_and_records_why() {
        let plan = Plan::new(PlanSpec { method: Method::Auto, budget: 3000, ..PlanSpec::new(20) }).unwrap();
        assert_eq!(plan.spec().method, Method::ProxySpex);
        assert!(plan.choice().unwrap().contains("proxyspex"));
        assert_eq!(plan.to_file().method, Method::ProxySpex);
        // n = 1000, t = 5: 3·56·2^7 = 21 504 masks give b = 7.
        let plan = Plan::new(PlanSpec { method: Method::Auto, budget: 21_504, ..PlanSpec::new(1000) }).unwrap();
        assert_eq!(plan.spec().method, Method::Spex);
        assert_eq!(choose_method(1000, 21_503, 5).0, Method::ProxySpex);
        // Below SPEX's smallest design only ProxySPEX can run; above depth 5 only SPEX.
        assert_eq!(choose_method(1000, 500, 5).0, Method::ProxySpex);
        assert_eq!(choose_method(100, 50_000, 6).0, Method::Spex);
        // A budget covering every mask: the exact table.
        assert_eq!(choose_method(10, 1024, 5).0, Method::Exhaustive);
        assert_eq!(choose_method(11, 2047, 5).0, Method::ProxySpex);
        assert!(Plan::new(PlanSpec { method: Method::Spex, ..PlanSpec::new(20) }).unwrap().choice().is_none());
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(matches!(Plan::new(PlanSpec::new(0)), Err(PlanError::NoPlayers)));
        for method in [Method::Spex, Method::Auto, Method::ProxySpex] {
            let err = Plan::new(PlanSpec { degree: 0, method, ..PlanSpec::new(20) }).unwrap_err();
            assert!(matches!(err, PlanError::ZeroDegree), "{method}: {err}");
        }
        let err = Plan::new(PlanSpec { budget: 10, ..PlanSpec::new(100) }).unwrap_err().to_string();
        assert!(err.contains("minimum is"), "{err}");
        let err = Plan::new(PlanSpec { budget: 5, method: Method::Uniform, ..PlanSpec::new(100) }).unwrap_err();
        assert!(matches!(err, PlanError::BudgetTooSmall { .. }));
        let err = Plan::new(PlanSpec { budget: 100, method: Method::Exhaustive, ..PlanSpec::new(7) }).unwrap_err();
        assert!(matches!(err, PlanError::BudgetTooSmall { minimum: 128, .. }));
        let err =
            Plan::new(PlanSpec { budget: usize::MAX, method: Method::Exhaustive, ..PlanSpec::new(25) }).unwrap_err();
        assert!(matches!(err, PlanError::TooManyForExhaustive { n: 25 }));
    }

    #[test]
    fn exhaustive_plans_round_trip_and_serve_every_mask() {
        let plan =
            Plan::new(PlanSpec { method: Method::Exhaustive, budget: 64, holdout: 3, ..PlanSpec::new(6) }).unwrap();
        assert_eq!(plan.budget_used(), 64);
        let again = Plan::from_file(&plan.to_file()).unwrap();
        assert_eq!(again.all_masks(), plan.all_masks());
        assert_eq!(plan.masks(60, 67), plan.all_masks().slice(60..67).to_batch());
    }
}
