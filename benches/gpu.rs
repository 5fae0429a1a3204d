//! `cargo bench --features cuda --bench gpu` (`scripts/gpu-check.sh` runs it on a GPU through
//! `cargo test --release --bench gpu`, which reuses the release build): timings of
//! the CUDA path, printed as markdown table rows
//! `| path | model | batch | prompt tokens | masked queries/s | tokens/s | ms/query | GPU idle | model TFLOP/s (MFU) |`.
//!
//! * Kernels on their own: masks → attention bias and head gates for a batch (what replaces the
//!   host-side input build and its upload), and fused target scoring (`score_direct`) of 4
//!   target tokens per query over a 1B-shaped LM head (V = 128 256, E = 2048), bf16.
//! * Masked forwards of whole models (masked queries/s), with `--features candle-cuda`: not
//!   available in this build otherwise (a row says so). Their rows also give the GPU idle share
//!   between forwards ([`spex::cuda::lm::GpuTimeline`]: timing events on the compute stream) and
//!   the model FLOP rate, with its share of the device's dense bf16 peak (MFU) where the peak is
//!   known (`SPEX_PEAK_TFLOPS`, or the table in `bf16_peak_tflops`). Rows run compacted and
//!   planned by length (the default: hidden tokens dropped, rows of similar lengths in one
//!   pass, FLOPs counted over the slots actually run) and, at the automatic batch, also
//!   unplanned (masks in their own order, passes of the automatic batch) and full-length (every
//!   position kept, as transformers computes it).
//!
//! Timing: wall clock around whole batches with the device synchronised (values on the host
//! count), after one warm-up batch, repeated for at least `SPEX_BENCH_SECONDS` (default 1) s.
//! Exits with an error when no device is present.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use spex::cuda::stream::MaskUploader;
use spex::cuda::Gpu;
use spex::design::{rng, uniform::random_masks as spex_random_masks};
use spex::mask::MaskBatch;

fn seconds() -> Duration {
    let s = std::env::var("SPEX_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    Duration::from_secs_f64(s)
}

/// Runs `f` (one batch, which must block until its results are on the host) once to warm up,
/// then until `seconds()` have passed; seconds per batch.
fn time_blocking(mut f: impl FnMut()) -> f64 {
    f();
    let (start, mut n) = (Instant::now(), 0u32);
    while start.elapsed() < seconds() || n == 0 {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(n)
}

/// [`time_blocking`] for work queued on the device: synchronised after every batch.
fn time(gpu: &Gpu, mut f: impl FnMut()) -> f64 {
    time_blocking(|| {
        f();
        gpu.synchronize().expect("synchronise");
    })
}

/// One table row; tokens/s counts `tokens_per_query` (prompt and target) per masked query, as
/// scripts/gpu_peer.py does. `extra`: the GPU idle and model TFLOP/s cells (empty for kernels).
fn row(path: &str, model: &str, batch: usize, prompt: usize, tokens_per_query: usize, secs: f64, extra: [&str; 2]) {
    let q = batch as f64 / secs;
    let (tps, ms) = (q * tokens_per_query as f64, 1e3 * secs / batch as f64);
    let [idle, flops] = extra;
    println!("| {path} | {model} | {batch} | {prompt} | {q:.1} | {tps:.0} | {ms:.4} | {idle} | {flops} |");
}

/// Uniform random masks, seeded.
fn random_masks(n: usize, rows: usize, seed: u64) -> MaskBatch {
    spex_random_masks(n, rows, &mut rng(seed, 0))
}

/// Upload (pinned, double-buffered) + bias + head gates for batches of masks over `len` token
/// players and 16 × 32 head players.
fn bench_masking(gpu: &Gpu, batch: usize, len: usize) {
    let (layers, heads) = (16, 32);
    let n = len + layers * heads;
    let masks = random_masks(n, batch, batch as u64);
    let st = gpu.compute_stream();
    let owners: Vec<i32> = (0..len as i32).collect();
    let bits: Vec<i32> = (0..(layers * heads) as i32).map(|k| len as i32 + k).collect();
    let (dow, dbits) = (st.clone_htod(&owners).unwrap(), st.clone_htod(&bits).unwrap());
    let mut up = MaskUploader::new(gpu, batch, masks.as_slice().words_per_row()).unwrap();
    let mut bias = st.alloc_zeros::<half::bf16>(batch * len * len).unwrap();
    let mut gates = st.alloc_zeros::<f32>(layers * batch * heads).unwrap();
    let secs = time(gpu, || {
        let k = up.upload(gpu, masks.as_slice()).unwrap();
        let m = up.masks(k);
        let dm = m.device_masks();
        gpu.attention_bias(&mut bias.as_view_mut(), dm, &dow.as_view(), true).unwrap();
        gpu.head_gates_from_masks(&mut gates.as_view_mut(), dm, &dbits.as_view(), layers, heads).unwrap();
        up.release(gpu, k).unwrap();
    });
    row("kernel: masks → bias + gates (bf16)", "16x32 heads", batch, len, len, secs, ["", ""]);
}

/// Fused scoring of 4 targets per query over a 1B-shaped LM head.
fn bench_scoring(gpu: &Gpu, batch: usize) {
    let (v, e, t) = (128_256, 2048, 4);
    let st = gpu.compute_stream();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut rand =
        |k: usize| -> Vec<half::bf16> { (0..k).map(|_| half::bf16::from_f32(rng.random_range(-0.05..0.05))).collect() };
    let head = st.clone_htod(&rand(v * e)).unwrap();
    let hidden = st.clone_htod(&rand(batch * t * e)).unwrap();
    let targets: Vec<u32> = (0..batch * t).map(|i| (i * 7919 % v) as u32).collect();
    let secs = time(gpu, || {
        let out = gpu.score_direct(&hidden.as_view(), &head.as_view(), &targets, v, e).unwrap();
        let _ = st.clone_dtoh(&out).unwrap();
    });
    row("kernel: fused scoring, direct (bf16), 4 targets", "V=128256 E=2048", batch, 0, t, secs, ["", ""]);
}

fn main() {
    let gpu = match Gpu::new(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("bench gpu: {e}");
            std::process::exit(1);
        }
    };
    let (free, total) = gpu.memory().unwrap();
    eprintln!(
        "{} (sm_{}{}), {:.1} of {:.1} GiB free",
        gpu.name().unwrap_or_default(),
        gpu.capability().0,
        gpu.capability().1,
        free as f64 / (1u64 << 30) as f64,
        total as f64 / (1u64 << 30) as f64
    );
    for len in [32, 128] {
        for batch in [16, 64, 256] {
            bench_masking(&gpu, batch, len);
        }
    }
    for batch in [16, 64, 256] {
        bench_scoring(&gpu, batch);
    }
    models::run(&gpu.name().unwrap_or_default());
}

#[cfg(not(feature = "candle-cuda"))]
mod models {
    /// Model throughput needs candle's CUDA backend.
    pub fn run(_device: &str) {
        println!("| model forwards | (not measured: needs --features candle-cuda) | | | | | | | |");
    }
}

/// Masked queries/s of whole models on the GPU (bf16 weights): random-weight Llamas shaped like
/// the default model (SmolLM2-135M) and Llama 3.2 1B — the shapes `scripts/gpu_peer.py` runs —
/// with every prompt token a player (attention mode, p(keep) = 1/2) and a 4-token target.
#[cfg(feature = "candle-cuda")]
mod models {
    use candle_core::DType;
    use spex::bench::BenchModel;
    use spex::cuda::lm::GpuLmValue;
    use spex::model::llama::SHAPES;
    use spex::model::ModelInfo;
    use spex::value::setup::ComputeDevice;

    /// Model FLOPs of one masked query: the forward over `tokens` positions per row (every
    /// weight matrix at 2 FLOPs per multiply-add, [`ModelInfo::flops_per_token`], plus QKᵀ and
    /// PV over all positions, as the forward computes them) and the LM head at `picks` positions.
    fn flops_per_query(c: &ModelInfo, tokens: usize, picks: usize) -> f64 {
        let t = tokens as f64;
        let attention = 4.0 * t * t * (c.num_heads * c.head_dim) as f64;
        t * c.flops_per_token() + c.num_layers as f64 * attention + 2.0 * (picks * c.hidden_size * c.vocab_size) as f64
    }

    /// Dense bf16 tensor-core peak of the device in TFLOP/s: `SPEX_PEAK_TFLOPS`, else the
    /// vendor figure for a few data-centre GPUs by name (SXM parts), else unknown.
    fn bf16_peak_tflops(device: &str) -> Option<f64> {
        if let Some(p) = std::env::var("SPEX_PEAK_TFLOPS").ok().and_then(|s| s.parse().ok()) {
            return Some(p);
        }
        const PEAKS: [(&str, f64); 4] = [("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0)];
        PEAKS.iter().find(|(name, _)| device.contains(name)).map(|p| p.1)
    }

    pub fn run(device: &str) {
        let peak = bf16_peak_tflops(device);
        for shape in SHAPES {
            let model = BenchModel::random(shape, ComputeDevice::Cuda).expect("random model");
            for len in [32, 128] {
                let spec = model.value(len).expect("a random prompt");
                let c = spec.model().model.info();
                let picks = spec.target_tokens().len();
                let mut f = GpuLmValue::new(spec, 0, DType::BF16).expect("GPU LM");
                // Compacted rows planned by length (the default) at growing batches, then at the
                // automatic batch unplanned (masks in their order) and in the full-length form.
                let configs = [(16, true, true), (64, true, true), (256, true, true)];
                let auto = [(0, true, true), (0, true, false), (0, false, true)];
                for (batch, compaction, planning) in configs.into_iter().chain(auto) {
                    f.set_compaction(compaction);
                    f.set_planning(planning);
                    let rows = if batch == 0 { 4 * f.batch() } else { batch.min(f.batch()) };
                    let masks = super::random_masks(len, rows, rows as u64);
                    // The FLOPs of the forwards as they run: each pass computes its own slots.
                    let plan = f.plan(masks.as_slice()).expect("a forward plan");
                    let flops: f64 = plan
                        .pieces
                        .iter()
                        .zip(&plan.slots)
                        .map(|(p, &s)| p.len() as f64 * flops_per_query(&c, s, picks))
                        .sum::<f64>()
                        / rows as f64;
                    f.take_timeline();
                    // evaluate_masks returns values on the host: it blocks until the batch is done.
                    let secs = super::time_blocking(|| {
                        let v = f.evaluate_masks(masks.as_slice()).expect("masked forward");
                        assert!(v.iter().all(|x| x.is_finite()));
                    });
                    let idle = format!("{:.1} %", 100.0 * f.take_timeline().idle_share());
                    let tflops = flops * rows as f64 / secs / 1e12;
                    let rate = match peak {
                        Some(p) => format!("{tflops:.1} ({:.0} %)", 100.0 * tflops / p),
                        None => format!("{tflops:.1} (peak unknown)"),
                    };
                    let form = match (compaction, planning) {
                        (false, _) => " full-length",
                        (true, false) => " unplanned",
                        (true, true) => "",
                    };
                    let label = if batch == 0 {
                        format!("spex-bf16{form} (auto batch {})", f.batch())
                    } else {
                        format!("spex-bf16{form}")
                    };
                    super::row(&label, shape, rows, len, len + 4, secs, [&idle, &rate]);
                }
            }
        }
    }
}
