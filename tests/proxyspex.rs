//! ProxySPEX end to end: planted functions recovered from few samples, determinism.

mod common;

use common::planted::{forest_values, planted_forest, planted_fourier};
use spex::decode::proxyspex::{decode, ProxyConfig, ProxyDecoded};
use spex::design::{
    rng, stream,
    uniform::{paired_random_masks, random_masks},
};
use spex::faithfulness::faithfulness;
use spex::mask::MaskBatch;
use spex::transform::Fourier;

fn holdout(n: usize, seed: u64) -> MaskBatch {
    random_masks(n, 1000, &mut rng(seed, stream::HOLDOUT))
}

fn decode_planted(f: &Fourier, budget: usize, seed: u64) -> (ProxyDecoded, f64) {
    let masks = paired_random_masks(f.n(), budget, &mut rng(seed, stream::DESIGN));
    let values = f.eval_batch(masks.as_slice());
    let out = decode(masks.as_slice(), &values, &ProxyConfig { seed, ..ProxyConfig::default() }).unwrap();
    let test = holdout(f.n(), seed);
    let r2 = faithfulness(&out.fourier, test.as_slice(), &f.eval_batch(test.as_slice())).r2.unwrap();
    (out, r2)
}

/// 20 random Fourier terms of degree <= 3 over 64 players from 4 000 samples. SPEX needs
/// 6 912 samples at n = 64 even with b = 6 (27 648 at its default b = 8).
#[test]
fn planted_sparse_fourier_recovered_from_4000_samples() {
    for seed in [1, 2] {
        let f = planted_fourier(64, 20, 3, seed);
        let (out, r2) = decode_planted(&f, 4000, seed);
        assert!(r2 > 0.99, "seed {seed}: held-out R² {r2}, {:?}", out.diagnostics);
    }
}

/// Three random depth-3 trees over 64 players (up to 3 x 27 hierarchical terms) from 2 000
/// samples.
#[test]
fn planted_trees_recovered_from_2000_samples() {
    for seed in [3, 4] {
        let trees = planted_forest(64, 3, 3, seed);
        let masks = paired_random_masks(64, 2000, &mut rng(seed, stream::DESIGN));
        let values = forest_values(&trees, masks.as_slice());
        let out = decode(masks.as_slice(), &values, &ProxyConfig { seed, ..ProxyConfig::default() }).unwrap();
        let test = holdout(64, seed);
        let r2 = faithfulness(&out.fourier, test.as_slice(), &forest_values(&trees, test.as_slice())).r2.unwrap();
        assert!(r2 > 0.99, "seed {seed}: held-out R² {r2}, {:?}", out.diagnostics);
    }
}

fn sorted_bits(f: &Fourier) -> Vec<(Vec<u32>, u64)> {
    let mut v: Vec<(Vec<u32>, u64)> = f.iter().map(|(k, c)| (k.players().to_vec(), c.to_bits())).collect();
    v.sort();
    v
}

/// Same inputs and seed: the same result bit for bit, on one thread or many; another seed
/// changes the validation split.
#[test]
fn decode_is_deterministic_from_the_seed() {
    let f = planted_fourier(40, 12, 3, 9);
    let masks = paired_random_masks(40, 1500, &mut rng(9, stream::DESIGN));
    let values = f.eval_batch(masks.as_slice());
    let config = ProxyConfig { max_trees: 300, subsample: 0.8, ..ProxyConfig::default() };
    let run = |config: &ProxyConfig| decode(masks.as_slice(), &values, config).unwrap();
    let a = run(&config);
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let b = one_thread.install(|| run(&config));
    assert_eq!(sorted_bits(&a.fourier), sorted_bits(&b.fourier));
    let strip = |d: &spex::decode::proxyspex::ProxyDiagnostics| {
        let mut d = d.clone();
        d.total_s = 0.0;
        for c in &mut d.candidates {
            (c.boost_s, c.extract_s, c.refine_s) = (0.0, 0.0, 0.0);
        }
        d
    };
    assert_eq!(strip(&a.diagnostics), strip(&b.diagnostics));
    let c = run(&ProxyConfig { seed: 1, ..config.clone() });
    assert_ne!(strip(&a.diagnostics).candidates, strip(&c.diagnostics).candidates);
}
