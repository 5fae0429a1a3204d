//! GPT-2: learned absolute positions, pre-LayerNorm blocks, GELU (tanh) MLP, LM head tied to the
//! token embedding. Hugging Face weights use `Conv1D` (`[in, out]`) matrices, transposed at load.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::weights::Weights;
use super::{
    attend, bias_or_default, cfg_f64, cfg_usize, cfg_usize_opt, check_divides, ops, Captures, Family, ForwardOutput,
    ModelError, ModelInfo, ModelInput,
};

/// Configuration of a GPT-2 model.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpt2Config {
    /// Hidden size (`n_embd`).
    pub hidden_size: usize,
    /// Heads (`n_head`).
    pub num_heads: usize,
    /// Layers (`n_layer`).
    pub num_layers: usize,
    /// MLP inner size (`n_inner`, default 4 × hidden).
    pub inner_size: usize,
    /// Learned positions (`n_positions`).
    pub max_positions: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// MLP activation: exact (erf) GELU for `"gelu"`, else the tanh approximation (`gelu_new`,
    /// GPT-2's own).
    pub exact_gelu: bool,
}

impl Gpt2Config {
    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_json(cfg: &serde_json::Value, path: &Path) -> Result<Self, ModelError> {
        let hidden_size = cfg_usize(cfg, "n_embd", path)?;
        let num_heads = cfg_usize(cfg, "n_head", path)?;
        check_divides(hidden_size, num_heads, "n_embd / n_head", path)?;
        let exact_gelu = match cfg.get("activation_function").and_then(|v| v.as_str()).unwrap_or("gelu_new") {
            "gelu_new" | "gelu_pytorch_tanh" => false,
            "gelu" => true,
            act => {
                return Err(ModelError::Config {
                    path: path.to_path_buf(),
                    reason: format!(
                        "unsupported activation_function {act:?} (supported: gelu_new, gelu_pytorch_tanh, gelu)"
                    ),
                })
            }
        };
        Ok(Gpt2Config {
            hidden_size,
            num_heads,
            num_layers: cfg_usize(cfg, "n_layer", path)?,
            inner_size: cfg_usize_opt(cfg, "n_inner", path)?.unwrap_or(4 * hidden_size),
            max_positions: cfg_usize_opt(cfg, "n_positions", path)?.unwrap_or(1024),
            vocab_size: cfg_usize(cfg, "vocab_size", path)?,
            layer_norm_eps: cfg_f64(cfg, "layer_norm_epsilon", 1e-5),
            exact_gelu,
        })
    }
}

#[derive(Clone)]
struct Block {
    ln1: (Tensor, Tensor),
    w_qkv: Tensor,
    b_qkv: Tensor,
    w_proj: Tensor,
    b_proj: Tensor,
    ln2: (Tensor, Tensor),
    w_fc: Tensor,
    b_fc: Tensor,
    w_out: Tensor,
    b_out: Tensor,
}

/// A GPT-2 decoder.
#[derive(Clone)]
pub struct Gpt2 {
    cfg: Gpt2Config,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: (Tensor, Tensor),
}

impl Gpt2 {
    /// Builds the model from Hugging Face weights (with or without the `transformer.` prefix).
    pub fn new(cfg: Gpt2Config, w: &Weights) -> Result<Self, ModelError> {
        let p = w.find_prefix(&["", "transformer."], "wte.weight").unwrap_or("");
        let (e, i) = (cfg.hidden_size, cfg.inner_size);
        // Conv1D stores [in, out]; we keep [out, in] like every other linear layer.
        let conv = |name: &str, din: usize, dout: usize| -> Result<Tensor, ModelError> {
            Ok(w.get(&format!("{p}{name}"), &[din, dout])?.t()?.contiguous()?)
        };
        let ln = |name: &str| -> Result<(Tensor, Tensor), ModelError> {
            Ok((w.get(&format!("{p}{name}.weight"), &[e])?, w.get(&format!("{p}{name}.bias"), &[e])?))
        };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let b = |n: &str, len: usize| w.get(&format!("{p}h.{l}.{n}"), &[len]);
            blocks.push(Block {
                ln1: ln(&format!("h.{l}.ln_1"))?,
                w_qkv: conv(&format!("h.{l}.attn.c_attn.weight"), e, 3 * e)?,
                b_qkv: b("attn.c_attn.bias", 3 * e)?,
                w_proj: conv(&format!("h.{l}.attn.c_proj.weight"), e, e)?,
                b_proj: b("attn.c_proj.bias", e)?,
                ln2: ln(&format!("h.{l}.ln_2"))?,
                w_fc: conv(&format!("h.{l}.mlp.c_fc.weight"), e, i)?,
                b_fc: b("mlp.c_fc.bias", i)?,
                w_out: conv(&format!("h.{l}.mlp.c_proj.weight"), i, e)?,
                b_out: b("mlp.c_proj.bias", e)?,
            });
        }
        Ok(Gpt2 {
            wte: w.get(&format!("{p}wte.weight"), &[cfg.vocab_size, e])?,
            wpe: w.get(&format!("{p}wpe.weight"), &[cfg.max_positions, e])?,
            ln_f: ln("ln_f")?,
            blocks,
            cfg,
        })
    }

    /// A copy of the model with every weight on `device` in `dtype` (as
    /// [`super::llama::Llama::to_device`]: the forward then runs there, inputs cast on entry).
    pub fn to_device(&self, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        let mv = |t: &Tensor| -> Result<Tensor, ModelError> { Ok(t.to_dtype(dtype)?.to_device(device)?) };
        let pair = |(w, b): &(Tensor, Tensor)| -> Result<(Tensor, Tensor), ModelError> { Ok((mv(w)?, mv(b)?)) };
        let blocks = self
            .blocks
            .iter()
            .map(|k| {
                Ok(Block {
                    ln1: pair(&k.ln1)?,
                    w_qkv: mv(&k.w_qkv)?,
                    b_qkv: mv(&k.b_qkv)?,
                    w_proj: mv(&k.w_proj)?,
                    b_proj: mv(&k.b_proj)?,
                    ln2: pair(&k.ln2)?,
                    w_fc: mv(&k.w_fc)?,
                    b_fc: mv(&k.b_fc)?,
                    w_out: mv(&k.w_out)?,
                    b_out: mv(&k.b_out)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Gpt2 { cfg: self.cfg.clone(), wte: mv(&self.wte)?, wpe: mv(&self.wpe)?, blocks, ln_f: pair(&self.ln_f)? })
    }

    /// Shape facts.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            family: Family::Gpt2,
            num_layers: self.cfg.num_layers,
            num_heads: self.cfg.num_heads,
            num_kv_heads: self.cfg.num_heads,
            head_dim: self.cfg.hidden_size / self.cfg.num_heads,
            hidden_size: self.cfg.hidden_size,
            mlp_size: self.cfg.inner_size,
            vocab_size: self.cfg.vocab_size,
            max_positions: self.cfg.max_positions,
            causal: true,
        }
    }

    /// The LM head (the token embedding).
    pub fn lm_head(&self) -> &Tensor {
        &self.wte
    }

    /// Forward pass (input already validated).
    pub fn forward(&self, input: &ModelInput) -> Result<ForwardOutput, ModelError> {
        let (b, l) = (input.batch, input.len);
        let (e, h) = (self.cfg.hidden_size, self.cfg.num_heads);
        let d = e / h;
        let eps = self.cfg.layer_norm_eps as f32;
        // Inputs are built on the host and moved to the weights' device and dtype (no-ops for the
        // f32 CPU model).
        let (dev, dt) = (self.wte.device(), self.wte.dtype());
        let ids = input.tokens.to_tensor(dev)?;
        let pos = input.positions.to_tensor(dev)?;
        let mut x = (self.wte.index_select(&ids, 0)? + self.wpe.index_select(&pos, 0)?)?;
        let bias = bias_or_default(input, true, dev, dt)?;
        let mut captures = Captures::new(input);
        for (li, blk) in self.blocks.iter().enumerate() {
            let hn = candle_nn::ops::layer_norm(&x, &blk.ln1.0, &blk.ln1.1, eps)?;
            let qkv = ops::linear(&hn, &blk.w_qkv, Some(&blk.b_qkv))?;
            let heads = |j: usize| qkv.narrow(1, j * e, e)?.reshape((b, l, h, d))?.transpose(1, 2)?.contiguous();
            let a = attend(&heads(0)?, &heads(1)?, &heads(2)?, &bias, li, input, &mut captures)?;
            x = (x + ops::linear(&a, &blk.w_proj, Some(&blk.b_proj))?)?;
            let hn = candle_nn::ops::layer_norm(&x, &blk.ln2.0, &blk.ln2.1, eps)?;
            let m = ops::linear(&hn, &blk.w_fc, Some(&blk.b_fc))?;
            let m = if self.cfg.exact_gelu { m.gelu_erf()? } else { m.gelu()? };
            x = (x + ops::linear(&m, &blk.w_out, Some(&blk.b_out))?)?;
        }
        let x = candle_nn::ops::layer_norm(&x, &self.ln_f.0, &self.ln_f.1, eps)?;
        Ok(captures.output(x.reshape((b, l, e))?))
    }
}
