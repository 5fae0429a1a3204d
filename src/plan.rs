//! A plan: the method, its design, and the held-out masks for the faithfulness score; everything
//! needed to produce the masks of a run and to decode their values later. A plan is saved as a
//! small JSON "design file" beside the masks so that `spex decode` needs nothing else.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decode::lasso::{self, LassoConfig, LassoDiagnostics};
use crate::decode::spex::{self as spex_decoder, SpexDecoderConfig, SpexDiagnostics};
use crate::decode::DecodeError;
use crate::design::spex::{self, SpexDesign, SpexDesignError};
use crate::design::{rng, stream, uniform};
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
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Spex => "spex",
            Method::Uniform => "uniform",
        })
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "spex" => Ok(Method::Spex),
            "uniform" => Ok(Method::Uniform),
            other => Err(format!("unknown method {other:?}; expected spex or uniform")),
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
}

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
    /// The SPEX design cannot be built.
    #[error(transparent)]
    Spex(#[from] SpexDesignError),
    /// The uniform baseline needs more masks than the budget gives.
    #[error("a budget of {budget} masks is too small for the uniform baseline; it needs at least {minimum}")]
    BudgetTooSmall {
        /// Budget asked for.
        budget: usize,
        /// Smallest accepted.
        minimum: usize,
    },
    /// The design file is malformed or inconsistent.
    #[error("design file: {0}")]
    File(String),
}

/// Smallest budget of the uniform baseline (its cross-validation needs a few masks per fold).
pub const UNIFORM_MIN_BUDGET: usize = 20;

/// The design of a plan.
#[derive(Clone, Debug)]
pub enum Design {
    /// A SPEX design.
    Spex(SpexDesign),
    /// Uniformly random masks.
    Uniform(MaskBatch),
}

/// A plan: design plus held-out masks.
#[derive(Clone, Debug)]
pub struct Plan {
    spec: PlanSpec,
    design: Design,
    holdout: MaskBatch,
}

impl Plan {
    /// Plans `spec`, choosing the design's size from the budget.
    pub fn new(spec: PlanSpec) -> Result<Self, PlanError> {
        if spec.n == 0 {
            return Err(PlanError::NoPlayers);
        }
        let design = match spec.method {
            Method::Spex => {
                let (b, t) = spex::choose_parameters(spec.n, spec.budget, spec.degree)?;
                Design::Spex(SpexDesign::new(spec.n, b, t, &mut rng(spec.seed, stream::DESIGN))?)
            }
            Method::Uniform => {
                if spec.budget < UNIFORM_MIN_BUDGET {
                    return Err(PlanError::BudgetTooSmall { budget: spec.budget, minimum: UNIFORM_MIN_BUDGET });
                }
                Design::Uniform(uniform_masks(spec.n, spec.budget, spec.seed))
            }
        };
        let holdout = holdout_masks(spec.n, spec.holdout, spec.seed);
        Ok(Plan { spec, design, holdout })
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
            Design::Uniform(m) => m.len(),
        }
    }

    /// The design's masks.
    pub fn design_masks(&self) -> MaskBatch {
        match &self.design {
            Design::Spex(d) => d.masks(),
            Design::Uniform(m) => m.clone(),
        }
    }

    /// The held-out masks.
    pub fn holdout(&self) -> &MaskBatch {
        &self.holdout
    }

    /// Every mask of the run: the design's, then the held-out ones.
    pub fn all_masks(&self) -> MaskBatch {
        let mut all = self.design_masks();
        all.extend(self.holdout.as_slice()).expect("same players");
        all
    }

    /// Decodes the design's values (in the order of [`design_masks`](Self::design_masks)).
    pub fn decode(&self, values: &[f64], config: &DecoderConfig) -> Result<Decoded, DecodeError> {
        match &self.design {
            Design::Spex(d) => {
                let out = spex_decoder::decode(d, values, &config.spex)?;
                Ok(Decoded { fourier: out.fourier, degree: d.t(), diagnostics: Diagnostics::Spex(out.diagnostics) })
            }
            Design::Uniform(masks) => {
                let out = lasso::decode(masks.as_slice(), values, &config.lasso)?;
                let degree = out.diagnostics.max_order;
                Ok(Decoded { fourier: out.fourier, degree, diagnostics: Diagnostics::Lasso(out.diagnostics) })
            }
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
            Design::Uniform(_) => None,
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
        };
        let holdout = holdout_masks(spec.n, spec.holdout, spec.seed);
        let plan = Plan { spec, design, holdout };
        if plan.budget_used() != file.masks {
            return Err(PlanError::File(format!("says {} masks but its design has {}", file.masks, plan.budget_used())));
        }
        Ok(plan)
    }

    /// Writes the design file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_file()).expect("plan serialises");
        std::fs::write(path, text + "\n")
    }

    /// Reads a design file.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::File(format!("{}: {e}", path.display())))?;
        let file: PlanFile =
            serde_json::from_str(&text).map_err(|e| PlanError::File(format!("{}: {e}", path.display())))?;
        Plan::from_file(&file)
    }
}

fn uniform_masks(n: usize, count: usize, seed: u64) -> MaskBatch {
    uniform::random_masks(n, count, &mut rng(seed, stream::DESIGN))
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
}

/// What the decoder reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decoder", rename_all = "lowercase")]
pub enum Diagnostics {
    /// From the SPEX decoder.
    Spex(SpexDiagnostics),
    /// From the LASSO baseline.
    Lasso(LassoDiagnostics),
}

/// A decoded representation and the decoder's report.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// The sparse Fourier representation.
    pub fourier: Fourier,
    /// Highest interaction order the decoder could recover (SPEX's `t`, LASSO's order).
    pub degree: usize,
    /// What the decoder saw and did.
    pub diagnostics: Diagnostics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_file_round_trips() {
        for method in [Method::Spex, Method::Uniform] {
            let spec = PlanSpec { method, budget: 3000, holdout: 50, ..PlanSpec::new(40) };
            let plan = Plan::new(spec).unwrap();
            let back = Plan::from_file(&plan.to_file()).unwrap();
            assert_eq!(back.all_masks(), plan.all_masks(), "{method}");
            assert_eq!(back.to_file(), plan.to_file());
        }
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
    fn bad_specs_are_refused() {
        assert!(matches!(Plan::new(PlanSpec::new(0)), Err(PlanError::NoPlayers)));
        let err = Plan::new(PlanSpec { budget: 10, ..PlanSpec::new(100) }).unwrap_err().to_string();
        assert!(err.contains("minimum is"), "{err}");
        let err = Plan::new(PlanSpec { budget: 5, method: Method::Uniform, ..PlanSpec::new(100) }).unwrap_err();
        assert!(matches!(err, PlanError::BudgetTooSmall { .. }));
    }
}
