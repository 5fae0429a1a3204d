//! Random-weight Llamas and BERTs of named shapes (`spex bench throughput --shape`, `benches/gpu.rs`): the
//! parameter count against real checkpoints and published sizes, the drawn weights' statistics,
//! and the benchmark inputs built on them.

mod models_common;

use candle_core::{DType, Device, D};
use models_common::*;
use spex::bench::BenchModel;
use spex::model::llama::{Llama, LlamaConfig, SHAPES};
use spex::model::{Model, ModelInput};
use spex::value::setup::ComputeDevice;

fn loaded_config(spec: &LlamaSpec, w: &Tensors) -> LlamaConfig {
    let dir = tempfile::tempdir().unwrap();
    write_llama_hf(dir.path(), spec, w, &byte_bpe());
    match spex::model::load(dir.path()).unwrap().model {
        Model::Llama(m) => m.config().clone(),
        _ => panic!("a Llama checkpoint loads as a Llama"),
    }
}

#[test]
fn parameter_counts_equal_checkpoints_and_published_sizes() {
    for qkv_bias in [false, true] {
        let spec = LlamaSpec { qkv_bias, ..LlamaSpec::tiny(byte_bpe().tokens.len()) };
        let w = llama_weights(&spec, 1);
        let stored: usize = w.0.values().map(|(_, data)| data.len()).sum();
        assert_eq!(loaded_config(&spec, &w).parameters(), stored, "qkv bias {qkv_bias}");
    }
    // The published sizes of SmolLM2-135M and Llama 3.2 1B (tied embeddings both).
    assert_eq!(LlamaConfig::shape("smollm2-135m").unwrap().parameters(), 134_515_008);
    assert_eq!(LlamaConfig::shape("llama-1b").unwrap().parameters(), 1_235_814_400);
    assert!(SHAPES.iter().all(|s| LlamaConfig::shape(s).is_some()));
    assert!(LlamaConfig::shape("llama-7b").is_none());
}

/// A small config of the default model's kind, quick to draw on the CPU.
fn small() -> LlamaConfig {
    LlamaConfig { num_layers: 2, vocab_size: 3000, ..LlamaConfig::shape("smollm2-135m").unwrap() }
}

#[test]
fn random_weights_have_the_documented_statistics_and_dtype() {
    let m = Llama::random(small(), &Device::Cpu, DType::F32).unwrap();
    // Matrices N(0, 0.02²): the (tied) LM head of 3000 × 576 draws.
    let head = m.lm_head();
    let mean = head.mean_all().unwrap().to_scalar::<f32>().unwrap();
    let std = head.sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
    assert!(mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3, "mean {mean}, std {std}");
    // Norm weights 1: the final hidden states have unit RMS at every position.
    let ids: Vec<u32> = (0..12).map(|i| i * 37).collect();
    let input = ModelInput::single(&ids);
    let hidden = Model::Llama(m).forward(&input).unwrap().hidden;
    let rms = hidden.sqr().unwrap().mean(D::Minus1).unwrap().sqrt().unwrap().flatten_all().unwrap();
    for r in rms.to_vec1::<f32>().unwrap() {
        assert!((r - 1.0).abs() < 1e-3, "RMS {r}");
    }
    let bf16 = Llama::random(small(), &Device::Cpu, DType::BF16).unwrap();
    assert_eq!(bf16.lm_head().dtype(), DType::BF16);
    let biased = Llama::random(LlamaConfig { attention_bias: true, ..small() }, &Device::Cpu, DType::F32).unwrap();
    assert!(biased.config().attention_bias);
}

#[test]
fn bench_inputs_on_random_weights_are_fixed_per_length() {
    let err = BenchModel::random("gpt-5", ComputeDevice::Cpu).err().unwrap().to_string();
    assert!(err.contains("smollm2-135m, llama-1b, bert-base"), "{err}");
    let model = BenchModel::random("smollm2-135m", ComputeDevice::Cpu).unwrap();
    let (a, b) = (model.value(10).unwrap(), model.value(10).unwrap());
    assert_eq!(a.player_labels().len(), 10);
    assert_eq!(a.target_tokens().len(), 4);
    assert_eq!(
        (a.layout().ids.clone(), a.target_tokens().to_vec()),
        (b.layout().ids.clone(), b.target_tokens().to_vec())
    );
    assert_ne!(model.value(11).unwrap().layout().ids[..10], a.layout().ids[..]);
    // Every id is in the vocabulary; the values are finite log-probabilities.
    assert!(a.layout().ids.iter().chain(a.target_tokens()).all(|&t| t < 49_152));
    let masks = random_masks(10, 3, 4);
    let v = a.evaluate_masks(masks.as_slice()).unwrap();
    assert!(v.iter().all(|x| x.is_finite() && *x < 0.0), "{v:?}");
    // A template: 6 fixed tokens before the same 10 players, 5 of them run once; the cache off
    // runs them in every row and gives the same values (the same weights: each `random` draws
    // new ones).
    let (once, rows) = (model.with_template(6, true), model.with_template(6, false));
    let (t, u) = (once.value(10).unwrap(), rows.value(10).unwrap());
    assert_eq!((t.player_labels().len(), t.layout().ids.len(), t.cached_prefix(), u.cached_prefix()), (10, 20, 5, 0));
    assert!(t.layout().owners[..6].iter().all(Option::is_none) && t.layout().owners[6..16].iter().all(Option::is_some));
    let (x, y) = (t.evaluate_masks(masks.as_slice()).unwrap(), u.evaluate_masks(masks.as_slice()).unwrap());
    for (x, y) in x.iter().zip(&y) {
        assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{x} vs {y}");
    }
}

#[test]
fn bert_parameter_counts_equal_the_checkpoint_and_the_published_size() {
    use spex::model::bert::{BertConfig, SHAPES};
    let w = bert_weights(1);
    let stored: usize = w.0.values().map(|(_, data)| data.len()).sum();
    let dir = tempfile::tempdir().unwrap();
    write_bert_hf(dir.path(), &w);
    let Model::Bert(m) = spex::model::load(dir.path()).unwrap().model else {
        panic!("a BERT checkpoint loads as BERT")
    };
    assert_eq!(m.config().parameters(), stored);
    // bert-base-uncased: 109 482 240 with its pooler; the two-class head adds 768 × 2 + 2.
    let base = BertConfig::shape("bert-base").unwrap();
    assert_eq!(base.parameters(), 109_482_240 + 1_538);
    assert_eq!(BertConfig { labels: Vec::new(), ..base }.parameters(), 109_482_240);
    assert!(SHAPES.iter().all(|s| BertConfig::shape(s).is_some()));
    assert!(BertConfig::shape("bert-large").is_none());
}

#[test]
fn random_bert_weights_have_the_documented_statistics() {
    use spex::model::bert::{Bert, BertConfig};
    let cfg = BertConfig { num_layers: 2, vocab_size: 3000, ..BertConfig::shape("bert-base").unwrap() };
    let m = Bert::random(cfg.clone(), &Device::Cpu, DType::F32).unwrap();
    assert_eq!((m.config(), m.num_classes()), (&cfg, Some(2)));
    // LayerNorm weights 1, biases 0: every final hidden state has mean 0 and unit variance.
    let ids: Vec<u32> = (0..12).map(|i| i * 37).collect();
    let hidden = Model::Bert(m).forward(&ModelInput::single(&ids)).unwrap().hidden;
    let mean = hidden.mean(D::Minus1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let var = hidden.sqr().unwrap().mean(D::Minus1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (m, v) in mean.iter().zip(&var) {
        assert!(m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3, "mean {m}, variance {v}");
    }
    // Drawn in the dtype asked for: the forward runs in it.
    let bf16 = Model::Bert(Bert::random(cfg, &Device::Cpu, DType::BF16).unwrap());
    assert_eq!(bf16.forward(&ModelInput::single(&ids)).unwrap().hidden.dtype(), DType::BF16);
}

#[test]
fn bench_inputs_on_a_random_bert_score_its_head() {
    let model = BenchModel::random("bert-base", ComputeDevice::Cpu).unwrap();
    assert!(model.value(10).is_err(), "an encoder has no LM target");
    assert!(BenchModel::random("bert-base", ComputeDevice::Cpu)
        .unwrap()
        .with_template(3, true)
        .encoder_value(10)
        .is_err());
    let (a, b) = (model.encoder_value(10).unwrap(), model.encoder_value(10).unwrap());
    assert_eq!(a.player_labels().len(), 10);
    // Position 0 is fixed (the head reads it); the ten players follow, the same ids every time.
    assert_eq!(a.layout().owners[0], None);
    assert_eq!(a.layout().ids.len(), 11);
    assert_eq!(a.layout().ids, b.layout().ids);
    let masks = random_masks(10, 3, 4);
    let v = a.evaluate_masks(masks.as_slice()).unwrap();
    assert!(v.iter().all(|x| x.is_finite()), "{v:?}");
    let mut game = model.game_on(10, ComputeDevice::Cpu).unwrap();
    assert_eq!(game.evaluate(masks.as_slice()).unwrap(), v);
}
