//! The CUDA kernels' own source (`kernels/*.cu`) run on the CPU: compiled as C++ with the host
//! emulation of `kernels/emu/` (a block's threads as fibers, barriers for `__syncthreads` and
//! warp shuffles; see `cuda_emu.h`) and launched with the production launch shapes
//! (`spex::cuda::launch`), then compared with the same CPU twins as the GPU tests
//! (`tests/gpu.rs`), with outputs poisoned (NaN or all-ones) so a skipped element fails.
//!
//! This checks the kernels' arithmetic, indexing and reductions on every test run without a GPU
//! or a CUDA toolkit; it does not check the device itself (memory model, PTX, the driver), which
//! `scripts/gpu-check.sh` does. It needs a C++20 compiler (`CXX`, else `c++`); without one the
//! tests say so and pass, unless `SPEX_REQUIRE_KERNEL_EMU=1` (set by `.ci/run`) makes that fail.

mod kernel_cases;
mod models_common;

use std::ffi::{c_void, CString};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use candle_core::Device;
use half::{bf16, f16};
use kernel_cases::*;
use models_common::{random_masks, rng};
use spex::cuda::launch::{self, elementwise, Shape};
use spex::mask::MaskBatch;
use spex::model::ops;
use spex::value::ablate::{compacted_len, compacted_rows, dense_head_gates, full_length_visibility, replaced_ids};

/// A storage type of the kernels (`f32`, `bf16`, `f16`), as the emulated kernels take it.
trait Storage: Copy + 'static {
    const SUFFIX: &'static str;
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn round(x: f32) -> f32 {
        Self::from_f32(x).to_f32()
    }
}

macro_rules! storage {
    ($t:ty, $s:literal, $from:expr, $to:expr) => {
        impl Storage for $t {
            const SUFFIX: &'static str = $s;
            fn from_f32(x: f32) -> Self {
                $from(x)
            }
            fn to_f32(self) -> f32 {
                $to(self)
            }
        }
    };
}
storage!(f32, "f32", |x| x, |x| x);
storage!(bf16, "bf16", bf16::from_f32, bf16::to_f32);
storage!(f16, "f16", f16::from_f32, f16::to_f32);

fn to_t<T: Storage>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

fn to_f32<T: Storage>(v: &[T]) -> Vec<f32> {
    v.iter().map(|&x| x.to_f32()).collect()
}

type LaunchFn = unsafe extern "C" fn(u32, u32, u32, unsafe extern "C" fn(*mut c_void), *mut c_void) -> i32;

/// The emulated kernels, compiled once per test process into a shared library and loaded.
struct Emu {
    lib: *mut c_void,
    launch: LaunchFn,
    _dir: tempfile::TempDir,
}

// SAFETY: the library handle and function pointers are immutable after loading; emu_launch
// serialises launches itself.
unsafe impl Send for Emu {}
unsafe impl Sync for Emu {}

/// The function `name` of the library `lib` as `F` (see [`Emu::sym`]).
unsafe fn symbol<F: Copy>(lib: *mut c_void, name: &str) -> F {
    let c = CString::new(name).unwrap();
    let p = libc::dlsym(lib, c.as_ptr());
    assert!(!p.is_null(), "the emulated kernels lack {name}");
    std::mem::transmute_copy::<*mut c_void, F>(&p)
}

/// Calls the closure behind `ctx` (one emulated GPU thread).
unsafe extern "C" fn thread_body<F: Fn()>(ctx: *mut c_void) {
    (*(ctx as *const F))()
}

impl Emu {
    /// The loaded emulation, or `None` (with a note) where no C++ compiler is available.
    fn get() -> Option<&'static Emu> {
        static EMU: OnceLock<Option<Emu>> = OnceLock::new();
        let emu = EMU.get_or_init(|| Emu::build().map_err(|e| eprintln!("kernel emulation not built: {e}")).ok());
        if emu.is_none() {
            assert!(
                std::env::var("SPEX_REQUIRE_KERNEL_EMU").as_deref() != Ok("1"),
                "SPEX_REQUIRE_KERNEL_EMU=1 but the kernel emulation could not be built (see above)"
            );
            eprintln!("skipped: no kernel emulation (needs a C++20 compiler: CXX or c++)");
        }
        emu.as_ref()
    }

    fn build() -> Result<Emu, String> {
        let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let so = dir.path().join("libspex_kernels_emu.so");
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let out = Command::new(&cxx)
            .args(["-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-Wall", "-Wno-unknown-pragmas", "-Werror"])
            .arg(format!("-I{}", kernels.join("emu").display()))
            .arg(kernels.join("emu/emu.cc"))
            .arg("-o")
            .arg(&so)
            .output()
            .map_err(|e| format!("{cxx} does not run: {e}"))?;
        if !out.status.success() {
            return Err(format!("{cxx} failed:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        let path = CString::new(so.to_str().ok_or("non-UTF-8 temp path")?).map_err(|e| e.to_string())?;
        // SAFETY: loads the library just built; its initialisers only set up C++ statics.
        let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            return Err("dlopen of the emulated kernels failed".into());
        }
        // SAFETY: emu_launch has exactly LaunchFn's C signature (kernels/emu/emu.cc).
        let launch = unsafe { symbol(lib, "emu_launch") };
        Ok(Emu { lib, launch, _dir: dir })
    }

    /// The function `name` of the library as `F`.
    ///
    /// # Safety
    /// `F` must be an `extern "C"` function pointer type with the function's exact signature.
    unsafe fn sym<F: Copy>(&self, name: &str) -> F {
        symbol(self.lib, name)
    }

    /// Runs `thread` as every thread of launch `shape`: it calls the kernel with its arguments.
    fn run<F: Fn()>(&self, shape: Shape, thread: F) {
        // SAFETY: emu_launch calls thread_body::<F> with &thread, which outlives the call (it
        // returns after every emulated thread has finished). The closures only pass pointers to
        // the kernel; what the kernel does with them is what these tests check.
        let status = unsafe {
            (self.launch)(shape.grid_x, shape.grid_y, shape.block, thread_body::<F>, &thread as *const F as *mut c_void)
        };
        assert_eq!(status, 0, "emulated launch {shape:?} deadlocked: a barrier not every thread reaches");
    }
}

/// A mutable pointer the emulated threads share (Copy, so every thread's closure can pass it).
#[derive(Clone, Copy)]
struct Out<T>(*mut T);

fn ptr<T>(v: &mut [T]) -> Out<T> {
    Out(v.as_mut_ptr())
}

fn i(x: usize) -> i32 {
    i32::try_from(x).unwrap()
}

fn words(m: &MaskBatch) -> (&[u64], i32) {
    (m.as_slice().words(), i(m.as_slice().words_per_row()))
}

type BiasFn<T> = unsafe extern "C" fn(*mut T, *const u64, *const i32, i32, i32, i32, i32);

fn check_attention_bias<T: Storage>(emu: &Emu, seed: u64) {
    let (n, rows, len) = (130, 9, 37);
    let m = random_masks(n, rows, seed);
    let owners = random_owners(len, n, &mut rng(seed));
    let (w, wpr) = words(&m);
    // SAFETY: attention_bias_* in kernels/masking.cu.
    let f: BiasFn<T> = unsafe { emu.sym(&format!("attention_bias_{}", T::SUFFIX)) };
    for causal in [true, false] {
        let mut out = vec![T::from_f32(f32::NAN); m.len() * len * len];
        let o = ptr(&mut out);
        emu.run(elementwise(out.len()), || unsafe {
            f(o.0, w.as_ptr(), owners.as_ptr(), i(m.len()), i(len), wpr, causal as i32)
        });
        let vis = full_length_visibility(m.as_slice(), &owners);
        let want = ops::attention_bias(m.len(), len, Some(&vis), causal, &Device::Cpu).unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(to_f32(&out), want, "attention_bias_{} causal={causal}", T::SUFFIX);
    }
}

#[test]
fn attention_bias_matches_cpu_twin() {
    let Some(emu) = Emu::get() else { return };
    check_attention_bias::<f32>(emu, 1);
    check_attention_bias::<bf16>(emu, 2);
    check_attention_bias::<f16>(emu, 3);
}

type CompactFn<T> = unsafe extern "C" fn(
    *mut u32,
    *mut u32,
    *mut T,
    *const u64,
    *const i32,
    *const i32,
    *const u32,
    i32,
    i32,
    i32,
    i32,
    u32,
    i32,
    i32,
);

/// `compact_rows_*` against its twin on `len` base positions (over 256: the block walks the row
/// in several tiles), at several slot counts, causal or not.
fn check_compact_rows<T: Storage>(emu: &Emu, seed: u64, len: usize) {
    let m = random_masks(90, 5, seed);
    let (owners, read, read_b, ids) = compaction_case(seed, 90, len);
    let (w, wpr, b) = (words(&m).0, words(&m).1, m.len());
    // SAFETY: compact_rows_* in kernels/masking.cu.
    let f: CompactFn<T> = unsafe { emu.sym(&format!("compact_rows_{}", T::SUFFIX)) };
    for slots in compaction_slots(compacted_len(m.as_slice(), &owners, &read_b)) {
        for (causal, renumber) in [(true, false), (false, false), (true, true)] {
            let (mut out_ids, mut out_pos) = (vec![u32::MAX; b * slots], vec![u32::MAX; b * slots]);
            let mut bias = vec![T::from_f32(f32::NAN); b * slots * slots];
            let (oi, op, ob) = (ptr(&mut out_ids), ptr(&mut out_pos), ptr(&mut bias));
            emu.run(launch::rows(b), || unsafe {
                let (o, r) = (owners.as_ptr(), read.as_ptr());
                f(
                    oi.0,
                    op.0,
                    ob.0,
                    w.as_ptr(),
                    o,
                    r,
                    ids.as_ptr(),
                    i(b),
                    i(len),
                    wpr,
                    i(slots),
                    7,
                    causal as i32,
                    renumber as i32,
                )
            });
            let (want_ids, want_pos, vis) = compacted_rows(m.as_slice(), &owners, &read_b, &ids, slots, 7, renumber);
            let what =
                format!("compact_rows_{} len {len} slots {slots} causal={causal} renumber={renumber}", T::SUFFIX);
            // Compared whole, reported briefly (the arrays are long).
            assert!((out_ids, out_pos) == (want_ids, want_pos), "{what}: ids or positions differ");
            let want = ops::attention_bias(b, slots, Some(&vis), causal, &Device::Cpu).unwrap();
            assert!(to_f32(&bias) == want.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "{what}: bias differs");
        }
    }
}

#[test]
fn compact_rows_matches_cpu_twin() {
    let Some(emu) = Emu::get() else { return };
    check_compact_rows::<f32>(emu, 14, 37);
    check_compact_rows::<f32>(emu, 15, 300);
    check_compact_rows::<bf16>(emu, 16, 37);
    check_compact_rows::<f16>(emu, 17, 41);
}

type IdsFn = unsafe extern "C" fn(*mut u32, *const u64, *const i32, *const u32, i32, i32, i32, u32);
type GatesFromMasksFn = unsafe extern "C" fn(*mut f32, *const u64, *const i32, i32, i32, i32, i32);

#[test]
fn replace_ids_and_head_gates_from_masks_match_cpu_twins() {
    let Some(emu) = Emu::get() else { return };
    let (n, len, layers, heads) = (100, 23, 3, 5);
    let m = random_masks(n, 12, 4);
    let b = m.len();
    let owners = random_owners(len, n, &mut rng(4));
    let (ids, bits) = ids_and_head_bits(4, n, len, layers, heads);
    let (w, wpr) = words(&m);
    // SAFETY: replace_ids and head_gates_from_masks in kernels/masking.cu.
    let (replace, gates_from_masks): (IdsFn, GatesFromMasksFn) =
        unsafe { (emu.sym("replace_ids"), emu.sym("head_gates_from_masks")) };
    let mut out = vec![u32::MAX; b * len];
    let o = ptr(&mut out);
    emu.run(elementwise(b * len), || unsafe {
        replace(o.0, w.as_ptr(), owners.as_ptr(), ids.as_ptr(), i(b), i(len), wpr, 7)
    });
    assert_eq!(out, replaced_ids(m.as_slice(), &ids, &owners, 7));
    let mut gates = vec![f32::NAN; layers * b * heads];
    let g = ptr(&mut gates);
    emu.run(elementwise(gates.len()), || unsafe {
        gates_from_masks(g.0, w.as_ptr(), bits.as_ptr(), i(layers), i(b), i(heads), wpr)
    });
    assert_eq!(gates, dense_head_gates(m.as_slice(), &bits, layers, heads));
}

type HeadGatesFn<T> = unsafe extern "C" fn(*mut T, *const f32, *const T, i32, i32, i32, i32);

fn check_head_gates<T: Storage + candle_core::WithDType>(emu: &Emu, seed: u64) {
    let dims @ [b, t, h, d] = [6, 11, 4, 16];
    let (x, fill, gate) = head_gate_case(seed, dims, T::round);
    // SAFETY: head_gates_* in kernels/head_gates.cu.
    let f: HeadGatesFn<T> = unsafe { emu.sym(&format!("head_gates_{}", T::SUFFIX)) };
    let fill_t = to_t::<T>(&fill);
    for mean in [false, true] {
        let mut got = to_t::<T>(&x);
        let o = ptr(&mut got);
        let fp = if mean { fill_t.as_ptr() } else { std::ptr::null() };
        emu.run(elementwise(got.len()), || unsafe { f(o.0, gate.as_ptr(), fp, i(b), i(t), i(h), i(d)) });
        let mut want = to_t::<T>(&x);
        ops::gate_heads_slice(&mut want, &gate, mean.then_some(&fill_t[..]), dims);
        assert_eq!(to_f32(&got), to_f32(&want), "head_gates_{} mean={mean}", T::SUFFIX);
    }
}

#[test]
fn head_gating_matches_cpu_twin() {
    let Some(emu) = Emu::get() else { return };
    check_head_gates::<f32>(emu, 5);
    check_head_gates::<bf16>(emu, 6);
    check_head_gates::<f16>(emu, 7);
}

type InitFn = unsafe extern "C" fn(*mut f32, *mut f32, *mut f32, i32, i32);
type FinishFn = unsafe extern "C" fn(*mut f32, *const f32, *const f32, *const f32, i32, i32);
type TileFn<T> = unsafe extern "C" fn(*const T, *const u32, *mut f32, *mut f32, *mut f32, i32, i32, i32, i32);
type DirectFn<T> =
    unsafe extern "C" fn(*const T, *const T, *const u32, *mut f32, *mut f32, *mut f32, i32, i32, i32, i32);

/// A scoring state of `picks × slices` partials, as `Gpu::score_begin` makes it (poisoned first).
struct State {
    m: Vec<f32>,
    s: Vec<f32>,
    tgt: Vec<f32>,
    slices: usize,
}

impl State {
    fn begin(emu: &Emu, picks: usize, slices: usize) -> State {
        let mut st =
            State { m: vec![7.0; picks * slices], s: vec![7.0; picks * slices], tgt: vec![7.0; picks], slices };
        // SAFETY: score_init in kernels/score.cu.
        let init: InitFn = unsafe { emu.sym("score_init") };
        let (m, s, t) = (ptr(&mut st.m), ptr(&mut st.s), ptr(&mut st.tgt));
        emu.run(elementwise(picks * slices), || unsafe { init(m.0, s.0, t.0, i(picks * slices), i(picks)) });
        let empty = st.m.iter().all(|&x| x == f32::NEG_INFINITY) && st.s.iter().all(|&x| x == 0.0);
        assert!(empty && st.tgt.iter().all(|x| x.is_nan()), "score_init left values");
        st
    }

    fn finish(mut self, emu: &Emu) -> Vec<f32> {
        let picks = self.tgt.len();
        let mut out = vec![f32::NAN; picks];
        // SAFETY: score_finish in kernels/score.cu.
        let finish: FinishFn = unsafe { emu.sym("score_finish") };
        let (o, m, s, t) = (ptr(&mut out), ptr(&mut self.m), ptr(&mut self.s), ptr(&mut self.tgt));
        emu.run(elementwise(picks), || unsafe { finish(o.0, m.0, s.0, t.0, i(picks), i(self.slices)) });
        out
    }
}

fn check_score_direct<T: Storage>(emu: &Emu, seed: u64) {
    // Picks not a multiple of the kernel's 8 rows, vocabulary and embedding not multiples of
    // anything (smaller than on the GPU: every warp shuffle is a fiber barrier here).
    let (n, v, e) = (13, 701, 40);
    let (hidden, head, targets) = scoring_problem(seed, n, v, e, T::round);
    let (ht, wt) = (to_t::<T>(&hidden), to_t::<T>(&head));
    let slices = launch::direct_slices(n, v);
    assert!(slices > 1, "the case must split the vocabulary");
    let mut st = State::begin(emu, n, slices);
    // SAFETY: score_direct_* in kernels/score.cu.
    let f: DirectFn<T> = unsafe { emu.sym(&format!("score_direct_{}", T::SUFFIX)) };
    let (m, s, t) = (ptr(&mut st.m), ptr(&mut st.s), ptr(&mut st.tgt));
    emu.run(launch::score_direct(n, slices), || unsafe {
        f(ht.as_ptr(), wt.as_ptr(), targets.as_ptr(), m.0, s.0, t.0, i(n), i(v), i(e), i(slices))
    });
    let want = cpu_scores(&hidden, &head, &targets, n, v, e);
    assert_scores(&st.finish(emu), &want, &format!("score_direct_{}", T::SUFFIX));
}

fn check_score_tiles<T: Storage>(emu: &Emu, seed: u64, pad: usize) {
    let (n, v, e) = (21, TILED_VOCAB, 32);
    let (hidden, head, targets) = scoring_problem(seed, n, v, e, |x| x);
    let logits = tile_logits(&hidden, &head, n, v, e, T::round);
    let mut st = State::begin(emu, n, 1);
    // SAFETY: score_tile_* in kernels/score.cu.
    let f: TileFn<T> = unsafe { emu.sym(&format!("score_tile_{}", T::SUFFIX)) };
    for (v0, vt) in TILES {
        // Rows of the tile padded to a stride of vt + pad with NaN the kernel must not read.
        let tile = to_t::<T>(&tile_of(&logits, n, v, (v0, vt), vt + pad));
        let (m, s, t) = (ptr(&mut st.m), ptr(&mut st.s), ptr(&mut st.tgt));
        emu.run(launch::score_tile(n), || unsafe {
            f(tile.as_ptr(), targets.as_ptr(), m.0, s.0, t.0, i(n), i(vt), i(vt + pad), i(v0))
        });
    }
    assert_scores(&st.finish(emu), &lse_scores(&logits, &targets, v), &format!("score_tile_{} pad {pad}", T::SUFFIX));
}

#[test]
fn fused_scoring_matches_cpu_twin() {
    let Some(emu) = Emu::get() else { return };
    check_score_direct::<f32>(emu, 8);
    check_score_direct::<bf16>(emu, 9);
    check_score_direct::<f16>(emu, 10);
    for pad in [0, 5] {
        check_score_tiles::<f32>(emu, 11, pad);
        check_score_tiles::<bf16>(emu, 12, pad);
        check_score_tiles::<f16>(emu, 13, pad);
    }
}

/// A target outside every tile stays NaN (never a plausible number), and an all-`-inf` tile
/// (fully masked logits) leaves the state as it was.
#[test]
fn scoring_edge_cases() {
    let Some(emu) = Emu::get() else { return };
    // SAFETY: score_tile_f32 in kernels/score.cu.
    let f: TileFn<f32> = unsafe { emu.sym("score_tile_f32") };
    let targets = [1u32, 9];
    let mut st = State::begin(emu, 2, 1);
    // Columns 0..2, then 2..4 fully masked.
    let tiles = [(0, vec![0.5f32, 2.0, -1.0, 0.0]), (2, vec![f32::NEG_INFINITY; 4])];
    for (v0, tile) in &tiles {
        let (m, s, t) = (ptr(&mut st.m), ptr(&mut st.s), ptr(&mut st.tgt));
        emu.run(launch::score_tile(2), || unsafe { f(tile.as_ptr(), targets.as_ptr(), m.0, s.0, t.0, 2, 2, 2, *v0) });
    }
    let got = st.finish(emu);
    let lse = |xs: &[f64]| xs.iter().map(|x| x.exp()).sum::<f64>().ln();
    assert!((got[0] as f64 - (2.0 - lse(&[0.5, 2.0]))).abs() < 1e-6, "pick 0: {}", got[0]);
    assert!(got[1].is_nan(), "target 9 is in no tile: {}", got[1]);
}
