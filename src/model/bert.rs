//! The BERT-family encoder: BERT, MiniLM (BERT weights, small) and DistilBERT (same post-LN
//! blocks, other tensor names, no token types), with an optional sequence-classification head.
//!
//! The forward pass returns the last layer's hidden states; pooling (mean over visible tokens,
//! `[CLS]`) and the classification head are separate calls so a value function can choose.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::weights::Weights;
use super::{
    attend, bias_or_default, cfg_f64, cfg_usize, cfg_usize_opt, check_divides, ops, Captures, Family, ForwardOutput,
    ModelError, ModelInfo, ModelInput,
};

/// Which tensor naming (and head) the checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BertFlavor {
    /// BERT / MiniLM (`encoder.layer.N.attention.self.query`, pooler + classifier).
    Bert,
    /// DistilBERT (`transformer.layer.N.attention.q_lin`, pre_classifier + classifier).
    DistilBert,
}

/// Configuration of a BERT-family encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// Naming and head flavour.
    pub flavor: BertFlavor,
    /// Hidden size.
    pub hidden_size: usize,
    /// Heads.
    pub num_heads: usize,
    /// Layers.
    pub num_layers: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Learned positions.
    pub max_positions: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Token types (0 for DistilBERT).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Labels of the classification head, if the config names any.
    pub labels: Vec<String>,
}

/// Architectures that benchmarks build with random weights ([`BertConfig::shape`]).
pub const SHAPES: [&str; 1] = ["bert-base"];

impl BertConfig {
    /// The architecture of a named model (one of [`SHAPES`]): `bert-base`, BERT-base's
    /// (bert-base-uncased), with a two-class classification head.
    pub fn shape(name: &str) -> Option<BertConfig> {
        (name == "bert-base").then(|| BertConfig {
            flavor: BertFlavor::Bert,
            hidden_size: 768,
            num_heads: 12,
            num_layers: 12,
            intermediate_size: 3072,
            max_positions: 512,
            vocab_size: 30_522,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            labels: vec!["negative".into(), "positive".into()],
        })
    }

    /// Weights of a BERT-flavoured model of this configuration: embeddings, layers and pooler,
    /// plus the classification head when [`BertConfig::labels`] names classes.
    pub fn parameters(&self) -> usize {
        let (e, i, c) = (self.hidden_size, self.intermediate_size, self.labels.len());
        let embeddings = (self.vocab_size + self.max_positions + self.type_vocab_size) * e + 2 * e;
        let layer = 4 * (e * e + e) + 2 * (i * e) + i + e + 4 * e;
        let head = if c > 0 { c * e + c } else { 0 };
        embeddings + self.num_layers * layer + e * e + e + head
    }

    /// Reads a Hugging Face `config.json` (`model_type` `bert` or `distilbert`).
    pub fn from_hf_json(cfg: &serde_json::Value, path: &Path) -> Result<Self, ModelError> {
        let distil = cfg.get("model_type").and_then(|v| v.as_str()) == Some("distilbert");
        let act = cfg.get(if distil { "activation" } else { "hidden_act" }).and_then(|v| v.as_str()).unwrap_or("gelu");
        if act != "gelu" {
            return Err(ModelError::Config {
                path: path.to_path_buf(),
                reason: format!("unsupported activation {act:?} (supported: gelu)"),
            });
        }
        let mut labels: Vec<(usize, String)> = cfg
            .get("id2label")
            .and_then(|v| v.as_object())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_owned()))).collect())
            .unwrap_or_default();
        labels.sort();
        let c = if distil {
            BertConfig {
                flavor: BertFlavor::DistilBert,
                hidden_size: cfg_usize(cfg, "dim", path)?,
                num_heads: cfg_usize(cfg, "n_heads", path)?,
                num_layers: cfg_usize(cfg, "n_layers", path)?,
                intermediate_size: cfg_usize(cfg, "hidden_dim", path)?,
                max_positions: cfg_usize_opt(cfg, "max_position_embeddings", path)?.unwrap_or(512),
                vocab_size: cfg_usize(cfg, "vocab_size", path)?,
                type_vocab_size: 0,
                layer_norm_eps: 1e-12,
                labels: labels.into_iter().map(|x| x.1).collect(),
            }
        } else {
            BertConfig {
                flavor: BertFlavor::Bert,
                hidden_size: cfg_usize(cfg, "hidden_size", path)?,
                num_heads: cfg_usize(cfg, "num_attention_heads", path)?,
                num_layers: cfg_usize(cfg, "num_hidden_layers", path)?,
                intermediate_size: cfg_usize(cfg, "intermediate_size", path)?,
                max_positions: cfg_usize_opt(cfg, "max_position_embeddings", path)?.unwrap_or(512),
                vocab_size: cfg_usize(cfg, "vocab_size", path)?,
                type_vocab_size: cfg_usize_opt(cfg, "type_vocab_size", path)?.unwrap_or(2),
                layer_norm_eps: cfg_f64(cfg, "layer_norm_eps", 1e-12),
                labels: labels.into_iter().map(|x| x.1).collect(),
            }
        };
        check_divides(c.hidden_size, c.num_heads, "hidden size / heads", path)?;
        Ok(c)
    }
}

#[derive(Clone)]
struct Layer {
    wqkv: Tensor,
    bqkv: Tensor,
    wo: Tensor,
    bo: Tensor,
    ln1: (Tensor, Tensor),
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    ln2: (Tensor, Tensor),
}

/// A classification head: `classifier(act(dense(h[CLS])))` (BERT: pooler with tanh; DistilBERT:
/// pre_classifier with ReLU).
#[derive(Clone)]
struct Head {
    dense: (Tensor, Tensor),
    classifier: (Tensor, Tensor),
}

/// A BERT-family encoder.
#[derive(Clone)]
pub struct Bert {
    cfg: BertConfig,
    word: Tensor,
    pos: Tensor,
    token_type0: Option<Tensor>,
    emb_ln: (Tensor, Tensor),
    layers: Vec<Layer>,
    head: Option<Head>,
}

impl Bert {
    /// Builds the model (tensor names with or without the `bert.` / `distilbert.` prefix).
    pub fn new(cfg: BertConfig, w: &Weights) -> Result<Self, ModelError> {
        let (e, i) = (cfg.hidden_size, cfg.intermediate_size);
        let distil = cfg.flavor == BertFlavor::DistilBert;
        let p = w.find_prefix(&["", "bert.", "distilbert."], "embeddings.word_embeddings.weight").unwrap_or("");
        let t = |n: &str, shape: &[usize]| w.get(&format!("{p}{n}"), shape);
        let lin = |n: &str, dout: usize, din: usize| -> Result<(Tensor, Tensor), ModelError> {
            Ok((t(&format!("{n}.weight"), &[dout, din])?, t(&format!("{n}.bias"), &[dout])?))
        };
        let ln = |n: &str| -> Result<(Tensor, Tensor), ModelError> {
            Ok((t(&format!("{n}.weight"), &[e])?, t(&format!("{n}.bias"), &[e])?))
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let names: [String; 8] = if distil {
                let b = format!("transformer.layer.{l}");
                [
                    format!("{b}.attention.q_lin"),
                    format!("{b}.attention.k_lin"),
                    format!("{b}.attention.v_lin"),
                    format!("{b}.attention.out_lin"),
                    format!("{b}.sa_layer_norm"),
                    format!("{b}.ffn.lin1"),
                    format!("{b}.ffn.lin2"),
                    format!("{b}.output_layer_norm"),
                ]
            } else {
                let b = format!("encoder.layer.{l}");
                [
                    format!("{b}.attention.self.query"),
                    format!("{b}.attention.self.key"),
                    format!("{b}.attention.self.value"),
                    format!("{b}.attention.output.dense"),
                    format!("{b}.attention.output.LayerNorm"),
                    format!("{b}.intermediate.dense"),
                    format!("{b}.output.dense"),
                    format!("{b}.output.LayerNorm"),
                ]
            };
            let (q, k, v) = (lin(&names[0], e, e)?, lin(&names[1], e, e)?, lin(&names[2], e, e)?);
            let (wo, bo) = lin(&names[3], e, e)?;
            let (w1, b1) = lin(&names[5], i, e)?;
            let (w2, b2) = lin(&names[6], e, i)?;
            layers.push(Layer {
                wqkv: Tensor::cat(&[q.0, k.0, v.0], 0)?,
                bqkv: Tensor::cat(&[q.1, k.1, v.1], 0)?,
                wo,
                bo,
                ln1: ln(&names[4])?,
                w1,
                b1,
                w2,
                b2,
                ln2: ln(&names[7])?,
            });
        }
        let token_type0 = if cfg.type_vocab_size > 0 {
            Some(t("embeddings.token_type_embeddings.weight", &[cfg.type_vocab_size, e])?.get(0)?)
        } else {
            None
        };
        // Classification head: top-level `classifier` (+ pooler / pre_classifier).
        let head = match w.dims("classifier.weight") {
            None => None,
            Some(dims) => {
                let ncls = dims.first().copied().unwrap_or(0);
                if !cfg.labels.is_empty() && cfg.labels.len() != ncls {
                    return Err(ModelError::ShapeMismatch {
                        path: w.path().to_path_buf(),
                        name: "classifier.weight".into(),
                        expected: vec![cfg.labels.len(), e],
                        found: dims,
                    });
                }
                let dense = if distil {
                    (w.get("pre_classifier.weight", &[e, e])?, w.get("pre_classifier.bias", &[e])?)
                } else {
                    lin("pooler.dense", e, e)?
                };
                Some(Head {
                    dense,
                    classifier: (w.get("classifier.weight", &[ncls, e])?, w.get("classifier.bias", &[ncls])?),
                })
            }
        };
        Ok(Bert {
            word: t("embeddings.word_embeddings.weight", &[cfg.vocab_size, e])?,
            pos: t("embeddings.position_embeddings.weight", &[cfg.max_positions, e])?,
            token_type0,
            emb_ln: ln("embeddings.LayerNorm")?,
            layers,
            head,
            cfg,
        })
    }

    /// A BERT-flavoured model of `cfg` with random weights drawn on `device` in `dtype`
    /// (benchmarks): matrices normal with standard deviation 0.02 (BERT's initialisation), norms
    /// 1, biases 0; the pooler and, when `cfg` names labels, the classification head included.
    pub fn random(cfg: BertConfig, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        let (e, i, c) = (cfg.hidden_size, cfg.intermediate_size, cfg.labels.len());
        let mut w = Weights::random(device, dtype);
        let mut put = |name: String, shape: &[usize], fill: Option<f32>| w.draw(name, shape, fill);
        let mut linear = |name: String, dout: usize, din: usize| -> Result<(), ModelError> {
            put(format!("{name}.weight"), &[dout, din], None)?;
            put(format!("{name}.bias"), &[dout], Some(0.0))
        };
        for l in 0..cfg.num_layers {
            let p = format!("encoder.layer.{l}");
            for n in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
                linear(format!("{p}.{n}"), e, e)?;
            }
            linear(format!("{p}.intermediate.dense"), i, e)?;
            linear(format!("{p}.output.dense"), e, i)?;
        }
        linear("pooler.dense".into(), e, e)?;
        if c > 0 {
            linear("classifier".into(), c, e)?;
        }
        let mut norm = |name: String| -> Result<(), ModelError> {
            put(format!("{name}.weight"), &[e], Some(1.0))?;
            put(format!("{name}.bias"), &[e], Some(0.0))
        };
        norm("embeddings.LayerNorm".into())?;
        for l in 0..cfg.num_layers {
            norm(format!("encoder.layer.{l}.attention.output.LayerNorm"))?;
            norm(format!("encoder.layer.{l}.output.LayerNorm"))?;
        }
        put("embeddings.word_embeddings.weight".into(), &[cfg.vocab_size, e], None)?;
        put("embeddings.position_embeddings.weight".into(), &[cfg.max_positions, e], None)?;
        put("embeddings.token_type_embeddings.weight".into(), &[cfg.type_vocab_size, e], None)?;
        Bert::new(cfg, &w.done())
    }

    /// A copy of the model with every weight on `device` in `dtype` (as
    /// [`super::llama::Llama::to_device`]: the forward then runs there, inputs cast on entry).
    pub fn to_device(&self, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        let mv = |t: &Tensor| -> Result<Tensor, ModelError> { Ok(t.to_dtype(dtype)?.to_device(device)?) };
        let pair = |(w, b): &(Tensor, Tensor)| -> Result<(Tensor, Tensor), ModelError> { Ok((mv(w)?, mv(b)?)) };
        let layers = self
            .layers
            .iter()
            .map(|k| {
                Ok(Layer {
                    wqkv: mv(&k.wqkv)?,
                    bqkv: mv(&k.bqkv)?,
                    wo: mv(&k.wo)?,
                    bo: mv(&k.bo)?,
                    ln1: pair(&k.ln1)?,
                    w1: mv(&k.w1)?,
                    b1: mv(&k.b1)?,
                    w2: mv(&k.w2)?,
                    b2: mv(&k.b2)?,
                    ln2: pair(&k.ln2)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let head = match &self.head {
            Some(h) => Some(Head { dense: pair(&h.dense)?, classifier: pair(&h.classifier)? }),
            None => None,
        };
        Ok(Bert {
            cfg: self.cfg.clone(),
            word: mv(&self.word)?,
            pos: mv(&self.pos)?,
            token_type0: self.token_type0.as_ref().map(mv).transpose()?,
            emb_ln: pair(&self.emb_ln)?,
            layers,
            head,
        })
    }

    /// The device its weights are on.
    pub fn device(&self) -> &Device {
        self.word.device()
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Shape facts.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            family: Family::Bert,
            num_layers: self.cfg.num_layers,
            num_heads: self.cfg.num_heads,
            num_kv_heads: self.cfg.num_heads,
            head_dim: self.cfg.hidden_size / self.cfg.num_heads,
            hidden_size: self.cfg.hidden_size,
            mlp_size: self.cfg.intermediate_size,
            vocab_size: self.cfg.vocab_size,
            max_positions: self.cfg.max_positions,
            causal: false,
        }
    }

    /// Number of classes of the classification head, if the checkpoint has one.
    pub fn num_classes(&self) -> Option<usize> {
        self.head.as_ref().map(|h| h.classifier.1.dims()[0])
    }

    /// Class logits `[B, C]` from the hidden states `[B, L, E]` at position 0 (`[CLS]`), in the
    /// model's dtype.
    pub fn classify(&self, hidden: &Tensor) -> Result<Tensor, ModelError> {
        let head =
            self.head.as_ref().ok_or_else(|| ModelError::Input("this encoder has no classification head".into()))?;
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        let z = ops::linear(&cls, &head.dense.0, Some(&head.dense.1))?;
        let z = match self.cfg.flavor {
            BertFlavor::Bert => z.tanh()?,
            BertFlavor::DistilBert => z.relu()?,
        };
        Ok(ops::linear(&z, &head.classifier.0, Some(&head.classifier.1))?)
    }

    /// Forward pass (input already validated): last-layer hidden states.
    pub fn forward(&self, input: &ModelInput) -> Result<ForwardOutput, ModelError> {
        let (b, l) = (input.batch, input.len);
        let (e, h) = (self.cfg.hidden_size, self.cfg.num_heads);
        let d = e / h;
        let eps = self.cfg.layer_norm_eps as f32;
        // Inputs are built on the host in f32 and moved to the weights' device and dtype (no-ops
        // for the f32 CPU model).
        let (dev, dt) = (self.word.device(), self.word.dtype());
        let ids = input.tokens.to_tensor(dev)?;
        let pos = input.positions.to_tensor(dev)?;
        let mut x = (self.word.index_select(&ids, 0)? + self.pos.index_select(&pos, 0)?)?;
        if let Some(tt) = &self.token_type0 {
            x = x.broadcast_add(tt)?;
        }
        let mut x = candle_nn::ops::layer_norm(&x, &self.emb_ln.0, &self.emb_ln.1, eps)?;
        let bias = bias_or_default(input, false, dev, dt)?;
        let mut captures = Captures::new(input);
        for (li, layer) in self.layers.iter().enumerate() {
            let qkv = ops::linear(&x, &layer.wqkv, Some(&layer.bqkv))?;
            let heads = |j: usize| qkv.narrow(1, j * e, e)?.reshape((b, l, h, d))?.transpose(1, 2)?.contiguous();
            let a = attend(&heads(0)?, &heads(1)?, &heads(2)?, &bias, li, input, &mut captures)?;
            let y = (x + ops::linear(&a, &layer.wo, Some(&layer.bo))?)?;
            x = candle_nn::ops::layer_norm(&y, &layer.ln1.0, &layer.ln1.1, eps)?;
            let m = ops::linear(&x, &layer.w1, Some(&layer.b1))?.gelu_erf()?;
            let y = (x + ops::linear(&m, &layer.w2, Some(&layer.b2))?)?;
            x = candle_nn::ops::layer_norm(&y, &layer.ln2.0, &layer.ln2.1, eps)?;
        }
        Ok(captures.output(x.reshape((b, l, e))?))
    }
}
