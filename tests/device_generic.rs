//! The forwards of every family (Llama, GPT-2, BERT) are device- and dtype-generic (`Model::to_device`): the
//! same model moved to the CPU in `f32` gives bit-identical values, and in `bf16` — the GPU
//! path's weight type, checked here on the CPU, which implements the same ops — values within a
//! documented tolerance of `f32`.

mod models_common;

use std::sync::Arc;

use candle_core::{DType, Device};
use models_common::*;
use spex::model::LoadedModel;
use spex::value::lm::{LmOptions, LmValue, Target};
use spex::value::players::{HeadMode, HeadPlayer, Prompt, TokenMode};

/// bf16 weights and activations vs f32, relative to max(1, |value|) on summed target
/// log-probabilities of a 2-layer model: bf16 keeps 8 significant bits (relative rounding 2^-9
/// per element); the largest differences seen on these inputs are 0.0057 (Llama) and 0.0047
/// (GPT-2), the bound ~3x that.
const BF16_TOL: f64 = 0.02;

/// Values of `m` on a prompt with a prefix, moved to the CPU in f32 (must be identical) and in bf16 (within
/// [`BF16_TOL`]), with mean ablation of `heads` so the head fill moves too.
fn check_moves(m: &Arc<LoadedModel>, heads: Vec<HeadPlayer>) {
    let prompt = Prompt::new("the cat sat on the mat").with_prefix("a dog ");
    let opts = LmOptions {
        heads,
        token_mode: TokenMode::Attention,
        head_mode: HeadMode::Mean,
        target: Target::Tokens(m.encode(" the mat").unwrap()),
        ..Default::default()
    };
    let eval = |lm: Arc<LoadedModel>| {
        let f = LmValue::new(lm, &prompt, opts.clone()).unwrap();
        let masks = random_masks(f.n_players(), 12, 9);
        f.evaluate_masks(masks.as_slice()).unwrap()
    };
    let want = eval(m.clone());
    let same = eval(Arc::new(m.to_device(&Device::Cpu, DType::F32).unwrap()));
    assert_eq!(same, want, "moving to the same device and dtype must change nothing");
    let bf16 = eval(Arc::new(m.to_device(&Device::Cpu, DType::BF16).unwrap()));
    let mut worst = 0f64;
    for (r, (g, w)) in bf16.iter().zip(&want).enumerate() {
        assert_close(*g, *w, BF16_TOL, &format!("bf16 row {r}"));
        worst = worst.max((g - w).abs() / w.abs().max(1.0));
    }
    assert!(worst > 0.0, "bf16 values equal f32 exactly: the weights were not converted");
    eprintln!("largest relative bf16 - f32 difference: {worst:.5}");
}

#[test]
fn llama_moved_to_f32_is_identical_and_to_bf16_is_close() {
    check_moves(&tiny_llama(13), vec![HeadPlayer { layer: 1, head: 2 }]);
}

#[test]
fn gpt2_moved_to_f32_is_identical_and_to_bf16_is_close() {
    check_moves(&tiny_gpt2(3), vec![HeadPlayer { layer: 0, head: 3 }, HeadPlayer { layer: 1, head: 0 }]);
}

/// bf16 vs f32 for an encoder, in absolute terms: a cosine similarity (at most 1 in size) and
/// class logits and log-odds of a 2-layer random BERT (a few units). The largest differences
/// seen here are 0.0028 (cosine) and 0.021 (log-odds); the bound is about 3x the larger. The GPU
/// tests use it.
pub const ENCODER_BF16_TOL: f64 = 0.06;

/// An encoder game moved to the CPU in f32 gives the same values (in batches of any size), and in
/// bf16 values within [`ENCODER_BF16_TOL`]: the cosine metric in attention and replace mode with
/// mean-ablated head players, and the classification head's logit and log-odds.
#[test]
fn encoder_moved_to_f32_is_identical_and_to_bf16_is_close() {
    for (g, f) in encoder_games(&tiny_bert(3), "the cat sat on the mat").iter().enumerate() {
        let masks = random_masks(f.n_players(), 12, 5);
        let want = f.evaluate_masks(masks.as_slice()).unwrap();
        let tokens = f.prompt().ids.len();
        let same = f.to_device(&Device::Cpu, DType::F32, 16_384).unwrap();
        assert_eq!(same.evaluate_masks(masks.as_slice()).unwrap(), want, "game {g}: f32 moved");
        // Smaller batches pad their rows to other lengths: f32 rounding apart, the same values.
        let small = f.to_device(&Device::Cpu, DType::F32, 5 * tokens).unwrap();
        assert_eq!(small.batch(), 5);
        for (x, w) in small.evaluate_masks(masks.as_slice()).unwrap().iter().zip(&want) {
            assert_close(*x, *w, 1e-5, &format!("game {g}: batches of 5"));
        }
        // Two copies with each batch split between them ("devices"): the same values.
        let copies = (0..2).map(|_| f.to_device(&Device::Cpu, DType::F32, 16_384).unwrap()).collect();
        let mut split = spex::value::PerDevice::new(copies).unwrap();
        let joined = spex::value::ValueFunction::evaluate(&mut split, masks.as_slice()).unwrap();
        for (x, w) in joined.iter().zip(&want) {
            assert_close(*x, *w, 1e-5, &format!("game {g}: split across two copies"));
        }
        let bf16 = f.to_device(&Device::Cpu, DType::BF16, 64 * tokens).unwrap();
        let got = bf16.evaluate_masks(masks.as_slice()).unwrap();
        let worst = got.iter().zip(&want).map(|(x, w)| (x - w).abs()).fold(0f64, f64::max);
        assert!(worst > 0.0 && worst <= ENCODER_BF16_TOL, "game {g}: largest difference {worst}");
        eprintln!("encoder game {g}: largest bf16 - f32 difference {worst:.5}");
    }
}

/// bf16 vs f32 for a logit difference, relative to max(1, |value|): the difference cancels two
/// logits each rounded at their own magnitude (about 10–30 on these random 2-layer models, whose
/// weights are far larger than a trained model's), so its error is that of a logit, not of the
/// difference. The largest seen here is 0.097; the bound is about 2.5x that. The GPU tests use it.
pub const LOGIT_DIFF_BF16_TOL: f64 = 0.25;

/// The other games the GPU path runs, in bf16 on the CPU against f32: logit differences
/// (attention mode, within [`LOGIT_DIFF_BF16_TOL`]) and target log-probabilities with tokens
/// removed (within [`BF16_TOL`]), for both families.
#[test]
fn logit_differences_and_removed_tokens_in_bf16_stay_close() {
    use spex::value::lm::LmMetric;
    for m in [tiny_llama(21), tiny_gpt2(21)] {
        let (cat, mat) = (m.encode(" cat").unwrap()[0], m.encode(" mat").unwrap()[0]);
        let games = [
            (TokenMode::Attention, LmMetric::LogitDiff { a: cat, b: mat }, Target::Greedy { max_new_tokens: 1 }),
            (TokenMode::Remove, LmMetric::TargetLogProb, Target::Tokens(m.encode(" the mat").unwrap())),
        ];
        for ((mode, metric, target), tol) in games.into_iter().zip([LOGIT_DIFF_BF16_TOL, BF16_TOL]) {
            let opts = LmOptions { token_mode: mode, metric: metric.clone(), target, ..Default::default() };
            let prompt = Prompt::new("the cat sat on the mat").with_prefix("a dog ");
            let eval = |lm: Arc<LoadedModel>| {
                let f = LmValue::new(lm, &prompt, opts.clone()).unwrap();
                f.evaluate_masks(random_masks(f.n_players(), 12, 10).as_slice()).unwrap()
            };
            let want = eval(m.clone());
            let bf16 = eval(Arc::new(m.to_device(&Device::Cpu, DType::BF16).unwrap()));
            let worst = bf16.iter().zip(&want).map(|(g, w)| (g - w).abs() / w.abs().max(1.0)).fold(0f64, f64::max);
            assert!(worst > 0.0 && worst <= tol, "{mode:?} {metric:?}: largest relative difference {worst}");
            eprintln!("{mode:?} {metric:?}: largest relative bf16 - f32 difference {worst:.5}");
        }
    }
}

/// A model's copy on a device in a dtype is made once and shared by the value functions built
/// there later (a sweep builds one per input): the same tensors come back, also through
/// `LoadedModel::to_device` (the encoder path); asking for another dtype replaces the copy, and
/// released copies are made afresh.
#[test]
fn device_copies_are_made_once_per_device_and_dtype() {
    let m = tiny_llama(30);
    let head = |model: &spex::model::Model| model.lm_head().unwrap().id();
    let bf16 = m.model_on(&Device::Cpu, DType::BF16).unwrap();
    assert_ne!(head(&bf16), head(&m.model));
    assert_eq!(head(&m.model_on(&Device::Cpu, DType::BF16).unwrap()), head(&bf16));
    assert_eq!(head(&m.to_device(&Device::Cpu, DType::BF16).unwrap().model), head(&bf16));
    let f16 = m.model_on(&Device::Cpu, DType::F16).unwrap();
    assert_eq!(f16.lm_head().unwrap().dtype(), DType::F16);
    let again = m.model_on(&Device::Cpu, DType::BF16).unwrap();
    assert_ne!(head(&again), head(&bf16), "the f16 copy replaced the bf16 one");
    m.release_device_copies();
    assert_ne!(head(&m.model_on(&Device::Cpu, DType::BF16).unwrap()), head(&again), "released");
}
