//! Encoder value functions: cosine similarity of the pooled sentence embedding to a reference
//! text's embedding, or a class logit / log-odds where the checkpoint has a classification head.
//!
//! Sentence embedding = mean of the last hidden states over the tokens the row's attention sees
//! (kept tokens, fixed ones such as `[CLS]`/`[SEP]`, and substituted ones in replace mode; hidden
//! or removed tokens do not count), then L2-normalised — the all-MiniLM-L6-v2 recipe. The
//! classification head reads position 0 (`[CLS]`), which must therefore be fixed.
//!
//! ```no_run
//! use std::sync::Arc;
//! use spex::mask::MaskBatch;
//! use spex::model::cache::load_default_encoder;
//! use spex::value::encoder::{EncoderMetric, EncoderOptions, EncoderValue};
//! use spex::value::players::Prompt;
//! use spex::value::ValueFunction;
//!
//! let model = Arc::new(load_default_encoder()?);
//! let metric = EncoderMetric::Cosine { reference: "A man is eating a piece of bread.".into() };
//! let mut f = EncoderValue::new(model, &Prompt::new("A man is eating food."), EncoderOptions::new(metric))?;
//! let masks = MaskBatch::parse_rows(["11111", "11101"])?;
//! let cos = f.evaluate(masks.as_slice())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;
use std::ops::Range;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};

use super::ablate::Layout;
use super::lm::{check_heads, head_fill, HeadOpts};
use super::players::{tokenize_prompt, HeadMode, HeadPlayer, Prompt, SetupError, TokenMode, TokenizedPrompt};
use super::{ValueError, ValueFunction};
use crate::mask::MaskSlice;
use crate::model::memory::{plan_for, sweep_halving};
use crate::model::{LoadedModel, Model, ModelError, ModelInput};

/// What an encoder value function returns per mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncoderMetric {
    /// Cosine similarity of the pooled embedding to that of `reference` (unablated).
    Cosine {
        /// The reference text.
        reference: String,
    },
    /// The logit of class `class` of the classification head.
    ClassLogit {
        /// Class index.
        class: usize,
    },
    /// `log p(class) − log(1 − p(class))` under the head's softmax.
    ClassLogOdds {
        /// Class index.
        class: usize,
    },
}

/// Options of [`EncoderValue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Whether the input's spans are players.
    pub token_players: bool,
    /// Attention-head players (after the token players in the mask).
    pub heads: Vec<HeadPlayer>,
    /// How masked tokens are removed.
    pub token_mode: TokenMode,
    /// How masked heads are removed.
    pub head_mode: HeadMode,
    /// The measured quantity.
    pub metric: EncoderMetric,
    /// Upper bound on `rows × tokens` per forward pass.
    pub max_batch_tokens: usize,
}

impl EncoderOptions {
    /// Word players, attention-mode masking, no head players.
    pub fn new(metric: EncoderMetric) -> Self {
        EncoderOptions {
            token_players: true,
            heads: Vec::new(),
            token_mode: TokenMode::Attention,
            head_mode: HeadMode::Zero,
            metric,
            max_batch_tokens: 16_384,
        }
    }
}

impl HeadOpts for EncoderOptions {
    fn head_mode(&self) -> HeadMode {
        self.head_mode
    }
    fn head_players(&self) -> &[HeadPlayer] {
        &self.heads
    }
}

enum Measure {
    /// The reference's pooled embedding `[E]`, in f32 on the model's device.
    Cosine(Tensor),
    Logit(usize),
    LogOdds(usize),
}

/// An encoder explained by ablation, on the CPU in f32 or, moved with
/// [`EncoderValue::to_device`], on any candle device in any dtype.
pub struct EncoderValue {
    model: Arc<LoadedModel>,
    prompt: TokenizedPrompt,
    layout: Layout,
    measure: Measure,
    labels: Vec<String>,
    /// Most rows per forward pass: from [`EncoderOptions::max_batch_tokens`], halved for good when
    /// the device runs out of memory.
    rows: Cell<usize>,
}

/// Mean of `hidden: [B, L, E]` over the positions where `present` (`B × L`) holds, L2-normalised,
/// in f32 on `hidden`'s device.
pub fn mean_pool_normalized(hidden: &Tensor, present: &[bool]) -> Result<Tensor, ModelError> {
    let (b, l, _e) = hidden.dims3()?;
    let hidden = hidden.to_dtype(DType::F32)?;
    let w: Vec<f32> = present.iter().map(|&p| if p { 1.0 } else { 0.0 }).collect();
    if w.len() != b * l {
        return Err(ModelError::Input(format!("pooling mask has {} entries, expected {}", w.len(), b * l)));
    }
    for r in 0..b {
        if !present[r * l..(r + 1) * l].iter().any(|&p| p) {
            return Err(ModelError::Input(format!("mask row {r} leaves no token to pool")));
        }
    }
    let w = Tensor::from_vec(w, (b, l, 1), hidden.device())?;
    let sum = hidden.broadcast_mul(&w)?.sum(1)?;
    let mean = sum.broadcast_div(&w.sum(1)?)?;
    let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    Ok(mean.broadcast_div(&norm)?)
}

impl EncoderValue {
    /// Tokenizes `text`, cuts it into players and prepares the game.
    pub fn new(model: Arc<LoadedModel>, prompt: &Prompt, options: EncoderOptions) -> Result<Self, SetupError> {
        let tp = tokenize_prompt(&model.tokenizer, prompt)?;
        Self::from_tokens(model, tp, options)
    }

    /// Prepares the game from an already tokenized input.
    pub fn from_tokens(
        model: Arc<LoadedModel>,
        prompt: TokenizedPrompt,
        options: EncoderOptions,
    ) -> Result<Self, SetupError> {
        let info = model.model.info();
        let Model::Bert(bert) = &model.model else {
            return Err(SetupError::Invalid(
                "encoder value functions need an encoder (BERT family); this model is a decoder".into(),
            ));
        };
        check_heads(&options.heads, &info)?;
        if !options.token_players && options.heads.is_empty() {
            return Err(SetupError::Empty("no players: token players are off and no head players given".into()));
        }
        if prompt.ids.len() > info.max_positions {
            return Err(SetupError::TooLong { tokens: prompt.ids.len(), max: info.max_positions });
        }
        let owners = if options.token_players { prompt.owners() } else { vec![None; prompt.ids.len()] };
        if options.token_mode == TokenMode::Remove && options.token_players && owners.iter().all(|o| o.is_some()) {
            return Err(SetupError::Invalid(
                "remove mode needs at least one fixed token so that no mask empties the input".into(),
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
        let measure = match &options.metric {
            EncoderMetric::Cosine { reference } => {
                let ids = model.encode(reference)?;
                if ids.len() > info.max_positions {
                    return Err(SetupError::TooLong { tokens: ids.len(), max: info.max_positions });
                }
                let h = model.model.forward(&ModelInput::single(&ids))?.hidden;
                Measure::Cosine(mean_pool_normalized(&h, &vec![true; ids.len()])?.squeeze(0).map_err(ModelError::from)?)
            }
            EncoderMetric::ClassLogit { class } | EncoderMetric::ClassLogOdds { class } => {
                let n = bert
                    .num_classes()
                    .ok_or_else(|| SetupError::Invalid("this encoder has no classification head".into()))?;
                if *class >= n {
                    return Err(SetupError::Invalid(format!("class {class} out of range: the head has {n} classes")));
                }
                if matches!(options.metric, EncoderMetric::ClassLogit { .. }) {
                    Measure::Logit(*class)
                } else {
                    Measure::LogOdds(*class)
                }
            }
        };
        if matches!(measure, Measure::Logit(_) | Measure::LogOdds(_)) && owners.first().is_some_and(|o| o.is_some()) {
            return Err(SetupError::Invalid(
                "the classification head reads position 0 ([CLS]), so it must be fixed, not a player".into(),
            ));
        }
        let head_fill = head_fill(&model, &prompt.ids, &options)?;
        let mut labels: Vec<String> =
            if options.token_players { prompt.spans.iter().map(|s| s.label.clone()).collect() } else { Vec::new() };
        labels.extend(options.heads.iter().map(HeadPlayer::label));
        let layout = Layout {
            read: vec![false; prompt.ids.len()],
            ids: prompt.ids.clone(),
            owners,
            n_token_players: if options.token_players { prompt.spans.len() } else { 0 },
            heads: options.heads.clone(),
            mode: options.token_mode,
            head_fill,
            causal: false,
            num_layers: info.num_layers,
            num_heads: info.num_heads,
            pad_id: 0,
        };
        let rows = rows_within(options.max_batch_tokens, &layout);
        Ok(EncoderValue { model, prompt, layout, measure, labels, rows })
    }

    /// A copy that runs its forwards on `device` with the weights in `dtype` (bf16 on a GPU):
    /// each chunk's ids and positions are built on the host, its bias and head gates on the
    /// device ([`Layout::build`]), and pooling and scoring run there in f32. The reference embedding and the mean-ablation values stay those of the model as
    /// loaded, so only the ablated forwards carry `dtype`'s rounding. `max_batch_tokens` bounds
    /// `rows × tokens` per forward there.
    pub fn to_device(&self, device: &Device, dtype: DType, max_batch_tokens: usize) -> Result<Self, ModelError> {
        let move_to = |t: &Tensor, dt: DType| -> Result<Tensor, ModelError> { Ok(t.to_device(device)?.to_dtype(dt)?) };
        let measure = match &self.measure {
            Measure::Cosine(r) => Measure::Cosine(move_to(r, DType::F32)?),
            Measure::Logit(c) => Measure::Logit(*c),
            Measure::LogOdds(c) => Measure::LogOdds(*c),
        };
        let mut layout = self.layout.clone();
        layout.head_fill = layout.head_fill.map(|f| f.iter().map(|t| move_to(t, dtype)).collect()).transpose()?;
        Ok(EncoderValue {
            model: Arc::new(self.model.to_device(device, dtype)?),
            prompt: self.prompt.clone(),
            layout,
            measure,
            labels: self.labels.clone(),
            rows: rows_within(max_batch_tokens, &self.layout),
        })
    }

    /// Number of players.
    pub fn n_players(&self) -> usize {
        self.layout.n_players()
    }

    /// One label per player, in mask order.
    pub fn player_labels(&self) -> &[String] {
        &self.labels
    }

    /// The tokenized input and its spans.
    pub fn prompt(&self) -> &TokenizedPrompt {
        &self.prompt
    }

    /// The mask → input layout (for inspection and tests).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Masks per forward pass currently in use (after any out-of-memory halving).
    pub fn batch(&self) -> usize {
        self.rows.get()
    }

    /// Evaluates a batch of masks, in forward passes of at most [`EncoderValue::batch`] rows of
    /// similar lengths ([`plan_for`]); when the device runs out of memory the batch is halved
    /// and the same masks retried.
    pub fn evaluate_masks(&self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ModelError> {
        let plan = plan_for(&self.model.model, &self.layout.row_lengths(masks)?, self.rows.get());
        let sorted = masks.select(&plan.order);
        let eval = |r: Range<usize>, _| self.evaluate_chunk(sorted.slice(r));
        let sweep = sweep_halving(&plan.pieces, self.rows.get(), ModelError::is_out_of_memory, eval)?;
        self.rows.set(sweep.batch);
        Ok(plan.restore(sweep.values))
    }

    /// One forward pass over `chunk`.
    fn evaluate_chunk(&self, chunk: MaskSlice<'_>) -> Result<Vec<f64>, ModelError> {
        let batch = self.layout.build(chunk, self.model.model.device())?;
        let hidden = self.model.model.forward(&batch.input)?.hidden;
        Ok(match &self.measure {
            Measure::Cosine(reference) => {
                let e = mean_pool_normalized(&hidden, &batch.present)?;
                let cos = e.matmul(&reference.unsqueeze(1)?)?.squeeze(1)?.to_vec1::<f32>()?;
                cos.into_iter().map(f64::from).collect()
            }
            Measure::Logit(c) | Measure::LogOdds(c) => {
                let Model::Bert(bert) = &self.model.model else { unreachable!("checked at construction") };
                let logits = bert.classify(&hidden)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                let score = |l: Vec<f32>| match self.measure {
                    Measure::Logit(_) => l[*c] as f64,
                    _ => log_odds(&l, *c),
                };
                logits.into_iter().map(score).collect()
            }
        })
    }
}

/// Rows per forward pass that keep `rows × tokens` within `max_batch_tokens` (at least one).
fn rows_within(max_batch_tokens: usize, layout: &Layout) -> Cell<usize> {
    Cell::new((max_batch_tokens / layout.ids.len().max(1)).max(1))
}

/// `log p_c − log(1 − p_c)` for softmax probabilities of `logits`, computed stably as
/// `l_c − logsumexp_{j≠c} l_j`.
fn log_odds(logits: &[f32], c: usize) -> f64 {
    let others: Vec<f64> = logits.iter().enumerate().filter(|&(j, _)| j != c).map(|(_, &x)| x as f64).collect();
    if others.is_empty() {
        return f64::INFINITY;
    }
    let m = others.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + others.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    logits[c] as f64 - lse
}

impl ValueFunction for EncoderValue {
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
        self.evaluate_masks(masks).map_err(|e| ValueError::Failed(e.to_string()))
    }
}
