//! From a description of one input (model, prompt, players, target) to a ready value function,
//! its players' names and a fingerprint that a stored run is checked against. `spex explain
//! --model` and `spex sweep` describe their inputs this way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::encoder::{EncoderMetric, EncoderOptions, EncoderValue};
use super::lm::{LmMetric, LmOptions, LmValue, Target};
use super::players::{
    replacement_token, HeadMode, HeadPlayer, Prompt, Replacement, SetupError, TokenMode, TokenizedPrompt, Unit,
};
use super::{PerDevice, ValueFunction};
use crate::model::{cache, load, LoadedModel, ModelError};
use crate::rundir::{InputText, RunInfo};

/// The built-in example input: word players, the greedy one-token answer (" Japanese" with the
/// default model) as the target.
pub const EXAMPLE_PROMPT: &str = "Marie grew up in Lyon, but after ten years working in Tokyo she now speaks fluent";

/// Who the players are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Players {
    /// Words of the prompt.
    Words,
    /// Tokens of the prompt.
    Tokens,
    /// Sentences of the prompt.
    Sentences,
    /// Every attention head (the prompt is fixed).
    Heads,
    /// Tokens, then every attention head.
    #[serde(rename = "tokens+heads")]
    TokensHeads,
    /// Words, then every attention head.
    #[serde(rename = "words+heads")]
    WordsHeads,
    /// The parts of the prompt the user marked with square brackets, `[like this]`; the
    /// brackets are removed and the unmarked text is fixed.
    Marked,
}

impl std::fmt::Display for Players {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self).expect("serialises");
        f.write_str(name.as_str().expect("a unit variant is a string"))
    }
}

impl std::str::FromStr for Players {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!(
                "unknown players {s:?}; expected words, tokens, sentences, marked, heads, tokens+heads or words+heads"
            )
        })
    }
}

/// How ablated tokens are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenAblation {
    /// Hidden from every query through the attention mask (positions kept).
    Attention,
    /// Replaced by the unknown/mask/pad token (the first the vocabulary has).
    Replace,
    /// Deleted (positions shift).
    Remove,
}

impl std::str::FromStr for TokenAblation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown token mode {s:?}; expected attention, replace or remove"))
    }
}

/// Where the forwards run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDevice {
    /// Every visible CUDA device when this build has the GPU path (feature `candle-cuda`) and
    /// the machine a device, else the CPU.
    Auto,
    /// The CPU, in `f32` (the reference path).
    Cpu,
    /// Every visible CUDA device, in `bf16` with `f32` accumulation (feature `candle-cuda`).
    Cuda,
}

impl std::str::FromStr for ComputeDevice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown device {s:?}; expected auto, cpu or cuda"))
    }
}

impl ComputeDevice {
    /// `Auto` made concrete: CUDA when this build can use it and a device is visible.
    pub fn resolve(self) -> ComputeDevice {
        match self {
            ComputeDevice::Auto if gpu_available() => ComputeDevice::Cuda,
            ComputeDevice::Auto => ComputeDevice::Cpu,
            other => other,
        }
    }

    /// Masks per stored batch of `--batch-size auto` for a model on `self` (resolved first). On
    /// the CPU, 32 keeps the matrix products efficient and progress lively; on a GPU the value
    /// function cuts a batch into chunks that fit the device's memory, so a large batch keeps
    /// it busy and still stores a result every second or so.
    pub fn model_batch_rows(self) -> usize {
        if self.resolve() == ComputeDevice::Cuda {
            1024
        } else {
            32
        }
    }

    /// The device, for reports: the CPU with its threads, or the GPUs with their name and count.
    pub fn describe(self) -> String {
        match self.resolve() {
            ComputeDevice::Cuda => gpu_description(),
            _ => format!("cpu ({} threads)", rayon::current_num_threads()),
        }
    }

    /// The candle device of `self` (resolved first): the CPU, or the first CUDA device.
    pub fn candle_device(self) -> Result<candle_core::Device, SetupError> {
        match self.resolve() {
            ComputeDevice::Cuda => Ok(gpus(1)?.remove(0)),
            _ => Ok(candle_core::Device::Cpu),
        }
    }
}

/// The first `limit` visible CUDA devices (at least one, or an error that says why).
#[cfg(feature = "candle-cuda")]
fn gpus(limit: usize) -> Result<Vec<candle_core::Device>, SetupError> {
    match crate::cuda::device_count() {
        Ok(0) => Err(cannot_start("no CUDA device is visible (CUDA_VISIBLE_DEVICES may hide them)")),
        // One candle device per GPU for the whole process: a model's weights put there for one
        // input are shared with the next (`LoadedModel::model_on`).
        Ok(n) => (0..n.min(limit)).map(|d| crate::cuda::lm::shared_device(d).map_err(cannot_start)).collect(),
        Err(e) => Err(cannot_start(e)),
    }
}

/// Why the GPU path could not start, for the user.
fn cannot_start(e: impl std::fmt::Display) -> SetupError {
    SetupError::Invalid(format!("the GPU path cannot start: {e}"))
}

#[cfg(not(feature = "candle-cuda"))]
fn gpus(_limit: usize) -> Result<Vec<candle_core::Device>, SetupError> {
    Err(no_gpu_build())
}

#[cfg(not(feature = "candle-cuda"))]
fn no_gpu_build() -> SetupError {
    SetupError::Invalid(
        "this spex was built without the GPU path; rebuild with --features candle-cuda (README, GPU section)".into(),
    )
}

#[cfg(feature = "candle-cuda")]
fn gpu_description() -> String {
    let count = crate::cuda::device_count().unwrap_or(0);
    let name = crate::cuda::device_name(0).unwrap_or_else(|e| format!("({e})"));
    format!("cuda: {count} x {name}, bf16")
}

#[cfg(not(feature = "candle-cuda"))]
fn gpu_description() -> String {
    "cuda (not in this build)".into()
}

#[cfg(feature = "candle-cuda")]
fn gpu_available() -> bool {
    crate::cuda::device_count().is_ok_and(|n| n > 0)
}

#[cfg(not(feature = "candle-cuda"))]
fn gpu_available() -> bool {
    false
}

/// Upper bound on `rows × tokens` per encoder forward on a GPU: 1 024 rows of 128 tokens, about
/// 0.4 GB of bf16 attention scores for a BERT-base (12 heads); an out-of-memory error halves it.
pub const GPU_ENCODER_BATCH_TOKENS: usize = 1 << 17;

/// `value` with its forwards on `device` (resolved first): as it is on the CPU, or in bf16 on
/// every visible GPU, each batch split across them ([`EncoderValue::to_device`]: candle ops from
/// flags built on the host, not the LM path's kernels).
pub fn encoder_value_on(
    value: EncoderValue,
    device: ComputeDevice,
) -> Result<Box<dyn ValueFunction + Send>, SetupError> {
    if device.resolve() != ComputeDevice::Cuda {
        return Ok(Box::new(value));
    }
    let on = |gpu: &candle_core::Device| value.to_device(gpu, candle_core::DType::BF16, GPU_ENCODER_BATCH_TOKENS);
    let workers = gpus(usize::MAX)?.iter().map(on).collect::<Result<Vec<_>, _>>().map_err(cannot_start)?;
    Ok(Box::new(PerDevice::new(workers).map_err(cannot_start)?))
}

/// `value` with its forwards on `device` (resolved first): as it is on the CPU, on every visible
/// GPU with [`ComputeDevice::Cuda`].
pub fn lm_value_on(value: LmValue, device: ComputeDevice) -> Result<Box<dyn ValueFunction + Send>, SetupError> {
    match device.resolve() {
        ComputeDevice::Cuda => on_gpu(&value),
        _ => Ok(Box::new(value)),
    }
}

/// The LM value function of `value` on every visible GPU.
#[cfg(feature = "candle-cuda")]
fn on_gpu(value: &LmValue) -> Result<Box<dyn ValueFunction + Send>, SetupError> {
    let gpu = crate::cuda::lm::on_every_gpu(value, candle_core::DType::BF16).map_err(cannot_start)?;
    Ok(Box::new(gpu))
}

#[cfg(not(feature = "candle-cuda"))]
fn on_gpu(_: &LmValue) -> Result<Box<dyn ValueFunction + Send>, SetupError> {
    Err(no_gpu_build())
}

/// One input to explain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Model file or directory; `None` = the default (SmolLM2-135M-Instruct, fetched on first use).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Text whose parts are players.
    pub prompt: String,
    /// Fixed text before the players (never ablated).
    #[serde(default)]
    pub prefix: String,
    /// Fixed text after the players (never ablated).
    #[serde(default)]
    pub suffix: String,
    /// Who the players are.
    #[serde(default = "default_players")]
    pub players: Players,
    /// How ablated tokens are removed.
    #[serde(default = "default_token_mode")]
    pub token_mode: TokenAblation,
    /// How ablated heads are removed: zero or mean.
    #[serde(default)]
    pub head_mean: bool,
    /// Causal LMs: the continuation scored; `None` = the model's greedy answer.
    #[serde(default)]
    pub target: Option<String>,
    /// Length of the greedy answer, in tokens (`None`: [`DEFAULT_MAX_NEW_TOKENS`]). Refused
    /// where no greedy answer is made (beside `target` or `logit_diff`, or for an encoder).
    // Serialised as the length used, so that fingerprints do not tell "5" from "not given".
    #[serde(default, serialize_with = "greedy_length")]
    pub max_new_tokens: Option<usize>,
    /// Causal LMs: score `logit(a) − logit(b)` of the next token instead (two single-token texts).
    #[serde(default)]
    pub logit_diff: Option<(String, String)>,
    /// Encoders: the text whose embedding the input's is compared with (default: the unablated
    /// input itself).
    #[serde(default)]
    pub reference: Option<String>,
    /// With `token_mode` replace: the single-token text substituted for ablated tokens (default:
    /// the model's unknown, mask or pad token, the first it has).
    #[serde(default)]
    pub replace_with: Option<String>,
}

fn default_players() -> Players {
    Players::Words
}
fn default_token_mode() -> TokenAblation {
    TokenAblation::Attention
}
/// Tokens of the greedy answer when [`InputSpec::max_new_tokens`] is not given.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 5;

fn greedy_length<S: serde::Serializer>(length: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(length.unwrap_or(DEFAULT_MAX_NEW_TOKENS) as u64)
}

impl InputSpec {
    /// The prompt with defaults for everything else.
    pub fn new(prompt: impl Into<String>) -> Self {
        InputSpec {
            model: None,
            prompt: prompt.into(),
            prefix: String::new(),
            suffix: String::new(),
            players: default_players(),
            token_mode: default_token_mode(),
            head_mean: false,
            target: None,
            max_new_tokens: None,
            logit_diff: None,
            reference: None,
            replace_with: None,
        }
    }
}

/// A ready input: the value function, its players' names, the text scored, and a fingerprint.
/// A [`PreparedGame`] holds its value function not yet placed on its device.
pub struct Game<V = Box<dyn ValueFunction + Send>> {
    /// The value function.
    pub value: V,
    /// One name per player (`"Lyon,"`, `"L3H5"`, …).
    pub players: Vec<String>,
    /// What is measured, in words (e.g. the greedy answer that is scored).
    pub scored: String,
    /// Identifies model, input, options and device: a stored run is only resumed with the same
    /// one.
    pub fingerprint: String,
    /// Where the forwards run: [`ComputeDevice::Cpu`] or [`ComputeDevice::Cuda`], never `Auto`.
    pub device: ComputeDevice,
    /// The model, as [`load_model`] identified it.
    pub model: String,
    /// The whole input text and each player's span in it.
    pub input: InputText,
}

/// A game prepared on the CPU (tokenized, its target generated, its layout built) whose value
/// function is not yet on its device: [`PreparedGame::place`] puts it there. A sweep prepares
/// the next input while the current one runs.
pub type PreparedGame = Game<PreparedValue>;

/// The value function of a [`PreparedGame`], before it is placed on a device.
pub enum PreparedValue {
    /// A causal LM's.
    Lm(LmValue),
    /// An encoder's.
    Encoder(EncoderValue),
}

impl PreparedGame {
    /// The game with its value function on [`Game::device`]: every visible GPU for
    /// [`ComputeDevice::Cuda`] (the weights uploaded once per model and device), else the CPU.
    pub fn place(self) -> Result<Game, SetupError> {
        let value = match self.value {
            PreparedValue::Lm(v) => lm_value_on(v, self.device)?,
            PreparedValue::Encoder(v) => encoder_value_on(v, self.device)?,
        };
        let Game { players, scored, fingerprint, device, model, input, .. } = self;
        Ok(Game { value, players, scored, fingerprint, device, model, input })
    }
}

impl<V> Game<V> {
    /// The run description stored beside the samples and copied into the reports.
    pub fn info(&self) -> RunInfo {
        RunInfo {
            scored: Some(self.scored.clone()),
            model: Some(self.model.clone()),
            input: Some(self.input.clone()),
            ..RunInfo::new(self.fingerprint.clone()).with_players(self.players.clone())
        }
    }
}

/// The input text and, per player, its byte span (heads, after the token players, have none).
fn input_text(spec: &InputSpec, text: &str, prompt: &TokenizedPrompt, token_players: bool, heads: usize) -> InputText {
    let text = format!("{}{text}{}", spec.prefix, spec.suffix);
    let tokens = prompt.spans.iter().filter(|_| token_players).map(|s| Some([s.text.start, s.text.end]));
    InputText { text, spans: tokens.chain(std::iter::repeat_n(None, heads)).collect() }
}

/// Loads a model (the default one when `path` is `None`, fetched on first use) and returns it
/// with its [`model_identity`].
pub fn load_model(path: Option<&Path>) -> Result<(Arc<LoadedModel>, String), ModelError> {
    let model = match path {
        None => load(&cache::SMOLLM2.ensure()?)?,
        Some(path) => load(path)?,
    };
    Ok((Arc::new(model), model_identity(path)))
}

/// What identifies a model cheaply, without loading it: the default model's name and weights
/// hash, or a path with the sizes and modification times of its files.
pub fn model_identity(path: Option<&Path>) -> String {
    match path {
        None => format!("{} sha256:{}", cache::SMOLLM2.name, cache::SMOLLM2.weights_sha256),
        Some(path) => file_identity(path),
    }
}

/// The fingerprint of `spec` on the model `identity` and `device`: a stored run is resumed or
/// reused only under the same one. A GPU run has its own: its `bf16` values are not mixed with a
/// CPU run's in one store.
pub fn fingerprint(identity: &str, spec: &InputSpec, device: ComputeDevice) -> String {
    let on = if device.resolve() == ComputeDevice::Cuda { "; device: cuda bf16" } else { "" };
    format!("model: {identity}; input: {}{on}", serde_json::to_string(spec).expect("serialises"))
}

/// Path, size and modification time of a model file or of the files of a model directory:
/// cheap to compute for large checkpoints, and changes whenever they are replaced.
fn file_identity(path: &Path) -> String {
    let describe = |p: &Path| {
        let meta = std::fs::metadata(p).ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let mtime = meta.and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        format!("{} {size} {}", p.display(), mtime.map_or(0, |d| d.as_secs()))
    };
    let mut parts = vec![describe(path)];
    if let Ok(dir) = std::fs::read_dir(path) {
        let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        parts.extend(files.iter().map(|f| describe(f)));
    }
    parts.join("; ")
}

/// Builds the game of `spec` on an already loaded model (`identity` from [`load_model`]), on the
/// CPU.
pub fn build(model: Arc<LoadedModel>, identity: &str, spec: &InputSpec) -> Result<Game, SetupError> {
    build_on(model, identity, spec, ComputeDevice::Cpu)
}

/// [`build`] with the forwards on `device` ([`ComputeDevice::resolve`]d: `Auto` takes the GPU
/// when this build has the GPU path and a device is visible).
pub fn build_on(
    model: Arc<LoadedModel>,
    identity: &str,
    spec: &InputSpec,
    device: ComputeDevice,
) -> Result<Game, SetupError> {
    prepare_on(model, identity, spec, device)?.place()
}

/// [`build_on`] but for the placement: the CPU's part of the setup (tokenizing, the greedy
/// answer, the layout), for [`PreparedGame::place`] later.
pub fn prepare_on(
    model: Arc<LoadedModel>,
    identity: &str,
    spec: &InputSpec,
    device: ComputeDevice,
) -> Result<PreparedGame, SetupError> {
    let (text, unit) = match spec.players {
        Players::Words | Players::WordsHeads | Players::Heads => (spec.prompt.clone(), Unit::Words),
        Players::Tokens | Players::TokensHeads => (spec.prompt.clone(), Unit::Tokens),
        Players::Sentences => (spec.prompt.clone(), Unit::Sentences),
        Players::Marked => {
            let (text, spans) = marked_spans(&spec.prompt)?;
            (text, Unit::Spans(spans))
        }
    };
    let prompt =
        Prompt::new(text.clone()).with_prefix(spec.prefix.clone()).with_suffix(spec.suffix.clone()).with_unit(unit);
    let info = model.model.info();
    let heads = match spec.players {
        Players::Heads | Players::TokensHeads | Players::WordsHeads => HeadPlayer::all(&info),
        _ => Vec::new(),
    };
    let token_players = spec.players != Players::Heads;
    check_ablation_options(spec, token_players, !heads.is_empty())?;
    let n_heads = heads.len();
    let token_mode = match spec.token_mode {
        TokenAblation::Attention => TokenMode::Attention,
        TokenAblation::Remove => TokenMode::Remove,
        TokenAblation::Replace => TokenMode::Replace(match &spec.replace_with {
            Some(text) => single_token(&model, text, "a replacement")?,
            None => replacement_token(&model.tokenizer, Replacement::Unk)
                .or_else(|_| replacement_token(&model.tokenizer, Replacement::Mask))
                .or_else(|_| replacement_token(&model.tokenizer, Replacement::Pad))?,
        }),
    };
    let head_mode = if spec.head_mean { HeadMode::Mean } else { HeadMode::Zero };
    let device = device.resolve();
    let fingerprint = fingerprint(identity, spec, device);
    let causal = model.model.lm_head().is_some();
    check_metric_options(spec, causal)?;
    if !causal {
        let reference = spec.reference.clone().unwrap_or_else(|| format!("{}{text}{}", spec.prefix, spec.suffix));
        let metric = EncoderMetric::Cosine { reference: reference.clone() };
        let options = EncoderOptions { token_players, heads, token_mode, head_mode, ..EncoderOptions::new(metric) };
        let value = EncoderValue::new(model, &prompt, options)?;
        let players = value.player_labels().to_vec();
        let input = input_text(spec, &text, value.prompt(), token_players, n_heads);
        let scored = format!("cosine similarity of the pooled embedding to that of {reference:?}");
        let value = PreparedValue::Encoder(value);
        return Ok(Game { value, players, scored, fingerprint, device, model: identity.into(), input });
    }
    let metric = match &spec.logit_diff {
        Some((a, b)) => logit_diff(&model, a, b)?,
        None => LmMetric::TargetLogProb,
    };
    let target = match &spec.target {
        Some(text) => Target::Text(text.clone()),
        None => Target::Greedy { max_new_tokens: spec.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS) },
    };
    let options = LmOptions {
        token_players,
        heads,
        token_mode,
        head_mode,
        target,
        metric: metric.clone(),
        ..LmOptions::default()
    };
    let value = LmValue::new(model, &prompt, options)?;
    let players = value.player_labels().to_vec();
    let input = input_text(spec, &text, value.prompt(), token_players, n_heads);
    let scored = match (&metric, &spec.logit_diff) {
        (LmMetric::LogitDiff { .. }, Some((a, b))) => format!("logit({a:?}) − logit({b:?}) of the next token"),
        _ => format!("log-probability of the continuation {:?}", value.target_text()),
    };
    let value = PreparedValue::Lm(value);
    Ok(Game { value, players, scored, fingerprint, device, model: identity.into(), input })
}

/// The text without its square brackets, and the byte ranges (in that text) the brackets marked.
pub fn marked_spans(marked: &str) -> Result<(String, Vec<std::ops::Range<usize>>), SetupError> {
    let (mut text, mut spans, mut open) = (String::new(), Vec::new(), None);
    for c in marked.chars() {
        match (c, open) {
            ('[', None) => open = Some(text.len()),
            (']', Some(start)) if text.len() > start => {
                spans.push(start..text.len());
                open = None;
            }
            ('[', Some(_)) => return Err(SetupError::Invalid("marked players: brackets cannot nest".into())),
            (']', _) => return Err(SetupError::Invalid("marked players: a ']' without its '[' or an empty []".into())),
            _ => text.push(c),
        }
    }
    if open.is_some() {
        return Err(SetupError::Invalid("marked players: a '[' is never closed".into()));
    }
    if spans.is_empty() {
        return Err(SetupError::Empty("--players marked needs parts of the prompt in [square brackets]".into()));
    }
    Ok((text, spans))
}

/// Refuses ablation options that no player of the input uses: they would be silently ignored.
fn check_ablation_options(spec: &InputSpec, token_players: bool, head_players: bool) -> Result<(), SetupError> {
    let refuse = |what: &str| Err(SetupError::Invalid(what.into()));
    if spec.replace_with.is_some() && spec.token_mode != TokenAblation::Replace {
        return refuse("a replacement token applies to --token-mode replace");
    }
    if !token_players && spec.token_mode != TokenAblation::Attention {
        return refuse("a token mode applies to token players; with --players heads the prompt is never ablated");
    }
    if !head_players && spec.head_mean {
        return refuse("--head-mode mean applies to head players (heads, tokens+heads, words+heads)");
    }
    Ok(())
}

/// Refuses value options the model cannot use: they would be silently ignored.
fn check_metric_options(spec: &InputSpec, causal: bool) -> Result<(), SetupError> {
    let refuse = |what: &str| Err(SetupError::Invalid(what.into()));
    if causal && spec.reference.is_some() {
        return refuse("a reference text applies to encoder models (cosine similarity); this model is a causal LM");
    }
    if spec.reference.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(SetupError::Empty("the reference text is empty".into()));
    }
    if !causal && (spec.target.is_some() || spec.logit_diff.is_some()) {
        return refuse("a target or a logit difference applies to causal LMs; an encoder is scored by cosine similarity to a reference text");
    }
    if spec.max_new_tokens.is_some() {
        if !causal {
            return refuse("max_new_tokens (--max-new-tokens) applies to causal LMs (the greedy answer); an encoder is scored by cosine similarity");
        }
        if spec.target.is_some() || spec.logit_diff.is_some() {
            return refuse("max_new_tokens (--max-new-tokens) sets the greedy answer's length; with a target or a logit difference no greedy answer is made");
        }
    }
    if causal && spec.max_new_tokens == Some(0) {
        return refuse("the greedy answer needs at least 1 new token (max_new_tokens 0)");
    }
    Ok(())
}

/// The logit difference of the single-token texts `a` and `b`, which must be two tokens (the
/// same one twice would score 0 on every mask).
fn logit_diff(model: &LoadedModel, a: &str, b: &str) -> Result<LmMetric, SetupError> {
    let (a_id, b_id) = (single_token(model, a, "a logit difference")?, single_token(model, b, "a logit difference")?);
    if a_id == b_id {
        return Err(SetupError::Invalid(format!(
            "{a:?} and {b:?} are the same token ({a_id}); a logit difference of a token with itself is 0 on every mask"
        )));
    }
    Ok(LmMetric::LogitDiff { a: a_id, b: b_id })
}

/// The one token of `text`, which `what` (e.g. "a logit difference") needs.
fn single_token(model: &LoadedModel, text: &str, what: &str) -> Result<u32, SetupError> {
    let ids =
        model.tokenizer.encode(text, false).map_err(|e| SetupError::Invalid(format!("tokenizing {text:?}: {e}")))?;
    match ids.get_ids() {
        [id] => Ok(*id),
        other => Err(SetupError::Invalid(format!(
            "{text:?} is {} tokens; {what} needs a single token (a leading space often matters)",
            other.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_greedy_length_fingerprints_as_the_default() {
        // Runs stored before the length became optional keep their fingerprint.
        let spec = InputSpec::new("a b");
        let five = InputSpec { max_new_tokens: Some(DEFAULT_MAX_NEW_TOKENS), ..spec.clone() };
        let print = |s: &InputSpec| fingerprint("m", s, ComputeDevice::Cpu);
        assert_eq!(print(&spec), print(&five));
        assert!(print(&spec).contains("\"max_new_tokens\":5,"), "{}", print(&spec));
        assert_ne!(print(&spec), print(&InputSpec { max_new_tokens: Some(1), ..spec.clone() }));
    }

    #[test]
    fn auto_batch_rows_per_device() {
        assert_eq!(ComputeDevice::Cpu.model_batch_rows(), 32);
        assert_eq!(ComputeDevice::Cuda.model_batch_rows(), 1024);
    }

    #[test]
    fn marked_spans_strip_brackets_and_keep_byte_ranges() {
        let (text, spans) = marked_spans("[The café] of [France] is").unwrap();
        assert_eq!(text, "The café of France is");
        assert_eq!(spans.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(), ["The café", "France"]);
        for bad in ["no marks", "[open", "close]", "[a [b]]", "[]"] {
            assert!(marked_spans(bad).is_err(), "{bad}");
        }
    }
}
