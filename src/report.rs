//! The result file: a stable JSON schema that other tools parse.
//!
//! ```json
//! {
//!   "schema": "spex-result/1",
//!   "n": 14, "method": "spex", "seed": 0,
//!   "budget": {"requested": 5000, "used": 2688},
//!   "degree": 5,
//!   "index": "fbii", "max_order": 3,
//!   "baseline": 0.0, "value_all_kept": 1.4,
//!   "interactions": [{"players": [2, 3], "value": -3.75, "names": ["not", "like"]}, …],
//!   "fourier": [{"players": [], "value": 0.16}, …],
//!   "faithfulness": {"r2": 1.0, "masks": 268, "mse": 1.2e-31},
//!   "diagnostics": {"decoder": "spex", …},
//!   "timings": {"design_seconds": …, "evaluate_seconds": …, "decode_seconds": …,
//!               "faithfulness_seconds": …, "total_seconds": …},
//!   "players": ["i", "did", …]
//! }
//! ```
//!
//! `interactions` is sorted by decreasing |value| and holds the requested index up to
//! `max_order` (the empty list of players is the index's constant term); `fourier` is the whole
//! recovered Fourier representation, from which any other index can be recomputed; `baseline` is
//! its value with every player ablated and `value_all_kept` with every player kept. `players`
//! (and each entry's `names`) appear when the players have names.

use serde::{Deserialize, Serialize};

use crate::explain::{Explanation, Timings};
use crate::faithfulness::Faithfulness;
use crate::plan::{Budget, Diagnostics, Method};
use crate::subset::Subset;
use crate::transform::{Index, Interactions};

/// Version tag of the result schema.
pub const RESULT_SCHEMA: &str = "spex-result/1";

/// One interaction: a set of players and its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// 0-based player indices, ascending (empty for the constant term).
    pub players: Subset,
    /// The value in the result's index.
    pub value: f64,
    /// The players' names, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
}

/// The result file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    /// Always [`RESULT_SCHEMA`].
    pub schema: String,
    /// Players.
    pub n: usize,
    /// Method used.
    pub method: Method,
    /// Seed.
    pub seed: u64,
    /// Budget asked for and used (design masks; held-out masks come on top).
    pub budget: Budget,
    /// Highest interaction order the method could recover.
    pub degree: usize,
    /// Index of `interactions`.
    pub index: Index,
    /// Highest order in `interactions`.
    pub max_order: usize,
    /// Value of the representation with every player ablated.
    pub baseline: f64,
    /// Value of the representation with every player kept.
    pub value_all_kept: f64,
    /// The interactions, by decreasing |value|.
    pub interactions: Vec<Entry>,
    /// The recovered Fourier coefficients, by decreasing |value|.
    pub fourier: Vec<Entry>,
    /// R² on held-out masks.
    pub faithfulness: Faithfulness,
    /// The decoder's report.
    pub diagnostics: Diagnostics,
    /// Where the time went.
    pub timings: Timings,
    /// Names of the players, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<Vec<String>>,
}

impl ResultFile {
    /// The result file for `explanation` shown as `interactions`, with optional player names.
    pub fn new(explanation: &Explanation, interactions: &Interactions, names: Option<&[String]>) -> Self {
        let entry = |(players, value): (Subset, f64)| {
            let names = names.map(|n| players.players().iter().map(|&p| n[p as usize].clone()).collect());
            Entry { players, value, names }
        };
        ResultFile {
            schema: RESULT_SCHEMA.to_string(),
            n: explanation.n,
            method: explanation.method,
            seed: explanation.seed,
            budget: explanation.budget,
            degree: explanation.degree,
            index: interactions.index,
            max_order: interactions.max_order,
            baseline: explanation.baseline(),
            value_all_kept: explanation.value_all_kept(),
            interactions: interactions.values.iter().cloned().map(entry).collect(),
            fourier: explanation.fourier.sorted().into_iter().map(entry).collect(),
            faithfulness: explanation.faithfulness.clone(),
            diagnostics: explanation.diagnostics.clone(),
            timings: explanation.timings.clone(),
            players: names.map(<[String]>::to_vec),
        }
    }
}
