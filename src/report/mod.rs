//! The result file: a stable JSON schema that other tools parse.
//!
//! ```json
//! {
//!   "schema": "spex-result/1",
//!   "n": 14, "method": "spex", "seed": 0,
//!   "budget": {"requested": 5000, "used": 2688},
//!   "degree": 5,
//!   "choice": "auto chose …",            (only with --method auto)
//!   "index": "fbii", "max_order": 3,
//!   "baseline": 0.0, "value_all_kept": 1.4,
//!   "measured": {"all_ablated": 0.0, "all_kept": 1.4},   (null where not queried)
//!   "interactions": [{"players": [2, 3], "value": -3.75, "names": ["not", "like"]}, …],
//!   "fourier": [{"players": [], "value": 0.16}, …],
//!   "faithfulness": {"r2": 1.0, "masks": 268, "mse": 1.2e-31},
//!   "diagnostics": {"decoder": "spex", …},
//!   "timings": {"design_seconds": …, "evaluate_seconds": …, "decode_seconds": …,
//!               "faithfulness_seconds": …, "total_seconds": …},
//!   "players": ["i", "did", …],
//!   "scored": "log-probability of the continuation \" Japanese\"",   (model runs)
//!   "function": "demo",                  (model and input fingerprint, or driver command)
//!   "model": "SmolLM2-135M-Instruct …",   (model runs)
//!   "input": {"text": "Marie grew up …", "spans": [[0, 5], …, null]}   (text inputs: each
//!             player's byte range in the text; null for attention heads)
//! }
//! ```
//!
//! `interactions` is sorted by decreasing |value| and holds the requested index up to
//! `max_order` (the empty list of players is the index's constant term); `fourier` is the whole
//! recovered Fourier representation, from which any other index can be recomputed; `baseline` is
//! its value with every player ablated and `value_all_kept` with every player kept; `measured`
//! holds the function's own values there where the run queried those masks (SPEX's and the exact
//! table's designs do; random designs rarely do). `players` (and each entry's `names`) appear
//! when the players have names.

pub mod html;

use serde::{Deserialize, Serialize};

use crate::rundir::{InputText, RunDir, RunDirError, RunInfo};

use crate::explain::{Explanation, Timings};
use crate::faithfulness::Faithfulness;
use crate::plan::{Budget, Diagnostics, Extremes, Method};
use crate::subset::Subset;
use crate::transform::interactions as compute_interactions;
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
    /// Why `--method auto` chose the method (absent when the method was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
    /// Index of `interactions`.
    pub index: Index,
    /// Highest order in `interactions`.
    pub max_order: usize,
    /// Value of the representation with every player ablated.
    pub baseline: f64,
    /// Value of the representation with every player kept.
    pub value_all_kept: f64,
    /// The values measured with every player ablated and kept, where the run queried them.
    #[serde(default)]
    pub measured: Extremes<f64>,
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
    /// What the value measured, in words (e.g. the greedy answer whose log-probability is scored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<String>,
    /// What was queried: model and input fingerprint, driver command, or `demo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The model queried, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The text explained and each player's span in it, for text inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputText>,
}

impl ResultFile {
    /// The result file for `explanation` shown as `interactions`, described by `info` (player
    /// names, what was scored and queried) when known.
    pub fn new(explanation: &Explanation, interactions: &Interactions, info: Option<&RunInfo>) -> Self {
        let names = info.and_then(|i| i.players.as_deref());
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
            choice: explanation.choice.clone(),
            index: interactions.index,
            max_order: interactions.max_order,
            baseline: explanation.baseline(),
            value_all_kept: explanation.value_all_kept(),
            measured: explanation.measured,
            interactions: interactions.values.iter().cloned().map(entry).collect(),
            fourier: explanation.fourier.sorted().into_iter().map(entry).collect(),
            faithfulness: explanation.faithfulness.clone(),
            diagnostics: explanation.diagnostics.clone(),
            timings: explanation.timings.clone(),
            players: names.map(<[String]>::to_vec),
            scored: info.and_then(|i| i.scored.clone()),
            function: info.map(|i| i.function.clone()),
            model: info.and_then(|i| i.model.clone()),
            input: info.and_then(|i| i.input.clone()),
        }
    }
}

/// The interactions as CSV: `rank,order,players,names,value` (players and names separated by
/// spaces), by decreasing |value|, the constant term left out.
pub fn interactions_csv(result: &ResultFile) -> String {
    let mut out = String::from("rank,order,players,names,value\n");
    let rows = result.interactions.iter().filter(|e| !e.players.is_empty());
    for (rank, e) in rows.enumerate() {
        let players: Vec<String> = e.players.players().iter().map(u32::to_string).collect();
        let names = e.names.as_ref().map(|n| csv_field(&n.join(" "))).unwrap_or_default();
        out += &format!("{},{},{},{},{:?}\n", rank + 1, e.players.len(), players.join(" "), names, e.value);
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// shapiq's name of an index (`None` for `fourier`, which shapiq has no index for).
pub fn shapiq_index_name(index: Index) -> Option<&'static str> {
    Some(match index {
        Index::Fourier => return None,
        Index::Moebius => "Moebius",
        Index::Bv => "BV",
        Index::Sv => "SV",
        Index::Bii => "BII",
        Index::Sii => "SII",
        Index::Ksii => "k-SII",
        Index::Stii => "STII",
        Index::Fbii => "FBII",
        Index::Fsii => "FSII",
    })
}

/// The interactions as a shapiq `InteractionValues` JSON file (`InteractionValues.from_json_file`
/// loads it): metadata plus `"data"` keyed by `"0,5,17"` (`"Empty"` for the constant term).
/// `interactions` must be in an index shapiq knows (anything but `fourier`).
pub fn shapiq_json(result: &ResultFile, interactions: &Interactions) -> Option<serde_json::Value> {
    let index = shapiq_index_name(interactions.index)?;
    let data: serde_json::Map<String, serde_json::Value> = interactions
        .values
        .iter()
        .map(|(s, v)| {
            let key = if s.is_empty() {
                "Empty".to_string()
            } else {
                s.players().iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            };
            (key, serde_json::json!(v))
        })
        .collect();
    let baseline = interactions.get(&Subset::empty());
    Some(serde_json::json!({
        "object_name": "InteractionValues",
        "data_type": "interaction_values",
        "version": "1.4.1",
        "created_from": format!("spex {} (n = {}, seed = {})", result.method, result.n, result.seed),
        "description": null,
        "parameters": {},
        "metadata": {
            "n_players": result.n,
            "index": index,
            "max_order": interactions.max_order,
            "min_order": 0,
            "estimated": true,
            "estimation_budget": result.budget.used,
            "baseline_value": baseline,
        },
        "data": data,
    }))
}

/// Writes the reports of a finished run into its directory: `result.json`, `interactions.csv`,
/// `shapiq.json` (in the requested index, or Möbius when that is `fourier`, which shapiq lacks)
/// and `report.html`. Returns the result file.
pub fn write_reports(
    run: &RunDir,
    explanation: &Explanation,
    interactions: &Interactions,
    info: Option<&RunInfo>,
    top: usize,
) -> Result<ResultFile, RunDirError> {
    let result = ResultFile::new(explanation, interactions, info);
    run.write_file("result.json", &(serde_json::to_string_pretty(&result).expect("serialises") + "\n"))?;
    run.write_file("interactions.csv", &interactions_csv(&result))?;
    // shapiq has no Fourier index: export the Möbius form then (it cannot fail where the
    // Fourier listing at the same order succeeded, but a refusal only skips the file).
    let moebius = (interactions.index == Index::Fourier)
        .then(|| compute_interactions(&explanation.fourier, Index::Moebius, interactions.max_order).ok())
        .flatten();
    if let Some(shapiq) = shapiq_json(&result, moebius.as_ref().unwrap_or(interactions)) {
        run.write_file("shapiq.json", &(serde_json::to_string_pretty(&shapiq).expect("serialises") + "\n"))?;
    }
    run.write_file("report.html", &html::render(&result, &explanation.holdout, top))?;
    Ok(result)
}
