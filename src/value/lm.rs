//! Causal-LM value functions: the log-probability of a target continuation (teacher-forced, one
//! pass for the whole continuation; by default the model's own greedy answer on the unablated
//! input, the SPEX setup), or the logit difference of two next tokens.
//!
//! ```no_run
//! use std::sync::Arc;
//! use spex::mask::MaskBatch;
//! use spex::model::cache::load_default_lm;
//! use spex::value::lm::{LmOptions, LmValue};
//! use spex::value::players::Prompt;
//! use spex::value::ValueFunction;
//!
//! let model = Arc::new(load_default_lm()?); // fetched into the cache on first use
//! let mut f = LmValue::new(model, &Prompt::new("The capital of France is"), LmOptions::default())?;
//! println!("players: {:?}, target: {:?}", f.player_labels(), f.target_text());
//! let masks = MaskBatch::parse_rows(["11111", "11110", "01111"])?;
//! let values = f.evaluate(masks.as_slice())?; // log p(target | ablated prompt), one per mask
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, OnceLock};

use super::ablate::Layout;
use super::players::{tokenize_prompt, HeadMode, HeadPlayer, Prompt, SetupError, TokenMode, TokenizedPrompt};
use super::{ValueError, ValueFunction};
use crate::mask::MaskSlice;
use crate::model::memory::plan_for;
use crate::model::{ops, Ids, KvPrefix, LoadedModel, ModelError, ModelInput};

/// The continuation whose log-probability is measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The model's own greedy answer on the unablated prompt (up to `max_new_tokens` tokens,
    /// stopping after an end-of-sequence token).
    Greedy {
        /// Maximum answer length in tokens.
        max_new_tokens: usize,
    },
    /// A given text (tokenized without special tokens, appended to the prompt).
    Text(String),
    /// Given token ids.
    Tokens(Vec<u32>),
}

impl Default for Target {
    fn default() -> Self {
        Target::Greedy { max_new_tokens: 16 }
    }
}

/// What an LM value function returns per mask.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum LmMetric {
    /// `Σ_k log p(target_k | prompt, target_<k)` (nats).
    #[default]
    TargetLogProb,
    /// `logit(a) − logit(b)` for the token right after the prompt (no target is appended).
    LogitDiff {
        /// Token whose logit counts positively.
        a: u32,
        /// Token whose logit counts negatively.
        b: u32,
    },
}

/// Options of [`LmValue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LmOptions {
    /// Whether the prompt's spans are players (else only heads are).
    pub token_players: bool,
    /// Attention-head players (after the token players in the mask).
    pub heads: Vec<HeadPlayer>,
    /// How masked tokens are removed.
    pub token_mode: TokenMode,
    /// How masked heads are removed.
    pub head_mode: HeadMode,
    /// The continuation measured by [`LmMetric::TargetLogProb`].
    pub target: Target,
    /// The measured quantity.
    pub metric: LmMetric,
    /// Upper bound on `rows × tokens` per forward pass (memory/speed trade-off).
    pub max_batch_tokens: usize,
    /// Whether the fixed tokens every row begins with (a template, BOS) run once, their keys and
    /// values shared by every forward pass ([`LmValue::cached_prefix`]); off for comparison.
    pub reuse_prefix: bool,
}

impl Default for LmOptions {
    fn default() -> Self {
        LmOptions {
            token_players: true,
            heads: Vec::new(),
            token_mode: TokenMode::Attention,
            head_mode: HeadMode::Zero,
            target: Target::default(),
            metric: LmMetric::TargetLogProb,
            max_batch_tokens: 16_384,
            reuse_prefix: true,
        }
    }
}

/// A causal LM explained by ablation: one value per mask, computed in batched forward passes.
/// Cloning shares the model and the cached prefix (`Arc`s).
#[derive(Clone)]
pub struct LmValue {
    model: Arc<LoadedModel>,
    prompt: TokenizedPrompt,
    target: Vec<u32>,
    layout: Layout,
    metric: LmMetric,
    labels: Vec<String>,
    max_batch_tokens: usize,
    /// Base positions whose keys and values every row shares ([`LmValue::cached_prefix`]).
    cached: usize,
    /// Their keys and values, computed on the first CPU forward: a value function that runs on
    /// a GPU prefills there, and the CPU's forward of the template would be wasted.
    prefix: Arc<OnceLock<Arc<KvPrefix>>>,
}

impl LmValue {
    /// Tokenizes `prompt`, cuts it into players and prepares the game.
    pub fn new(model: Arc<LoadedModel>, prompt: &Prompt, options: LmOptions) -> Result<Self, SetupError> {
        let tp = tokenize_prompt(&model.tokenizer, prompt)?;
        Self::from_tokens(model, tp, options)
    }

    /// Prepares the game from an already tokenized prompt.
    pub fn from_tokens(
        model: Arc<LoadedModel>,
        prompt: TokenizedPrompt,
        options: LmOptions,
    ) -> Result<Self, SetupError> {
        let info = model.model.info();
        if model.model.lm_head().is_none() {
            return Err(SetupError::Invalid("LM value functions need a causal LM; this model is an encoder".into()));
        }
        check_heads(&options.heads, &info)?;
        if !options.token_players && options.heads.is_empty() {
            return Err(SetupError::Empty("no players: token players are off and no head players given".into()));
        }
        if let Some(&bad) = prompt.ids.iter().find(|&&t| t as usize >= info.vocab_size) {
            return Err(SetupError::Invalid(format!(
                "prompt token id {bad} outside the vocabulary of {}",
                info.vocab_size
            )));
        }
        let n_prompt = prompt.ids.len();
        let mut owners = if options.token_players { prompt.owners() } else { vec![None; n_prompt] };
        if options.token_mode == TokenMode::Remove && options.token_players && owners.iter().all(|o| o.is_some()) {
            return Err(SetupError::Invalid(
                "remove mode needs at least one fixed token (a prefix or template) so that no mask empties the input"
                    .into(),
            ));
        }
        if let TokenMode::Replace(id) = options.token_mode {
            if id as usize >= info.vocab_size {
                return Err(SetupError::Invalid(format!(
                    "replacement token id {id} outside the vocabulary of {}",
                    info.vocab_size
                )));
            }
        }
        if n_prompt > info.max_positions {
            return Err(SetupError::TooLong { tokens: n_prompt, max: info.max_positions });
        }
        let target = match &options.metric {
            LmMetric::LogitDiff { a, b } => {
                for t in [a, b] {
                    if *t as usize >= info.vocab_size {
                        return Err(SetupError::Invalid(format!(
                            "token id {t} outside the vocabulary of {}",
                            info.vocab_size
                        )));
                    }
                }
                Vec::new()
            }
            LmMetric::TargetLogProb => {
                if n_prompt >= info.max_positions {
                    // No room for even one target token after the prompt.
                    return Err(SetupError::TooLong { tokens: n_prompt + 1, max: info.max_positions });
                }
                let t = match &options.target {
                    Target::Greedy { max_new_tokens } => {
                        model.generate_greedy(&prompt.ids, (*max_new_tokens).min(info.max_positions - n_prompt))?
                    }
                    Target::Text(s) => model
                        .tokenizer
                        .encode(s.as_str(), false)
                        .map_err(|e| SetupError::Invalid(format!("tokenizing the target failed: {e}")))?
                        .get_ids()
                        .to_vec(),
                    Target::Tokens(t) => t.clone(),
                };
                if t.is_empty() {
                    return Err(SetupError::Empty("the target continuation has no tokens".into()));
                }
                if let Some(&bad) = t.iter().find(|&&x| x as usize >= info.vocab_size) {
                    return Err(SetupError::Invalid(format!(
                        "target token id {bad} outside the vocabulary of {}",
                        info.vocab_size
                    )));
                }
                t
            }
        };
        let mut ids = prompt.ids.clone();
        ids.extend_from_slice(&target);
        if ids.len() > info.max_positions {
            return Err(SetupError::TooLong { tokens: ids.len(), max: info.max_positions });
        }
        owners.resize(ids.len(), None);
        let mut read = vec![false; ids.len()];
        if target.is_empty() {
            read[n_prompt - 1] = true;
        } else {
            for r in &mut read[n_prompt - 1..ids.len() - 1] {
                *r = true;
            }
        }
        let head_fill = head_fill(&model, &ids, &options)?;
        let mut labels: Vec<String> =
            if options.token_players { prompt.spans.iter().map(|s| s.label.clone()).collect() } else { Vec::new() };
        labels.extend(options.heads.iter().map(HeadPlayer::label));
        let layout = Layout {
            ids,
            owners,
            read,
            n_token_players: if options.token_players { prompt.spans.len() } else { 0 },
            heads: options.heads.clone(),
            mode: options.token_mode,
            head_fill,
            causal: true,
            num_layers: info.num_layers,
            num_heads: info.num_heads,
            pad_id: 0,
        };
        // The last fixed token stays in every row: it may be the row's only token before the
        // target (every player removed), whose output must then be computed.
        let cached =
            if options.reuse_prefix && layout.heads.is_empty() { layout.fixed_prefix().saturating_sub(1) } else { 0 };
        Ok(LmValue {
            model,
            prompt,
            target,
            layout,
            metric: options.metric,
            labels,
            max_batch_tokens: options.max_batch_tokens.max(1),
            cached,
            prefix: Arc::default(),
        })
    }

    /// Number of players (token players, then head players).
    pub fn n_players(&self) -> usize {
        self.layout.n_players()
    }

    /// One label per player, in mask order (word/sentence/token text, `L{l}H{h}` for heads).
    pub fn player_labels(&self) -> &[String] {
        &self.labels
    }

    /// The tokenized prompt and its spans.
    pub fn prompt(&self) -> &TokenizedPrompt {
        &self.prompt
    }

    /// The target continuation's token ids (empty for [`LmMetric::LogitDiff`]).
    pub fn target_tokens(&self) -> &[u32] {
        &self.target
    }

    /// The target continuation as text.
    pub fn target_text(&self) -> String {
        self.model.decode(&self.target).unwrap_or_default()
    }

    /// The loaded model.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// What is scored.
    pub fn metric(&self) -> &LmMetric {
        &self.metric
    }

    /// The mask → input layout (for inspection and tests).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Most masks evaluated per forward pass.
    pub fn rows_per_forward(&self) -> usize {
        (self.max_batch_tokens / (self.layout.ids.len() - self.cached_prefix())).max(1)
    }

    /// Base positions run once, before any mask, and shared by every forward pass: the fixed
    /// tokens the input begins with but the last (0 with head players, whose ablation changes
    /// them, or with [`LmOptions::reuse_prefix`] off).
    pub fn cached_prefix(&self) -> usize {
        self.cached
    }

    /// The keys and values of the [`LmValue::cached_prefix`] positions (`None` without a
    /// cached prefix), computed on first use and shared by clones.
    fn prefix_kv(&self) -> Result<Option<Arc<KvPrefix>>, ModelError> {
        if self.cached == 0 {
            return Ok(None);
        }
        if let Some(kv) = self.prefix.get() {
            return Ok(Some(kv.clone()));
        }
        let kv = Arc::new(self.model.model.prefill(&self.layout.ids[..self.cached])?);
        // A clone that filled it meanwhile computed the same keys and values.
        Ok(Some(self.prefix.get_or_init(|| kv).clone()))
    }

    /// Evaluates a batch of masks, in forward passes of at most [`LmValue::rows_per_forward`]
    /// rows of similar lengths ([`plan_for`]: each pass is padded only to its own longest row),
    /// behind the cached prefix.
    pub fn evaluate_masks(&self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ModelError> {
        let skip = self.cached_prefix();
        let lengths: Vec<usize> = self.layout.row_lengths(masks)?.into_iter().map(|l| l - skip).collect();
        let plan = plan_for(&self.model.model, &lengths, self.rows_per_forward());
        let sorted = masks.select(&plan.order);
        let mut out = Vec::with_capacity(masks.len());
        for piece in &plan.pieces {
            out.extend(self.evaluate_chunk(sorted.slice(piece.clone()))?);
        }
        Ok(plan.restore(out))
    }

    /// Evaluates masks through the full-length form ([`Layout::build_full_length`]): every row
    /// keeps all positions and the masking lives in the bias, ids and gates that the CUDA
    /// kernels build on the device; behind the cached prefix, as the device runs it. The CPU
    /// reference for the device path; equal to [`LmValue::evaluate_masks`] up to `f32`
    /// rounding. Attention and replace mode.
    pub fn evaluate_full_length(&self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ModelError> {
        let rows = self.layout.after(self.cached_prefix())?;
        let input = self.behind_prefix(rows.build_full_length(masks)?)?;
        self.score_device_form(&input, masks.len(), rows.ids.len())
    }

    /// Evaluates masks through the compacted form as the device builds it
    /// ([`Layout::build_compacted`]: right-aligned rows of [`Layout::compacted_len`] slots,
    /// per-row positions), behind the cached prefix. The CPU reference for the device path's
    /// compaction; equal to [`LmValue::evaluate_masks`] up to `f32` rounding. Attention and
    /// remove mode.
    pub fn evaluate_compacted(&self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ModelError> {
        let rows = self.layout.after(self.cached_prefix())?;
        let slots = rows.compacted_len(masks);
        let input = self.behind_prefix(rows.build_compacted(masks, slots)?)?;
        self.score_device_form(&input, masks.len(), slots)
    }

    /// A device form of the rows after the cached prefix ([`Layout::after`], positions from 0)
    /// as the device path runs it: positions shifted past the prefix, attending its keys.
    fn behind_prefix(&self, mut input: ModelInput) -> Result<ModelInput, ModelError> {
        let skip = self.cached_prefix() as u32;
        if let Ids::Host(positions) = &mut input.positions {
            positions.iter_mut().for_each(|p| *p += skip);
        }
        Ok(ModelInput { past: self.prefix_kv()?, ..input })
    }

    /// The values of the `rows` rows of a device form with `slots` positions per row (`L` for
    /// the full-length form), read at the picks every row has at the same slots.
    fn score_device_form(&self, input: &ModelInput, rows: usize, slots: usize) -> Result<Vec<f64>, ModelError> {
        let hidden = self.model.model.forward(input)?.hidden;
        let head = self.model.model.lm_head().expect("checked at construction");
        match &self.metric {
            LmMetric::TargetLogProb => {
                let lp = ops::score_targets(&hidden, head, &self.compacted_picks(rows, slots))?;
                Ok(lp.chunks(self.target.len()).map(|c| c.iter().map(|&x| x as f64).sum()).collect())
            }
            LmMetric::LogitDiff { a, b } => {
                let logits = ops::logits_at(&hidden, head, &self.logit_rows(rows, slots))?.to_vec2::<f32>()?;
                Ok(logits.iter().map(|l| l[*a as usize] as f64 - l[*b as usize] as f64).collect())
            }
        }
    }

    /// `(row, position, token)` scored in the full-length form: target token `k` is predicted
    /// by position `n_prompt + k − 1` of every row.
    pub fn full_length_picks(&self, rows: usize) -> Vec<(usize, usize, u32)> {
        self.compacted_picks(rows, self.layout.ids.len())
    }

    /// `(row, slot, token)` scored in a device form of `slots` slots per row: target token `k`
    /// is predicted by base position `p = n_prompt + k − 1`, at slot `slots − L + p` (every row
    /// includes every position from the last prompt token on, right-aligned; `slots = L` is the
    /// full-length form).
    pub fn compacted_picks(&self, rows: usize, slots: usize) -> Vec<(usize, usize, u32)> {
        let shift = self.layout.ids.len().saturating_sub(slots);
        let first = self.prompt.ids.len() - 1 - shift;
        (0..rows).flat_map(|r| self.target.iter().enumerate().map(move |(k, &t)| (r, first + k, t))).collect()
    }

    /// `(row, slot)` whose logits a [`LmMetric::LogitDiff`] reads in a device form of `slots`
    /// slots per row: the last prompt token, the last slot (the input has no target tokens).
    pub fn logit_rows(&self, rows: usize, slots: usize) -> Vec<(usize, usize)> {
        (0..rows).map(|r| (r, slots - 1)).collect()
    }

    fn evaluate_chunk(&self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ModelError> {
        let mut batch = self.layout.build_after(masks, self.model.model.device(), self.cached_prefix())?;
        batch.input.past = self.prefix_kv()?;
        let hidden = self.model.model.forward(&batch.input)?.hidden;
        let head = self.model.model.lm_head().expect("checked at construction");
        let n_prompt = self.prompt.ids.len();
        let no_context =
            |r| ModelError::Input(format!("mask row {r} leaves no token before the target to predict it from"));
        match &self.metric {
            LmMetric::TargetLogProb => {
                let mut picks = Vec::with_capacity(masks.len() * self.target.len());
                for r in 0..masks.len() {
                    for (k, &t) in self.target.iter().enumerate() {
                        let pos = batch.predictor(r, n_prompt + k).ok_or_else(|| no_context(r))?;
                        picks.push((r, pos, t));
                    }
                }
                let lp = ops::score_targets(&hidden, head, &picks)?;
                Ok(lp.chunks(self.target.len()).map(|c| c.iter().map(|&x| x as f64).sum()).collect())
            }
            LmMetric::LogitDiff { a, b } => {
                let at = (0..masks.len())
                    .map(|r| batch.predictor(r, n_prompt).map(|p| (r, p)).ok_or_else(|| no_context(r)))
                    .collect::<Result<Vec<_>, _>>()?;
                let logits = ops::logits_at(&hidden, head, &at)?.to_vec2::<f32>()?;
                Ok(logits.iter().map(|l| l[*a as usize] as f64 - l[*b as usize] as f64).collect())
            }
        }
    }
}

impl ValueFunction for LmValue {
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
        self.evaluate_masks(masks).map_err(|e| ValueError::Failed(e.to_string()))
    }
}

/// Checks head players against the model (range, duplicates).
pub(crate) fn check_heads(heads: &[HeadPlayer], info: &crate::model::ModelInfo) -> Result<(), SetupError> {
    let mut seen = std::collections::HashSet::new();
    for h in heads {
        h.check(info)?;
        if !seen.insert(*h) {
            return Err(SetupError::Invalid(format!("head player {} listed twice", h.label())));
        }
    }
    Ok(())
}

/// Mean head outputs over the unablated reference run, when mean ablation is asked for.
pub(crate) fn head_fill(
    model: &LoadedModel,
    ids: &[u32],
    options_heads_mode: &impl HeadOpts,
) -> Result<Option<Vec<candle_core::Tensor>>, SetupError> {
    if options_heads_mode.head_mode() != HeadMode::Mean || options_heads_mode.head_players().is_empty() {
        return Ok(None);
    }
    let mut input = ModelInput::single(ids);
    input.capture_head_means = true;
    Ok(model.model.forward(&input)?.head_means)
}

/// Access to the head options shared by LM and encoder options.
pub(crate) trait HeadOpts {
    fn head_mode(&self) -> HeadMode;
    fn head_players(&self) -> &[HeadPlayer];
}

impl HeadOpts for LmOptions {
    fn head_mode(&self) -> HeadMode {
        self.head_mode
    }
    fn head_players(&self) -> &[HeadPlayer] {
        &self.heads
    }
}
