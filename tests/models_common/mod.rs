//! Test support: tiny random-weight models written to disk in the real formats (a Hugging Face
//! safetensors directory with `config.json` and `tokenizer.json`; a GGUF file with quantized
//! matrices, llama.cpp's Q/K row permutation and tokenizer metadata), and a naive `f64`
//! reference implementation of the three families that shares no code with `spex::model`.
//!
//! The reference takes, per query position, the explicit list of keys it may attend, and a set
//! of ablated (layer, head) pairs, so masked forwards can be written out by definition.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Named tensors
// ---------------------------------------------------------------------------------------------

/// Named `f32` tensors (Hugging Face naming) with their shapes.
#[derive(Clone, Default)]
pub struct Tensors(pub HashMap<String, (Vec<usize>, Vec<f32>)>);

impl Tensors {
    pub fn get(&self, name: &str) -> &[f32] {
        &self.0.get(name).unwrap_or_else(|| panic!("test weights lack {name}")).1
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> &[usize] {
        &self.0[name].0
    }

    pub fn set(&mut self, name: &str, shape: &[usize], data: Vec<f32>) {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
        self.0.insert(name.to_string(), (shape.to_vec(), data));
    }

    /// Uniform in `[-scale, scale]`.
    pub fn rand(&mut self, rng: &mut ChaCha8Rng, name: &str, shape: &[usize], scale: f32) {
        let n = shape.iter().product();
        self.set(name, shape, (0..n).map(|_| rng.random_range(-scale..scale)).collect());
    }

    /// `1 + uniform(-0.2, 0.2)` (norm weights).
    pub fn near_one(&mut self, rng: &mut ChaCha8Rng, name: &str, n: usize) {
        self.set(name, &[n], (0..n).map(|_| 1.0 + rng.random_range(-0.2f32..0.2)).collect());
    }

    pub fn tensor(&self, name: &str) -> Tensor {
        let (shape, data) = &self.0[name];
        Tensor::from_vec(data.clone(), shape.as_slice(), &Device::Cpu).unwrap()
    }

    /// Writes every tensor to one safetensors file.
    pub fn save_safetensors(&self, path: &Path) {
        let map: HashMap<String, Tensor> = self.0.keys().map(|k| (k.clone(), self.tensor(k))).collect();
        candle_core::safetensors::save(&map, path).unwrap();
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

// ---------------------------------------------------------------------------------------------
// Tokenizers
// ---------------------------------------------------------------------------------------------

/// GPT-2's byte → printable-character map.
pub fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut out = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        out[*b as usize] = char::from_u32(c).unwrap();
    }
    out
}

/// A tiny byte-level BPE vocabulary: the 256 byte symbols, a few merges, `<|endoftext|>`.
pub struct ByteBpe {
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
    pub types: Vec<i32>,
    pub eos: u32,
}

pub fn byte_bpe() -> ByteBpe {
    let mut tokens: Vec<String> = bytes_to_unicode().into_iter().map(String::from).collect();
    let merges = [
        "Ġ t", "h e", "Ġt he", "a t", "Ġ c", "Ġc at", "Ġ s", "Ġs at", "Ġ m", "Ġm at", "o n", "Ġ on", "Ġ d", "o g",
        "Ġd og",
    ];
    for m in merges {
        let (a, b) = m.split_once(' ').unwrap();
        tokens.push(format!("{a}{b}"));
    }
    let mut types = vec![1; tokens.len()];
    tokens.push("<|endoftext|>".into());
    types.push(3);
    ByteBpe { eos: tokens.len() as u32 - 1, tokens, merges: merges.iter().map(|s| s.to_string()).collect(), types }
}

impl ByteBpe {
    pub fn gguf_metadata(&self) -> Vec<(String, gguf_file::Value)> {
        use gguf_file::Value as V;
        vec![
            ("tokenizer.ggml.model".into(), V::String("gpt2".into())),
            ("tokenizer.ggml.tokens".into(), V::Array(self.tokens.iter().map(|t| V::String(t.clone())).collect())),
            ("tokenizer.ggml.merges".into(), V::Array(self.merges.iter().map(|t| V::String(t.clone())).collect())),
            ("tokenizer.ggml.token_type".into(), V::Array(self.types.iter().map(|&t| V::I32(t)).collect())),
            ("tokenizer.ggml.eos_token_id".into(), V::U32(self.eos)),
        ]
    }

    /// The same tokenizer as a `tokenizer.json` (built the way the GGUF loader builds it).
    pub fn save_json(&self, path: &Path) {
        let meta: HashMap<String, gguf_file::Value> = self.gguf_metadata().into_iter().collect();
        let tok = spex::model::tokenizer::from_gguf_metadata(&meta, path).unwrap();
        tok.save(path, false).unwrap();
    }
}

/// A word-level `tokenizer.json` (whitespace/punctuation split). `bert` adds `[CLS] … [SEP]`
/// and bakes in padding and truncation, as all-MiniLM-L6-v2's file does (the loader must turn
/// them off).
pub fn word_level_json(words: &[&str], unk: &str, specials: &[&str], bert: bool) -> String {
    let vocab: serde_json::Map<String, serde_json::Value> =
        words.iter().enumerate().map(|(i, w)| (w.to_string(), json!(i))).collect();
    let added: Vec<serde_json::Value> = specials
        .iter()
        .map(|s| {
            let id = words.iter().position(|w| w == s).unwrap();
            json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let id = |s: &str| words.iter().position(|w| *w == s).unwrap();
    let mut t = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk}
    });
    if bert {
        t["post_processor"] = json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [id("[CLS]")], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [id("[SEP]")], "tokens": ["[SEP]"]}
            }
        });
        t["padding"] = json!({"strategy": {"Fixed": 24}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": id("[PAD]"), "pad_type_id": 0, "pad_token": "[PAD]"});
        t["truncation"] = json!({"direction": "Right", "max_length": 24, "strategy": "LongestFirst", "stride": 0});
    }
    t.to_string()
}

pub const GPT2_WORDS: &[&str] = &[
    "<|endoftext|>",
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "a",
    "dog",
    "ran",
    "to",
    "big",
    "red",
    "house",
    "and",
    "then",
    "slept",
    ".",
    "it",
    "was",
    "warm",
    "<unk>",
];

pub const BERT_WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "big",
    "red", "house", "and", "then", "slept", ".", "it", "was", "warm", "man", "is", "eating", "food", "bread",
];

// ---------------------------------------------------------------------------------------------
// Llama family
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct LlamaSpec {
    pub vocab: usize,
    pub hidden: usize,
    pub inter: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub max_pos: usize,
    pub theta: f64,
    pub eps: f64,
    pub qkv_bias: bool,
}

impl LlamaSpec {
    pub fn tiny(vocab: usize) -> Self {
        LlamaSpec {
            vocab,
            hidden: 32,
            inter: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            max_pos: 48,
            theta: 10_000.0,
            eps: 1e-5,
            qkv_bias: false,
        }
    }
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

pub fn llama_weights(s: &LlamaSpec, seed: u64) -> Tensors {
    let mut r = rng(seed);
    let mut w = Tensors::default();
    let (e, d) = (s.hidden, s.head_dim());
    w.rand(&mut r, "model.embed_tokens.weight", &[s.vocab, e], 1.0);
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        w.near_one(&mut r, &format!("{p}.input_layernorm.weight"), e);
        w.rand(&mut r, &format!("{p}.self_attn.q_proj.weight"), &[s.heads * d, e], 0.5);
        w.rand(&mut r, &format!("{p}.self_attn.k_proj.weight"), &[s.kv_heads * d, e], 0.5);
        w.rand(&mut r, &format!("{p}.self_attn.v_proj.weight"), &[s.kv_heads * d, e], 0.3);
        if s.qkv_bias {
            w.rand(&mut r, &format!("{p}.self_attn.q_proj.bias"), &[s.heads * d], 0.2);
            w.rand(&mut r, &format!("{p}.self_attn.k_proj.bias"), &[s.kv_heads * d], 0.2);
            w.rand(&mut r, &format!("{p}.self_attn.v_proj.bias"), &[s.kv_heads * d], 0.2);
        }
        w.rand(&mut r, &format!("{p}.self_attn.o_proj.weight"), &[e, s.heads * d], 0.3);
        w.near_one(&mut r, &format!("{p}.post_attention_layernorm.weight"), e);
        w.rand(&mut r, &format!("{p}.mlp.gate_proj.weight"), &[s.inter, e], 0.3);
        w.rand(&mut r, &format!("{p}.mlp.up_proj.weight"), &[s.inter, e], 0.3);
        w.rand(&mut r, &format!("{p}.mlp.down_proj.weight"), &[e, s.inter], 0.3);
    }
    w.near_one(&mut r, "model.norm.weight", e);
    w.rand(&mut r, "lm_head.weight", &[s.vocab, e], 0.5);
    w
}

pub fn llama_config_json(s: &LlamaSpec, model_type: &str, eos: u32) -> String {
    json!({
        "model_type": model_type,
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": s.hidden,
        "intermediate_size": s.inter,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "vocab_size": s.vocab,
        "max_position_embeddings": s.max_pos,
        "rms_norm_eps": s.eps,
        "rope_theta": s.theta,
        "attention_bias": s.qkv_bias,
        "tie_word_embeddings": false,
        "eos_token_id": eos
    })
    .to_string()
}

/// Writes a Hugging Face directory (config.json, model.safetensors, tokenizer.json).
pub fn write_llama_hf(dir: &Path, s: &LlamaSpec, w: &Tensors, tok: &ByteBpe) {
    write_llama_hf_as(dir, s, w, tok, "llama");
}

/// A random tiny Llama (`LlamaSpec::tiny`, byte-level BPE) written as an HF directory and loaded
/// (the directory is gone afterwards; the model is in memory).
pub fn tiny_llama(seed: u64) -> std::sync::Arc<spex::model::LoadedModel> {
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_bpe();
    let spec = LlamaSpec::tiny(tok.tokens.len());
    write_llama_hf(dir.path(), &spec, &llama_weights(&spec, seed), &tok);
    std::sync::Arc::new(spex::model::load(dir.path()).unwrap())
}

/// Same, with another `model_type` of the family (`qwen2`, `mistral`, …).
pub fn write_llama_hf_as(dir: &Path, s: &LlamaSpec, w: &Tensors, tok: &ByteBpe, model_type: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), llama_config_json(s, model_type, tok.eos)).unwrap();
    w.save_safetensors(&dir.join("model.safetensors"));
    tok.save_json(&dir.join("tokenizer.json"));
}

/// llama.cpp's `permute` of Q/K rows: within each head, row `2i` ← row `i`, row `2i+1` ←
/// row `i + d/2` (so rotary pairs become adjacent).
fn permute_rows(data: &[f32], rows: usize, cols: usize, heads: usize, inverse: bool) -> Vec<f32> {
    let d = rows / heads;
    let mut out = vec![0f32; data.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for (hf_row, gg_row) in [(h * d + i, h * d + 2 * i), (h * d + d / 2 + i, h * d + 2 * i + 1)] {
                let (src, dst) = if inverse { (gg_row, hf_row) } else { (hf_row, gg_row) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Writes the model as a GGUF file the way llama.cpp's converter does (Q/K rows permuted for
/// interleaved RoPE; matrices Q4_1, embedding and LM head Q8_0, norms F32; tokenizer in the
/// metadata) and replaces `w` by the values the file really holds (dequantized, unpermuted), so
/// an HF directory written from `w` afterwards is the same model.
pub fn write_llama_gguf(path: &Path, s: &LlamaSpec, w: &mut Tensors, tok: &ByteBpe) {
    use gguf_file::Value as V;
    let mut names: Vec<(String, String)> = vec![
        ("model.embed_tokens.weight".into(), "token_embd.weight".into()),
        ("model.norm.weight".into(), "output_norm.weight".into()),
        ("lm_head.weight".into(), "output.weight".into()),
    ];
    for l in 0..s.layers {
        for (hf, gg) in [
            ("input_layernorm.weight", "attn_norm.weight"),
            ("self_attn.q_proj.weight", "attn_q.weight"),
            ("self_attn.k_proj.weight", "attn_k.weight"),
            ("self_attn.v_proj.weight", "attn_v.weight"),
            ("self_attn.q_proj.bias", "attn_q.bias"),
            ("self_attn.k_proj.bias", "attn_k.bias"),
            ("self_attn.v_proj.bias", "attn_v.bias"),
            ("self_attn.o_proj.weight", "attn_output.weight"),
            ("post_attention_layernorm.weight", "ffn_norm.weight"),
            ("mlp.gate_proj.weight", "ffn_gate.weight"),
            ("mlp.up_proj.weight", "ffn_up.weight"),
            ("mlp.down_proj.weight", "ffn_down.weight"),
        ] {
            names.push((format!("model.layers.{l}.{hf}"), format!("blk.{l}.{gg}")));
        }
    }
    let mut qtensors: Vec<(String, QTensor)> = Vec::new();
    for (hf, gg) in names {
        if !w.has(&hf) {
            continue;
        }
        let shape = w.shape(&hf).to_vec();
        let heads = if gg.ends_with("attn_q.weight") || gg.ends_with("attn_q.bias") {
            Some(s.heads)
        } else if gg.ends_with("attn_k.weight") || gg.ends_with("attn_k.bias") {
            Some(s.kv_heads)
        } else {
            None
        };
        let cols = if shape.len() == 2 { shape[1] } else { 1 };
        let data = match heads {
            Some(h) => permute_rows(w.get(&hf), shape[0], cols, h, false),
            None => w.get(&hf).to_vec(),
        };
        let dtype = if shape.len() == 1 {
            GgmlDType::F32
        } else if gg == "token_embd.weight" || gg == "output.weight" {
            GgmlDType::Q8_0
        } else {
            GgmlDType::Q4_1
        };
        let t = Tensor::from_vec(data, shape.as_slice(), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let back: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let back = match heads {
            Some(h) => permute_rows(&back, shape[0], cols, h, true),
            None => back,
        };
        w.set(&hf, &shape, back);
        qtensors.push((gg, q));
    }
    let d = s.head_dim();
    let mut meta: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String("llama".into())),
        ("llama.block_count".into(), V::U32(s.layers as u32)),
        ("llama.embedding_length".into(), V::U32(s.hidden as u32)),
        ("llama.feed_forward_length".into(), V::U32(s.inter as u32)),
        ("llama.attention.head_count".into(), V::U32(s.heads as u32)),
        ("llama.attention.head_count_kv".into(), V::U32(s.kv_heads as u32)),
        ("llama.context_length".into(), V::U32(s.max_pos as u32)),
        ("llama.rope.freq_base".into(), V::F32(s.theta as f32)),
        ("llama.rope.dimension_count".into(), V::U32(d as u32)),
        ("llama.attention.layer_norm_rms_epsilon".into(), V::F32(s.eps as f32)),
    ];
    meta.extend(tok.gguf_metadata());
    let meta_refs: Vec<(&str, &V)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &meta_refs, &t_refs).unwrap();
}

// ---------------------------------------------------------------------------------------------
// GPT-2 and BERT
// ---------------------------------------------------------------------------------------------

pub const GPT2: (usize, usize, usize, usize) = (16, 4, 2, 24); // hidden, heads, layers, positions

pub fn gpt2_weights(seed: u64) -> Tensors {
    let (e, _h, layers, pos) = GPT2;
    let v = GPT2_WORDS.len();
    let mut r = rng(seed);
    let mut w = Tensors::default();
    w.rand(&mut r, "wte.weight", &[v, e], 1.0);
    w.rand(&mut r, "wpe.weight", &[pos, e], 0.5);
    for l in 0..layers {
        let p = format!("h.{l}");
        w.near_one(&mut r, &format!("{p}.ln_1.weight"), e);
        w.rand(&mut r, &format!("{p}.ln_1.bias"), &[e], 0.1);
        w.rand(&mut r, &format!("{p}.attn.c_attn.weight"), &[e, 3 * e], 0.5);
        w.rand(&mut r, &format!("{p}.attn.c_attn.bias"), &[3 * e], 0.1);
        w.rand(&mut r, &format!("{p}.attn.c_proj.weight"), &[e, e], 0.3);
        w.rand(&mut r, &format!("{p}.attn.c_proj.bias"), &[e], 0.1);
        w.near_one(&mut r, &format!("{p}.ln_2.weight"), e);
        w.rand(&mut r, &format!("{p}.ln_2.bias"), &[e], 0.1);
        w.rand(&mut r, &format!("{p}.mlp.c_fc.weight"), &[e, 4 * e], 0.3);
        w.rand(&mut r, &format!("{p}.mlp.c_fc.bias"), &[4 * e], 0.1);
        w.rand(&mut r, &format!("{p}.mlp.c_proj.weight"), &[4 * e, e], 0.3);
        w.rand(&mut r, &format!("{p}.mlp.c_proj.bias"), &[e], 0.1);
    }
    w.near_one(&mut r, "ln_f.weight", e);
    w.rand(&mut r, "ln_f.bias", &[e], 0.1);
    w
}

/// A random GPT-2 ([`gpt2_weights`]) written as an HF directory and loaded (the directory is gone
/// afterwards; the model is in memory).
pub fn tiny_gpt2(seed: u64) -> std::sync::Arc<spex::model::LoadedModel> {
    let dir = tempfile::tempdir().unwrap();
    write_gpt2_hf(dir.path(), &gpt2_weights(seed));
    std::sync::Arc::new(spex::model::load(dir.path()).unwrap())
}

pub fn write_gpt2_hf(dir: &Path, w: &Tensors) {
    let (e, h, layers, pos) = GPT2;
    std::fs::create_dir_all(dir).unwrap();
    let cfg = json!({"model_type": "gpt2", "n_embd": e, "n_head": h, "n_layer": layers, "n_positions": pos,
        "vocab_size": GPT2_WORDS.len(), "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "eos_token_id": 0});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    w.save_safetensors(&dir.join("model.safetensors"));
    std::fs::write(dir.join("tokenizer.json"), word_level_json(GPT2_WORDS, "<unk>", &["<|endoftext|>"], false))
        .unwrap();
}

pub const BERT: (usize, usize, usize, usize, usize) = (16, 4, 2, 32, 24); // hidden, heads, layers, inter, positions
pub const BERT_LABELS: usize = 3;

pub fn bert_weights(seed: u64) -> Tensors {
    let (e, _h, layers, inter, pos) = BERT;
    let v = BERT_WORDS.len();
    let mut r = rng(seed);
    let mut w = Tensors::default();
    w.rand(&mut r, "embeddings.word_embeddings.weight", &[v, e], 1.0);
    w.rand(&mut r, "embeddings.position_embeddings.weight", &[pos, e], 0.5);
    w.rand(&mut r, "embeddings.token_type_embeddings.weight", &[2, e], 0.5);
    w.near_one(&mut r, "embeddings.LayerNorm.weight", e);
    w.rand(&mut r, "embeddings.LayerNorm.bias", &[e], 0.1);
    for l in 0..layers {
        let p = format!("encoder.layer.{l}");
        for n in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            w.rand(&mut r, &format!("{p}.{n}.weight"), &[e, e], 0.5);
            w.rand(&mut r, &format!("{p}.{n}.bias"), &[e], 0.1);
        }
        w.near_one(&mut r, &format!("{p}.attention.output.LayerNorm.weight"), e);
        w.rand(&mut r, &format!("{p}.attention.output.LayerNorm.bias"), &[e], 0.1);
        w.rand(&mut r, &format!("{p}.intermediate.dense.weight"), &[inter, e], 0.3);
        w.rand(&mut r, &format!("{p}.intermediate.dense.bias"), &[inter], 0.1);
        w.rand(&mut r, &format!("{p}.output.dense.weight"), &[e, inter], 0.3);
        w.rand(&mut r, &format!("{p}.output.dense.bias"), &[e], 0.1);
        w.near_one(&mut r, &format!("{p}.output.LayerNorm.weight"), e);
        w.rand(&mut r, &format!("{p}.output.LayerNorm.bias"), &[e], 0.1);
    }
    w.rand(&mut r, "pooler.dense.weight", &[e, e], 0.5);
    w.rand(&mut r, "pooler.dense.bias", &[e], 0.1);
    w.rand(&mut r, "classifier.weight", &[BERT_LABELS, e], 0.5);
    w.rand(&mut r, "classifier.bias", &[BERT_LABELS], 0.1);
    w
}

pub fn tiny_bert(seed: u64) -> std::sync::Arc<spex::model::LoadedModel> {
    let dir = tempfile::tempdir().unwrap();
    write_bert_hf(dir.path(), &bert_weights(seed));
    std::sync::Arc::new(spex::model::load(dir.path()).unwrap())
}

/// The encoder games of the device tests on `m`'s words of `text`, with one mean-ablated head
/// player: the cosine metric in attention and replace (`[MASK]`) mode, the class logit and the
/// class log-odds.
pub fn encoder_games(
    m: &std::sync::Arc<spex::model::LoadedModel>,
    text: &str,
) -> Vec<spex::value::encoder::EncoderValue> {
    use spex::value::encoder::{EncoderMetric, EncoderOptions, EncoderValue};
    use spex::value::players::{HeadMode, HeadPlayer, Prompt, TokenMode};
    let cosine = EncoderMetric::Cosine { reference: "the cat sat on a mat".into() };
    let games = [
        (cosine.clone(), TokenMode::Attention),
        (cosine, TokenMode::Replace(4)),
        (EncoderMetric::ClassLogit { class: 2 }, TokenMode::Attention),
        (EncoderMetric::ClassLogOdds { class: 1 }, TokenMode::Attention),
    ];
    let game = |(metric, token_mode)| {
        let opts = EncoderOptions {
            heads: vec![HeadPlayer { layer: 1, head: 2 }],
            token_mode,
            head_mode: HeadMode::Mean,
            ..EncoderOptions::new(metric)
        };
        EncoderValue::new(m.clone(), &Prompt::new(text), opts).unwrap()
    };
    games.into_iter().map(game).collect()
}

pub fn write_bert_hf(dir: &Path, w: &Tensors) {
    let (e, h, layers, inter, pos) = BERT;
    std::fs::create_dir_all(dir).unwrap();
    let cfg = json!({"model_type": "bert", "hidden_size": e, "num_attention_heads": h, "num_hidden_layers": layers,
        "intermediate_size": inter, "max_position_embeddings": pos, "vocab_size": BERT_WORDS.len(), "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "id2label": {"0": "neg", "1": "neu", "2": "pos"}});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    w.save_safetensors(&dir.join("model.safetensors"));
    std::fs::write(
        dir.join("tokenizer.json"),
        word_level_json(BERT_WORDS, "[UNK]", &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], true),
    )
    .unwrap();
}

/// Writes BERT-named weights as a DistilBERT checkpoint (`distilbert.` prefix, `q_lin` …, no
/// token types, no classification head); drops the token-type embedding from `w` so that the
/// reference computes DistilBERT too.
pub fn write_distilbert_hf(dir: &Path, w: &mut Tensors) {
    let (e, h, layers, inter, pos) = BERT;
    std::fs::create_dir_all(dir).unwrap();
    for k in [
        "embeddings.token_type_embeddings.weight",
        "pooler.dense.weight",
        "pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    ] {
        w.0.remove(k);
    }
    let mut out = Tensors::default();
    for (k, (shape, data)) in &w.0 {
        let mut name = k.clone();
        for l in 0..layers {
            for (from, to) in [
                ("attention.self.query", "attention.q_lin"),
                ("attention.self.key", "attention.k_lin"),
                ("attention.self.value", "attention.v_lin"),
                ("attention.output.dense", "attention.out_lin"),
                ("attention.output.LayerNorm", "sa_layer_norm"),
                ("intermediate.dense", "ffn.lin1"),
                ("output.dense", "ffn.lin2"),
                ("output.LayerNorm", "output_layer_norm"),
            ] {
                let b = format!("encoder.layer.{l}.{from}.");
                if let Some(rest) = k.strip_prefix(&b) {
                    name = format!("transformer.layer.{l}.{to}.{rest}");
                }
            }
        }
        out.set(&format!("distilbert.{name}"), shape, data.clone());
    }
    let cfg = json!({"model_type": "distilbert", "dim": e, "n_heads": h, "n_layers": layers, "hidden_dim": inter,
        "max_position_embeddings": pos, "vocab_size": BERT_WORDS.len(), "activation": "gelu"});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    out.save_safetensors(&dir.join("model.safetensors"));
    std::fs::write(
        dir.join("tokenizer.json"),
        word_level_json(BERT_WORDS, "[UNK]", &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], true),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Naive f64 reference
// ---------------------------------------------------------------------------------------------

/// One forward by definition: tokens, their position ids, and per query the keys it attends.
#[derive(Clone, Debug)]
pub struct Seq {
    pub tokens: Vec<u32>,
    pub positions: Vec<usize>,
    pub keys: Vec<Vec<usize>>,
}

impl Seq {
    /// Plain causal (or full) attention over `tokens` at positions `0..n`.
    pub fn plain(tokens: &[u32], causal: bool) -> Self {
        let n = tokens.len();
        Seq {
            tokens: tokens.to_vec(),
            positions: (0..n).collect(),
            keys: (0..n).map(|i| if causal { (0..=i).collect() } else { (0..n).collect() }).collect(),
        }
    }

    /// Attention-mode masking by definition: full length, positions unchanged, query `i` attends
    /// the kept keys (`j <= i` if causal) and itself.
    pub fn hiding(tokens: &[u32], kept: &[bool], causal: bool) -> Self {
        let n = tokens.len();
        Seq {
            tokens: tokens.to_vec(),
            positions: (0..n).collect(),
            keys: (0..n).map(|i| (0..n).filter(|&j| (j == i || kept[j]) && (!causal || j <= i)).collect()).collect(),
        }
    }
}

/// Head ablation for the reference: the ablated (layer, head) pairs, and the value they take
/// (`None` = zero; `Some(fill)` = `fill[layer][head]`).
#[derive(Clone, Debug, Default)]
pub struct Ablate {
    pub heads: HashSet<(usize, usize)>,
    pub fill: Option<Vec<Vec<Vec<f64>>>>,
}

pub struct RefOut {
    /// Final hidden state per position (after the final norm for decoders).
    pub hidden: Vec<Vec<f64>>,
    /// Per layer, per head: the head's output averaged over all positions.
    pub head_means: Vec<Vec<Vec<f64>>>,
}

/// `W x (+ b)` for `W: [rows, cols]` row-major.
fn matvec(w: &[f32], rows: usize, x: &[f64], b: Option<&[f32]>) -> Vec<f64> {
    let cols = x.len();
    assert_eq!(w.len(), rows * cols);
    (0..rows)
        .map(|r| {
            let s: f64 = w[r * cols..(r + 1) * cols].iter().zip(x).map(|(&a, &b)| a as f64 * b).sum();
            s + b.map_or(0.0, |b| b[r] as f64)
        })
        .collect()
}

/// `x W (+ b)` for Conv1D `W: [in, out]`.
fn conv1d(w: &[f32], x: &[f64], out: usize, b: &[f32]) -> Vec<f64> {
    (0..out)
        .map(|o| x.iter().enumerate().map(|(i, &xi)| xi * w[i * out + o] as f64).sum::<f64>() + b[o] as f64)
        .collect()
}

fn rms_norm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, &g)| v * s * g as f64).collect()
}

fn layer_norm(x: &[f64], w: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let s = 1.0 / (var + eps).sqrt();
    x.iter().zip(w.iter().zip(b)).map(|(v, (&g, &b))| (v - mean) * s * g as f64 + b as f64).collect()
}

fn add(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7).
fn erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592)
            * t
            * (-x * x).exp();
    s * y
}

fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// Half-split RoPE on one head vector at position `p`.
fn rope_half(x: &mut [f64], p: usize, theta: f64) {
    let d = x.len();
    for i in 0..d / 2 {
        let a = p as f64 * theta.powf(-2.0 * i as f64 / d as f64);
        let (c, s) = (a.cos(), a.sin());
        let (x1, x2) = (x[i], x[i + d / 2]);
        x[i] = x1 * c - x2 * s;
        x[i + d / 2] = x2 * c + x1 * s;
    }
}

/// Multi-head attention by definition for every query; applies head ablation and records the
/// per-head outputs. `q[i][h]`, `k[j][g]`, `v[j][g]` per position and (kv) head.
fn attention(
    q: &[Vec<Vec<f64>>],
    k: &[Vec<Vec<f64>>],
    v: &[Vec<Vec<f64>>],
    keys: &[Vec<usize>],
    layer: usize,
    ablate: &Ablate,
    means: &mut Vec<Vec<Vec<f64>>>,
) -> Vec<Vec<f64>> {
    let n = q.len();
    let h = q[0].len();
    let g = k[0].len();
    let d = q[0][0].len();
    let mut sum = vec![vec![0.0; d]; h];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut concat = Vec::with_capacity(h * d);
        for hh in 0..h {
            let kv = hh / (h / g);
            let scores: Vec<f64> = keys[i]
                .iter()
                .map(|&j| q[i][hh].iter().zip(&k[j][kv]).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt())
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
            let mut o = vec![0.0; d];
            for (&j, s) in keys[i].iter().zip(&scores) {
                let p = (s - m).exp() / z;
                for (oo, vv) in o.iter_mut().zip(&v[j][kv]) {
                    *oo += p * vv;
                }
            }
            add(&mut sum[hh], &o);
            if ablate.heads.contains(&(layer, hh)) {
                o = match &ablate.fill {
                    None => vec![0.0; d],
                    Some(f) => f[layer][hh].clone(),
                };
            }
            concat.extend(o);
        }
        out.push(concat);
    }
    means.push(sum.into_iter().map(|s| s.into_iter().map(|x| x / n as f64).collect()).collect());
    out
}

fn split_heads(x: &[f64], heads: usize) -> Vec<Vec<f64>> {
    let d = x.len() / heads;
    (0..heads).map(|h| x[h * d..(h + 1) * d].to_vec()).collect()
}

pub fn llama_forward(s: &LlamaSpec, w: &Tensors, seq: &Seq, ablate: &Ablate) -> RefOut {
    let (e, d) = (s.hidden, s.head_dim());
    let emb = w.get("model.embed_tokens.weight");
    let mut x: Vec<Vec<f64>> = seq
        .tokens
        .iter()
        .map(|&t| emb[t as usize * e..(t as usize + 1) * e].iter().map(|&v| v as f64).collect())
        .collect();
    let mut means = Vec::new();
    for l in 0..s.layers {
        let p = |n: &str| format!("model.layers.{l}.{n}");
        let bias = |n: &str| if s.qkv_bias { Some(w.get(&p(n))) } else { None };
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for (i, xi) in x.iter().enumerate() {
            let hn = rms_norm(xi, w.get(&p("input_layernorm.weight")), s.eps);
            let mut qi = split_heads(
                &matvec(w.get(&p("self_attn.q_proj.weight")), s.heads * d, &hn, bias("self_attn.q_proj.bias")),
                s.heads,
            );
            let mut ki = split_heads(
                &matvec(w.get(&p("self_attn.k_proj.weight")), s.kv_heads * d, &hn, bias("self_attn.k_proj.bias")),
                s.kv_heads,
            );
            let vi = split_heads(
                &matvec(w.get(&p("self_attn.v_proj.weight")), s.kv_heads * d, &hn, bias("self_attn.v_proj.bias")),
                s.kv_heads,
            );
            for hv in qi.iter_mut().chain(ki.iter_mut()) {
                rope_half(hv, seq.positions[i], s.theta);
            }
            q.push(qi);
            k.push(ki);
            v.push(vi);
        }
        let a = attention(&q, &k, &v, &seq.keys, l, ablate, &mut means);
        for (xi, ai) in x.iter_mut().zip(&a) {
            add(xi, &matvec(w.get(&p("self_attn.o_proj.weight")), e, ai, None));
            let hn = rms_norm(xi, w.get(&p("post_attention_layernorm.weight")), s.eps);
            let g = matvec(w.get(&p("mlp.gate_proj.weight")), s.inter, &hn, None);
            let u = matvec(w.get(&p("mlp.up_proj.weight")), s.inter, &hn, None);
            let act: Vec<f64> = g.iter().zip(&u).map(|(g, u)| silu(*g) * u).collect();
            add(xi, &matvec(w.get(&p("mlp.down_proj.weight")), e, &act, None));
        }
    }
    let hidden = x.iter().map(|xi| rms_norm(xi, w.get("model.norm.weight"), s.eps)).collect();
    RefOut { hidden, head_means: means }
}

pub fn gpt2_forward(w: &Tensors, seq: &Seq, ablate: &Ablate) -> RefOut {
    let (e, h, layers, _) = GPT2;
    let wte = w.get("wte.weight");
    let wpe = w.get("wpe.weight");
    let mut x: Vec<Vec<f64>> = seq
        .tokens
        .iter()
        .zip(&seq.positions)
        .map(|(&t, &p)| (0..e).map(|c| wte[t as usize * e + c] as f64 + wpe[p * e + c] as f64).collect())
        .collect();
    let mut means = Vec::new();
    for l in 0..layers {
        let p = |n: &str| format!("h.{l}.{n}");
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for xi in &x {
            let hn = layer_norm(xi, w.get(&p("ln_1.weight")), w.get(&p("ln_1.bias")), 1e-5);
            let qkv = conv1d(w.get(&p("attn.c_attn.weight")), &hn, 3 * e, w.get(&p("attn.c_attn.bias")));
            q.push(split_heads(&qkv[..e], h));
            k.push(split_heads(&qkv[e..2 * e], h));
            v.push(split_heads(&qkv[2 * e..], h));
        }
        let a = attention(&q, &k, &v, &seq.keys, l, ablate, &mut means);
        for (xi, ai) in x.iter_mut().zip(&a) {
            add(xi, &conv1d(w.get(&p("attn.c_proj.weight")), ai, e, w.get(&p("attn.c_proj.bias"))));
            let hn = layer_norm(xi, w.get(&p("ln_2.weight")), w.get(&p("ln_2.bias")), 1e-5);
            let m: Vec<f64> = conv1d(w.get(&p("mlp.c_fc.weight")), &hn, 4 * e, w.get(&p("mlp.c_fc.bias")))
                .into_iter()
                .map(gelu_tanh)
                .collect();
            add(xi, &conv1d(w.get(&p("mlp.c_proj.weight")), &m, e, w.get(&p("mlp.c_proj.bias"))));
        }
    }
    let hidden = x.iter().map(|xi| layer_norm(xi, w.get("ln_f.weight"), w.get("ln_f.bias"), 1e-5)).collect();
    RefOut { hidden, head_means: means }
}

/// BERT by definition; without `embeddings.token_type_embeddings.weight` in `w` it is DistilBERT
/// (same blocks, no token types).
pub fn bert_forward(w: &Tensors, seq: &Seq, ablate: &Ablate) -> RefOut {
    let (e, h, layers, inter, _) = BERT;
    let eps = 1e-12;
    let zeros = vec![0f32; e];
    let (we, pe, te) = (
        w.get("embeddings.word_embeddings.weight"),
        w.get("embeddings.position_embeddings.weight"),
        if w.has("embeddings.token_type_embeddings.weight") {
            w.get("embeddings.token_type_embeddings.weight")
        } else {
            &zeros
        },
    );
    let mut x: Vec<Vec<f64>> = seq
        .tokens
        .iter()
        .zip(&seq.positions)
        .map(|(&t, &p)| {
            let v: Vec<f64> =
                (0..e).map(|c| we[t as usize * e + c] as f64 + pe[p * e + c] as f64 + te[c] as f64).collect();
            layer_norm(&v, w.get("embeddings.LayerNorm.weight"), w.get("embeddings.LayerNorm.bias"), eps)
        })
        .collect();
    let mut means = Vec::new();
    for l in 0..layers {
        let p = |n: &str| format!("encoder.layer.{l}.{n}");
        let lin = |n: &str, rows: usize, xi: &[f64]| {
            matvec(w.get(&p(&format!("{n}.weight"))), rows, xi, Some(w.get(&p(&format!("{n}.bias")))))
        };
        let q: Vec<_> = x.iter().map(|xi| split_heads(&lin("attention.self.query", e, xi), h)).collect();
        let k: Vec<_> = x.iter().map(|xi| split_heads(&lin("attention.self.key", e, xi), h)).collect();
        let v: Vec<_> = x.iter().map(|xi| split_heads(&lin("attention.self.value", e, xi), h)).collect();
        let a = attention(&q, &k, &v, &seq.keys, l, ablate, &mut means);
        for (xi, ai) in x.iter_mut().zip(&a) {
            let mut y = xi.clone();
            add(&mut y, &lin("attention.output.dense", e, ai));
            let y = layer_norm(
                &y,
                w.get(&p("attention.output.LayerNorm.weight")),
                w.get(&p("attention.output.LayerNorm.bias")),
                eps,
            );
            let m: Vec<f64> = lin("intermediate.dense", inter, &y).into_iter().map(gelu_erf).collect();
            let mut z = y.clone();
            add(&mut z, &lin("output.dense", e, &m));
            *xi = layer_norm(&z, w.get(&p("output.LayerNorm.weight")), w.get(&p("output.LayerNorm.bias")), eps);
        }
    }
    RefOut { hidden: x, head_means: means }
}

/// `log softmax(head · h)[t]`.
pub fn log_prob(head: &[f32], h: &[f64], t: u32) -> f64 {
    let logits = matvec(head, head.len() / h.len(), h, None);
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
    logits[t as usize] - lse
}

pub fn logits(head: &[f32], h: &[f64]) -> Vec<f64> {
    matvec(head, head.len() / h.len(), h, None)
}

/// Mean over the chosen positions, L2-normalised (the mean's scale cancels).
pub fn mean_pool(hidden: &[Vec<f64>], pick: &[bool]) -> Vec<f64> {
    let e = hidden[0].len();
    let mut m = vec![0.0; e];
    for (h, &p) in hidden.iter().zip(pick) {
        if p {
            add(&mut m, h);
        }
    }
    let norm = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    m.iter().map(|x| x / norm).collect()
}

pub fn bert_class_logits(w: &Tensors, cls: &[f64]) -> Vec<f64> {
    let e = cls.len();
    let z: Vec<f64> = matvec(w.get("pooler.dense.weight"), e, cls, Some(w.get("pooler.dense.bias")))
        .into_iter()
        .map(f64::tanh)
        .collect();
    matvec(w.get("classifier.weight"), BERT_LABELS, &z, Some(w.get("classifier.bias")))
}

/// `|got - want| <= tol * max(1, |want|)`, with a message.
pub fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{what}: got {got}, want {want} (diff {:e}, tol {tol:e})",
        (got - want).abs()
    );
}

/// Random masks with each bit kept with probability 1/2, plus the all-ones and all-zeros masks.
pub fn random_masks(n: usize, count: usize, seed: u64) -> spex::mask::MaskBatch {
    let mut r = rng(seed);
    let mut b = spex::mask::MaskBatch::new(n);
    b.push(spex::mask::Mask::ones(n).as_ref()).unwrap();
    b.push(spex::mask::Mask::zeros(n).as_ref()).unwrap();
    for _ in 0..count {
        let bits: Vec<bool> = (0..n).map(|_| r.random_bool(0.5)).collect();
        b.push(spex::mask::Mask::from_bools(&bits).as_ref()).unwrap();
    }
    b
}
