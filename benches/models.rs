//! `cargo bench --bench models`: masked queries per second on the default LLM
//! (SmolLM2-135M-Instruct, dequantized to f32, CPU), for prompts of 32 / 128 / 512 tokens and
//! batches of 1 / 8 / 32 / 128 masks, and the speedup of batched over one-mask-at-a-time
//! evaluation of the same masks.
//!
//! Setup: every prompt token is a player, masks keep each player with
//! probability 1/2, attention-mode masking, value = log-probability of a fixed 4-token target.
//! "tokens/s" counts prompt tokens × masks per second (the nominal work; attention mode skips
//! the hidden tokens, so about half are computed). One-at-a-time figures evaluate the first
//! `min(B, 8)` masks of the batch one per call.
//!
//! Options (environment): `SPEX_BENCH_LENGTHS=32,128` and `SPEX_BENCH_BATCHES=1,8` restrict the
//! grid. Fetches the model on first use (see `scripts/fetch-models.sh`).

use std::sync::Arc;
use std::time::Instant;

use spex::bench::token_prompt;
use spex::design::{rng, uniform::random_masks as spex_random_masks};
use spex::mask::MaskBatch;
use spex::model::cache::load_default_lm;
use spex::value::lm::{LmOptions, LmValue, Target};
use spex::value::players::TokenMode;

fn list(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(s) => s.split(',').map(|x| x.trim().parse().expect("a comma-separated list of numbers")).collect(),
        Err(_) => default.to_vec(),
    }
}

/// Uniform random masks, seeded.
fn random_masks(n: usize, rows: usize, seed: u64) -> MaskBatch {
    spex_random_masks(n, rows, &mut rng(seed, 0))
}

fn main() {
    let lengths = list("SPEX_BENCH_LENGTHS", &[32, 128, 512]);
    let batches = list("SPEX_BENCH_BATCHES", &[1, 8, 32, 128]);
    let t = Instant::now();
    let lm = Arc::new(load_default_lm().expect("default model (run scripts/fetch-models.sh)"));
    println!(
        "models bench: SmolLM2-135M-Instruct (f32, CPU, {} threads), loaded in {:.1} s",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        t.elapsed().as_secs_f64()
    );
    println!("attention-mode token players, p(keep) = 1/2, target = 4 fixed tokens\n");
    println!(
        "{:>7} {:>6} {:>10} {:>12} {:>12} {:>14} {:>9}",
        "tokens", "batch", "seconds", "queries/s", "tokens/s", "1-at-a-time/s", "speedup"
    );
    for &len in &lengths {
        let opts = LmOptions {
            target: Target::Tokens(vec![504, 3575, 282, 4649]),
            token_mode: TokenMode::Attention,
            ..Default::default()
        };
        let f = LmValue::from_tokens(lm.clone(), token_prompt(&lm, 0, len).unwrap(), opts).unwrap();
        assert_eq!(f.prompt().ids.len(), len, "prompt length");
        let n = f.n_players();
        // Warm up (allocator, thread pool, caches).
        f.evaluate_masks(random_masks(n, 2, 0).as_slice()).unwrap();
        // One at a time: per-mask seconds over 8 masks, evaluated one per call.
        let singles = random_masks(n, 8, 1);
        let t = Instant::now();
        for m in singles.iter() {
            let mut one = MaskBatch::new(n);
            one.push(m).unwrap();
            f.evaluate_masks(one.as_slice()).unwrap();
        }
        let single_per_mask = t.elapsed().as_secs_f64() / singles.len() as f64;
        for &b in &batches {
            let masks = random_masks(n, b, 2 + b as u64);
            let t = Instant::now();
            let v = f.evaluate_masks(masks.as_slice()).unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert!(v.iter().all(|x| x.is_finite()));
            println!(
                "{:>7} {:>6} {:>10.3} {:>12.2} {:>12.0} {:>14.2} {:>8.2}x",
                len,
                b,
                secs,
                b as f64 / secs,
                (b * len) as f64 / secs,
                1.0 / single_per_mask,
                single_per_mask / (secs / b as f64)
            );
        }
    }
}
