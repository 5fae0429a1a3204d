//! The common case in three calls: a value function, an [`Explainer`] with a method and a
//! budget, and the interactions of the resulting [`Explanation`] in the index you want.
//!
//! ```
//! use spex::explain::Explainer;
//! use spex::mask::MaskRef;
//! use spex::transform::Index;
//! use spex::value::PerMask;
//!
//! // Player 3 matters alone; players 1 and 2 only together.
//! let mut f = PerMask(|m: MaskRef<'_>| 2.0 * m.get(3) as u8 as f64 + (m.get(1) && m.get(2)) as u8 as f64);
//! let explanation = Explainer::new(20).budget(5_000).explain(&mut f).unwrap();
//! assert!(explanation.faithfulness.r2.unwrap() > 0.999);
//! let moebius = explanation.interactions(Index::Moebius, 3).unwrap();
//! let top: Vec<(Vec<u32>, f64)> =
//!     moebius.values.iter().take(2).map(|(s, v)| (s.players().to_vec(), (v * 1e6).round() / 1e6)).collect();
//! assert_eq!(top, vec![(vec![3], 2.0), (vec![1, 2], 1.0)]);
//! ```

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::decode::spex::StreamingBins;
use crate::decode::DecodeError;
use crate::engine::{self, EngineError};
use crate::faithfulness::Faithfulness;
use crate::mask::MaskSlice;
use crate::plan::{Budget, DecoderConfig, Diagnostics, Extremes, Method, Plan, PlanError, PlanSpec};
use crate::transform::{interactions, Fourier, Index, IndexError, Interactions};
use crate::value::ValueFunction;

/// Why an explanation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The plan could not be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Evaluation stopped.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Decoding failed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The number of values matches neither the design nor the whole run.
    #[error("{}", value_count_text(*design, *all, *found))]
    ValueCount {
        /// Design masks.
        design: usize,
        /// Every mask of the run: design, held-out and probes.
        all: usize,
        /// Values given.
        found: usize,
    },
}

fn value_count_text(design: usize, all: usize, found: usize) -> String {
    if all == design {
        format!("expected {design} values (one per mask; the design has no held-out masks), got {found}")
    } else {
        format!(
            "expected {design} values (one per design mask) or {all} (one per mask of the run: the design's, \
             then the held-out and probe masks), got {found}"
        )
    }
}

/// Builds and runs explanations. Defaults ([`PlanSpec::with_defaults`]): the exact table where
/// all 2^n masks fit the budget, else SPEX at the reference's budget (`b = 8`); seed 0, degree
/// parameter 5, a tenth of the budget (100 to 1 000) as held-out masks, batches of 1 024.
#[derive(Clone, Debug)]
pub struct Explainer {
    n: usize,
    method: Option<Method>,
    budget: Option<usize>,
    seed: u64,
    degree: usize,
    holdout: Option<usize>,
    batch_size: usize,
    decoder: DecoderConfig,
}

impl Explainer {
    /// An explainer for a function of `n` players.
    pub fn new(n: usize) -> Self {
        let spec = PlanSpec::new(n);
        Explainer {
            n,
            method: None,
            budget: None,
            seed: spec.seed,
            degree: spec.degree,
            holdout: None,
            batch_size: 1024,
            decoder: DecoderConfig::default(),
        }
    }

    /// The method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Most design masks to query.
    pub fn budget(mut self, budget: usize) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Seed of every random choice.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// SPEX degree parameter `t`: the largest interaction order recoverable.
    pub fn degree(mut self, t: usize) -> Self {
        self.degree = t;
        self
    }

    /// Held-out masks for the faithfulness score (0 = none, R² not measured).
    pub fn holdout(mut self, masks: usize) -> Self {
        self.holdout = Some(masks);
        self
    }

    /// Masks per call of the value function.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Decoder settings.
    pub fn decoder(mut self, config: DecoderConfig) -> Self {
        self.decoder = config;
        self
    }

    /// The plan this explainer would run.
    pub fn plan(&self) -> Result<Plan, ExplainError> {
        Ok(Plan::new(self.spec())?)
    }

    /// What to plan, with the defaults filled in.
    pub fn spec(&self) -> PlanSpec {
        let defaults = PlanSpec::with_defaults(self.n, self.method, self.budget);
        PlanSpec { seed: self.seed, degree: self.degree, holdout: self.holdout.unwrap_or(defaults.holdout), ..defaults }
    }

    /// Queries `f` on every mask of the plan (through the [`engine`] pipeline) and decodes.
    pub fn explain(&self, f: &mut dyn ValueFunction) -> Result<Explanation, ExplainError> {
        let clock = Instant::now();
        let plan = self.plan()?;
        let design_seconds = clock.elapsed().as_secs_f64();
        let total = plan.total_masks();
        let batches: Vec<usize> = (0..total.div_ceil(self.batch_size)).collect();
        let mut collector = Collector::new(&plan);
        let stats = engine::run(f, &plan, total, self.batch_size, &batches, 2, None, &mut |done| {
            collector.push(done.start, &done.values);
            Ok(())
        })?;
        let mut explanation = collector.explain(&plan, &self.decoder)?;
        explanation.timings.design_seconds = design_seconds;
        explanation.timings.evaluate_seconds = stats.wall_seconds;
        explanation.timings.total_seconds += design_seconds + stats.wall_seconds;
        Ok(explanation)
    }
}

/// Collects a run's values as they arrive, in any order, starting the decoder's work that needs
/// only part of them (SPEX block transforms) at once.
pub struct Collector {
    values: Vec<f64>,
    received: usize,
    bins: Option<StreamingBins>,
}

impl Collector {
    /// An empty collector for `plan`'s masks (design and held-out).
    pub fn new(plan: &Plan) -> Self {
        Collector { values: vec![0.0; plan.total_masks()], received: 0, bins: plan.streaming_bins() }
    }

    /// Takes the values of masks `start..start + values.len()`; each mask must come once.
    pub fn push(&mut self, start: usize, values: &[f64]) {
        self.values[start..start + values.len()].copy_from_slice(values);
        self.received += values.len();
        if let Some(bins) = &mut self.bins {
            bins.push(start, values);
        }
    }

    /// Whether every value is in.
    pub fn is_complete(&self) -> bool {
        self.received == self.values.len()
    }

    /// All values, in mask order.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Decodes the complete run.
    pub fn explain(self, plan: &Plan, config: &DecoderConfig) -> Result<Explanation, ExplainError> {
        assert!(self.is_complete(), "every value must be in before decoding");
        Explanation::decode_streamed(plan, &self.values, self.bins, config)
    }
}

/// Where the time went, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Planning and generating masks.
    pub design_seconds: f64,
    /// Evaluating the value function.
    pub evaluate_seconds: f64,
    /// Decoding.
    pub decode_seconds: f64,
    /// Scoring faithfulness on held-out masks.
    pub faithfulness_seconds: f64,
    /// Everything.
    pub total_seconds: f64,
}

/// A decoded explanation.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// Players.
    pub n: usize,
    /// Method used.
    pub method: Method,
    /// Seed.
    pub seed: u64,
    /// Budget asked for and used.
    pub budget: Budget,
    /// Highest interaction order the method could recover: SPEX's degree parameter (lowered if
    /// the budget demanded), LASSO's order, or the order of ProxySPEX's result.
    pub degree: usize,
    /// Why `auto` chose the method, when it did.
    pub choice: Option<String>,
    /// The recovered sparse Fourier representation.
    pub fourier: Fourier,
    /// R² on the held-out masks.
    pub faithfulness: Faithfulness,
    /// `(predicted, actual)` value of every held-out mask (the faithfulness figure's points).
    pub holdout: Vec<(f64, f64)>,
    /// The values measured at the extreme masks, where the run queried them: checks of
    /// [`baseline`](Self::baseline) and [`value_all_kept`](Self::value_all_kept).
    pub measured: Extremes<f64>,
    /// The decoder's report.
    pub diagnostics: Diagnostics,
    /// Where the time went.
    pub timings: Timings,
}

impl Explanation {
    /// Decodes `values` of `plan`'s masks: one per design mask, optionally followed by one per
    /// held-out and probe mask (without them, faithfulness is reported as not measured).
    pub fn decode(plan: &Plan, values: &[f64], config: &DecoderConfig) -> Result<Self, ExplainError> {
        Self::decode_streamed(plan, values, None, config)
    }

    fn decode_streamed(
        plan: &Plan,
        values: &[f64],
        bins: Option<StreamingBins>,
        config: &DecoderConfig,
    ) -> Result<Self, ExplainError> {
        let (design, all) = (plan.budget_used(), plan.total_masks());
        if values.len() != design && values.len() != all {
            return Err(ExplainError::ValueCount { design, all, found: values.len() });
        }
        let clock = Instant::now();
        let decoded = plan.decode_streamed(&values[..design], bins, config)?;
        let decode_seconds = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let held_out = &values[design..(design + plan.holdout().len()).min(values.len())];
        let holdout: MaskSlice<'_> = plan.holdout().slice(0..held_out.len());
        let predicted = decoded.fourier.eval_batch(holdout);
        let faithfulness = Faithfulness::from_predictions(&predicted, held_out);
        let holdout_points = predicted.into_iter().zip(held_out.iter().copied()).collect();
        let faithfulness_seconds = clock.elapsed().as_secs_f64();
        Ok(Explanation {
            n: plan.n(),
            method: plan.spec().method,
            seed: plan.spec().seed,
            budget: Budget { requested: plan.spec().budget, used: design },
            degree: decoded.degree,
            choice: plan.choice().map(str::to_string),
            fourier: decoded.fourier,
            faithfulness,
            holdout: holdout_points,
            measured: plan.extreme_masks().and_then(|i| values.get(i).copied()),
            diagnostics: decoded.diagnostics,
            timings: Timings {
                decode_seconds,
                faithfulness_seconds,
                total_seconds: decode_seconds + faithfulness_seconds,
                ..Timings::default()
            },
        })
    }

    /// The interactions in `index` up to `max_order`.
    pub fn interactions(&self, index: Index, max_order: usize) -> Result<Interactions, IndexError> {
        interactions(&self.fourier, index, max_order)
    }

    /// The representation's value with every player ablated: `Σ_k F(k)`.
    pub fn baseline(&self) -> f64 {
        self.fourier.iter().map(|(_, v)| v).sum()
    }

    /// The representation's value with every player kept: `Σ_k F(k)(−1)^{|k|}`.
    pub fn value_all_kept(&self) -> f64 {
        self.fourier.iter().map(|(k, v)| if k.len() % 2 == 1 { -v } else { v }).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::MaskRef;
    use crate::plan::Extreme;
    use crate::value::PerMask;

    #[test]
    fn small_functions_default_to_the_exact_table() {
        let spex_budget = PlanSpec::new(10).budget;
        assert!(spex_budget > 1 << 10, "the test assumes SPEX's design is larger than the table");
        let spec = Explainer::new(10).spec();
        assert_eq!((spec.method, spec.budget), (Method::Exhaustive, 1 << 10));
        // A budget below 2^n, a method, or many players keep SPEX.
        assert_eq!(Explainer::new(10).budget(1000).spec().method, Method::Spex);
        assert_eq!(Explainer::new(10).method(Method::Spex).spec(), PlanSpec::new(10));
        assert_eq!(Explainer::new(40).spec(), PlanSpec::new(40));
        let uniform = Explainer::new(10).method(Method::Uniform).holdout(7).seed(4).spec();
        assert_eq!((uniform.budget, uniform.holdout, uniform.seed), (crate::plan::DEFAULT_SAMPLED_BUDGET, 7, 4));
    }

    #[test]
    fn the_default_explanation_of_a_small_function_is_exact() {
        // A third-order term SPEX's default design would also have to find by peeling.
        let f = |m: MaskRef<'_>| 1.5 * (m.get(0) && m.get(4) && m.get(6)) as u8 as f64 - 0.5 * m.get(2) as u8 as f64;
        let explanation = Explainer::new(8).explain(&mut PerMask(f)).unwrap();
        let moebius = explanation.interactions(Index::Moebius, 8).unwrap();
        let found: Vec<(Vec<u32>, f64)> =
            moebius.values.iter().filter(|(_, v)| v.abs() > 1e-12).map(|(s, v)| (s.players().to_vec(), *v)).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        for (players, want) in [(vec![0, 4, 6], 1.5), (vec![2], -0.5)] {
            let got = found.iter().find(|(s, _)| *s == players).map(|(_, v)| *v);
            assert!(got.is_some_and(|v| (v - want).abs() < 1e-12), "{players:?}: {got:?}");
        }
        assert_eq!(explanation.measured, Extremes { all_ablated: Some(0.0), all_kept: Some(1.0) });
    }

    #[test]
    fn the_extreme_values_are_measured_where_the_design_queries_them() {
        let f = |m: MaskRef<'_>| 0.25 + m.count_kept() as f64;
        let run = |explainer: Explainer| explainer.explain(&mut PerMask(f)).unwrap().measured;
        // SPEX's design always holds the all-ablated mask (no offset, no delay); a random design of
        // 40 players holds neither, so the run probes both, after the held-out masks.
        let spex = Explainer::new(20).plan().unwrap();
        assert_eq!((spex.extreme_masks().all_ablated, spex.probes()), (Some(0), &[Extreme::AllKept][..]));
        assert_eq!(run(Explainer::new(20)), Extremes { all_ablated: Some(0.25), all_kept: Some(20.25) });
        let uniform = Explainer::new(40).method(Method::Uniform).budget(500).holdout(10);
        let plan = uniform.plan().unwrap();
        assert_eq!(plan.probes(), [Extreme::AllAblated, Extreme::AllKept]);
        assert_eq!(plan.extreme_masks(), Extremes { all_ablated: Some(510), all_kept: Some(511) });
        assert_eq!(plan.all_masks().len(), 512);
        assert_eq!(run(uniform), Extremes { all_ablated: Some(0.25), all_kept: Some(40.25) });
        // No held-out masks, no checks: nothing is probed.
        let strict = Explainer::new(40).method(Method::Uniform).budget(500).holdout(0);
        assert_eq!((strict.plan().unwrap().total_masks(), run(strict)), (500, Extremes::default()));
        // Every mask of 3 players is among 200 random ones.
        let plan = Explainer::new(3).method(Method::Uniform).budget(200).holdout(0).plan().unwrap();
        let design = plan.all_masks();
        let at = plan.extreme_masks();
        assert_eq!(at.all_ablated.map(|i| design.row(i).count_kept()), Some(0));
        assert_eq!(at.all_kept.map(|i| design.row(i).count_kept()), Some(3));
        let values: Vec<f64> = design.iter().map(f).collect();
        let decoded = Explanation::decode(&plan, &values, &DecoderConfig::default()).unwrap();
        assert_eq!(decoded.measured, Extremes { all_ablated: Some(0.25), all_kept: Some(3.25) });
        // Masks found only among the held-out ones are measured only when their values are given
        // (and then not probed): a seed whose design lacks the empty mask that its held-out
        // masks hold.
        let with_holdout = (0..)
            .map(|seed| Explainer::new(8).method(Method::Uniform).budget(100).holdout(2000).seed(seed).plan().unwrap())
            .find(|plan| plan.extreme_masks().all_ablated.is_some_and(|i| i >= 100))
            .unwrap();
        let design_values: Vec<f64> = with_holdout.design_masks().iter().map(f).collect();
        let decoded = Explanation::decode(&with_holdout, &design_values, &DecoderConfig::default()).unwrap();
        assert_eq!(decoded.measured.all_ablated, None);
        let all_values: Vec<f64> = with_holdout.all_masks().iter().map(f).collect();
        let decoded = Explanation::decode(&with_holdout, &all_values, &DecoderConfig::default()).unwrap();
        assert_eq!(decoded.measured.all_ablated, Some(0.25));
        assert!(!with_holdout.probes().contains(&Extreme::AllAblated));
        assert_eq!(decoded.faithfulness.masks, 2000);
    }
}
