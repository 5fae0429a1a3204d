//! Checks on the real default models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2).
//!
//! They need the models in the cache (`scripts/fetch-models.sh`). Without them each test prints a
//! note and returns, unless `SPEX_REQUIRE_MODELS=1`, in which case a missing model fails the test.

use spex::model::cache::{DefaultModel, MINILM, SMOLLM2};
use spex::model::{self, LoadedModel};

fn cached(m: &DefaultModel) -> Option<LoadedModel> {
    match m.cached().expect("cache directory") {
        Some(p) => Some(model::load(&p).expect("load default model")),
        None => {
            let required = std::env::var("SPEX_REQUIRE_MODELS").is_ok_and(|v| v == "1");
            assert!(!required, "SPEX_REQUIRE_MODELS=1 but {} is not in {} (run scripts/fetch-models.sh)", m.name, m.dir().unwrap().display());
            eprintln!("note: skipping: {} not cached (run scripts/fetch-models.sh)", m.name);
            None
        }
    }
}

#[test]
fn smollm2_says_paris() {
    let Some(lm) = cached(&SMOLLM2) else { return };
    let ids = lm.encode("The capital of France is").unwrap();
    let out = lm.generate_greedy(&ids, 3).unwrap();
    let text = lm.decode(&out).unwrap();
    eprintln!("greedy continuation: {text:?}");
    assert!(text.starts_with(" Paris"), "greedy continuation {text:?} does not start with \" Paris\"");
}
