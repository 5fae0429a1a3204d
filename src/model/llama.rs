//! The Llama family: RMSNorm, rotary position embedding, grouped-query attention, SwiGLU MLP.
//!
//! One implementation serves Llama 2/3, Qwen2/2.5 (biases on Q/K/V: `attention_bias`), Mistral
//! and SmolLM2 through [`LlamaConfig`] switches. Weights come from a Hugging Face directory
//! (`model.layers.N.self_attn.q_proj.weight`, …) or a GGUF file (`blk.N.attn_q.weight`, …).
//!
//! RoPE trap: llama.cpp's converter permutes the Q and K rows of `llama`/`mistral` models so that
//! rotary pairs are adjacent dimensions; GGUF weights of those architectures therefore need the
//! *interleaved* rotation ([`LlamaConfig::rope_interleaved`]), Hugging Face weights the half-split
//! one. Qwen2 GGUF files are not permuted (NeoX style) and use the half-split rotation.
//!
//! Mistral's sliding window is not applied: inputs longer than the window are rejected.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor, D};

use super::weights::Weights;
use super::{
    attend, bias_or_default, cfg_f64, cfg_usize, cfg_usize_opt, check_divides, ops, Captures, Family, ForwardOutput,
    ModelError, ModelInfo, ModelInput,
};

/// Llama 3 style frequency-dependent RoPE scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    /// `factor`.
    pub factor: f64,
    /// `low_freq_factor`.
    pub low_freq_factor: f64,
    /// `high_freq_factor`.
    pub high_freq_factor: f64,
    /// `original_max_position_embeddings`.
    pub original_max_position_embeddings: usize,
}

/// Configuration of a Llama-family decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Hidden size `E`.
    pub hidden_size: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Dimension per head.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length.
    pub max_positions: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Interleaved RoPE pairs (GGUF `llama`/`mistral`), else half-split (Hugging Face, Qwen2).
    pub rope_interleaved: bool,
    /// Llama 3 RoPE scaling, if any.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Whether Q/K/V projections carry biases (always for Qwen2; also whenever the checkpoint has
    /// them).
    pub attention_bias: bool,
    /// Whether the LM head is the token embedding.
    pub tie_word_embeddings: bool,
}

/// Architectures that benchmarks build with random weights ([`LlamaConfig::shape`]): no
/// download, and the same arithmetic as the real model (not its answers).
pub const SHAPES: [&str; 2] = ["smollm2-135m", "llama-1b"];

impl LlamaConfig {
    /// The architecture of a named model (one of [`SHAPES`]): `smollm2-135m`, the default
    /// model's (SmolLM2-135M), or `llama-1b`, Llama 3.2 1B's (its long-context RoPE scaling left
    /// out: it changes no arithmetic at benchmark lengths).
    pub fn shape(name: &str) -> Option<LlamaConfig> {
        let (hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, vocab_size, rope_theta) = match name {
            "smollm2-135m" => (576, 1536, 30, 9, 3, 49_152, 100_000.0),
            "llama-1b" => (2048, 8192, 16, 32, 8, 128_256, 500_000.0),
            _ => return None,
        };
        Some(LlamaConfig {
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim: hidden_size / num_heads,
            vocab_size,
            max_positions: 8192,
            rms_norm_eps: 1e-5,
            rope_theta,
            rope_interleaved: false,
            rope_scaling: None,
            attention_bias: false,
            tie_word_embeddings: true,
        })
    }

    /// Weights of a model of this configuration (biases and norms included; a tied LM head
    /// counted once).
    pub fn parameters(&self) -> usize {
        let (e, d, i) = (self.hidden_size, self.head_dim, self.intermediate_size);
        let (q, kv) = (self.num_heads * d, self.num_kv_heads * d);
        let bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let layer = e * (q + 2 * kv) + bias + q * e + 3 * e * i + 2 * e;
        let head = if self.tie_word_embeddings { 0 } else { self.vocab_size * e };
        self.vocab_size * e + self.num_layers * layer + e + head
    }

    /// Reads a Hugging Face `config.json` (already parsed; `path` names it in errors).
    pub fn from_hf_json(cfg: &serde_json::Value, path: &Path) -> Result<Self, ModelError> {
        let model_type = cfg.get("model_type").and_then(|v| v.as_str()).unwrap_or("llama");
        let hidden_size = cfg_usize(cfg, "hidden_size", path)?;
        let num_heads = cfg_usize(cfg, "num_attention_heads", path)?;
        let head_dim = match cfg_usize_opt(cfg, "head_dim", path)? {
            Some(d) => d,
            None => {
                check_divides(hidden_size, num_heads, "hidden_size / num_attention_heads", path)?;
                hidden_size / num_heads
            }
        };
        let rope_scaling = match cfg.get("rope_scaling") {
            None | Some(serde_json::Value::Null) => None,
            Some(rs) => {
                let ty = rs.get("rope_type").or_else(|| rs.get("type")).and_then(|v| v.as_str()).unwrap_or("");
                if ty != "llama3" {
                    return Err(ModelError::Config {
                        path: path.to_path_buf(),
                        reason: format!("unsupported rope_scaling type {ty:?} (supported: llama3)"),
                    });
                }
                Some(Llama3RopeScaling {
                    factor: cfg_f64(rs, "factor", 8.0),
                    low_freq_factor: cfg_f64(rs, "low_freq_factor", 1.0),
                    high_freq_factor: cfg_f64(rs, "high_freq_factor", 4.0),
                    original_max_position_embeddings: cfg_usize_opt(rs, "original_max_position_embeddings", path)?
                        .unwrap_or(8192),
                })
            }
        };
        let c = LlamaConfig {
            hidden_size,
            intermediate_size: cfg_usize(cfg, "intermediate_size", path)?,
            num_layers: cfg_usize(cfg, "num_hidden_layers", path)?,
            num_heads,
            num_kv_heads: cfg_usize_opt(cfg, "num_key_value_heads", path)?.unwrap_or(num_heads),
            head_dim,
            vocab_size: cfg_usize(cfg, "vocab_size", path)?,
            max_positions: {
                let ctx = cfg_usize_opt(cfg, "max_position_embeddings", path)?.unwrap_or(2048);
                match cfg_usize_opt(cfg, "sliding_window", path).ok().flatten() {
                    Some(w) if model_type == "mistral" => ctx.min(w),
                    _ => ctx,
                }
            },
            rms_norm_eps: cfg_f64(cfg, "rms_norm_eps", 1e-6),
            rope_theta: cfg_f64(cfg, "rope_theta", 10_000.0),
            rope_interleaved: false,
            rope_scaling,
            // Qwen2 always has Q/K/V biases (its config has no switch); Llama's is `attention_bias`.
            attention_bias: model_type == "qwen2"
                || cfg.get("attention_bias").and_then(|v| v.as_bool()).unwrap_or(false),
            tie_word_embeddings: cfg.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(false),
        };
        c.check(path)?;
        Ok(c)
    }

    /// Reads GGUF metadata of architecture `arch` (`llama`, `mistral`, `qwen2`).
    pub fn from_gguf(meta: &HashMap<String, gguf_file::Value>, arch: &str, path: &Path) -> Result<Self, ModelError> {
        let get = |k: &str| -> Result<usize, ModelError> {
            let key = format!("{arch}.{k}");
            meta.get(&key)
                .and_then(|v| {
                    v.to_u64()
                        .ok()
                        .or_else(|| v.to_u32().ok().map(u64::from))
                        .or_else(|| v.to_i32().ok().map(|x| x.max(0) as u64))
                })
                .map(|x| x as usize)
                .ok_or_else(|| ModelError::Config {
                    path: path.to_path_buf(),
                    reason: format!("missing GGUF metadata {key}"),
                })
        };
        let getf = |k: &str, d: f64| {
            meta.get(&format!("{arch}.{k}")).and_then(|v| v.to_f32().ok()).map(f64::from).unwrap_or(d)
        };
        let hidden_size = get("embedding_length")?;
        let num_heads = get("attention.head_count")?;
        check_divides(hidden_size, num_heads, "embedding_length / attention.head_count", path)?;
        let head_dim = get("rope.dimension_count").unwrap_or(hidden_size / num_heads);
        let vocab_size =
            meta.get("tokenizer.ggml.tokens").and_then(|v| v.to_vec().ok()).map(|v| v.len()).ok_or_else(|| {
                ModelError::Config {
                    path: path.to_path_buf(),
                    reason: "missing GGUF metadata tokenizer.ggml.tokens".into(),
                }
            })?;
        let c = LlamaConfig {
            hidden_size,
            intermediate_size: get("feed_forward_length")?,
            num_layers: get("block_count")?,
            num_heads,
            num_kv_heads: get("attention.head_count_kv").unwrap_or(num_heads),
            head_dim,
            vocab_size,
            max_positions: get("context_length").unwrap_or(2048),
            rms_norm_eps: getf("attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta: getf("rope.freq_base", 10_000.0),
            rope_interleaved: arch != "qwen2",
            rope_scaling: None,
            attention_bias: false, // decided from the tensors present
            tie_word_embeddings: false,
        };
        c.check(path)?;
        Ok(c)
    }

    fn check(&self, path: &Path) -> Result<(), ModelError> {
        check_divides(self.num_heads, self.num_kv_heads, "num_attention_heads / num_key_value_heads", path)?;
        if self.head_dim % 2 != 0 {
            return Err(ModelError::Config {
                path: path.to_path_buf(),
                reason: format!("head_dim {} must be even for RoPE", self.head_dim),
            });
        }
        Ok(())
    }

    /// RoPE inverse frequencies (`head_dim / 2` of them), with Llama 3 scaling if configured.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim as f64;
        (0..self.head_dim / 2)
            .map(|i| {
                let f = 1.0 / self.rope_theta.powf(2.0 * i as f64 / d);
                let f = match &self.rope_scaling {
                    None => f,
                    Some(s) => {
                        let old = s.original_max_position_embeddings as f64;
                        let low_wl = old / s.low_freq_factor;
                        let high_wl = old / s.high_freq_factor;
                        let wl = 2.0 * std::f64::consts::PI / f;
                        if wl < high_wl {
                            f
                        } else if wl > low_wl {
                            f / s.factor
                        } else {
                            let smooth = (old / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    }
                };
                f as f32
            })
            .collect()
    }
}

#[derive(Clone)]
struct Layer {
    attn_norm: Tensor,
    /// Fused `[q; k; v]` projection `[(H + 2 Hkv) D, E]`.
    wqkv: Tensor,
    bqkv: Option<Tensor>,
    wo: Tensor,
    ffn_norm: Tensor,
    /// Fused `[gate; up]` projection `[2 I, E]`.
    w_gate_up: Tensor,
    w_down: Tensor,
}

/// A Llama-family decoder.
#[derive(Clone)]
pub struct Llama {
    cfg: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    inv_freq: Vec<f32>,
}

impl Llama {
    /// Builds the model from weights named either the Hugging Face way (`model.layers.N…`) or
    /// the GGUF way (`blk.N…`), checking every shape against `cfg`.
    pub fn new(mut cfg: LlamaConfig, w: &Weights) -> Result<Self, ModelError> {
        let gguf = w.contains("token_embd.weight");
        let (e, h, kv, d, i) = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size);
        let hf = |s: &str| format!("model.{s}");
        let embed = if gguf {
            w.get("token_embd.weight", &[cfg.vocab_size, e])?
        } else {
            w.get(&hf("embed_tokens.weight"), &[cfg.vocab_size, e])?
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        // Biases present in the checkpoint are used whatever the config says (a config that asks
        // for biases the checkpoint lacks is a missing-tensor error below).
        cfg.attention_bias |=
            w.contains(if gguf { "blk.0.attn_q.bias" } else { "model.layers.0.self_attn.q_proj.bias" });
        for l in 0..cfg.num_layers {
            let name = |hf_name: &str, gguf_name: &str| {
                if gguf {
                    format!("blk.{l}.{gguf_name}")
                } else {
                    format!("model.layers.{l}.{hf_name}")
                }
            };
            let wq = w.get(&name("self_attn.q_proj.weight", "attn_q.weight"), &[h * d, e])?;
            let wk = w.get(&name("self_attn.k_proj.weight", "attn_k.weight"), &[kv * d, e])?;
            let wv = w.get(&name("self_attn.v_proj.weight", "attn_v.weight"), &[kv * d, e])?;
            let bqkv = if cfg.attention_bias {
                let bq = w.get(&name("self_attn.q_proj.bias", "attn_q.bias"), &[h * d])?;
                let bk = w.get(&name("self_attn.k_proj.bias", "attn_k.bias"), &[kv * d])?;
                let bv = w.get(&name("self_attn.v_proj.bias", "attn_v.bias"), &[kv * d])?;
                Some(Tensor::cat(&[bq, bk, bv], 0)?)
            } else {
                None
            };
            let gate = w.get(&name("mlp.gate_proj.weight", "ffn_gate.weight"), &[i, e])?;
            let up = w.get(&name("mlp.up_proj.weight", "ffn_up.weight"), &[i, e])?;
            layers.push(Layer {
                attn_norm: w.get(&name("input_layernorm.weight", "attn_norm.weight"), &[e])?,
                wqkv: Tensor::cat(&[wq, wk, wv], 0)?,
                bqkv,
                wo: w.get(&name("self_attn.o_proj.weight", "attn_output.weight"), &[e, h * d])?,
                ffn_norm: w.get(&name("post_attention_layernorm.weight", "ffn_norm.weight"), &[e])?,
                w_gate_up: Tensor::cat(&[gate, up], 0)?,
                w_down: w.get(&name("mlp.down_proj.weight", "ffn_down.weight"), &[e, i])?,
            });
        }
        let norm = if gguf { w.get("output_norm.weight", &[e])? } else { w.get(&hf("norm.weight"), &[e])? };
        let head_name = if gguf { "output.weight" } else { "lm_head.weight" };
        let lm_head = match w.get_opt(head_name, &[cfg.vocab_size, e])? {
            Some(t) if !cfg.tie_word_embeddings => t,
            _ => {
                cfg.tie_word_embeddings = true;
                embed.clone()
            }
        };
        let mut inv_freq = cfg.inv_freq();
        if gguf {
            // llama.cpp stores Llama 3.1 RoPE scaling as per-frequency divisors.
            if let Some(f) = w.get_opt("rope_freqs.weight", &[d / 2])? {
                for (x, s) in inv_freq.iter_mut().zip(f.to_vec1::<f32>()?) {
                    *x /= s;
                }
            }
        }
        Ok(Llama { cfg, embed, layers, norm, lm_head, inv_freq })
    }

    /// A copy of the model with every weight on `device` in `dtype` (e.g. a CUDA device and
    /// `BF16`; the forward then runs there: matmuls in `dtype` with the backend's f32
    /// accumulation, inputs cast on entry, hidden states returned in `dtype`).
    pub fn to_device(&self, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        let mv = |t: &Tensor| -> Result<Tensor, ModelError> { Ok(t.to_dtype(dtype)?.to_device(device)?) };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(Layer {
                    attn_norm: mv(&l.attn_norm)?,
                    wqkv: mv(&l.wqkv)?,
                    bqkv: l.bqkv.as_ref().map(mv).transpose()?,
                    wo: mv(&l.wo)?,
                    ffn_norm: mv(&l.ffn_norm)?,
                    w_gate_up: mv(&l.w_gate_up)?,
                    w_down: mv(&l.w_down)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let embed = mv(&self.embed)?;
        let lm_head = if self.cfg.tie_word_embeddings { embed.clone() } else { mv(&self.lm_head)? };
        Ok(Llama {
            cfg: self.cfg.clone(),
            embed,
            layers,
            norm: mv(&self.norm)?,
            lm_head,
            inv_freq: self.inv_freq.clone(),
        })
    }

    /// A model of `cfg` with random weights drawn on `device` in `dtype` (benchmarks: a 1B model
    /// would take long to draw on the host and copy up): matrices normal with standard deviation
    /// 0.02, norms 1, biases 0.
    pub fn random(cfg: LlamaConfig, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        let (e, d, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
        let (q, kv) = (cfg.num_heads * d, cfg.num_kv_heads * d);
        let mut w = Weights::random(device, dtype);
        let mut put = |name: String, shape: &[usize], fill: Option<f32>| w.draw(name, shape, fill);
        put("model.embed_tokens.weight".into(), &[cfg.vocab_size, e], None)?;
        put("model.norm.weight".into(), &[e], Some(1.0))?;
        if !cfg.tie_word_embeddings {
            put("lm_head.weight".into(), &[cfg.vocab_size, e], None)?;
        }
        for l in 0..cfg.num_layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                put(p(&format!("self_attn.{name}.weight")), &[rows, e], None)?;
                if cfg.attention_bias {
                    put(p(&format!("self_attn.{name}.bias")), &[rows], Some(0.0))?;
                }
            }
            put(p("self_attn.o_proj.weight"), &[e, q], None)?;
            put(p("mlp.gate_proj.weight"), &[i, e], None)?;
            put(p("mlp.up_proj.weight"), &[i, e], None)?;
            put(p("mlp.down_proj.weight"), &[e, i], None)?;
            put(p("input_layernorm.weight"), &[e], Some(1.0))?;
            put(p("post_attention_layernorm.weight"), &[e], Some(1.0))?;
        }
        Llama::new(cfg, &w.done())
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Shape facts.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            family: Family::Llama,
            num_layers: self.cfg.num_layers,
            num_heads: self.cfg.num_heads,
            num_kv_heads: self.cfg.num_kv_heads,
            head_dim: self.cfg.head_dim,
            hidden_size: self.cfg.hidden_size,
            mlp_size: self.cfg.intermediate_size,
            vocab_size: self.cfg.vocab_size,
            max_positions: self.cfg.max_positions,
            causal: true,
        }
    }

    /// The LM head `[V, E]`.
    pub fn lm_head(&self) -> &Tensor {
        &self.lm_head
    }

    /// Forward pass (input already validated by [`super::Model::forward`]).
    pub fn forward(&self, input: &ModelInput) -> Result<ForwardOutput, ModelError> {
        let (b, l) = (input.batch, input.len);
        let c = &self.cfg;
        let (h, kv, d, i) = (c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size);
        let eps = c.rms_norm_eps as f32;
        // Inputs are built on the host in f32 and moved to the weights' device and dtype (no-ops
        // for the f32 CPU model).
        let (dev, dt) = (self.embed.device(), self.embed.dtype());
        let ids = input.tokens.to_tensor(dev)?;
        let mut x = self.embed.index_select(&ids, 0)?; // [B·L, E]
        let (cos, sin) = ops::rope_cos_sin(&input.positions, b, l, &self.inv_freq, dev)?;
        let (cos, sin) = (cos.to_dtype(dt)?, sin.to_dtype(dt)?);
        let bias = bias_or_default(input, true, dev, dt)?;
        let mut captures = Captures::new(input);
        for (li, layer) in self.layers.iter().enumerate() {
            let hn = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let qkv = ops::linear(&hn, &layer.wqkv, layer.bqkv.as_ref())?;
            let heads = |start: usize, n: usize| -> candle_core::Result<Tensor> {
                qkv.narrow(1, start * d, n * d)?.reshape((b, l, n, d))?.transpose(1, 2)?.contiguous()
            };
            let q = ops::apply_rope(&heads(0, h)?, &cos, &sin, c.rope_interleaved)?;
            let k = ops::apply_rope(&heads(h, kv)?, &cos, &sin, c.rope_interleaved)?;
            let v = heads(h + kv, kv)?;
            let a = attend(&q, &k, &v, &bias, li, input, &mut captures)?;
            x = (x + ops::linear(&a, &layer.wo, None)?)?;
            let hn = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let gu = ops::linear(&hn, &layer.w_gate_up, None)?;
            let act = (gu.narrow(D::Minus1, 0, i)?.silu()? * gu.narrow(D::Minus1, i, i)?)?;
            x = (x + ops::linear(&act, &layer.w_down, None)?)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        Ok(captures.output(x.reshape((b, l, c.hidden_size))?))
    }
}
