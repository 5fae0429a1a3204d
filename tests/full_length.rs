//! The full-length form of masked inputs — every row keeps all positions, masking lives in the
//! attention bias, token ids and head gates that the CUDA kernels build on the device from the
//! bit-packed masks — gives the same values as the compacted rows of the CPU path. Runs on the
//! CPU (no GPU needed): it checks the formulation the device path relies on, through the CPU
//! twins of the kernels (`Layout::build_full_length`).

mod models_common;

use candle_core::{Device, Tensor};
use models_common::*;
use spex::model::{ModelError, ModelInput, TokenIds};
use spex::value::lm::{LmOptions, LmValue, Target};
use spex::value::players::{HeadMode, HeadPlayer, Prompt, TokenMode};

/// Full-length vs compacted, both `f32`: they differ only in the order of additions over the
/// (exactly zero) attention weights of hidden keys.
const TOL: f64 = 1e-5;

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
        let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on the mat").with_prefix("a dog"), opts).unwrap();
        let masks = random_masks(f.n_players(), 16, 5);
        let want = f.evaluate_masks(masks.as_slice()).unwrap();
        let got = f.evaluate_full_length(masks.as_slice()).unwrap();
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(*g, *w, TOL, &format!("{mode:?}/{head_mode:?} row {r}"));
        }
        // The masks must move the value, or the comparison proves nothing.
        let spread =
            want.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - want.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(spread > 1e-3, "{mode:?}: values barely vary ({spread})");
    }
}

#[test]
fn remove_mode_has_no_full_length_form() {
    let m = tiny_llama(12);
    let opts = LmOptions { token_mode: TokenMode::Remove, target: Target::Tokens(vec![5]), ..Default::default() };
    let f = LmValue::new(m, &Prompt::new("the cat").with_prefix("a"), opts).unwrap();
    let masks = random_masks(f.n_players(), 2, 1);
    assert!(f.evaluate_full_length(masks.as_slice()).is_err());
}

/// Token ids already on the model's device ([`TokenIds::Device`], as the GPU path passes them:
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
        let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on").with_prefix("a"), opts).unwrap();
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
        let with = |t: Tensor| ModelInput { tokens: TokenIds::Device(t), ..host.clone() };
        assert_eq!(hidden(&with(on_device)), hidden(&host), "{mode:?}");
        let short = Tensor::from_slice(&ids[1..], b * len - 1, &Device::Cpu).unwrap();
        assert!(matches!(m.model.forward(&with(short)), Err(ModelError::Input(_))), "{mode:?}: short ids");
        let floats = Tensor::zeros(b * len, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(m.model.forward(&with(floats)), Err(ModelError::Input(_))), "{mode:?}: f32 ids");
    }
}
