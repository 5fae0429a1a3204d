//! GPU checks (feature `cuda`): every kernel against its CPU twin on fresh random inputs, with
//! outputs poisoned (filled with NaN) before each launch so a kernel that skips an element
//! fails; the pinned upload/download path; masked forwards with device-built inputs vs the CPU.
//!
//! The tests that need a device are `#[ignore]`d, so `cargo test --features cuda` on a machine
//! without one reports them as ignored, not passed; `scripts/gpu-check.sh` runs them with
//! `--ignored` (and fails when no device is visible). The no-device behaviour is tested always.
//!
//! The kernel cases and their tolerances are shared with the host emulation of the kernels
//! (`tests/kernels_emulated.rs`, every test run): `tests/kernel_cases`. There the bf16/f16
//! kernels are compared with a twin fed the *same rounded* inputs; the rounding of the weights
//! themselves (~0.4 % per bf16 element) changes a model's values relative to f32 and is a
//! property of the model, not of a kernel (the model tolerances below).
#![cfg(feature = "cuda")]

mod kernel_cases;
mod models_common;

use candle_core::{Device, Tensor};
use cudarc::driver::CudaSlice;
use kernel_cases::*;
use models_common::*;
use spex::cuda::kernels::{BaseMaps, CompactedRows, DeviceMasks, GpuFloat};
use spex::cuda::stream::{MaskUploader, ValueDownloader};
use spex::cuda::{device_count, CudaError, Gpu};
use spex::mask::MaskBatch;
use spex::model::{ops, ModelInput};
use spex::value::ablate::{compacted_len, compacted_rows, dense_head_gates, full_length_visibility, replaced_ids};
use spex::value::lm::{LmOptions, LmValue, Target};
use spex::value::players::{HeadMode, HeadPlayer, Prompt, TokenMode};

const NEEDS: &str = "needs a CUDA device; run scripts/gpu-check.sh";

fn gpu() -> Gpu {
    Gpu::new(0).unwrap_or_else(|e| panic!("GPU test without a usable device ({e}): it {NEEDS}"))
}

/// `n` values poisoned with NaN on the device.
fn poisoned<T: GpuFloat>(g: &Gpu, n: usize) -> CudaSlice<T> {
    g.compute_stream().clone_htod(&vec![T::from_f32(f32::NAN); n]).unwrap()
}

fn download<T: GpuFloat>(g: &Gpu, x: &CudaSlice<T>) -> Vec<f32> {
    g.compute_stream().clone_dtoh(x).unwrap().into_iter().map(GpuFloat::to_f32).collect()
}

/// Random masks of `n` players (more than 64, so rows span several words).
fn masks(n: usize, rows: usize, seed: u64) -> MaskBatch {
    random_masks(n, rows, seed)
}

#[test]
fn no_device_is_a_clean_error() {
    match device_count() {
        Err(CudaError::NoDriver) => assert!(matches!(Gpu::new(0), Err(CudaError::NoDriver))),
        Ok(count) => assert!(matches!(Gpu::new(count), Err(CudaError::NoDevice { .. }))),
        Err(e) => panic!("unexpected probe error: {e}"),
    }
}

fn check_attention_bias<T: GpuFloat>(g: &Gpu, seed: u64) {
    let mut rng = rng(seed);
    let (n, rows, len) = (130, 9, 37);
    let m = masks(n, rows, seed);
    let b = m.len();
    let owners = random_owners(len, n, &mut rng);
    let st = g.compute_stream();
    let (dm, dow) = (st.clone_htod(m.as_slice().words()).unwrap(), st.clone_htod(&owners).unwrap());
    for causal in [true, false] {
        let mut out = poisoned::<T>(g, b * len * len);
        let dmv = dm.as_view();
        let dmasks = DeviceMasks { words: &dmv, rows: b, words_per_row: m.as_slice().words_per_row() };
        g.attention_bias(&mut out.as_view_mut(), dmasks, &dow.as_view(), causal).unwrap();
        let vis = full_length_visibility(m.as_slice(), &owners);
        let want: Vec<f32> = ops::attention_bias(b, len, Some(&vis), causal, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(download(g, &out), want, "attention_bias_{} causal={causal}", T::SUFFIX);
    }
}

#[test]
#[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
fn attention_bias_matches_cpu_twin() {
    let g = gpu();
    check_attention_bias::<f32>(&g, 1);
    check_attention_bias::<half::bf16>(&g, 2);
    check_attention_bias::<half::f16>(&g, 3);
}

fn check_compact_rows<T: GpuFloat>(g: &Gpu, seed: u64, len: usize) {
    let m = masks(90, 5, seed);
    let (owners, read, read_b, ids) = compaction_case(seed, 90, len);
    let b = m.len();
    let st = g.compute_stream();
    let dm = st.clone_htod(m.as_slice().words()).unwrap();
    let dmv = dm.as_view();
    let dmasks = DeviceMasks { words: &dmv, rows: b, words_per_row: m.as_slice().words_per_row() };
    let (down, dread, dids) =
        (st.clone_htod(&owners).unwrap(), st.clone_htod(&read).unwrap(), st.clone_htod(&ids).unwrap());
    let maps = BaseMaps { owners: &down.as_view(), read: &dread.as_view(), ids: &dids.as_view() };
    for slots in compaction_slots(compacted_len(m.as_slice(), &owners, &read_b)) {
        for (causal, renumber) in [(true, false), (false, false), (true, true)] {
            let mut out_ids: CudaSlice<u32> = st.clone_htod(&vec![u32::MAX; b * slots]).unwrap();
            let mut out_pos: CudaSlice<u32> = st.clone_htod(&vec![u32::MAX; b * slots]).unwrap();
            let mut bias = poisoned::<T>(g, b * slots * slots);
            let out = CompactedRows {
                ids: &mut out_ids.as_view_mut(),
                positions: &mut out_pos.as_view_mut(),
                bias: &mut bias.as_view_mut(),
                slots,
            };
            g.compact_rows(out, dmasks, &maps, 7, causal, renumber).unwrap();
            let (want_ids, want_pos, vis) = compacted_rows(m.as_slice(), &owners, &read_b, &ids, slots, 7, renumber);
            let what =
                format!("compact_rows_{} len {len} slots {slots} causal={causal} renumber={renumber}", T::SUFFIX);
            let got = (st.clone_dtoh(&out_ids).unwrap(), st.clone_dtoh(&out_pos).unwrap());
            assert!(got == (want_ids, want_pos), "{what}: ids or positions differ");
            let want = ops::attention_bias(b, slots, Some(&vis), causal, &Device::Cpu).unwrap();
            assert!(
                download(g, &bias) == want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{what}: bias differs"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
fn compact_rows_matches_cpu_twin() {
    let g = gpu();
    check_compact_rows::<f32>(&g, 14, 37);
    check_compact_rows::<f32>(&g, 15, 300);
    check_compact_rows::<half::bf16>(&g, 16, 37);
    check_compact_rows::<half::f16>(&g, 17, 41);
}

#[test]
#[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
fn replace_ids_and_head_gates_match_cpu_twins() {
    let g = gpu();
    let mut rng = rng(4);
    let (n, len, layers, heads) = (100, 23, 3, 5);
    let m = masks(n, 12, 4);
    let b = m.len();
    let owners = random_owners(len, n, &mut rng);
    let (ids, bits) = ids_and_head_bits(4, n, len, layers, heads);
    let st = g.compute_stream();
    let dm = st.clone_htod(m.as_slice().words()).unwrap();
    let dmv = dm.as_view();
    let dmasks = DeviceMasks { words: &dmv, rows: b, words_per_row: m.as_slice().words_per_row() };
    let mut out: CudaSlice<u32> = st.clone_htod(&vec![u32::MAX; b * len]).unwrap();
    let (down, dids) = (st.clone_htod(&owners).unwrap(), st.clone_htod(&ids).unwrap());
    g.replace_ids(&mut out.as_view_mut(), dmasks, &down.as_view(), &dids.as_view(), 7).unwrap();
    assert_eq!(st.clone_dtoh(&out).unwrap(), replaced_ids(m.as_slice(), &ids, &owners, 7));
    let mut gates = poisoned::<f32>(&g, layers * b * heads);
    let dbits = st.clone_htod(&bits).unwrap();
    g.head_gates_from_masks(&mut gates.as_view_mut(), dmasks, &dbits.as_view(), layers, heads).unwrap();
    assert_eq!(download(&g, &gates), dense_head_gates(m.as_slice(), &bits, layers, heads));
}

fn check_head_gates<T: GpuFloat + candle_core::WithDType>(g: &Gpu, seed: u64) {
    let [b, t, h, d] = [6, 11, 4, 16];
    let (x, fill, gate) = head_gate_case(seed, [b, t, h, d], round::<T>);
    let st = g.compute_stream();
    let to_t = |v: &[f32]| -> Vec<T> { v.iter().map(|&x| T::from_f32(x)).collect() };
    let dgate = st.clone_htod(&gate).unwrap();
    let dfill = st.clone_htod(&to_t(&fill)).unwrap();
    for mean in [false, true] {
        let mut dx = st.clone_htod(&to_t(&x)).unwrap();
        let dfv = dfill.as_view();
        g.apply_head_gates(&mut dx.as_view_mut(), &dgate.as_view(), mean.then_some(&dfv), [b, t, h, d]).unwrap();
        let mut want = to_t(&x);
        ops::gate_heads_slice(&mut want, &gate, mean.then_some(&to_t(&fill)[..]), [b, t, h, d]);
        let want: Vec<f32> = want.into_iter().map(GpuFloat::to_f32).collect();
        assert_eq!(download(g, &dx), want, "head_gates_{} mean={mean}", T::SUFFIX);
    }
}

#[test]
#[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
fn head_gating_matches_cpu_twin() {
    let g = gpu();
    check_head_gates::<f32>(&g, 5);
    check_head_gates::<half::bf16>(&g, 6);
    check_head_gates::<half::f16>(&g, 7);
}

/// `x` rounded to `T` and back.
fn round<T: GpuFloat>(x: f32) -> f32 {
    T::from_f32(x).to_f32()
}

fn check_score_direct<T: GpuFloat>(g: &Gpu, seed: u64) {
    // Picks not a multiple of the kernel's 8 rows, vocabulary not a multiple of anything.
    let (n, v, e) = (37, 3001, 96);
    let (hidden, head, targets) = scoring_problem(seed, n, v, e, round::<T>);
    let st = g.compute_stream();
    let to_t = |x: &[f32]| -> Vec<T> { x.iter().map(|&y| T::from_f32(y)).collect() };
    let (dh, dw) = (st.clone_htod(&to_t(&hidden)).unwrap(), st.clone_htod(&to_t(&head)).unwrap());
    let out = g.score_direct(&dh.as_view(), &dw.as_view(), &targets, v, e).unwrap();
    assert_scores(
        &download(g, &out),
        &cpu_scores(&hidden, &head, &targets, n, v, e),
        &format!("score_direct_{}", T::SUFFIX),
    );
}

fn check_score_tiles<T: GpuFloat>(g: &Gpu, seed: u64) {
    let (n, v, e) = (21, TILED_VOCAB, 32);
    let (hidden, head, targets) = scoring_problem(seed, n, v, e, |x| x);
    let logits = tile_logits(&hidden, &head, n, v, e, round::<T>);
    let st = g.compute_stream();
    let mut state = g.score_begin(&targets, 1).unwrap();
    for (v0, vt) in TILES {
        let tile: Vec<T> = tile_of(&logits, n, v, (v0, vt), vt).into_iter().map(T::from_f32).collect();
        let dt = st.clone_htod(&tile).unwrap();
        g.score_tile(&mut state, &dt.as_view(), v0, vt, vt).unwrap();
    }
    let got = download(g, &g.score_finish(&state).unwrap());
    assert_scores(&got, &lse_scores(&logits, &targets, v), &format!("score_tile_{}", T::SUFFIX));
}

#[test]
#[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
fn fused_scoring_matches_cpu_twin() {
    let g = gpu();
    check_score_direct::<f32>(&g, 8);
    check_score_direct::<half::bf16>(&g, 9);
    check_score_direct::<half::f16>(&g, 10);
    check_score_tiles::<f32>(&g, 11);
    check_score_tiles::<half::bf16>(&g, 12);
    check_score_tiles::<half::f16>(&g, 13);
    assert!(
        g.score_direct::<f32>(
            &g.compute_stream().alloc_zeros(4).unwrap().as_view(),
            &g.compute_stream().alloc_zeros(8).unwrap().as_view(),
            &[2],
            2,
            4
        )
        .is_err(),
        "target outside the vocabulary"
    );
}

#[test]
#[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
fn pinned_double_buffered_uploads_round_trip() {
    let g = gpu();
    let batches: Vec<MaskBatch> = (0..5).map(|s| masks(150, 20 + s as usize, 20 + s)).collect();
    let mut up = MaskUploader::new(&g, 32, batches[0].as_slice().words_per_row()).unwrap();
    let mut down = ValueDownloader::new(&g, 32 * 3).unwrap();
    let mut pending: Option<usize> = None;
    for (i, b) in batches.iter().enumerate() {
        // Upload batch i while batch i-1's slot is still in use, then check batch i-1.
        let k = up.upload(&g, b.as_slice()).unwrap();
        if let Some(prev) = pending {
            check_slot(&g, &up, prev, &batches[i - 1], &mut down);
            up.release(&g, prev).unwrap();
        }
        pending = Some(k);
    }
    check_slot(&g, &up, pending.unwrap(), batches.last().unwrap(), &mut down);
    assert!(up.upload(&g, masks(150, 40, 1).as_slice()).is_err(), "over capacity");
}

fn check_slot(g: &Gpu, up: &MaskUploader, k: usize, want: &MaskBatch, down: &mut ValueDownloader) {
    let m = up.masks(k);
    let words = g.compute_stream().clone_dtoh(&m.words).unwrap();
    assert_eq!(words, want.as_slice().words());
    // Values come back through the pinned downloader: here, the head-gate bits of 3 players.
    let bits = [0i32, 77, 149];
    let db = g.compute_stream().clone_htod(&bits).unwrap();
    let mut gates = poisoned::<f32>(g, m.rows * 3);
    let dmasks = m.device_masks();
    g.head_gates_from_masks(&mut gates.as_view_mut(), dmasks, &db.as_view(), 1, 3).unwrap();
    let got = down.download(g, &gates.as_view()).unwrap();
    let want: Vec<f64> = dense_head_gates(want.as_slice(), &bits, 1, 3).into_iter().map(f64::from).collect();
    assert_eq!(got, want);
}

/// A masked forward whose inputs (bias, gates) were built on the device from the bit-packed
/// masks equals the CPU path's values. The forward itself runs on the CPU here: the model on
/// the GPU needs candle's CUDA backend (see the README's GPU section).
#[test]
#[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
fn masked_forward_with_device_built_inputs_matches_cpu() {
    let g = gpu();
    let m = tiny_llama(21);
    let opts = LmOptions {
        heads: vec![HeadPlayer { layer: 0, head: 2 }, HeadPlayer { layer: 1, head: 1 }],
        token_mode: TokenMode::Attention,
        head_mode: HeadMode::Zero,
        target: Target::Tokens(m.encode(" the mat").unwrap()),
        ..Default::default()
    };
    let f = LmValue::new(m.clone(), &Prompt::new("the cat sat on the mat").with_prefix("a dog "), opts).unwrap();
    let lay = f.layout();
    let batch = masks(f.n_players(), 12, 30);
    let (b, len) = (batch.len(), lay.ids.len());
    let st = g.compute_stream();
    let dm = st.clone_htod(batch.as_slice().words()).unwrap();
    let dmv = dm.as_view();
    let dmasks = DeviceMasks { words: &dmv, rows: b, words_per_row: batch.as_slice().words_per_row() };
    let mut bias = poisoned::<f32>(&g, b * len * len);
    g.attention_bias(&mut bias.as_view_mut(), dmasks, &st.clone_htod(&lay.owner_map()).unwrap().as_view(), true)
        .unwrap();
    let (nl, nh) = (lay.num_layers, lay.num_heads);
    let mut gates = poisoned::<f32>(&g, nl * b * nh);
    g.head_gates_from_masks(
        &mut gates.as_view_mut(),
        dmasks,
        &st.clone_htod(&lay.head_bit_map()).unwrap().as_view(),
        nl,
        nh,
    )
    .unwrap();
    let mut input: ModelInput = lay.build_full_length(batch.as_slice()).unwrap();
    input.attn_bias = Some(Tensor::from_vec(download(&g, &bias), (b, 1, len, len), &Device::Cpu).unwrap());
    let dense = download(&g, &gates);
    let hg = input.head_gates.as_mut().unwrap();
    for (l, gate) in hg.gates.iter_mut().enumerate() {
        *gate = Some(Tensor::from_slice(&dense[l * b * nh..(l + 1) * b * nh], (b, nh), &Device::Cpu).unwrap());
    }
    let hidden = m.model.forward(&input).unwrap().hidden;
    let lp = ops::score_targets(&hidden, m.model.lm_head().unwrap(), &f.full_length_picks(b)).unwrap();
    let got: Vec<f64> = lp.chunks(f.target_tokens().len()).map(|c| c.iter().map(|&x| x as f64).sum()).collect();
    let want = f.evaluate_masks(batch.as_slice()).unwrap();
    for (r, (x, y)) in got.iter().zip(&want).enumerate() {
        assert_close(*x, *y, 1e-5, &format!("row {r}"));
    }
}

/// Whole models on the GPU (feature `candle-cuda`): the masked forward and a sweep.
#[cfg(feature = "candle-cuda")]
mod models_on_gpu {
    use std::sync::Arc;

    use super::*;
    use candle_core::DType;
    use rand::Rng;
    use spex::cuda::lm::{on_every_gpu, GpuLmValue, GpuTimeline};
    use spex::explain::Explainer;
    use spex::model;
    use spex::plan::Method;
    use spex::value::lm::LmMetric;
    use spex::value::setup::{self, ComputeDevice, InputSpec};

    /// f32 on the GPU vs f32 on the CPU: same arithmetic, different summation order (cuBLAS,
    /// the tile scorer).
    const F32_TOL: f64 = 1e-4;
    /// bf16 on the GPU vs f32 on the CPU: the bf16 model's own rounding, as measured on the CPU
    /// in tests/device_generic.rs (largest 0.0057 relative), plus bf16 logits tiles.
    const BF16_TOL: f64 = 0.02;
    /// The same for a logit difference, which carries the rounding of two logits of the tiny
    /// random models' large magnitude (tests/device_generic.rs: largest 0.097 on the CPU).
    const LOGIT_DIFF_BF16_TOL: f64 = 0.25;

    fn spec(seed: u64) -> LmValue {
        lm_value(tiny_llama(seed), TokenMode::Attention, "the cat sat on the mat", false, true)
    }

    /// The words of `prompt` behind the prefix "a dog " as players in `mode`, plus (`heads`) two
    /// heads under mean ablation, scoring the log-probability of " the mat" or (`logit_diff`)
    /// logit(" cat") − logit(" mat"). Without head players the rows run behind the prefix cache.
    fn lm_value(m: Arc<model::LoadedModel>, mode: TokenMode, prompt: &str, logit_diff: bool, heads: bool) -> LmValue {
        let token = |s: &str| m.encode(s).unwrap()[0];
        let metric = if logit_diff {
            LmMetric::LogitDiff { a: token(" cat"), b: token(" mat") }
        } else {
            LmMetric::TargetLogProb
        };
        let heads =
            if heads { vec![HeadPlayer { layer: 0, head: 3 }, HeadPlayer { layer: 1, head: 0 }] } else { vec![] };
        let opts = LmOptions {
            heads,
            token_mode: mode,
            head_mode: HeadMode::Mean,
            target: Target::Tokens(m.encode(" the mat").unwrap()),
            metric,
            ..Default::default()
        };
        LmValue::new(m, &Prompt::new(prompt).with_prefix("a dog "), opts).unwrap()
    }

    /// Both families, every token mode and metric, with head players and without (then the rows
    /// run behind the prefix cache, prefilled on the device), in f32 and bf16, compacted and
    /// full-length, against the CPU.
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn masked_forward_on_gpu_matches_cpu() {
        let families = [("llama", tiny_llama as fn(u64) -> Arc<model::LoadedModel>), ("gpt2", tiny_gpt2)];
        let modes = [TokenMode::Attention, TokenMode::Replace(3), TokenMode::Remove];
        let games = families.into_iter().flat_map(|f| {
            modes
                .into_iter()
                .flat_map(move |m| [(false, false), (false, true), (true, false), (true, true)].map(|c| (f, m, c)))
        });
        for ((family, model), mode, (logit_diff, heads)) in games {
            let bf16_tol = if logit_diff { LOGIT_DIFF_BF16_TOL } else { BF16_TOL };
            let cases =
                [(DType::F32, F32_TOL), (DType::BF16, bf16_tol)].into_iter().flat_map(|c| [(c, true), (c, false)]);
            for ((dtype, tol), compaction) in cases {
                // Long enough, and without the all-ones mask, that attention-mode chunks compact
                // (17 of 20 and 14 of 18 slots for these models and masks).
                let prompt = "the cat sat on the mat the dog sat on the mat the cat sat";
                let cpu = lm_value(model(40), mode, prompt, logit_diff, heads);
                assert_eq!(cpu.cached_prefix() > 0, !heads, "{family}: the prefix cache");
                let all = masks(cpu.n_players(), 30, 41);
                let batch = all.as_slice().slice(1..all.len());
                let lay = cpu.layout();
                let slots = lay.compacted_len(batch);
                assert!(mode != TokenMode::Attention || slots < lay.ids.len(), "{family}: nothing to compact");
                let want = cpu.evaluate_masks(batch).unwrap();
                let mut gpu = GpuLmValue::new(cpu.clone(), 0, dtype).unwrap();
                gpu.set_compaction(compaction);
                let got = gpu.evaluate_masks(batch).unwrap();
                for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                    let what = format!(
                        "{family} {mode:?} logit_diff={logit_diff} heads={heads} {dtype:?} compaction={compaction} row {r}"
                    );
                    assert_close(*g, *w, tol, &what);
                }
            }
        }
    }

    /// Value functions built one after another on one model (the inputs of a sweep) share its
    /// weights on the device, through the one candle device per GPU (`shared_device`): the
    /// second finds the first's copy instead of uploading its own, and each gives the CPU's values.
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn successive_value_functions_share_the_weights_on_the_device() {
        use spex::cuda::lm::shared_device;
        let m = tiny_llama(64);
        let dev = shared_device(0).unwrap();
        assert!(dev.same_device(&shared_device(0).unwrap()));
        let copy = || m.model_on(&dev, DType::F32).unwrap().lm_head().unwrap().id();
        let mut first = None;
        for prompt in ["the cat sat on the mat", "the dog sat on the cat by the mat"] {
            let cpu = lm_value(m.clone(), TokenMode::Attention, prompt, false, false);
            let batch = masks(cpu.n_players(), 20, 65);
            let want = cpu.evaluate_masks(batch.as_slice()).unwrap();
            let got = GpuLmValue::new(cpu, 0, DType::F32).unwrap().evaluate_masks(batch.as_slice()).unwrap();
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(*g, *w, F32_TOL, &format!("{prompt:?} row {r}"));
            }
            assert_eq!(*first.get_or_insert_with(copy), copy(), "{prompt:?}: the weights were uploaded again");
        }
    }

    /// The causal-LM game `--device cuda` builds (every visible GPU, bf16), without and with a
    /// fixed prefix (then behind the prefix cache), runs there with the CPU's values.
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn device_cuda_lm_game_gives_the_cpu_values() {
        let m = tiny_llama(62);
        for prefix in ["", "a dog sat by the door. "] {
            let spec = InputSpec { prefix: prefix.into(), ..InputSpec::new("the cat sat on the mat") };
            device_cuda_game_matches_cpu(&m, &spec, 63, BF16_TOL, &format!("prefix {prefix:?}"));
        }
    }

    /// `spex sweep --device cuda`: inputs prepared on another thread, placed on the GPU and
    /// decoded on a third (`spex::sweep::run`), give the values the CPU sweep gives, input by
    /// input (all 2^n masks and their held-out repeats, bf16 against f32).
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn a_sweep_on_the_gpu_gives_the_cpu_values() {
        use spex::plan::PlanSpec;
        use spex::sweep::{self, SweepInput, SweepOptions};
        let tmp = tempfile::tempdir().unwrap();
        let (tok, dir) = (byte_bpe(), tmp.path().join("model"));
        let shape = LlamaSpec::tiny(tok.tokens.len());
        write_llama_hf(&dir, &shape, &llama_weights(&shape, 64), &tok);
        let inputs: Vec<SweepInput> = ["", "a dog sat by the door. "]
            .iter()
            .enumerate()
            .map(|(k, prefix)| SweepInput {
                id: format!("in{k}"),
                spec: InputSpec {
                    model: Some(dir.clone()),
                    prefix: prefix.to_string(),
                    max_new_tokens: Some(2),
                    ..InputSpec::new("the cat sat on the mat")
                },
            })
            .collect();
        let plan_for = |n: usize| PlanSpec::with_defaults(n, None, Some(64));
        let values = |device: ComputeDevice| {
            let out = tmp.path().join(format!("{device:?}"));
            let options = SweepOptions {
                out: out.clone(),
                device,
                force: false,
                shard: spex::store::Shard::ALL,
                batch_size: None,
                sync_every: 1,
                plan_for: &plan_for,
                index: spex::transform::Index::Fbii,
                max_order: None,
                top: 3,
                cancel: None,
            };
            let report = sweep::run(&inputs, &options, &mut |_| {});
            let done: Vec<&str> = report.outcomes.iter().map(|o| o.status.as_str()).collect();
            assert_eq!(done, ["done", "done"], "{device:?}: {:?}", report.outcomes);
            let read = |id: &str| -> Vec<f64> {
                let text = std::fs::read_to_string(out.join(id).join("values.txt")).unwrap();
                text.lines().map(|l| l.parse().unwrap()).collect()
            };
            [read("in0"), read("in1")]
        };
        let (want, got) = (values(ComputeDevice::Cpu), values(ComputeDevice::Cuda));
        for (k, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.len(), g.len());
            for (r, (w, g)) in w.iter().zip(g).enumerate() {
                assert_close(*g, *w, BF16_TOL, &format!("sweep input {k}, mask {r}"));
            }
        }
    }

    /// The game `--device cuda` builds for `spec` runs on the GPU and gives the CPU game's
    /// values on 20 random masks (`seed`) within `tol`.
    fn device_cuda_game_matches_cpu(m: &Arc<model::LoadedModel>, spec: &InputSpec, seed: u64, tol: f64, what: &str) {
        let on = |device| setup::build_on(m.clone(), "m", spec, device).unwrap();
        let (mut cpu, mut gpu) = (on(ComputeDevice::Cpu), on(ComputeDevice::Cuda));
        assert_eq!(gpu.device, ComputeDevice::Cuda, "{what}");
        let batch = masks(cpu.players.len(), 20, seed);
        let want = cpu.value.evaluate(batch.as_slice()).unwrap();
        for (r, (g, w)) in gpu.value.evaluate(batch.as_slice()).unwrap().iter().zip(&want).enumerate() {
            assert_close(*g, *w, tol, &format!("--device cuda game, {what}, row {r}"));
        }
    }

    /// bf16 on the GPU vs f32 on the CPU for encoders, absolute (tests/device_generic.rs:
    /// largest 0.021 on the CPU, for a class log-odds).
    const ENCODER_BF16_TOL: f64 = 0.06;

    /// Encoders on the GPU (candle's CUDA backend; ids and flags from the host, bias and gates
    /// made on the device): `encoder_games` (cosine in attention and replace mode with a
    /// mean-ablated head, class logit and log-odds) in f32 and bf16 against the CPU; and the game
    /// `--device cuda` builds runs there with the CPU's values.
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn encoder_on_gpu_matches_cpu() {
        let m = tiny_bert(50);
        let dev = Device::new_cuda(0).unwrap();
        for (game, cpu) in encoder_games(&m, "the cat sat on the mat and then slept").iter().enumerate() {
            let batch = masks(cpu.n_players(), 30, 51);
            let want = cpu.evaluate_masks(batch.as_slice()).unwrap();
            for (dtype, tol) in [(DType::F32, F32_TOL), (DType::BF16, ENCODER_BF16_TOL)] {
                let gpu = cpu.to_device(&dev, dtype, 16_384).unwrap();
                for (r, (g, w)) in gpu.evaluate_masks(batch.as_slice()).unwrap().iter().zip(&want).enumerate() {
                    assert_close(*g, *w, tol, &format!("encoder game {game} {dtype:?} row {r}"));
                }
            }
        }
        device_cuda_game_matches_cpu(&m, &InputSpec::new("the cat sat on the mat"), 52, ENCODER_BF16_TOL, "encoder");
    }

    /// `ops::gate_heads_in_place` on candle CUDA tensors (the kernel through candle's custom
    /// function cache, on candle's stream) equals the same op on CPU tensors: exact for 0/1
    /// gates; the gate is a view with an offset, as `GpuLmValue` passes it.
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn in_place_head_gating_on_candle_tensors_matches_cpu() {
        let dev = Device::new_cuda(0).unwrap();
        let (b, l, h, d) = (5, 7, 4, 8);
        let mut rng = rng(46);
        let x: Vec<f32> = (0..b * l * h * d).map(|_| rng.random_range(-2.0..2.0)).collect();
        let fill: Vec<f32> = (0..h * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let gates: Vec<f32> = (0..2 * b * h).map(|_| if rng.random_bool(0.5) { 1.0 } else { 0.0 }).collect();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for mean in [false, true] {
                let run = |on: &Device| -> Vec<f32> {
                    let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, on).unwrap();
                    let a = t(&x, &[b, l, h, d]).to_dtype(dtype).unwrap();
                    let gate = t(&gates, &[2, b, h]).get(1).unwrap();
                    let f = t(&fill, &[h, d]).to_dtype(dtype).unwrap();
                    ops::gate_heads_in_place(&a, &gate, mean.then_some(&f)).unwrap();
                    a.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
                };
                assert_eq!(run(&dev), run(&Device::Cpu), "{dtype:?} mean={mean}");
            }
        }
    }

    /// The device timeline counts every chunk of a sweep (at least three here: more masks than
    /// two batches), with busy time and the gaps between chunks, and starts afresh once taken.
    /// Planned by length and in mask order (passes of other sizes, other uploads ahead), the
    /// values agree.
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn timeline_counts_every_chunk() {
        let cpu = spec(47);
        let n = cpu.n_players();
        let mut gpu = GpuLmValue::new(cpu, 0, DType::F32).unwrap();
        let batch = masks(n, 2 * gpu.batch() + 1, 48);
        let plan = gpu.plan(batch.as_slice()).unwrap();
        assert!(plan.pieces.len() >= 3, "{:?}", plan.pieces);
        let planned = gpu.evaluate_masks(batch.as_slice()).unwrap();
        let t = gpu.take_timeline();
        assert_eq!(t.chunks, plan.pieces.len(), "{t:?}");
        assert!(t.busy_s > 0.0 && t.idle_s >= 0.0 && t.idle_share() < 1.0, "{t:?}");
        assert_eq!(gpu.take_timeline(), GpuTimeline::default());
        gpu.set_planning(false);
        assert_eq!(gpu.plan(batch.as_slice()).unwrap().pieces.len(), 3);
        for (r, (a, b)) in planned.iter().zip(&gpu.evaluate_masks(batch.as_slice()).unwrap()).enumerate() {
            assert_close(*a, *b, F32_TOL, &format!("planned vs in order, row {r}"));
        }
    }

    /// One worker per visible device, parts joined in mask order (one device: one part).
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn every_device_together_gives_the_cpu_values() {
        let cpu = spec(44);
        let batch = masks(cpu.n_players(), 25, 45);
        let want = cpu.evaluate_masks(batch.as_slice()).unwrap();
        let mut multi = on_every_gpu(&cpu, DType::F32).unwrap();
        assert!(multi.devices() >= 1);
        let got = spex::value::ValueFunction::evaluate(&mut multi, batch.as_slice()).unwrap();
        assert_eq!(got.len(), want.len());
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(*g, *w, F32_TOL, &format!("row {r}"));
        }
    }

    /// Uniform masks + LASSO: the decoded function is continuous in the values, so GPU values
    /// within 1e-4 give coefficients within a small multiple of that (a tree decoder could flip
    /// a near-tie split and is not used here).
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn sweep_on_gpu_gives_the_cpu_coefficients() {
        let explain = |f: &mut dyn spex::value::ValueFunction, n| {
            Explainer::new(n).method(Method::Uniform).budget(800).seed(3).explain(f).unwrap()
        };
        let mut cpu = spec(42);
        let n = cpu.n_players();
        let want = explain(&mut cpu, n);
        let mut gpu = GpuLmValue::new(spec(42), 0, DType::F32).unwrap();
        let got = explain(&mut gpu, n);
        let probe = masks(n, 200, 43);
        let (a, b) = (want.fourier.eval_batch(probe.as_slice()), got.fourier.eval_batch(probe.as_slice()));
        let scale = a.iter().fold(1f64, |m, x| m.max(x.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 1e-3 * scale, "decoded functions differ at probe {i}: cpu {x}, gpu {y}");
        }
    }

    /// Data attribution on the GPU (candle's CUDA backend runs the device-generic training
    /// operations): logistic regression and an MLP, a test margin and the mean test loss, in f32
    /// and f64, against the CPU's generic operations (the same formulation, other summation
    /// orders: f32 within 1e-3 after 60 steps, f64 within 1e-9).
    #[test]
    #[ignore = "needs a CUDA device; run scripts/gpu-check.sh"]
    fn data_attribution_on_gpu_matches_cpu() {
        use spex::value::data::{
            ClassChoice, DataValue, Features, ModelKind, Precision, Target, TrainConfig, ValueSpec,
        };
        use spex::value::ValueFunction;
        let (rows, dim) = (48, 4);
        let mut r = rng(60);
        let x: Vec<f64> = (0..rows * dim).map(|_| r.random_range(-2.0..2.0)).collect();
        let labels: Vec<String> = (0..rows).map(|i| format!("c{}", i % 3)).collect();
        let train = Features::from_labels(x, dim, &labels, None).unwrap();
        let batch = masks(rows, 40, 61);
        let dev = Device::new_cuda(0).unwrap();
        for model in [ModelKind::LogReg, ModelKind::Mlp { hidden: 8 }] {
            for (precision, tol) in [(Precision::F32, 1e-3), (Precision::F64, 1e-9)] {
                for (target, test) in [(Target::Margin, Some(3)), (Target::Loss, None)] {
                    let spec = ValueSpec { target, test, class: ClassChoice::True };
                    let config = TrainConfig { model, steps: 60, precision, fused: false, ..TrainConfig::default() };
                    let values = |on: &Device| {
                        let mut f = DataValue::new(&train, &train, &spec, config.clone(), on).unwrap();
                        f.evaluate(batch.as_slice()).unwrap()
                    };
                    let (want, got) = (values(&Device::Cpu), values(&dev));
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_close(*g, *w, tol, &format!("{model:?} {precision:?} {target:?} mask {i}"));
                    }
                }
            }
        }
    }
}
