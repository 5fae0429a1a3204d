//! Transformer models with first-class masking hooks, on the CPU in `f32` (the reference path;
//! the decoders, Llama family and GPT-2, also move to other devices and dtypes with
//! [`Model::to_device`]).
//!
//! Three families share one forward contract ([`Model::forward`] on a [`ModelInput`]):
//!
//! * [`llama`]: RMSNorm, RoPE, grouped-query attention, SwiGLU — Llama 2/3, Qwen2/2.5, Mistral
//!   and SmolLM2 through config switches;
//! * [`gpt2`]: GPT-2 (learned positions, LayerNorm, GELU);
//! * [`bert`]: the BERT-family encoder (BERT, MiniLM, DistilBERT), with an optional
//!   sequence-classification head.
//!
//! Every batch row carries its own token ids, position ids, attention bias and head gates, so one
//! forward pass serves `B` differently ablated inputs. The model knows nothing of players, masks or
//! value functions: the caller (see [`crate::value`]) turns masks into those per-row inputs, with
//! the hooks in [`ops`]. Rows that all begin with the same unablated tokens can continue their
//! keys and values, computed once by [`Model::prefill`] ([`ModelInput::past`]).
//!
//! Loading ([`load`]) reads a Hugging Face directory (`config.json`, `model.safetensors` or
//! sharded safetensors with its index, `tokenizer.json`) or a GGUF file (weights dequantized to
//! `f32`, tokenizer built from the metadata); [`cache`] fetches the embedded default models.

pub mod bert;
pub mod cache;
pub mod gpt2;
pub mod llama;
pub mod memory;
pub mod ops;
pub mod tokenizer;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

pub use ops::HeadGates;
pub use tokenizers::Tokenizer;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A required file is missing.
    #[error("{path}: missing {what}")]
    MissingFile {
        /// Where it was looked for.
        path: PathBuf,
        /// What it should have held.
        what: String,
    },
    /// A file exists but is not a valid model file.
    #[error("{path}: not a valid model file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The architecture named by the config or GGUF metadata is not supported.
    #[error("{path}: unknown architecture {arch:?} (supported: {supported})")]
    UnknownArchitecture {
        /// The config or GGUF file.
        path: PathBuf,
        /// The architecture it names.
        arch: String,
        /// What is supported.
        supported: &'static str,
    },
    /// A config value is missing or invalid.
    #[error("{path}: bad config: {reason}")]
    Config {
        /// The config (or GGUF) file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("{path}: missing tensor {name}")]
    MissingTensor {
        /// The weights file or directory.
        path: PathBuf,
        /// The tensor name(s) looked for.
        name: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error("{path}: tensor {name} has shape {found:?}, but the config implies {expected:?}")]
    ShapeMismatch {
        /// The weights file or directory.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// The tokenizer could not be loaded, built or run.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// Its file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Bad input to a forward pass (too long, token id outside the vocabulary, inconsistent shapes).
    #[error("{0}")]
    Input(String),
    /// The default model could not be fetched.
    #[error("{0}")]
    Fetch(String),
    /// A tensor operation failed.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io { path: path.to_path_buf(), source }
    }

    /// Whether this is the device running out of memory, which a smaller batch may avoid (for
    /// [`memory::sweep_halving`]).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, ModelError::Candle(e) if memory::is_out_of_memory(e))
    }
}

/// One batched forward pass: `batch` rows of `len` tokens, each row with its own positions,
/// attention bias and head gates.
#[derive(Clone, Debug)]
pub struct ModelInput {
    /// Rows in the batch.
    pub batch: usize,
    /// Tokens per row (rows are padded to a common length by the caller).
    pub len: usize,
    /// Token ids, row-major `batch × len`: on the host, or already on the model's device.
    pub tokens: Ids,
    /// Position ids, row-major `batch × len` (RoPE angle or learned-position index): on the host,
    /// or already on the model's device.
    pub positions: Ids,
    /// Additive attention bias `[batch, 1, len, len]` from [`ops::attention_bias`]; `None` = plain
    /// causal (decoders) or full (encoders) attention.
    pub attn_bias: Option<Tensor>,
    /// Head gates (attention-head ablation); `None` = every head kept.
    pub head_gates: Option<HeadGates>,
    /// Whether to record each layer's mean per-head attention output `[H, D]` (over all rows and
    /// positions) in [`ForwardOutput::head_means`]: the reference for mean ablation.
    pub capture_head_means: bool,
    /// Keys and values of a prefix every row continues ([`Model::prefill`]): each query also
    /// attends every prefix key, the rows' positions come after the prefix's, and the caller's
    /// bias covers the rows' own keys only. The prefix was run unablated: head gates apply to the
    /// rows alone. `None` = no prefix.
    pub past: Option<Arc<KvPrefix>>,
    /// Whether to record each layer's keys and values in [`ForwardOutput::kv`].
    pub capture_kv: bool,
}

/// Keys and values `[1, Hkv, P, D]` per layer (after RoPE) of a `P`-token prefix, run once by
/// [`Model::prefill`] and shared by every row of later inputs ([`ModelInput::past`]): rows that
/// all begin with the same unablated tokens skip recomputing them.
#[derive(Clone, Debug)]
pub struct KvPrefix {
    len: usize,
    layers: Vec<(Tensor, Tensor)>,
}

impl KvPrefix {
    /// Tokens in the prefix.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the prefix holds no token (never, from [`Model::prefill`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `prefix` (or nothing) followed by `len` tokens whose keys and values `layers` a batch-1
    /// forward behind it captured ([`ForwardOutput::kv`]).
    fn followed_by(prefix: Option<&KvPrefix>, len: usize, layers: Vec<(Tensor, Tensor)>) -> Result<Self, ModelError> {
        let Some(prefix) = prefix else { return Ok(KvPrefix { len, layers }) };
        let cat = |p: &Tensor, t: &Tensor| Tensor::cat(&[p, t], 2)?.contiguous();
        let layers = prefix
            .layers
            .iter()
            .zip(&layers)
            .map(|((pk, pv), (k, v))| Ok((cat(pk, k)?, cat(pv, v)?)))
            .collect::<Result<_, candle_core::Error>>()?;
        Ok(KvPrefix { len: prefix.len + len, layers })
    }

    /// Layer `layer`'s keys and values `[B, Hkv, L, D]` of a batch, behind the prefix's.
    fn extend(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor), ModelError> {
        let (b, hkv, _, d) = k.dims4()?;
        let (pk, pv) = &self.layers[layer];
        // `cat` along a middle dimension may return a strided layout: matmuls need it dense.
        let cat = |p: &Tensor, t: &Tensor| Tensor::cat(&[&p.broadcast_as((b, hkv, self.len, d))?, t], 2)?.contiguous();
        Ok((cat(pk, k)?, cat(pv, v)?))
    }
}

/// Per-slot `u32` ids of a [`ModelInput`] (token ids, position ids), row-major `batch × len`.
#[derive(Clone, Debug)]
pub enum Ids {
    /// On the host, checked before every forward (token ids against the vocabulary, positions
    /// against the context).
    Host(Vec<u32>),
    /// A `[batch · len]` `u32` tensor built on the model's device (by the masking kernels: ids
    /// and positions of masked rows), used without a host round trip. It is not read back:
    /// whoever builds it guarantees its ids are in range (there, ids and positions of a validated
    /// input and a validated replacement token).
    Device(Tensor),
}

impl Ids {
    /// Number of ids.
    fn len(&self) -> usize {
        match self {
            Ids::Host(v) => v.len(),
            Ids::Device(t) => t.elem_count(),
        }
    }

    /// The ids when they are on the host.
    pub fn host(&self) -> Option<&[u32]> {
        match self {
            Ids::Host(v) => Some(v),
            Ids::Device(_) => None,
        }
    }

    /// The ids as a flat `u32` tensor on `device` (a copy only for host ids).
    pub(crate) fn to_tensor(&self, device: &Device) -> Result<Tensor, ModelError> {
        Ok(match self {
            Ids::Host(v) => Tensor::from_slice(v, v.len(), device)?,
            Ids::Device(t) => t.flatten_all()?.to_device(device)?,
        })
    }

    /// Refuses host ids of `limit` or more (`beyond` says why, for the largest) and device ids
    /// that are not `u32` (`what` names them).
    fn check(&self, limit: usize, what: &str, beyond: impl Fn(u32) -> String) -> Result<(), ModelError> {
        match self {
            Ids::Host(v) => match v.iter().max() {
                Some(&t) if t as usize >= limit => Err(ModelError::Input(beyond(t))),
                _ => Ok(()),
            },
            Ids::Device(t) if t.dtype() != DType::U32 => {
                Err(ModelError::Input(format!("device {what} have dtype {:?}, expected u32", t.dtype())))
            }
            Ids::Device(_) => Ok(()),
        }
    }
}

impl From<Vec<u32>> for Ids {
    fn from(ids: Vec<u32>) -> Self {
        Ids::Host(ids)
    }
}

impl ModelInput {
    /// One unablated row: positions `0..len`, no bias, no gates.
    pub fn single(tokens: &[u32]) -> Self {
        ModelInput::full_rows(1, tokens.len(), tokens.to_vec(), None, None)
    }

    /// `batch` rows of `len` tokens (`tokens` row-major), every row at positions `0..len`: the
    /// full-length form, where masking is carried by the bias and the gates alone.
    pub fn full_rows(
        batch: usize,
        len: usize,
        tokens: impl Into<Ids>,
        attn_bias: Option<Tensor>,
        head_gates: Option<HeadGates>,
    ) -> Self {
        let positions = Ids::Host((0..len as u32).cycle().take(batch * len).collect());
        ModelInput::rows(batch, len, tokens, positions, attn_bias, head_gates)
    }

    /// `batch` rows of `len` tokens, each with its own positions (`tokens` and `positions`
    /// row-major): compacted rows, where a row keeps only some base positions.
    pub fn rows(
        batch: usize,
        len: usize,
        tokens: impl Into<Ids>,
        positions: impl Into<Ids>,
        attn_bias: Option<Tensor>,
        head_gates: Option<HeadGates>,
    ) -> Self {
        let (tokens, positions) = (tokens.into(), positions.into());
        ModelInput {
            batch,
            len,
            tokens,
            positions,
            attn_bias,
            head_gates,
            capture_head_means: false,
            past: None,
            capture_kv: false,
        }
    }

    fn validate(&self, info: &ModelInfo) -> Result<(), ModelError> {
        let n = self.batch * self.len;
        if self.batch == 0 || self.len == 0 {
            return Err(ModelError::Input("empty input: no tokens to run".into()));
        }
        if self.tokens.len() != n || self.positions.len() != n {
            return Err(ModelError::Input(format!(
                "input has {} token ids and {} positions, expected batch {} x length {}",
                self.tokens.len(),
                self.positions.len(),
                self.batch,
                self.len
            )));
        }
        let vocab = info.vocab_size;
        self.tokens.check(vocab, "token ids", |t| format!("token id {t} outside the vocabulary of {vocab} tokens"))?;
        let context = info.max_positions;
        self.positions.check(context, "positions", |p| {
            format!("input needs position {p}, beyond the model's context of {context} tokens")
        })?;
        if let Some(b) = &self.attn_bias {
            if b.dims() != [self.batch, 1, self.len, self.len] {
                return Err(ModelError::Input(format!(
                    "attention bias has shape {:?}, expected [{}, 1, {}, {}]",
                    b.dims(),
                    self.batch,
                    self.len,
                    self.len
                )));
            }
        }
        if let Some(p) = &self.past {
            let shape = [1, info.num_kv_heads, p.len, info.head_dim];
            if p.layers.len() != info.num_layers || p.layers.iter().any(|(k, v)| k.dims() != shape || v.dims() != shape)
            {
                return Err(ModelError::Input(format!(
                    "the prefix's keys and values must be {} pairs of shape {shape:?}",
                    info.num_layers
                )));
            }
        }
        if let Some(g) = &self.head_gates {
            if g.gates.len() != info.num_layers {
                return Err(ModelError::Input(format!(
                    "head gates for {} layers, the model has {}",
                    g.gates.len(),
                    info.num_layers
                )));
            }
            for t in g.gates.iter().flatten() {
                if t.dims() != [self.batch, info.num_heads] {
                    return Err(ModelError::Input(format!(
                        "head gates of shape {:?}, expected [{}, {}]",
                        t.dims(),
                        self.batch,
                        info.num_heads
                    )));
                }
            }
            if let Some(f) = &g.fill {
                if f.len() != info.num_layers || f.iter().any(|t| t.dims() != [info.num_heads, info.head_dim]) {
                    return Err(ModelError::Input(format!(
                        "head fill values must be {} tensors of shape [{}, {}]",
                        info.num_layers, info.num_heads, info.head_dim
                    )));
                }
            }
        }
        Ok(())
    }
}

/// What a forward pass returns.
#[derive(Clone, Debug)]
pub struct ForwardOutput {
    /// Final hidden states `[batch, len, hidden]` (after the final norm for decoders).
    pub hidden: Tensor,
    /// Per layer `[H, D]` mean head outputs, when requested.
    pub head_means: Option<Vec<Tensor>>,
    /// Per layer keys and values `[B, Hkv, L, D]` (after RoPE), when requested.
    pub kv: Option<Vec<(Tensor, Tensor)>>,
}

/// What a forward pass records besides its hidden states, as its input asks.
pub(crate) struct Captures {
    means: Option<Vec<Tensor>>,
    kv: Option<Vec<(Tensor, Tensor)>>,
}

impl Captures {
    /// Empty records for what `input` asks.
    pub(crate) fn new(input: &ModelInput) -> Self {
        Captures { means: input.capture_head_means.then(Vec::new), kv: input.capture_kv.then(Vec::new) }
    }

    /// The output of a forward pass that ended in `hidden`.
    pub(crate) fn output(self, hidden: Tensor) -> ForwardOutput {
        ForwardOutput { hidden, head_means: self.means, kv: self.kv }
    }
}

/// Model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Llama-style decoder (Llama, Qwen2, Mistral, SmolLM2).
    Llama,
    /// GPT-2 decoder.
    Gpt2,
    /// BERT-family encoder.
    Bert,
}

/// Shape facts about a loaded model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// The family.
    pub family: Family,
    /// Transformer layers.
    pub num_layers: usize,
    /// Query heads per layer (head players are query heads).
    pub num_heads: usize,
    /// Key/value heads per layer (fewer than `num_heads` under grouped-query attention).
    pub num_kv_heads: usize,
    /// Dimension per head.
    pub head_dim: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Inner size of the MLP (Llama's `intermediate_size`, GPT-2's `n_inner`).
    pub mlp_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest supported input (context length or learned positions).
    pub max_positions: usize,
    /// Whether attention is causal (decoders).
    pub causal: bool,
}

impl ModelInfo {
    /// FLOPs per position of a forward through the layers' weight matrices (2 per weight: the
    /// Q/K/V and output projections and the MLP, three matrices for Llama's gated MLP and two
    /// otherwise). Attention scores, norms and the LM head are left out: the bulk of the work,
    /// for sizing passes.
    pub fn flops_per_token(&self) -> f64 {
        let (e, d) = (self.hidden_size, self.head_dim);
        let attention = e * (self.num_heads + 2 * self.num_kv_heads) * d + self.num_heads * d * e;
        let mlp_matrices = if self.family == Family::Llama { 3 } else { 2 };
        2.0 * (self.num_layers * (attention + mlp_matrices * e * self.mlp_size)) as f64
    }
}

/// A model of any supported family.
#[derive(Clone)]
pub enum Model {
    /// Llama family.
    Llama(llama::Llama),
    /// GPT-2.
    Gpt2(gpt2::Gpt2),
    /// BERT family.
    Bert(bert::Bert),
}

impl Model {
    /// Runs one batched forward pass.
    pub fn forward(&self, input: &ModelInput) -> Result<ForwardOutput, ModelError> {
        input.validate(&self.info())?;
        match self {
            Model::Llama(m) => m.forward(input),
            Model::Gpt2(m) => m.forward(input),
            Model::Bert(m) => m.forward(input),
        }
    }

    /// Shape facts.
    pub fn info(&self) -> ModelInfo {
        match self {
            Model::Llama(m) => m.info(),
            Model::Gpt2(m) => m.info(),
            Model::Bert(m) => m.info(),
        }
    }

    /// A copy of the model on `device` with weights in `dtype`.
    pub fn to_device(&self, device: &Device, dtype: DType) -> Result<Model, ModelError> {
        Ok(match self {
            Model::Llama(m) => Model::Llama(m.to_device(device, dtype)?),
            Model::Gpt2(m) => Model::Gpt2(m.to_device(device, dtype)?),
            Model::Bert(m) => Model::Bert(m.to_device(device, dtype)?),
        })
    }

    /// The device its weights are on.
    pub fn device(&self) -> &Device {
        match self {
            Model::Llama(m) => m.lm_head().device(),
            Model::Gpt2(m) => m.lm_head().device(),
            Model::Bert(m) => m.device(),
        }
    }

    /// Runs the unablated `tokens` (positions `0..P`) once and keeps their keys and values, for
    /// later inputs whose rows all begin with them ([`ModelInput::past`]). Decoders only: an
    /// encoder's prefix sees the tokens after it.
    pub fn prefill(&self, tokens: &[u32]) -> Result<KvPrefix, ModelError> {
        if !self.info().causal {
            return Err(ModelError::Input("a prefix cache needs a causal model; encoders see the whole input".into()));
        }
        let input = ModelInput { capture_kv: true, ..ModelInput::single(tokens) };
        let layers = self.forward(&input)?.kv.expect("keys and values were asked for");
        Ok(KvPrefix { len: tokens.len(), layers })
    }

    /// The LM head `[vocab, hidden]` of a decoder (tied to the embedding where the model ties it).
    pub fn lm_head(&self) -> Option<&Tensor> {
        match self {
            Model::Llama(m) => Some(m.lm_head()),
            Model::Gpt2(m) => Some(m.lm_head()),
            Model::Bert(_) => None,
        }
    }
}

/// A model with its tokenizer, as loaded from disk.
pub struct LoadedModel {
    /// The network.
    pub model: Model,
    /// Its tokenizer (padding and truncation disabled).
    pub tokenizer: Tokenizer,
    /// Token ids that end generation (EOS and end-of-turn tokens).
    pub eos_ids: Vec<u32>,
    /// The file or directory it was loaded from.
    pub source: PathBuf,
    /// Copies of the network on other devices or in other dtypes ([`LoadedModel::model_on`]);
    /// start with `DeviceCopies::default()`.
    pub device_copies: DeviceCopies,
}

/// Copies of a [`LoadedModel`]'s network on a device in a dtype, each made once by
/// [`LoadedModel::model_on`] and shared by every value function built on that device later: a
/// sweep explains many inputs with one model, and without them every input would convert and
/// upload the weights again (seconds per input for a billion parameters). One copy per device
/// (another dtype there, or another candle device on the same GPU, replaces it); they are freed
/// with the model, or by [`LoadedModel::release_device_copies`].
#[derive(Default)]
pub struct DeviceCopies(std::sync::Mutex<Vec<(Device, DType, Model)>>);

impl LoadedModel {
    /// A copy with the network on `device` in `dtype` ([`LoadedModel::model_on`]: shared with
    /// the value functions built there before) and the same tokenizer.
    pub fn to_device(&self, device: &Device, dtype: DType) -> Result<LoadedModel, ModelError> {
        Ok(LoadedModel {
            model: self.model_on(device, dtype)?,
            tokenizer: self.tokenizer.clone(),
            eos_ids: self.eos_ids.clone(),
            source: self.source.clone(),
            device_copies: DeviceCopies::default(),
        })
    }

    /// The network on `device` in `dtype`: made by [`Model::to_device`] the first time, the
    /// same copy afterwards (a clone shares the tensors' storage, so it costs nothing). Candle
    /// ties tensors to the device value they were made on, not just to the GPU, so only callers
    /// that pass the same device share a copy (on CUDA: `spex::cuda::lm::shared_device`).
    pub fn model_on(&self, device: &Device, dtype: DType) -> Result<Model, ModelError> {
        let mut copies = self.device_copies.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, model)) = copies.iter().find(|(d, t, _)| d.same_device(device) && *t == dtype) {
            return Ok(model.clone());
        }
        // The copy in another dtype goes first, so that the two never fill the device together.
        copies.retain(|(d, _, _)| d.location() != device.location());
        let model = self.model.to_device(device, dtype)?;
        copies.push((device.clone(), dtype, model.clone()));
        Ok(model)
    }

    /// Forgets the copies [`LoadedModel::model_on`] made: their memory is freed once no value
    /// function holds them, and the next call makes a fresh one.
    pub fn release_device_copies(&self) {
        self.device_copies.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// Encodes `text` (with the tokenizer's special tokens, e.g. BERT's `[CLS] … [SEP]`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| self.tok_err(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes token ids to text.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer.decode(ids, false).map_err(|e| self.tok_err(e))
    }

    fn tok_err(&self, e: tokenizers::Error) -> ModelError {
        ModelError::Tokenizer { path: self.source.clone(), reason: e.to_string() }
    }

    /// Greedy continuation of `prompt_ids`: up to `max_new_tokens` tokens, stopping after an EOS
    /// id. Returns the new tokens only (the EOS included if one was produced). Each new token is
    /// one forward of that token against the keys and values of all before it (a KV cache).
    pub fn generate_greedy(&self, prompt_ids: &[u32], max_new_tokens: usize) -> Result<Vec<u32>, ModelError> {
        let head =
            self.model.lm_head().ok_or_else(|| ModelError::Input("greedy generation needs a causal LM".into()))?;
        let (mut past, mut step, mut out) = (None::<Arc<KvPrefix>>, prompt_ids.to_vec(), Vec::new());
        while out.len() < max_new_tokens {
            let start = past.as_ref().map_or(0, |p| p.len) as u32;
            let positions: Vec<u32> = (start..start + step.len() as u32).collect();
            let rows = ModelInput::rows(1, step.len(), step.clone(), positions, None, None);
            let forward = self.model.forward(&ModelInput { past: past.clone(), capture_kv: true, ..rows })?;
            let logits = ops::logits_at(&forward.hidden, head, &[(0, step.len() - 1)])?.squeeze(0)?;
            let next = logits.argmax(0)?.to_scalar::<u32>()?;
            out.push(next);
            if self.eos_ids.contains(&next) {
                break;
            }
            let kv = forward.kv.expect("keys and values were asked for");
            past = Some(Arc::new(KvPrefix::followed_by(past.as_deref(), step.len(), kv)?));
            step = vec![next];
        }
        Ok(out)
    }
}

/// Loads a model: a `.gguf` file or a Hugging Face directory (`config.json`, safetensors,
/// `tokenizer.json`). The architecture comes from GGUF `general.architecture` or config
/// `model_type` / `architectures`.
pub fn load(path: &Path) -> Result<LoadedModel, ModelError> {
    if path.is_dir() {
        load_hf_dir(path)
    } else if path.is_file() {
        load_gguf(path)
    } else {
        Err(ModelError::MissingFile {
            path: path.to_path_buf(),
            what: "model (a .gguf file or a Hugging Face directory)".into(),
        })
    }
}

const HF_SUPPORTED: &str = "llama, mistral, qwen2, smollm, gpt2, bert, distilbert";

fn load_hf_dir(dir: &Path) -> Result<LoadedModel, ModelError> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.is_file() {
        return Err(ModelError::MissingFile { path: cfg_path, what: "config.json".into() });
    }
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
    let cfg: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Corrupt { path: cfg_path.clone(), reason: e.to_string() })?;
    let model_type = cfg.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_ascii_lowercase();
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = tokenizer::from_json_file(&tok_path)?;
    let weights = weights::Weights::from_safetensors_dir(dir)?;
    let model = match model_type.as_str() {
        "llama" | "mistral" | "qwen2" | "smollm" | "smollm2" => {
            Model::Llama(llama::Llama::new(llama::LlamaConfig::from_hf_json(&cfg, &cfg_path)?, &weights)?)
        }
        "gpt2" => Model::Gpt2(gpt2::Gpt2::new(gpt2::Gpt2Config::from_hf_json(&cfg, &cfg_path)?, &weights)?),
        "bert" | "distilbert" => {
            Model::Bert(bert::Bert::new(bert::BertConfig::from_hf_json(&cfg, &cfg_path)?, &weights)?)
        }
        other => {
            return Err(ModelError::UnknownArchitecture {
                path: cfg_path,
                arch: if other.is_empty() { "(no model_type)".into() } else { other.into() },
                supported: HF_SUPPORTED,
            })
        }
    };
    let mut eos_ids = Vec::new();
    collect_ids(cfg.get("eos_token_id"), &mut eos_ids);
    let gen = dir.join("generation_config.json");
    if let Ok(text) = std::fs::read_to_string(&gen) {
        if let Ok(g) = serde_json::from_str::<serde_json::Value>(&text) {
            collect_ids(g.get("eos_token_id"), &mut eos_ids);
        }
    }
    add_named_eos(&tokenizer, &mut eos_ids);
    Ok(LoadedModel { model, tokenizer, eos_ids, source: dir.to_path_buf(), device_copies: DeviceCopies::default() })
}

fn collect_ids(v: Option<&serde_json::Value>, out: &mut Vec<u32>) {
    match v {
        Some(serde_json::Value::Number(n)) => out.extend(n.as_u64().map(|x| x as u32)),
        Some(serde_json::Value::Array(a)) => out.extend(a.iter().filter_map(|x| x.as_u64().map(|x| x as u32))),
        _ => {}
    }
}

/// End-of-sequence / end-of-turn tokens known by name.
fn add_named_eos(tok: &Tokenizer, out: &mut Vec<u32>) {
    for name in ["<|endoftext|>", "<|im_end|>", "</s>", "<|eot_id|>", "<|end_of_text|>"] {
        if let Some(id) = tok.token_to_id(name) {
            out.push(id);
        }
    }
    out.sort_unstable();
    out.dedup();
}

const GGUF_SUPPORTED: &str = "llama, mistral, qwen2";

fn load_gguf(path: &Path) -> Result<LoadedModel, ModelError> {
    let (weights, meta) = weights::Weights::from_gguf(path)?;
    let arch = meta.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let model = match arch.as_str() {
        "llama" | "mistral" | "qwen2" => {
            Model::Llama(llama::Llama::new(llama::LlamaConfig::from_gguf(&meta, &arch, path)?, &weights)?)
        }
        other => {
            return Err(ModelError::UnknownArchitecture {
                path: path.to_path_buf(),
                arch: if other.is_empty() { "(no general.architecture)".into() } else { other.into() },
                supported: GGUF_SUPPORTED,
            })
        }
    };
    let tokenizer = tokenizer::from_gguf_metadata(&meta, path)?;
    let mut eos_ids = Vec::new();
    if let Some(id) = meta.get("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok()) {
        eos_ids.push(id);
    }
    add_named_eos(&tokenizer, &mut eos_ids);
    Ok(LoadedModel { model, tokenizer, eos_ids, source: path.to_path_buf(), device_copies: DeviceCopies::default() })
}

/// The device every model runs on (the CPU; the reference path).
pub fn cpu() -> &'static Device {
    static CPU: Device = Device::Cpu;
    &CPU
}

/// Shared attention tail of every family: key/value capture, the prefix's keys and values in
/// front, attention with the batch's bias, mean capture, head gates, then flattening to
/// `[B·L, H·D]` for the output projection.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    layer: usize,
    input: &ModelInput,
    captures: &mut Captures,
) -> Result<Tensor, ModelError> {
    let (b, h, l, d) = q.dims4()?;
    if let Some(kv) = captures.kv.as_mut() {
        kv.push((k.clone(), v.clone()));
    }
    let a = match &input.past {
        Some(past) => {
            let (k, v) = past.extend(layer, k, v)?;
            ops::attention(q, &k, &v, bias)?
        }
        None => ops::attention(q, k, v, bias)?,
    }; // [B, L, H, D]
    if let Some(m) = captures.means.as_mut() {
        m.push(a.reshape((b * l, h, d))?.mean(0)?);
    }
    if let Some(g) = &input.head_gates {
        if let Some(gate) = &g.gates[layer] {
            // Gates and fills are built on the host in f32: match the activations (no-ops on
            // the f32 CPU model).
            let fill = g.fill.as_ref().map(|f| f[layer].to_device(a.device())?.to_dtype(a.dtype())).transpose()?;
            let gate = gate.to_device(a.device())?.to_dtype(DType::F32)?;
            // `a` is this layer's fresh attention output: nothing else holds its storage.
            ops::gate_heads_in_place(&a, &gate, fill.as_ref())?;
        }
    }
    Ok(a.reshape((b * l, h * d))?)
}

/// The bias to use, on `device` in `dtype`: the caller's, or plain causal/full attention as one
/// `[1, 1, L, L]` bias broadcast over the batch (not `B` copies); behind a prefix, with its
/// `P` key columns open in front (`[·, 1, L, P + L]`).
pub(crate) fn bias_or_default(
    input: &ModelInput,
    causal: bool,
    device: &Device,
    dtype: DType,
) -> Result<Tensor, ModelError> {
    let bias = match &input.attn_bias {
        Some(b) => b.to_device(device)?,
        None => ops::attention_bias(1, input.len, None, causal, device)?,
    };
    let bias = match &input.past {
        // Every query sees every prefix key. The caller's bias may be in another dtype than
        // f32 (the GPU path builds it in bf16).
        Some(past) => {
            let (rows, _, l, _) = bias.dims4()?;
            Tensor::cat(&[&Tensor::zeros((rows, 1, l, past.len), bias.dtype(), device)?, &bias], 3)?
        }
        None => bias,
    };
    Ok(bias.to_dtype(dtype)?)
}

/// Reads a `usize` field of a Hugging Face config.
pub(crate) fn cfg_usize(cfg: &serde_json::Value, key: &str, path: &Path) -> Result<usize, ModelError> {
    cfg_usize_opt(cfg, key, path)?
        .ok_or_else(|| ModelError::Config { path: path.to_path_buf(), reason: format!("missing \"{key}\"") })
}

/// Reads an optional `usize` field (rejecting zero and non-integers).
pub(crate) fn cfg_usize_opt(cfg: &serde_json::Value, key: &str, path: &Path) -> Result<Option<usize>, ModelError> {
    match cfg.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) if x > 0 => Ok(Some(x as usize)),
            _ => Err(ModelError::Config {
                path: path.to_path_buf(),
                reason: format!("\"{key}\" must be a positive integer, found {v}"),
            }),
        },
    }
}

/// Reads an optional `f64` field.
pub(crate) fn cfg_f64(cfg: &serde_json::Value, key: &str, default: f64) -> f64 {
    cfg.get(key).and_then(|v| v.as_f64()).unwrap_or(default)
}

/// Checks `a % b == 0` for config sanity (heads dividing the hidden size, …).
pub(crate) fn check_divides(a: usize, b: usize, what: &str, path: &Path) -> Result<(), ModelError> {
    if b == 0 || a % b != 0 {
        return Err(ModelError::Config {
            path: path.to_path_buf(),
            reason: format!("{what}: {a} is not a multiple of {b}"),
        });
    }
    Ok(())
}
