//! Subset trainings per second: `B` models trained at once on masked subsets (one batched tensor
//! program) against the same models trained one after another.
//!
//! `cargo bench --bench data` runs the setting: n = 1 000 training examples, 64
//! features, 10 classes, 200 full-batch steps, batches of 256 masks keeping each example with
//! probability ½, on the machine's cores. Arguments: `--sequential K` (models timed one at a
//! time, default 32; their rate is per model, so fewer suffice), `--reps R` (timed batches,
//! default 3), `--mlp-only`, `--logreg-only`.
//!
//! Two process settings make the comparison fair and are printed: glibc's allocator keeps freed
//! memory ([`spex::value::data::tune_allocator`]), and `RAYON_NUM_THREADS` is set to the number
//! of cores when unset — otherwise candle reads `/proc/cpuinfo` on every matmul to count
//! physical cores, which costs the one-at-a-time training (two small matmuls per step) about
//! 40% of its time and would inflate the speedup. The last line is the floor the batched
//! logistic regression cannot beat: its two GEMMs per step at the GEMM throughput measured here.

use std::time::Instant;

use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spex::mask::{Mask, MaskBatch};
use spex::planted::standard_normal;
use spex::value::data::{tune_allocator, BatchTrainer, Features, ModelKind, Standardizer, TrainConfig};

const N: usize = 1000;
const DIM: usize = 64;
const CLASSES: usize = 10;
const STEPS: usize = 200;
const BATCH: usize = 256;

/// Ten Gaussian clusters in 64 dimensions, centres 1.5 standard deviations apart per axis.
fn data(rng: &mut ChaCha8Rng) -> Features {
    let centres: Vec<f64> = (0..CLASSES * DIM).map(|_| 1.5 * standard_normal(rng)).collect();
    let mut x = Vec::with_capacity(N * DIM);
    let mut labels = Vec::with_capacity(N);
    for i in 0..N {
        let c = i % CLASSES;
        x.extend((0..DIM).map(|j| centres[c * DIM + j] + standard_normal(rng)));
        labels.push(c.to_string());
    }
    let f = Features::from_labels(x, DIM, &labels, None).unwrap();
    Standardizer::fit(&f).apply(&f)
}

fn masks(rng: &mut ChaCha8Rng, rows: usize) -> MaskBatch {
    let mut batch = MaskBatch::new(N);
    for _ in 0..rows {
        let bits: Vec<bool> = (0..N).map(|_| rng.random::<bool>()).collect();
        batch.push(Mask::from_bools(&bits).as_ref()).unwrap();
    }
    batch
}

/// Seconds per call, best of `reps`.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string()); // before any thread starts
    }
    let tuned = tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    let sequential = arg(&args, "--sequential", 32).clamp(1, BATCH);
    let reps = arg(&args, "--reps", 3).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let train = data(&mut rng);
    let batch = masks(&mut rng, BATCH);
    let threads = rayon::current_num_threads();
    println!(
        "data attribution: n = {N}, {DIM} features, {CLASSES} classes, {STEPS} steps, batch of {BATCH} masks, \
         {threads} threads (RAYON_NUM_THREADS={}), f32, CPU, allocator tuned: {tuned}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default()
    );
    let mut models = vec![];
    if !args.iter().any(|a| a == "--mlp-only") {
        models.push(("logreg", ModelKind::LogReg));
    }
    if !args.iter().any(|a| a == "--logreg-only") {
        models.push(("mlp h=32", ModelKind::Mlp { hidden: 32 }));
    }
    println!("{:<10} {:<34} {:>10} {:>14} {:>9}", "model", "mode", "seconds", "trainings/s", "speedup");
    for (name, model) in models {
        let trainer = |block: usize, fused: bool| {
            let config = TrainConfig { model, steps: STEPS, block, fused, ..TrainConfig::default() };
            BatchTrainer::new(&train, config, &Device::Cpu).unwrap()
        };
        let one_by_one = trainer(1, true);
        let part = batch.slice(0..sequential);
        let seq = time(1, || {
            one_by_one.train(part).unwrap();
        }) / sequential as f64;
        let seq_rate = 1.0 / seq;
        println!(
            "{name:<10} {:<34} {:>10.3} {:>14.1} {:>9}",
            format!("one after another ({sequential} timed)"),
            seq * BATCH as f64,
            seq_rate,
            "1.0x"
        );
        for (mode, block, fused) in [
            ("batched, auto block", 0, true),
            ("batched, one block of 256", BATCH, true),
            ("batched, generic ops", 0, false),
        ] {
            let t = trainer(block, fused);
            let secs = time(reps, || {
                t.train(batch.as_slice()).unwrap();
            });
            let rate = BATCH as f64 / secs;
            println!("{name:<10} {mode:<34} {secs:>10.3} {rate:>14.1} {:>8.1}x", rate / seq_rate);
        }
    }
    // The floor: per step, X·W and Xᵀ·R with X of n × (d+1) and W of (d+1) × (256·10).
    let x = candle_core::Tensor::ones((N, DIM + 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let w = candle_core::Tensor::ones((DIM + 1, BATCH * CLASSES), candle_core::DType::F32, &Device::Cpu).unwrap();
    let secs = time(20, || {
        x.matmul(&w).unwrap();
    });
    let gflops = 2.0 * (N * (DIM + 1) * BATCH * CLASSES) as f64 / secs / 1e9;
    let floor = 2.0 * secs * STEPS as f64;
    println!(
        "GEMM {N}x{}x{}: {gflops:.1} GFLOPS; the batched logistic regression's two GEMMs per step alone take \
         {floor:.3} s per batch ({:.1} trainings/s at most)",
        DIM + 1,
        BATCH * CLASSES,
        BATCH as f64 / floor
    );
}
