//! Masked value functions on tiny random-weight models written to disk in the real formats and
//! loaded through the real loaders, checked against a naive `f64` reference that writes every
//! masked forward out by definition (tests/models_common):
//!
//! * all-ones mask = plain forward;
//! * `attention` mode = a full-length forward in which each query attends only the kept keys
//!   (and itself), positions unchanged — a per-mask loop;
//! * `remove` mode = the plain forward of the shortened sequence; `replace` = of the substituted one;
//! * head `zero` / `mean` = the per-head reference with those heads' outputs zeroed / replaced by
//!   their mean over the unablated run; tokens and heads together;
//! * a batch of B masks = B single-mask evaluations (≤ 1e-5 relative);
//! * the GGUF file (permuted Q/K, interleaved RoPE, Q4_1/Q8_0) = the HF directory (half-split RoPE).

mod models_common;

use std::collections::HashSet;
use std::sync::Arc;

use models_common::*;
use spex::mask::{MaskBatch, MaskRef, MaskSlice};
use spex::model::{self, LoadedModel, ModelInput};
use spex::value::encoder::{EncoderMetric, EncoderOptions, EncoderValue};
use spex::value::lm::{LmMetric, LmOptions, LmValue, Target};
use spex::value::players::{HeadMode, HeadPlayer, Prompt, SetupError, TokenMode, Unit};
use tempfile::TempDir;

/// Tolerance of the `f32` model against the `f64` reference.
const REF_TOL: f64 = 2e-4;
/// Tolerance of batched against single-mask evaluation (both `f32`).
const BATCH_TOL: f64 = 1e-5;

struct LlamaFixture {
    _dir: TempDir,
    spec: LlamaSpec,
    w: Tensors,
    hf: Arc<LoadedModel>,
    gguf: Arc<LoadedModel>,
    gguf_path: std::path::PathBuf,
}

/// One random Llama (GQA: 4 query heads, 2 KV heads) written both as GGUF and as an HF
/// directory holding exactly the GGUF's (dequantized) values.
fn llama() -> LlamaFixture {
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_bpe();
    let spec = LlamaSpec::tiny(tok.tokens.len());
    let mut w = llama_weights(&spec, 7);
    let gguf_path = dir.path().join("tiny.gguf");
    write_llama_gguf(&gguf_path, &spec, &mut w, &tok);
    write_llama_hf(&dir.path().join("hf"), &spec, &w, &tok);
    let hf = Arc::new(model::load(&dir.path().join("hf")).unwrap());
    let gguf = Arc::new(model::load(&gguf_path).unwrap());
    LlamaFixture { _dir: dir, spec, w, hf, gguf, gguf_path }
}

/// Weights `w` written as an HF directory by `write` and loaded back.
fn hf_model(w: Tensors, write: fn(&std::path::Path, &Tensors)) -> (TempDir, Tensors, Arc<LoadedModel>) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &w);
    let m = Arc::new(model::load(dir.path()).unwrap());
    (dir, w, m)
}

fn gpt2() -> (TempDir, Tensors, Arc<LoadedModel>) {
    hf_model(gpt2_weights(11), write_gpt2_hf)
}

fn bert() -> (TempDir, Tensors, Arc<LoadedModel>) {
    hf_model(bert_weights(13), write_bert_hf)
}

/// Per base position (prompt, then `extra` always-kept positions), whether the mask keeps it.
fn kept_positions(owners: &[Option<usize>], extra: usize, m: MaskRef<'_>) -> Vec<bool> {
    owners.iter().map(|o| o.is_none_or(|i| m.get(i))).chain(std::iter::repeat_n(true, extra)).collect()
}

/// The (layer, head) pairs a mask ablates, given the head players after `n_tok` token bits.
fn ablated_heads(heads: &[HeadPlayer], n_tok: usize, m: MaskRef<'_>) -> HashSet<(usize, usize)> {
    heads.iter().enumerate().filter(|(k, _)| !m.get(n_tok + k)).map(|(_, h)| (h.layer, h.head)).collect()
}

/// Reference decoder forward (Llama or GPT-2).
enum Dec<'a> {
    Llama(&'a LlamaSpec, &'a Tensors),
    Gpt2(&'a Tensors),
}

impl Dec<'_> {
    fn forward(&self, seq: &Seq, ab: &Ablate) -> RefOut {
        match self {
            Dec::Llama(s, w) => llama_forward(s, w, seq, ab),
            Dec::Gpt2(w) => gpt2_forward(w, seq, ab),
        }
    }
    fn head(&self) -> &[f32] {
        match self {
            Dec::Llama(_, w) => w.get("lm_head.weight"),
            Dec::Gpt2(w) => w.get("wte.weight"),
        }
    }
    /// `Σ_k log p(target_k)` with target token `k` predicted from position `first + k`.
    fn target_logprob(&self, out: &RefOut, first: usize, target: &[u32]) -> f64 {
        target.iter().enumerate().map(|(k, &t)| log_prob(self.head(), &out.hidden[first + k], t)).sum()
    }
}

/// Checks a decoder value function against the reference on every mask of `masks`.
fn check_lm_against_reference(
    f: &LmValue,
    dec: &Dec<'_>,
    mode: TokenMode,
    head_mode: HeadMode,
    masks: MaskSlice<'_>,
    what: &str,
) {
    let got = f.evaluate_masks(masks).unwrap();
    let prompt = &f.prompt().ids;
    let target = f.target_tokens().to_vec();
    let n_tok = f.layout().n_token_players;
    let owners: Vec<Option<usize>> = f.layout().owners[..prompt.len()].to_vec();
    let heads = f.layout().heads.clone();
    let full: Vec<u32> = prompt.iter().chain(&target).copied().collect();
    let fill =
        (head_mode == HeadMode::Mean).then(|| dec.forward(&Seq::plain(&full, true), &Ablate::default()).head_means);
    let mut distinct = HashSet::new();
    for (r, m) in masks.iter().enumerate() {
        let kept = kept_positions(&owners, target.len(), m);
        let ab = Ablate { heads: ablated_heads(&heads, n_tok, m), fill: fill.clone() };
        let want = match mode {
            TokenMode::Attention => {
                let out = dec.forward(&Seq::hiding(&full, &kept, true), &ab);
                dec.target_logprob(&out, prompt.len() - 1, &target)
            }
            TokenMode::Replace(id) => {
                let ids: Vec<u32> = full.iter().zip(&kept).map(|(&t, &k)| if k { t } else { id }).collect();
                let out = dec.forward(&Seq::plain(&ids, true), &ab);
                dec.target_logprob(&out, prompt.len() - 1, &target)
            }
            TokenMode::Remove => {
                let short: Vec<u32> = prompt.iter().zip(&kept).filter(|(_, &k)| k).map(|(&t, _)| t).collect();
                let n_short = short.len();
                let ids: Vec<u32> = short.into_iter().chain(target.iter().copied()).collect();
                let out = dec.forward(&Seq::plain(&ids, true), &ab);
                dec.target_logprob(&out, n_short - 1, &target)
            }
        };
        assert_close(got[r], want, REF_TOL, &format!("{what}: mask {m}"));
        distinct.insert((want * 1e3).round() as i64);
    }
    assert!(distinct.len() > masks.len() / 2, "{what}: masks barely change the value; the test would not catch a bug");
}

/// Batched evaluation equals one-mask-at-a-time evaluation.
fn check_batch_equals_singles(eval: impl Fn(MaskSlice<'_>) -> Vec<f64>, masks: &MaskBatch, what: &str) {
    let batched = eval(masks.as_slice());
    for (r, m) in masks.iter().enumerate() {
        let mut one = MaskBatch::new(masks.n());
        one.push(m).unwrap();
        let single = eval(one.as_slice())[0];
        assert_close(batched[r], single, BATCH_TOL, &format!("{what}: batch row {r} ({m}) vs its single forward"));
    }
}

fn target3(m: &LoadedModel) -> Target {
    Target::Tokens(m.encode(" the mat").unwrap().into_iter().chain([5]).collect())
}

// ---------------------------------------------------------------------------------------------
// Loading: GGUF = HF, both = reference
// ---------------------------------------------------------------------------------------------

#[test]
fn gguf_and_hf_llama_are_the_same_model_and_match_the_reference() {
    let fx = llama();
    let text = "the cat sat on the mat";
    let ids = fx.hf.encode(text).unwrap();
    assert_eq!(ids, fx.gguf.encode(text).unwrap(), "GGUF-metadata tokenizer and tokenizer.json disagree");
    assert!(ids.len() >= 6);
    let want = llama_forward(&fx.spec, &fx.w, &Seq::plain(&ids, true), &Ablate::default());
    for (name, m) in [("hf", &fx.hf), ("gguf", &fx.gguf)] {
        let h = m.model.forward(&ModelInput::single(&ids)).unwrap().hidden;
        let h: Vec<Vec<f32>> = h.squeeze(0).unwrap().to_vec2().unwrap();
        for (p, (got, want)) in h.iter().zip(&want.hidden).enumerate() {
            for (c, (g, w)) in got.iter().zip(want).enumerate() {
                assert_close(*g as f64, *w, REF_TOL, &format!("{name} hidden[{p}][{c}]"));
            }
        }
    }
    // The trap the test guards: GGUF weights with the half-split rotation are plausible but wrong.
    let (weights, meta) = spex::model::weights::Weights::from_gguf(&fx.gguf_path).unwrap();
    let mut cfg = spex::model::llama::LlamaConfig::from_gguf(&meta, "llama", &fx.gguf_path).unwrap();
    assert!(cfg.rope_interleaved);
    cfg.rope_interleaved = false;
    let wrong = spex::model::Model::Llama(spex::model::llama::Llama::new(cfg, &weights).unwrap());
    let h: Vec<Vec<f32>> =
        wrong.forward(&ModelInput::single(&ids)).unwrap().hidden.squeeze(0).unwrap().to_vec2().unwrap();
    let max_diff =
        h.iter().flatten().zip(want.hidden.iter().flatten()).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
    assert!(max_diff > 1e-2, "the wrong RoPE layout should change the output (max diff {max_diff})");
}

#[test]
fn all_ones_mask_is_the_plain_forward() {
    let fx = llama();
    let (_d, gw, g2) = gpt2();
    let cases: Vec<(&str, Arc<LoadedModel>, Dec<'_>, &str)> = vec![
        ("llama-hf", fx.hf.clone(), Dec::Llama(&fx.spec, &fx.w), "the cat sat on the mat"),
        ("llama-gguf", fx.gguf.clone(), Dec::Llama(&fx.spec, &fx.w), "the cat sat on the mat"),
        ("gpt2", g2.clone(), Dec::Gpt2(&gw), "the big red dog ran to the house"),
    ];
    for (name, m, dec, text) in cases {
        let target = target3(&m);
        let f = LmValue::new(m.clone(), &Prompt::new(text), LmOptions { target, ..Default::default() }).unwrap();
        let ones = MaskBatch::parse_rows([&*"1".repeat(f.n_players())]).unwrap();
        let got = f.evaluate_masks(ones.as_slice()).unwrap()[0];
        // The model's own plain forward of prompt + target, scored here in f64.
        let full: Vec<u32> = f.prompt().ids.iter().chain(f.target_tokens()).copied().collect();
        let h: Vec<Vec<f32>> =
            m.model.forward(&ModelInput::single(&full)).unwrap().hidden.squeeze(0).unwrap().to_vec2().unwrap();
        let n = f.prompt().ids.len();
        let plain: f64 = f
            .target_tokens()
            .iter()
            .enumerate()
            .map(|(k, &t)| log_prob(dec.head(), &h[n - 1 + k].iter().map(|&x| x as f64).collect::<Vec<_>>(), t))
            .sum();
        assert_close(got, plain, 1e-5, &format!("{name}: all-ones value vs plain forward"));
        let out = dec.forward(&Seq::plain(&full, true), &Ablate::default());
        assert_close(
            got,
            dec.target_logprob(&out, n - 1, f.target_tokens()),
            REF_TOL,
            &format!("{name}: vs reference"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Token masking modes
// ---------------------------------------------------------------------------------------------

#[test]
fn attention_mode_equals_per_mask_loop_with_keys_removed() {
    let fx = llama();
    let (_d, gw, g2) = gpt2();
    for (name, m, dec, text) in [
        ("llama-hf words", fx.hf.clone(), Dec::Llama(&fx.spec, &fx.w), "the cat sat on the mat"),
        ("llama-gguf words", fx.gguf.clone(), Dec::Llama(&fx.spec, &fx.w), "the cat sat on the mat"),
        ("gpt2 words", g2.clone(), Dec::Gpt2(&gw), "the big red dog ran to the house and slept"),
    ] {
        let f = LmValue::new(m.clone(), &Prompt::new(text), LmOptions { target: target3(&m), ..Default::default() })
            .unwrap();
        let masks = random_masks(f.n_players(), 14, 1);
        check_lm_against_reference(&f, &dec, TokenMode::Attention, HeadMode::Zero, masks.as_slice(), name);
    }
    // Token players with a fixed prefix and suffix (template), the byte-level tokenizer.
    let p = Prompt::new("the cat sat").with_prefix("a dog on ").with_suffix(" the mat").with_unit(Unit::Tokens);
    let f = LmValue::new(fx.hf.clone(), &p, LmOptions { target: target3(&fx.hf), ..Default::default() }).unwrap();
    assert!(f.layout().owners.iter().any(|o| o.is_none()), "prefix/suffix tokens must be fixed");
    let masks = random_masks(f.n_players(), 10, 2);
    check_lm_against_reference(
        &f,
        &Dec::Llama(&fx.spec, &fx.w),
        TokenMode::Attention,
        HeadMode::Zero,
        masks.as_slice(),
        "llama tokens+template",
    );
}

/// Every player owns whole tokens of the player text (the byte-level tokenizer, whose tokens carry
/// their leading space): a word whose space ends the prefix is still a player; a token across the
/// edge of the template, or a marked part inside a token, is refused rather than silently fixed,
/// ablated with fixed text or dropped.
#[test]
fn every_player_owns_whole_tokens_of_the_player_text() {
    let m = tiny_llama(3);
    let labels = |text: &str, prefix: &str, suffix: &str| {
        let p = Prompt::new(text).with_prefix(prefix).with_suffix(suffix);
        LmValue::new(m.clone(), &p, LmOptions { target: target3(&m), ..Default::default() })
            .map(|f| f.player_labels().to_vec())
    };
    // " the" starts with the prefix's space; it belongs to the player "the".
    assert_eq!(labels("the cat sat", "a dog on ", "").unwrap(), ["the", "cat", "sat"]);
    assert_eq!(labels(" the cat", "a dog on", " sat").unwrap(), ["the", "cat"]);
    // " dog" = prefix " do" + text "g"; " cat" = text " ca" + suffix "t".
    for (text, prefix, suffix, side) in [("g sat", "a do", "", "prefix"), ("the ca", "", "t sat", "suffix")] {
        match labels(text, prefix, suffix) {
            Err(SetupError::AcrossEdge { side: s, .. }) => assert_eq!(s, side, "{prefix:?} + {text:?} + {suffix:?}"),
            other => panic!("{prefix:?} + {text:?} + {suffix:?}: {other:?}"),
        }
    }
    // Byte-level tokens of one character ("é" is two bytes, no merge joins them) are told apart.
    let p = Prompt::new("the é").with_unit(Unit::Tokens);
    let f = LmValue::new(m.clone(), &p, LmOptions { target: target3(&m), ..Default::default() }).unwrap();
    assert_eq!(f.player_labels(), ["t", "he", "é(1/2)", "é(2/2)"]);
    // A marked part inside a token ("at" of " cat") would silently not be a player.
    let p = Prompt::new("the cat").with_unit(Unit::Spans(vec![0..3, 5..7]));
    match LmValue::new(m.clone(), &p, LmOptions { target: target3(&m), ..Default::default() }) {
        Err(SetupError::NoToken { player, inside }) => {
            assert_eq!((player.as_str(), inside.as_deref()), ("at", Some(" cat")))
        }
        other => panic!("{:?}", other.map(|f| f.player_labels().to_vec())),
    }
}

/// Rows behind the cached keys and values of the fixed tokens they begin with give the values of
/// rows that run those tokens, in every token mode and metric, on both decoders, for masks that
/// keep and ablate every player too; head players, whose ablation changes the prefix, turn the
/// cache off.
#[test]
fn the_prefix_cache_changes_no_value() {
    let (fx, (_d, _w, g2)) = (llama(), gpt2());
    let p = Prompt::new("the cat sat on the mat").with_prefix("a dog on the mat ").with_suffix(" the cat");
    for (name, m) in [("llama", &fx.hf), ("gpt2", &g2)] {
        for mode in [TokenMode::Attention, TokenMode::Remove, TokenMode::Replace(5)] {
            for metric in [LmMetric::TargetLogProb, LmMetric::LogitDiff { a: 3, b: 7 }] {
                let what = format!("{name} {mode:?} {metric:?}");
                let opts = |reuse_prefix| LmOptions {
                    token_mode: mode,
                    target: target3(m),
                    metric: metric.clone(),
                    reuse_prefix,
                    max_batch_tokens: 64,
                    ..Default::default()
                };
                let (cached, plain) = (
                    LmValue::new(m.clone(), &p, opts(true)).unwrap(),
                    LmValue::new(m.clone(), &p, opts(false)).unwrap(),
                );
                assert!(cached.cached_prefix() >= 4, "{what}: {} cached", cached.cached_prefix());
                assert_eq!(plain.cached_prefix(), 0);
                let masks = random_masks(cached.n_players(), 24, 8);
                let (a, b) =
                    (cached.evaluate_masks(masks.as_slice()).unwrap(), plain.evaluate_masks(masks.as_slice()).unwrap());
                for (r, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert_close(*x, *y, BATCH_TOL, &format!("{what}: mask {r} cached vs run"));
                }
            }
        }
    }
    let heads =
        LmOptions { heads: vec![HeadPlayer { layer: 0, head: 1 }], target: target3(&fx.hf), ..Default::default() };
    assert_eq!(LmValue::new(fx.hf.clone(), &p, heads).unwrap().cached_prefix(), 0);
}

/// Greedy generation with its KV cache picks, at every step, the argmax of a full forward of
/// everything so far (the definition), on both decoder families and the GGUF's RoPE layout.
#[test]
fn cached_greedy_generation_is_the_argmax_of_full_forwards() {
    let (fx, (_d, _w, g2)) = (llama(), gpt2());
    for (name, m) in [("llama", &fx.hf), ("llama-gguf", &fx.gguf), ("gpt2", &g2)] {
        let prompt = m.encode("the cat sat on").unwrap();
        let out = m.generate_greedy(&prompt, 12).unwrap();
        assert!(out.len() == 12 || m.eos_ids.contains(out.last().unwrap()), "{name}: stopped early at {out:?}");
        let mut ids = prompt.clone();
        for (step, &token) in out.iter().enumerate() {
            let hidden = m.model.forward(&ModelInput::single(&ids)).unwrap().hidden;
            let logits: Vec<f32> = model::ops::logits_at(&hidden, m.model.lm_head().unwrap(), &[(0, ids.len() - 1)])
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            // A near tie could fairly go either way in f32; these weights have none.
            assert!(logits[order[0]] - logits[order[1]] > 1e-4, "{name}: step {step} is a near tie");
            assert_eq!(token as usize, order[0], "{name}: step {step} of {out:?}");
            ids.push(token);
        }
    }
}

#[test]
fn remove_mode_equals_forward_of_the_shortened_sequence() {
    let fx = llama();
    let (_d, gw, g2) = gpt2();
    for (name, m, dec) in
        [("llama-gguf", fx.gguf.clone(), Dec::Llama(&fx.spec, &fx.w)), ("gpt2", g2.clone(), Dec::Gpt2(&gw))]
    {
        let p = Prompt::new("the cat sat on the mat").with_prefix("a dog ");
        let opts = LmOptions { target: target3(&m), token_mode: TokenMode::Remove, ..Default::default() };
        let f = LmValue::new(m.clone(), &p, opts).unwrap();
        let masks = random_masks(f.n_players(), 12, 3);
        check_lm_against_reference(&f, &dec, TokenMode::Remove, HeadMode::Zero, masks.as_slice(), name);
        // And against the model's own plain forward of each shortened sequence.
        let got = f.evaluate_masks(masks.as_slice()).unwrap();
        let owners = &f.layout().owners[..f.prompt().ids.len()];
        for (r, mask) in masks.iter().enumerate() {
            let kept = kept_positions(owners, 0, mask);
            let mut ids: Vec<u32> = f.prompt().ids.iter().zip(&kept).filter(|(_, &k)| k).map(|(&t, _)| t).collect();
            let n = ids.len();
            ids.extend_from_slice(f.target_tokens());
            let h: Vec<Vec<f32>> =
                m.model.forward(&ModelInput::single(&ids)).unwrap().hidden.squeeze(0).unwrap().to_vec2().unwrap();
            let want: f64 = f
                .target_tokens()
                .iter()
                .enumerate()
                .map(|(k, &t)| log_prob(dec.head(), &h[n - 1 + k].iter().map(|&x| x as f64).collect::<Vec<_>>(), t))
                .sum();
            assert_close(
                got[r],
                want,
                1e-5,
                &format!("{name} remove: mask {mask} vs plain forward of the shortened prompt"),
            );
        }
    }
}

#[test]
fn replace_mode_equals_forward_of_the_substituted_sequence() {
    let fx = llama();
    let (_d, gw, g2) = gpt2();
    for (name, m, dec) in
        [("llama-hf", fx.hf.clone(), Dec::Llama(&fx.spec, &fx.w)), ("gpt2", g2.clone(), Dec::Gpt2(&gw))]
    {
        let unk =
            spex::value::players::replacement_token(&m.tokenizer, spex::value::players::Replacement::Unk).unwrap();
        let opts = LmOptions { target: target3(&m), token_mode: TokenMode::Replace(unk), ..Default::default() };
        let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on the mat"), opts).unwrap();
        let masks = random_masks(f.n_players(), 12, 4);
        check_lm_against_reference(&f, &dec, TokenMode::Replace(unk), HeadMode::Zero, masks.as_slice(), name);
    }
}

// ---------------------------------------------------------------------------------------------
// Head ablation, tokens + heads, other metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn head_zero_and_mean_match_the_naive_per_head_reference() {
    let fx = llama();
    let (_d, gw, g2) = gpt2();
    for (name, m, dec) in
        [("llama-gguf (GQA)", fx.gguf.clone(), Dec::Llama(&fx.spec, &fx.w)), ("gpt2", g2.clone(), Dec::Gpt2(&gw))]
    {
        let heads = HeadPlayer::all(&m.model.info());
        assert_eq!(heads.len(), 8);
        for mode in [HeadMode::Zero, HeadMode::Mean] {
            let opts = LmOptions {
                token_players: false,
                heads: heads.clone(),
                head_mode: mode,
                target: target3(&m),
                ..Default::default()
            };
            let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on the mat"), opts).unwrap();
            assert_eq!(f.n_players(), 8);
            assert_eq!(f.player_labels()[5], "L1H1");
            let masks = random_masks(8, 14, 5);
            check_lm_against_reference(
                &f,
                &dec,
                TokenMode::Attention,
                mode,
                masks.as_slice(),
                &format!("{name} heads {mode:?}"),
            );
        }
    }
}

#[test]
fn tokens_and_heads_in_one_game() {
    let fx = llama();
    let heads =
        vec![HeadPlayer { layer: 0, head: 1 }, HeadPlayer { layer: 1, head: 3 }, HeadPlayer { layer: 1, head: 0 }];
    for (mode, head_mode) in [(TokenMode::Attention, HeadMode::Zero), (TokenMode::Remove, HeadMode::Mean)] {
        let opts = LmOptions {
            heads: heads.clone(),
            token_mode: mode,
            head_mode,
            target: target3(&fx.hf),
            ..Default::default()
        };
        let f =
            LmValue::new(fx.hf.clone(), &Prompt::new("the cat sat on the mat").with_prefix("a dog "), opts).unwrap();
        assert_eq!(f.n_players(), f.layout().n_token_players + 3);
        let masks = random_masks(f.n_players(), 14, 6);
        check_lm_against_reference(
            &f,
            &Dec::Llama(&fx.spec, &fx.w),
            mode,
            head_mode,
            masks.as_slice(),
            &format!("tokens+heads {mode:?}"),
        );
    }
}

#[test]
fn logit_difference_and_greedy_target() {
    let fx = llama();
    let dec = Dec::Llama(&fx.spec, &fx.w);
    let (a, b) = (17u32, 200u32);
    let opts = LmOptions { metric: LmMetric::LogitDiff { a, b }, ..Default::default() };
    let f = LmValue::new(fx.hf.clone(), &Prompt::new("the cat sat on the mat"), opts).unwrap();
    assert!(f.target_tokens().is_empty());
    let masks = random_masks(f.n_players(), 10, 7);
    let got = f.evaluate_masks(masks.as_slice()).unwrap();
    let ids = f.prompt().ids.clone();
    for (r, m) in masks.iter().enumerate() {
        let kept = kept_positions(&f.layout().owners, 0, m);
        let out = dec.forward(&Seq::hiding(&ids, &kept, true), &Ablate::default());
        let l = logits(dec.head(), &out.hidden[ids.len() - 1]);
        assert_close(got[r], l[a as usize] - l[b as usize], REF_TOL, &format!("logit diff, mask {m}"));
    }

    // Default target: the model's own greedy answer on the unablated prompt.
    let f = LmValue::new(
        fx.hf.clone(),
        &Prompt::new("the cat sat"),
        LmOptions { target: Target::Greedy { max_new_tokens: 4 }, ..Default::default() },
    )
    .unwrap();
    let mut seq = f.prompt().ids.clone();
    let mut want = Vec::new();
    for _ in 0..4 {
        let out = dec.forward(&Seq::plain(&seq, true), &Ablate::default());
        let l = logits(dec.head(), out.hidden.last().unwrap());
        let next = (0..l.len()).max_by(|&i, &j| l[i].total_cmp(&l[j])).unwrap() as u32;
        want.push(next);
        seq.push(next);
        if next == byte_bpe().eos {
            break;
        }
    }
    assert_eq!(f.target_tokens(), want.as_slice(), "greedy target");
    let masks = random_masks(f.n_players(), 6, 8);
    check_lm_against_reference(&f, &dec, TokenMode::Attention, HeadMode::Zero, masks.as_slice(), "greedy target");
}

#[test]
fn batch_of_masks_equals_single_forwards() {
    let fx = llama();
    let (_d, _gw, g2) = gpt2();
    let (_e, _bw, bm) = bert();
    let heads = vec![HeadPlayer { layer: 0, head: 2 }, HeadPlayer { layer: 1, head: 1 }];
    for (name, m) in [("llama-gguf", fx.gguf.clone()), ("gpt2", g2.clone())] {
        for mode in [TokenMode::Attention, TokenMode::Replace(3), TokenMode::Remove] {
            let opts = LmOptions {
                heads: heads.clone(),
                token_mode: mode,
                head_mode: HeadMode::Mean,
                target: target3(&m),
                ..Default::default()
            };
            let f =
                LmValue::new(m.clone(), &Prompt::new("the cat sat on the mat").with_prefix("a dog "), opts).unwrap();
            let masks = random_masks(f.n_players(), 14, 9);
            check_batch_equals_singles(|s| f.evaluate_masks(s).unwrap(), &masks, &format!("{name} {mode:?}"));
        }
    }
    for mode in [TokenMode::Attention, TokenMode::Replace(4), TokenMode::Remove] {
        let mut opts = EncoderOptions::new(EncoderMetric::Cosine { reference: "a dog ran to the house".into() });
        opts.token_mode = mode;
        opts.heads = heads.clone();
        let f = EncoderValue::new(bm.clone(), &Prompt::new("the big red cat sat on the mat"), opts).unwrap();
        let masks = random_masks(f.n_players(), 14, 10);
        check_batch_equals_singles(|s| f.evaluate_masks(s).unwrap(), &masks, &format!("bert {mode:?}"));
    }
    // Many masks split over several forward passes give the same values.
    let mut opts = LmOptions { target: target3(&fx.hf), ..Default::default() };
    opts.max_batch_tokens = 25;
    let small = LmValue::new(fx.hf.clone(), &Prompt::new("the cat sat on the mat"), opts.clone()).unwrap();
    opts.max_batch_tokens = 1 << 20;
    let big = LmValue::new(fx.hf.clone(), &Prompt::new("the cat sat on the mat"), opts).unwrap();
    assert!(small.rows_per_forward() < 4);
    let masks = random_masks(big.n_players(), 20, 11);
    let (a, b) = (small.evaluate_masks(masks.as_slice()).unwrap(), big.evaluate_masks(masks.as_slice()).unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert_close(*x, *y, BATCH_TOL, "chunked vs one forward");
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

#[test]
fn encoder_cosine_and_class_head_match_the_reference() {
    let (_d, w, m) = bert();
    // The tokenizer.json bakes in padding/truncation to 24; the loader must disable both.
    let ids = m.encode("the cat sat").unwrap();
    assert_eq!(ids, vec![2, 5, 6, 7, 3], "[CLS] the cat sat [SEP], no padding");

    let text = "the big red cat sat on the mat";
    let reference = "a dog ran to the house";
    let ref_ids = m.encode(reference).unwrap();
    let ref_emb = mean_pool(
        &bert_forward(&w, &Seq::plain(&ref_ids, false), &Ablate::default()).hidden,
        &vec![true; ref_ids.len()],
    );
    let cos = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();

    // Same text as its own reference: all-ones cosine is 1.
    let f = EncoderValue::new(
        m.clone(),
        &Prompt::new(text),
        EncoderOptions::new(EncoderMetric::Cosine { reference: text.into() }),
    )
    .unwrap();
    let ones = MaskBatch::parse_rows([&*"1".repeat(f.n_players())]).unwrap();
    assert_close(f.evaluate_masks(ones.as_slice()).unwrap()[0], 1.0, 1e-5, "self-cosine");

    let unk = 1u32;
    for mode in [TokenMode::Attention, TokenMode::Remove, TokenMode::Replace(unk)] {
        for head_mode in [HeadMode::Zero, HeadMode::Mean] {
            let heads = vec![HeadPlayer { layer: 0, head: 3 }, HeadPlayer { layer: 1, head: 0 }];
            let mut opts = EncoderOptions::new(EncoderMetric::Cosine { reference: reference.into() });
            opts.token_mode = mode;
            opts.heads = heads.clone();
            opts.head_mode = head_mode;
            let f = EncoderValue::new(m.clone(), &Prompt::new(text), opts).unwrap();
            let base = f.prompt().ids.clone();
            let owners = f.layout().owners.clone();
            let n_tok = f.layout().n_token_players;
            let fill = (head_mode == HeadMode::Mean)
                .then(|| bert_forward(&w, &Seq::plain(&base, false), &Ablate::default()).head_means);
            let masks = random_masks(f.n_players(), 12, 12);
            let got = f.evaluate_masks(masks.as_slice()).unwrap();
            for (r, mask) in masks.iter().enumerate() {
                let kept = kept_positions(&owners, 0, mask);
                let ab = Ablate { heads: ablated_heads(&heads, n_tok, mask), fill: fill.clone() };
                let (seq, pool) = match mode {
                    TokenMode::Attention => (Seq::hiding(&base, &kept, false), kept.clone()),
                    TokenMode::Remove => {
                        let ids: Vec<u32> = base.iter().zip(&kept).filter(|(_, &k)| k).map(|(&t, _)| t).collect();
                        let n = ids.len();
                        (Seq::plain(&ids, false), vec![true; n])
                    }
                    TokenMode::Replace(id) => {
                        let ids: Vec<u32> = base.iter().zip(&kept).map(|(&t, &k)| if k { t } else { id }).collect();
                        (Seq::plain(&ids, false), vec![true; base.len()])
                    }
                };
                let emb = mean_pool(&bert_forward(&w, &seq, &ab).hidden, &pool);
                assert_close(
                    got[r],
                    cos(&emb, &ref_emb),
                    REF_TOL,
                    &format!("bert cosine {mode:?} {head_mode:?} mask {mask}"),
                );
            }
        }
    }

    // Classification head: class logit and log-odds.
    for (metric, log_odds) in
        [(EncoderMetric::ClassLogit { class: 2 }, false), (EncoderMetric::ClassLogOdds { class: 2 }, true)]
    {
        let f = EncoderValue::new(m.clone(), &Prompt::new(text), EncoderOptions::new(metric)).unwrap();
        let masks = random_masks(f.n_players(), 10, 13);
        let got = f.evaluate_masks(masks.as_slice()).unwrap();
        let base = f.prompt().ids.clone();
        for (r, mask) in masks.iter().enumerate() {
            let kept = kept_positions(&f.layout().owners, 0, mask);
            let h = bert_forward(&w, &Seq::hiding(&base, &kept, false), &Ablate::default()).hidden;
            let l = bert_class_logits(&w, &h[0]);
            let want = if log_odds {
                let p: Vec<f64> = l.iter().map(|x| x.exp()).collect();
                let pc = p[2] / p.iter().sum::<f64>();
                (pc / (1.0 - pc)).ln()
            } else {
                l[2]
            };
            assert_close(got[r], want, REF_TOL, &format!("class metric (log-odds {log_odds}) mask {mask}"));
        }
    }
}

#[test]
fn value_function_trait_and_labels() {
    use spex::value::ValueFunction;
    let fx = llama();
    let mut f = LmValue::new(
        fx.hf.clone(),
        &Prompt::new("the cat sat on the mat"),
        LmOptions { target: target3(&fx.hf), ..Default::default() },
    )
    .unwrap();
    assert_eq!(f.player_labels(), ["the", "cat", "sat", "on", "the", "mat"]);
    let masks = random_masks(6, 4, 14);
    let a = f.evaluate(masks.as_slice()).unwrap();
    assert_eq!(a, f.evaluate_masks(masks.as_slice()).unwrap());
    assert!(a.iter().all(|v| v.is_finite()));
    let f = LmValue::new(
        fx.hf.clone(),
        &Prompt::new("the cat sat. on the mat").with_unit(Unit::Sentences),
        LmOptions { target: target3(&fx.hf), ..Default::default() },
    )
    .unwrap();
    assert_eq!(f.player_labels(), ["the cat sat.", "on the mat"]);
    let f = LmValue::new(
        fx.hf.clone(),
        &Prompt::new("the cat sat on the mat").with_unit(Unit::Spans(vec![4..11, 19..22])),
        LmOptions { target: target3(&fx.hf), ..Default::default() },
    )
    .unwrap();
    assert_eq!(f.player_labels(), ["cat sat", "mat"]);
}

#[test]
fn family_switches_qwen2_biases_and_distilbert() {
    // Qwen2: the Llama implementation with Q/K/V biases (`model_type: qwen2`).
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_bpe();
    let spec = LlamaSpec { qkv_bias: true, ..LlamaSpec::tiny(tok.tokens.len()) };
    let w = llama_weights(&spec, 21);
    write_llama_hf_as(dir.path(), &LlamaSpec { qkv_bias: false, ..spec.clone() }, &w, &tok, "qwen2");
    let m = Arc::new(model::load(dir.path()).unwrap());
    let heads = vec![HeadPlayer { layer: 1, head: 2 }];
    let opts = LmOptions { heads, target: target3(&m), ..Default::default() };
    let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on the mat"), opts).unwrap();
    let masks = random_masks(f.n_players(), 12, 22);
    let dec = Dec::Llama(&spec, &w);
    check_lm_against_reference(&f, &dec, TokenMode::Attention, HeadMode::Zero, masks.as_slice(), "qwen2");

    // DistilBERT: BERT blocks under other names, no token types.
    let dir = tempfile::tempdir().unwrap();
    let mut w = bert_weights(23);
    write_distilbert_hf(dir.path(), &mut w);
    let m = Arc::new(model::load(dir.path()).unwrap());
    let text = "the big red cat sat on the mat";
    let reference = "a dog ran to the house";
    let ref_ids = m.encode(reference).unwrap();
    let ref_emb = mean_pool(
        &bert_forward(&w, &Seq::plain(&ref_ids, false), &Ablate::default()).hidden,
        &vec![true; ref_ids.len()],
    );
    let f = EncoderValue::new(
        m.clone(),
        &Prompt::new(text),
        EncoderOptions::new(EncoderMetric::Cosine { reference: reference.into() }),
    )
    .unwrap();
    let masks = random_masks(f.n_players(), 10, 24);
    let got = f.evaluate_masks(masks.as_slice()).unwrap();
    let base = f.prompt().ids.clone();
    for (r, mask) in masks.iter().enumerate() {
        let kept = kept_positions(&f.layout().owners, 0, mask);
        let emb = mean_pool(&bert_forward(&w, &Seq::hiding(&base, &kept, false), &Ablate::default()).hidden, &kept);
        let want: f64 = emb.iter().zip(&ref_emb).map(|(a, b)| a * b).sum();
        assert_close(got[r], want, REF_TOL, &format!("distilbert cosine, mask {mask}"));
    }
}
