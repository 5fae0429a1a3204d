//! ProxySPEX benchmark: decode time and held-out R² on planted sparse functions.
//!
//! `cargo bench --bench proxyspex` prints, for n = 64 players, 8 000 paired uniform samples and
//! 20 planted Fourier coefficients of degree <= 3 (random supports, noise-free), the decode
//! seconds and the R² on 1 000 held-out uniform masks, for a few seeds.
//!
//! `SPEX_BENCH_DUMP=DIR` also writes each case (training masks and values, held-out masks and
//! values) to `DIR/case-n{N}-b{BUDGET}-seed{S}.json` for `scripts/proxyspex_reference.py`, which runs the
//! reference decoder on the very same data. `PROXYSPEX_CONFIG='{"max_depths": [4]}'` overrides
//! settings (a JSON `ProxyConfig`, missing fields default). `PROXYSPEX_BENCH_CURVE=1` adds R²
//! against budget for n in {64, 256, 1000} (`PROXYSPEX_BENCH_N=64,256` picks the sizes).
//! `PROXYSPEX_BENCH_BUDGET` and `PROXYSPEX_BENCH_SEEDS` change the main table's budget (8 000)
//! and number of seeds (5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::planted::planted_fourier;
use spex::decode::proxyspex::{decode, ProxyConfig};
use spex::design::{
    rng, stream,
    uniform::{paired_random_masks, random_masks},
};
use spex::faithfulness::faithfulness;
use spex::mask::MaskSlice;

struct Run {
    seconds: f64,
    r2: f64,
    diagnostics: spex::decode::proxyspex::ProxyDiagnostics,
}

fn config(seed: u64) -> ProxyConfig {
    let base = match std::env::var("PROXYSPEX_CONFIG") {
        Ok(json) => {
            serde_json::from_str(&json).expect("PROXYSPEX_CONFIG must be a JSON ProxyConfig (missing fields default)")
        }
        Err(_) => ProxyConfig::default(),
    };
    ProxyConfig { seed, ..base }
}

fn run(n: usize, budget: usize, seed: u64, dump: Option<&str>) -> Run {
    let f = planted_fourier(n, 20, 3, seed);
    let masks = paired_random_masks(n, budget, &mut rng(seed, stream::DESIGN));
    let values = f.eval_batch(masks.as_slice());
    let test = random_masks(n, 1000, &mut rng(seed, stream::HOLDOUT));
    let test_values = f.eval_batch(test.as_slice());
    if let Some(path) = dump {
        let rows = |m: MaskSlice<'_>| m.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let case = serde_json::json!({
            "n": n,
            "train_masks": rows(masks.as_slice()),
            "train_values": values,
            "holdout_masks": rows(test.as_slice()),
            "holdout_values": test_values,
        });
        let path = format!("{path}/case-n{n}-b{budget}-seed{seed}.json");
        std::fs::write(&path, case.to_string()).expect("write the case file");
        eprintln!("wrote {path}");
    }
    let t = Instant::now();
    let out = decode(masks.as_slice(), &values, &config(seed)).expect("decode");
    let seconds = t.elapsed().as_secs_f64();
    let r2 = faithfulness(&out.fourier, test.as_slice(), &test_values).r2.expect("held-out values vary");
    Run { seconds, r2, diagnostics: out.diagnostics }
}

fn main() {
    let dump = std::env::var("SPEX_BENCH_DUMP").ok();
    let budget: usize =
        std::env::var("PROXYSPEX_BENCH_BUDGET").map_or(8000, |b| b.parse().expect("PROXYSPEX_BENCH_BUDGET: a number"));
    let seeds: u64 =
        std::env::var("PROXYSPEX_BENCH_SEEDS").map_or(5, |b| b.parse().expect("PROXYSPEX_BENCH_SEEDS: a number"));
    println!("ProxySPEX, n = 64, {budget} paired uniform samples, 20 planted terms of degree <= 3, R² on 1 000 held-out masks");
    println!("threads: {}", rayon::current_num_threads());
    println!("| seed | seconds | held-out R² | depth | trees | proxy val. R² | extracted | kept | energy kept | ridge α | per candidate: depth boost/extract/refine s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut worst = f64::INFINITY;
    let mut slowest: f64 = 0.0;
    for seed in 0..seeds {
        let r = run(64, budget, seed, dump.as_deref());
        let d = &r.diagnostics;
        let stages: Vec<String> = d
            .candidates
            .iter()
            .map(|c| format!("{}: {:.2}/{:.2}/{:.2}", c.max_depth, c.boost_s, c.extract_s, c.refine_s))
            .collect();
        println!(
            "| {seed} | {:.2} | {:.4} | {} | {} | {:.4} | {} | {} | {:.4} | {:.1e} | {} |",
            r.seconds,
            r.r2,
            d.max_depth,
            d.trees,
            d.proxy_validation_r2.unwrap_or(f64::NAN),
            d.coefficients_extracted,
            d.coefficients_kept,
            d.energy_kept.unwrap_or(f64::NAN),
            d.ridge_alpha.unwrap_or(f64::NAN),
            stages.join(", "),
        );
        worst = worst.min(r.r2);
        slowest = slowest.max(r.seconds);
    }
    println!("worst held-out R² {worst:.4}, slowest decode {slowest:.2} s (target: <= 2 s, R² >= 0.992)");

    if std::env::var("PROXYSPEX_BENCH_CURVE").is_ok() {
        println!("\nR² against budget (seed 0, 20 planted terms of degree <= 3)");
        println!("| n | budget | seconds | held-out R² |");
        println!("|---|---|---|---|");
        let sizes: Vec<usize> = std::env::var("PROXYSPEX_BENCH_N")
            .map(|s| s.split(',').map(|x| x.parse().expect("PROXYSPEX_BENCH_N: comma-separated sizes")).collect())
            .unwrap_or_else(|_| vec![64, 256, 1000]);
        for n in sizes {
            for budget in [1000, 2000, 4000, 8000, 16000] {
                let r = run(n, budget, 0, dump.as_deref());
                println!("| {n} | {budget} | {:.2} | {:.4} |", r.seconds, r.r2);
            }
        }
    }
}
