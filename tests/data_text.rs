//! Data attribution on texts through the embedded encoder (all-MiniLM-L6-v2): embeddings against
//! sentence-transformers' known cosine, and a planted case — mislabelled copies of the test text
//! are what pull its prediction away from its class.
//!
//! Needs the encoder in the cache (`scripts/fetch-models.sh`); skips with a note without it
//! unless `SPEX_REQUIRE_MODELS=1`.

mod common;

use std::process::Command;

use serde_json::{json, Value};
use spex::model::cache::MINILM;
use spex::model::load;
use spex::value::data::text::{embed, read_text_examples, text_features, TextExample};

fn encoder() -> Option<spex::model::LoadedModel> {
    match MINILM.cached().expect("cache directory") {
        Some(path) => Some(load(&path).expect("load the encoder")),
        None => {
            assert!(
                std::env::var("SPEX_REQUIRE_MODELS").map_or(true, |v| v != "1"),
                "SPEX_REQUIRE_MODELS=1 but all-MiniLM-L6-v2 is not cached (run scripts/fetch-models.sh)"
            );
            eprintln!("note: skipping: all-MiniLM-L6-v2 not cached (run scripts/fetch-models.sh)");
            None
        }
    }
}

#[test]
fn embeddings_are_unit_sentence_vectors_with_the_reference_cosine() {
    let Some(enc) = encoder() else { return };
    let a = embed(&enc, "A man is eating food.").unwrap();
    let b = embed(&enc, "A man is eating a piece of bread.").unwrap();
    assert_eq!(a.len(), 384);
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
    assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
    assert!((dot(&a, &b) - 0.755).abs() < 0.005, "cosine {} (sentence-transformers: about 0.755)", dot(&a, &b));
    let examples = [
        TextExample { text: "good".into(), label: "pos".into(), id: Some("g".into()) },
        TextExample { text: "bad".into(), label: "neg".into(), id: None },
    ];
    let f = text_features(&enc, &examples).unwrap();
    assert_eq!((f.rows(), f.dim), (2, 384));
    assert_eq!(f.ids, ["g", "1"]);
    assert_eq!(f.row(0), embed(&enc, "good").unwrap().as_slice());
}

#[test]
fn bad_text_example_files_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    for (text, says) in [
        ("{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"x\"}\n", "line 2: missing field `label`"),
        ("{\"text\": \" \", \"label\": \"a\"}\n", "line 1: empty text"),
        ("{\"text\": \"x\", \"label\": [1]}\n", "line 1: label: must be a string or a number"),
        ("# nothing\n", "no data rows"),
        (
            "{\"text\": \"x\", \"label\": 1, \"id\": \"a\"}\n\n{\"text\": \"y\", \"label\": 0, \"id\": \"a\"}\n",
            "line 3: id \"a\" is already that of line 1",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let e = read_text_examples(&path).unwrap_err().to_string();
        assert!(e.contains(says), "{text:?}: {e}");
    }
    std::fs::write(&path, "{\"text\": \"x\", \"label\": 3, \"id\": \"a\"}\n").unwrap();
    assert_eq!(read_text_examples(&path).unwrap()[0].label, "3");
}

const POSITIVE: [&str; 8] = [
    "An absolute delight from start to finish.",
    "The acting was superb and the story moved me.",
    "I loved every minute of this film.",
    "A beautiful, warm and funny movie.",
    "Brilliant direction and a wonderful cast.",
    "One of the best films I have seen this year.",
    "Charming, clever and genuinely touching.",
    "A joyful experience that I would happily repeat.",
];
const NEGATIVE: [&str; 8] = [
    "A dull, lifeless mess of a movie.",
    "The plot made no sense and the acting was wooden.",
    "I was bored from the first scene to the last.",
    "A tedious and forgettable film.",
    "Poor writing, poor direction, poor everything.",
    "One of the worst films I have seen this year.",
    "Clumsy, loud and painfully long.",
    "I regret wasting two hours on this.",
];
const TEST: &str = "What a lovely, heartfelt film; I adored it.";

#[test]
fn mislabelled_copies_of_the_test_text_are_the_examples_that_hurt_it() {
    if encoder().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<Value> = Vec::new();
    lines.extend(POSITIVE.iter().map(|t| json!({"text": t, "label": "pos"})));
    lines.extend(NEGATIVE.iter().map(|t| json!({"text": t, "label": "neg"})));
    lines.push(json!({"text": TEST, "label": "neg", "id": "copy-a"}));
    lines.push(json!({"text": TEST.to_lowercase(), "label": "neg", "id": "copy-b"}));
    let train = dir.path().join("train.jsonl");
    std::fs::write(&train, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    let test = dir.path().join("test.jsonl");
    std::fs::write(&test, json!({"text": TEST, "label": "pos"}).to_string() + "\n").unwrap();
    let out = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_spex"))
        .args(["data", "--train"])
        .arg(&train)
        .arg("--test")
        .arg(&test)
        .args(["--test-index", "0", "--method", "proxyspex", "--budget", "600", "--index", "bv", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let result: Value = serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    let mut first = common::first_order_named(&result);
    first.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Players are named `id:label`.
    let mut lowest: Vec<&str> = first[..2].iter().map(|(_, n)| n.as_str()).collect();
    lowest.sort_unstable();
    assert_eq!(lowest, ["copy-a:neg", "copy-b:neg"], "most negative: {first:?}");
    assert!(first[1].0 < 10.0 * first[2].0.min(-0.1), "the copies stand out: {first:?}");
    assert!(result["faithfulness"]["r2"].as_f64().unwrap() > 0.9);
}
