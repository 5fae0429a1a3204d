//! The device path's forms of masked inputs give the same values as the compacted rows of the CPU
//! path: the full-length form (every row keeps all positions, masking lives in the attention
//! bias, token ids and head gates that the CUDA kernels build from the bit-packed masks) and the
//! device-compacted form (rows right-aligned with per-row positions, built by `compact_rows_*`).
//! Runs on the CPU (no GPU needed): it checks the formulations the device path relies on,
//! through the CPU twins of the kernels (`Layout::build_full_length`, `Layout::build_compacted`),
//! and that ids and positions handed over as device tensors change nothing.

mod models_common;

use candle_core::{Device, Tensor};
use models_common::*;
use spex::model::{Ids, ModelError, ModelInput};
use spex::value::lm::{LmMetric, LmOptions, LmValue, Target};
use spex::value::players::{HeadMode, HeadPlayer, Prompt, TokenMode};

/// Full-length vs compacted, both `f32`: they differ only in the order of additions over the
/// (exactly zero) attention weights of hidden keys.
const TOL: f64 = 1e-5;

/// `got` equals `want` row by row within [`TOL`], and the masks move the values (or the
/// comparison proves nothing).
fn assert_same_values(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(*g, *w, TOL, &format!("{what} row {r}"));
    }
    let spread =
        want.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - want.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(spread > 1e-3, "{what}: values barely vary ({spread})");
}

#[test]
fn full_length_form_equals_compacted_rows() {
    let m = tiny_llama(11);
    let target = Target::Tokens(m.encode(" the mat").unwrap());
    let heads = vec![HeadPlayer { layer: 0, head: 1 }, HeadPlayer { layer: 1, head: 3 }];
    for (mode, head_mode) in [
        (TokenMode::Attention, HeadMode::Zero),
        (TokenMode::Attention, HeadMode::Mean),
        (TokenMode::Replace(3), HeadMode::Zero),
    ] {
        let opts = LmOptions {
            heads: heads.clone(),
            token_mode: mode,
            head_mode,
            target: target.clone(),
            ..Default::default()
        };
        let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on the mat").with_prefix("a dog "), opts).unwrap();
        let masks = random_masks(f.n_players(), 16, 5);
        let want = f.evaluate_masks(masks.as_slice()).unwrap();
        let got = f.evaluate_full_length(masks.as_slice()).unwrap();
        assert_same_values(&got, &want, &format!("{mode:?}/{head_mode:?}"));
    }
}

#[test]
fn remove_mode_has_no_full_length_form() {
    let m = tiny_llama(12);
    let opts = LmOptions { token_mode: TokenMode::Remove, target: Target::Tokens(vec![5]), ..Default::default() };
    let f = LmValue::new(m, &Prompt::new("the cat").with_prefix("a "), opts).unwrap();
    let masks = random_masks(f.n_players(), 2, 1);
    assert!(f.evaluate_full_length(masks.as_slice()).is_err());
}

/// Token ids already on the model's device ([`Ids::Device`], as the GPU path passes them:
/// a flat tensor in replace mode, the base row broadcast over the batch in attention mode; CPU
/// tensors here) give exactly the hidden states of the same ids on the host. A device tensor of
/// the wrong length or dtype is refused, not read out of bounds.
#[test]
fn device_token_ids_equal_host_ids() {
    let m = tiny_llama(13);
    let hidden = |input: &ModelInput| -> Vec<f32> {
        m.model.forward(input).unwrap().hidden.flatten_all().unwrap().to_vec1().unwrap()
    };
    for mode in [TokenMode::Attention, TokenMode::Replace(3)] {
        let opts = LmOptions { token_mode: mode, target: Target::Tokens(vec![5]), ..Default::default() };
        let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on").with_prefix("a "), opts).unwrap();
        let masks = random_masks(f.n_players(), 6, 2);
        let host = f.layout().build_full_length(masks.as_slice()).unwrap();
        let (b, len, ids) = (host.batch, host.len, host.tokens.host().unwrap().to_vec());
        let on_device = match mode {
            TokenMode::Attention => {
                let row = Tensor::from_slice(&f.layout().ids, (1, len), &Device::Cpu).unwrap();
                row.broadcast_as((b, len)).unwrap()
            }
            _ => Tensor::from_vec(ids.clone(), b * len, &Device::Cpu).unwrap(),
        };
        let with = |t: Tensor| ModelInput { tokens: Ids::Device(t), ..host.clone() };
        assert_eq!(hidden(&with(on_device)), hidden(&host), "{mode:?}");
        let short = Tensor::from_slice(&ids[1..], b * len - 1, &Device::Cpu).unwrap();
        assert!(matches!(m.model.forward(&with(short)), Err(ModelError::Input(_))), "{mode:?}: short ids");
        let floats = Tensor::zeros(b * len, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(m.model.forward(&with(floats)), Err(ModelError::Input(_))), "{mode:?}: f32 ids");
    }
}

/// The device-compacted form (right-aligned rows of `compacted_len` slots, per-row positions)
/// against the CPU path's right-padded compacted rows: attention and remove mode, target
/// log-probabilities and logit differences, with and without head players (without, behind the
/// prefix cache).
#[test]
fn device_compacted_form_equals_compacted_rows() {
    let m = tiny_llama(14);
    let target = Target::Tokens(m.encode(" the mat").unwrap());
    let (cat, mat) = (m.encode(" cat").unwrap()[0], m.encode(" mat").unwrap()[0]);
    let heads = vec![HeadPlayer { layer: 0, head: 1 }, HeadPlayer { layer: 1, head: 3 }];
    for (mode, metric, heads, head_mode) in [
        (TokenMode::Attention, LmMetric::TargetLogProb, vec![], HeadMode::Zero),
        (TokenMode::Attention, LmMetric::TargetLogProb, heads.clone(), HeadMode::Mean),
        (TokenMode::Attention, LmMetric::LogitDiff { a: cat, b: mat }, heads.clone(), HeadMode::Zero),
        (TokenMode::Remove, LmMetric::TargetLogProb, heads.clone(), HeadMode::Zero),
        (TokenMode::Remove, LmMetric::LogitDiff { a: cat, b: mat }, vec![], HeadMode::Zero),
    ] {
        let what = format!("{mode:?} {metric:?} {} heads", heads.len());
        let opts =
            LmOptions { heads, head_mode, token_mode: mode, metric, target: target.clone(), ..Default::default() };
        let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on the mat by the door").with_prefix("a dog "), opts)
            .unwrap();
        // Without head players the rows run behind the prefix cache, as on the device.
        assert_eq!(f.cached_prefix() > 0, f.layout().heads.is_empty(), "{what}: prefix cache");
        // Without the all-ones mask, so that the rows compact (it is in the other tests).
        let all = random_masks(f.n_players(), 16, 6);
        let masks = all.as_slice().slice(1..all.len());
        let want = f.evaluate_masks(masks).unwrap();
        let got = f.evaluate_compacted(masks).unwrap();
        assert_same_values(&got, &want, &what);
        let lay = f.layout();
        let slots = lay.compacted_len(masks);
        assert!(slots < lay.ids.len(), "{what}: nothing compacted ({slots} of {} slots)", lay.ids.len());
    }
    let opts = LmOptions { token_mode: TokenMode::Replace(3), target, ..Default::default() };
    let f = LmValue::new(m, &Prompt::new("the cat").with_prefix("a "), opts).unwrap();
    assert!(f.evaluate_compacted(random_masks(f.n_players(), 2, 1).as_slice()).is_err(), "replace mode");
}

/// Logit differences through the full-length form, attention and replace mode, behind the
/// prefix cache.
#[test]
fn full_length_form_reads_logit_differences() {
    let m = tiny_llama(16);
    let (cat, mat) = (m.encode(" cat").unwrap()[0], m.encode(" mat").unwrap()[0]);
    for mode in [TokenMode::Attention, TokenMode::Replace(3)] {
        let opts = LmOptions { token_mode: mode, metric: LmMetric::LogitDiff { a: cat, b: mat }, ..Default::default() };
        let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on the").with_prefix("a dog "), opts).unwrap();
        assert!(f.cached_prefix() > 0, "{mode:?}: rows behind the prefix cache");
        let masks = random_masks(f.n_players(), 12, 7);
        let want = f.evaluate_masks(masks.as_slice()).unwrap();
        let got = f.evaluate_full_length(masks.as_slice()).unwrap();
        assert_same_values(&got, &want, &format!("{mode:?}"));
        assert!(want.iter().any(|&v| (v - want[0]).abs() > 1e-3), "{mode:?}: values barely vary");
    }
}

/// Positions already on the model's device ([`Ids::Device`], per row as `compact_rows_*` writes
/// them; CPU tensors here) give exactly the hidden states of the same positions on the host, for
/// RoPE (Llama) and learned positions (GPT-2); a wrong length or dtype is refused.
#[test]
fn device_positions_equal_host_positions() {
    for m in [tiny_llama(15), tiny_gpt2(15)] {
        let opts = LmOptions { target: Target::Tokens(vec![5]), ..Default::default() };
        let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on").with_prefix("a "), opts).unwrap();
        let masks = random_masks(f.n_players(), 6, 3);
        let lay = f.layout();
        let slots = lay.compacted_len(masks.as_slice());
        let host = lay.build_compacted(masks.as_slice(), slots).unwrap();
        let (b, len) = (host.batch, host.len);
        let pos = host.positions.host().unwrap().to_vec();
        assert!(pos.chunks(len).any(|row| row != &pos[..len]), "rows must differ in positions");
        let hidden = |input: &ModelInput| -> Vec<f32> {
            m.model.forward(input).unwrap().hidden.flatten_all().unwrap().to_vec1().unwrap()
        };
        let with = |t: Tensor| ModelInput { positions: Ids::Device(t), ..host.clone() };
        let ids = Tensor::from_slice(host.tokens.host().unwrap(), b * len, &Device::Cpu).unwrap();
        let on_device =
            ModelInput { tokens: Ids::Device(ids), ..with(Tensor::from_slice(&pos, b * len, &Device::Cpu).unwrap()) };
        assert_eq!(hidden(&on_device), hidden(&host));
        let short = Tensor::from_slice(&pos[1..], b * len - 1, &Device::Cpu).unwrap();
        assert!(matches!(m.model.forward(&with(short)), Err(ModelError::Input(_))), "short positions");
        let floats = Tensor::zeros(b * len, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(m.model.forward(&with(floats)), Err(ModelError::Input(_))), "f32 positions");
    }
}

/// Behind a prefix cache, an attention bias in bf16 (as the `compact_rows_*` kernels build it)
/// gives exactly the hidden states of the same bias in f32: the prefix's open key columns take
/// the caller's dtype.
#[test]
fn a_bf16_bias_behind_a_prefix_equals_the_f32_bias() {
    use candle_core::DType;
    let m = tiny_llama(17);
    let opts = LmOptions { target: Target::Tokens(vec![5]), ..Default::default() };
    let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on").with_prefix("a dog "), opts).unwrap();
    let skip = f.cached_prefix();
    assert!(skip > 0, "no prefix to cache");
    let rows = f.layout().after(skip).unwrap();
    let masks = random_masks(f.n_players(), 6, 4);
    let mut input = rows.build_compacted(masks.as_slice(), rows.compacted_len(masks.as_slice())).unwrap();
    input.positions = Ids::Host(input.positions.host().unwrap().iter().map(|p| p + skip as u32).collect());
    input.past = Some(std::sync::Arc::new(m.model.prefill(&f.layout().ids[..skip]).unwrap()));
    let hidden = |input: &ModelInput| -> Vec<f32> {
        m.model.forward(input).unwrap().hidden.flatten_all().unwrap().to_vec1().unwrap()
    };
    let bf16 = input.attn_bias.as_ref().unwrap().to_dtype(DType::BF16).unwrap();
    assert_eq!(hidden(&ModelInput { attn_bias: Some(bf16), ..input.clone() }), hidden(&input));
}
