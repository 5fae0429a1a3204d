//! Typed launches of the kernels in `kernels/*.cu`. Every launch checks lengths against the
//! shapes it is given (a wrong length is a [`CudaError::Input`], never an out-of-bounds write)
//! and runs on the [`Gpu`]'s compute stream; results are ready once that stream is synchronised
//! (or for work queued after them on the same stream).
//!
//! CPU twins: [`crate::model::ops::attention_bias`] with
//! [`crate::value::ablate::full_length_visibility`] and [`crate::value::ablate::compacted_rows`],
//! [`crate::value::ablate::replaced_ids`],
//! [`crate::value::ablate::dense_head_gates`], [`crate::model::ops::gate_heads_slice`] and
//! [`crate::model::ops::score_targets`].

use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg,
    ValidAsZeroBits,
};

use super::launch::{self, elementwise, Shape};
use super::{CudaError, Gpu};

/// A storage type the kernels come in (all arithmetic is f32 inside the kernels).
pub trait GpuFloat: DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + 'static {
    /// Suffix of the kernel variant (`f32`, `bf16`, `f16`).
    const SUFFIX: &'static str;
    /// Rounds an `f32` to this type (nearest even, as the kernels do).
    fn from_f32(x: f32) -> Self;
    /// Widens to `f32` (exact).
    fn to_f32(self) -> f32;
}

impl GpuFloat for f32 {
    const SUFFIX: &'static str = "f32";
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl GpuFloat for half::bf16 {
    const SUFFIX: &'static str = "bf16";
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
}

impl GpuFloat for half::f16 {
    const SUFFIX: &'static str = "f16";
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

/// cudarc's form of a [`Shape`].
fn config(s: Shape) -> LaunchConfig {
    LaunchConfig { grid_dim: (s.grid_x, s.grid_y, 1), block_dim: (s.block, 1, 1), shared_mem_bytes: 0 }
}

/// `i32` kernel argument from a size, refusing sizes the kernels cannot index.
fn int(x: usize, what: &str) -> Result<i32, CudaError> {
    i32::try_from(x).map_err(|_| CudaError::Input(format!("{what} = {x} exceeds the kernels' 32-bit index range")))
}

fn check_len(what: &str, got: usize, want: usize) -> Result<(), CudaError> {
    if got != want {
        return Err(CudaError::Input(format!("{what} has {got} elements, expected {want}")));
    }
    Ok(())
}

/// The bit-packed masks of a batch on the device: `rows × words` u64 (the layout of
/// [`crate::mask`]).
#[derive(Clone, Copy, Debug)]
pub struct DeviceMasks<'a> {
    /// The words, row-major.
    pub words: &'a CudaView<'a, u64>,
    /// Rows (masks).
    pub rows: usize,
    /// Words per row.
    pub words_per_row: usize,
}

/// The per-input maps of the base positions on the device (uploaded once per explained input).
#[derive(Clone, Copy)]
pub struct BaseMaps<'a> {
    /// Per base position, the mask bit of its token player, or −1 for a fixed token.
    pub owners: &'a CudaView<'a, i32>,
    /// Per base position, 1 when every row includes it even when ablated (its output is read).
    pub read: &'a CudaView<'a, i32>,
    /// The base token ids.
    pub ids: &'a CudaView<'a, u32>,
}

/// Where [`Gpu::compact_rows`] writes: `[B, slots]` ids and positions, `[B, 1, slots, slots]` bias.
pub struct CompactedRows<'a, 'b, T> {
    /// Token ids.
    pub ids: &'a mut CudaViewMut<'b, u32>,
    /// Position ids.
    pub positions: &'a mut CudaViewMut<'b, u32>,
    /// The additive attention bias.
    pub bias: &'a mut CudaViewMut<'b, T>,
    /// Slots per row.
    pub slots: usize,
}

impl DeviceMasks<'_> {
    fn check(&self) -> Result<(), CudaError> {
        check_len("masks", self.words.len(), self.rows * self.words_per_row)
    }
}

impl Gpu {
    /// Additive attention bias `[B, 1, L, L]` into `out` from the masks and the position→player
    /// map `owners` (`L` entries, −1 = fixed token): see `kernels/masking.cu`.
    pub fn attention_bias<T: GpuFloat>(
        &self,
        out: &mut CudaViewMut<'_, T>,
        masks: DeviceMasks<'_>,
        owners: &CudaView<'_, i32>,
        causal: bool,
    ) -> Result<(), CudaError> {
        masks.check()?;
        let (b, l) = (masks.rows, owners.len());
        check_len("attention bias", out.len(), b * l * l)?;
        let f = self.function(&self.modules.masking, &format!("attention_bias_{}", T::SUFFIX))?;
        let (bi, li, wi, ci) = (int(b, "batch")?, int(l, "length")?, int(masks.words_per_row, "words")?, causal as i32);
        let mut launch = self.compute.launch_builder(&f);
        launch.arg(out).arg(masks.words).arg(owners).arg(&bi).arg(&li).arg(&wi).arg(&ci);
        // SAFETY: argument types and order match attention_bias_* in kernels/masking.cu; the
        // lengths were checked above, and the kernel writes only out[0 .. b*l*l).
        unsafe { launch.launch(config(elementwise(b * l * l))) }?;
        Ok(())
    }

    /// The compacted attention-mode rows of a batch into `out` (see `compact_rows_*` in
    /// `kernels/masking.cu`; twin [`crate::value::ablate::compacted_rows`]): `read` marks the
    /// base positions kept in every row's sequence even when ablated (`L` entries, 0 or 1), `ids`
    /// the base ids; `slots` per row, at least the longest row. With `renumber` (remove mode)
    /// each slot's position is its rank in the row instead of its base position.
    pub fn compact_rows<T: GpuFloat>(
        &self,
        out: CompactedRows<'_, '_, T>,
        masks: DeviceMasks<'_>,
        maps: &BaseMaps<'_>,
        pad_id: u32,
        causal: bool,
        renumber: bool,
    ) -> Result<(), CudaError> {
        masks.check()?;
        let (b, l, s) = (masks.rows, maps.owners.len(), out.slots);
        check_len("read flags", maps.read.len(), l)?;
        check_len("base ids", maps.ids.len(), l)?;
        check_len("compacted ids", out.ids.len(), b * s)?;
        check_len("compacted positions", out.positions.len(), b * s)?;
        check_len("compacted bias", out.bias.len(), b * s * s)?;
        let f = self.function(&self.modules.masking, &format!("compact_rows_{}", T::SUFFIX))?;
        let (bi, li, wi) = (int(b, "batch")?, int(l, "length")?, int(masks.words_per_row, "words")?);
        let (si, ci, ri) = (int(s, "slots")?, causal as i32, renumber as i32);
        let mut launch = self.compute.launch_builder(&f);
        launch.arg(out.ids).arg(out.positions).arg(out.bias).arg(masks.words).arg(maps.owners).arg(maps.read);
        launch.arg(maps.ids).arg(&bi).arg(&li).arg(&wi).arg(&si).arg(&pad_id).arg(&ci).arg(&ri);
        // SAFETY: matches compact_rows_* in kernels/masking.cu; lengths checked above, and the
        // kernel writes only ids/positions[0 .. b*s) and bias[0 .. b*s*s).
        unsafe { launch.launch(config(launch::rows(b))) }?;
        Ok(())
    }

    /// Replace-mode token ids `[B, L]` into `out`: `replacement` where the owner is ablated.
    pub fn replace_ids(
        &self,
        out: &mut CudaViewMut<'_, u32>,
        masks: DeviceMasks<'_>,
        owners: &CudaView<'_, i32>,
        ids: &CudaView<'_, u32>,
        replacement: u32,
    ) -> Result<(), CudaError> {
        masks.check()?;
        let (b, l) = (masks.rows, owners.len());
        check_len("base ids", ids.len(), l)?;
        check_len("token ids", out.len(), b * l)?;
        let f = self.function(&self.modules.masking, "replace_ids")?;
        let (bi, li, wi) = (int(b, "batch")?, int(l, "length")?, int(masks.words_per_row, "words")?);
        let mut launch = self.compute.launch_builder(&f);
        launch.arg(out).arg(masks.words).arg(owners).arg(ids).arg(&bi).arg(&li).arg(&wi).arg(&replacement);
        // SAFETY: matches replace_ids in kernels/masking.cu; lengths checked above.
        unsafe { launch.launch(config(elementwise(b * l))) }?;
        Ok(())
    }

    /// Dense head gates `[layers, B, H]` (f32 1/0) into `out` from the `(layer, head)`→mask-bit
    /// map `bits` (`layers × H`, −1 = never ablated).
    pub fn head_gates_from_masks(
        &self,
        out: &mut CudaViewMut<'_, f32>,
        masks: DeviceMasks<'_>,
        bits: &CudaView<'_, i32>,
        layers: usize,
        heads: usize,
    ) -> Result<(), CudaError> {
        masks.check()?;
        let b = masks.rows;
        check_len("head bit map", bits.len(), layers * heads)?;
        check_len("head gates", out.len(), layers * b * heads)?;
        let f = self.function(&self.modules.masking, "head_gates_from_masks")?;
        let (li, bi, hi, wi) =
            (int(layers, "layers")?, int(b, "batch")?, int(heads, "heads")?, int(masks.words_per_row, "words")?);
        let mut launch = self.compute.launch_builder(&f);
        launch.arg(out).arg(masks.words).arg(bits).arg(&li).arg(&bi).arg(&hi).arg(&wi);
        // SAFETY: matches head_gates_from_masks in kernels/masking.cu; lengths checked above.
        unsafe { launch.launch(config(elementwise(layers * b * heads))) }?;
        Ok(())
    }

    /// Head gating in place on per-head attention outputs `x: [B, T, H, D]` with `gate: [B, H]`
    /// and `fill: [H, D]` (mean ablation) or zero; `dims = [B, T, H, D]`.
    pub fn apply_head_gates<T: GpuFloat>(
        &self,
        x: &mut CudaViewMut<'_, T>,
        gate: &CudaView<'_, f32>,
        fill: Option<&CudaView<'_, T>>,
        dims: [usize; 4],
    ) -> Result<(), CudaError> {
        let func = self.function(&self.modules.head_gates, &format!("head_gates_{}", T::SUFFIX))?;
        launch_head_gates(&self.compute, &func, x, gate, fill, dims)
    }
}

/// Launches `func`, the `head_gates_*` kernel of `T` (`kernels/head_gates.cu`), on `stream`:
/// through [`Gpu::apply_head_gates`], or on candle's stream for a candle tensor
/// ([`crate::model::ops::gate_heads_in_place`]).
pub(crate) fn launch_head_gates<T: GpuFloat>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &mut CudaViewMut<'_, T>,
    gate: &CudaView<'_, f32>,
    fill: Option<&CudaView<'_, T>>,
    [batch, len, heads, dim]: [usize; 4],
) -> Result<(), CudaError> {
    check_len("attention output", x.len(), batch * len * heads * dim)?;
    check_len("gates", gate.len(), batch * heads)?;
    if let Some(f) = fill {
        check_len("fill", f.len(), heads * dim)?;
    }
    let dims = [int(batch, "batch")?, int(len, "length")?, int(heads, "heads")?, int(dim, "head dim")?];
    let null: u64 = 0; // a null `const T*`: zero ablation
    let mut launch = stream.launch_builder(func);
    launch.arg(x).arg(gate);
    match fill {
        Some(f) => launch.arg(f),
        None => launch.arg(&null),
    };
    for d in &dims {
        launch.arg(d);
    }
    // SAFETY: matches head_gates_* in kernels/head_gates.cu (a null fill pointer is checked
    // there); lengths checked above.
    unsafe { launch.launch(config(elementwise(batch * len * heads * dim))) }?;
    Ok(())
}

/// Running log-sum-exp state of a fused scoring pass (see `kernels/score.cu`): per pick, `slices`
/// partial `(max, sum)` pairs and the target's logit.
pub struct ScoreState {
    part_m: CudaSlice<f32>,
    part_s: CudaSlice<f32>,
    tgt: CudaSlice<f32>,
    targets: CudaSlice<u32>,
    picks: usize,
    slices: usize,
}

impl ScoreState {
    /// Picks scored.
    pub fn picks(&self) -> usize {
        self.picks
    }
}

impl Gpu {
    /// A fresh scoring state for `targets.len()` picks over `slices` vocabulary partials.
    pub fn score_begin(&self, targets: &[u32], slices: usize) -> Result<ScoreState, CudaError> {
        let (n, s) = (targets.len(), slices.max(1));
        let st = &self.compute;
        // SAFETY: every element is written by score_init below before any read.
        let mut state = unsafe {
            ScoreState {
                part_m: st.alloc::<f32>(n * s)?,
                part_s: st.alloc::<f32>(n * s)?,
                tgt: st.alloc::<f32>(n.max(1))?,
                targets: st.clone_htod(targets)?,
                picks: n,
                slices: s,
            }
        };
        let f = self.function(&self.modules.score, "score_init")?;
        let (count, picks) = (int(n * s, "picks x slices")?, int(n, "picks")?);
        let mut launch = self.compute.launch_builder(&f);
        launch.arg(&mut state.part_m).arg(&mut state.part_s).arg(&mut state.tgt).arg(&count).arg(&picks);
        // SAFETY: matches score_init; count = n*s elements of part_m/part_s, picks = n of tgt.
        unsafe { launch.launch(config(elementwise(n * s))) }?;
        Ok(state)
    }

    /// Folds a tile of logits `[picks, vt]` (row stride `ld` elements) holding vocabulary
    /// columns `v0 .. v0 + vt` into a single-slice state. Tiles may come in any order.
    pub fn score_tile<T: GpuFloat>(
        &self,
        state: &mut ScoreState,
        logits: &CudaView<'_, T>,
        v0: usize,
        vt: usize,
        ld: usize,
    ) -> Result<(), CudaError> {
        if state.slices != 1 || vt > ld {
            return Err(CudaError::Input("score_tile needs a one-slice state and vt <= ld".into()));
        }
        let need = state.picks.saturating_sub(1) * ld + vt;
        if state.picks > 0 && logits.len() < need {
            return Err(CudaError::Input(format!(
                "logits tile has {} elements, {} picks of stride {ld} need {need}",
                logits.len(),
                state.picks
            )));
        }
        let f = self.function(&self.modules.score, &format!("score_tile_{}", T::SUFFIX))?;
        let a = [int(state.picks, "picks")?, int(vt, "tile width")?, int(ld, "ld")?, int(v0, "v0")?];
        let cfg = config(launch::score_tile(state.picks));
        let mut launch = self.compute.launch_builder(&f);
        launch.arg(logits).arg(&state.targets).arg(&mut state.part_m).arg(&mut state.part_s).arg(&mut state.tgt);
        for x in &a {
            launch.arg(x);
        }
        // SAFETY: matches score_tile_*; one warp per pick reads row n < picks, columns < vt.
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }

    /// Log-probabilities of the targets from a finished state (NaN for a target never seen,
    /// i.e. outside the vocabulary covered).
    pub fn score_finish(&self, state: &ScoreState) -> Result<CudaSlice<f32>, CudaError> {
        let n = state.picks;
        // SAFETY: score_finish writes all n outputs.
        let mut out = unsafe { self.compute.alloc::<f32>(n.max(1))? };
        let f = self.function(&self.modules.score, "score_finish")?;
        let (ni, si) = (int(n, "picks")?, int(state.slices, "slices")?);
        let mut launch = self.compute.launch_builder(&f);
        launch.arg(&mut out).arg(&state.part_m).arg(&state.part_s).arg(&state.tgt).arg(&ni).arg(&si);
        // SAFETY: matches score_finish; reads n*slices partials and n target logits.
        unsafe { launch.launch(config(elementwise(n))) }?;
        Ok(out)
    }

    /// Fused scoring without a GEMM library: `log softmax(lm_head · hidden[n])[targets[n]]` for
    /// gathered rows `hidden: [N, E]` and `lm_head: [V, E]`, never holding `N × V` logits.
    pub fn score_direct<T: GpuFloat>(
        &self,
        hidden: &CudaView<'_, T>,
        lm_head: &CudaView<'_, T>,
        targets: &[u32],
        vocab: usize,
        embed: usize,
    ) -> Result<CudaSlice<f32>, CudaError> {
        let n = targets.len();
        check_len("hidden rows", hidden.len(), n * embed)?;
        check_len("lm_head", lm_head.len(), vocab * embed)?;
        if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
            return Err(CudaError::Input(format!("target token id {t} outside the vocabulary of {vocab}")));
        }
        let slices = launch::direct_slices(n, vocab);
        let mut state = self.score_begin(targets, slices)?;
        let f = self.function(&self.modules.score, &format!("score_direct_{}", T::SUFFIX))?;
        let a = [int(n, "picks")?, int(vocab, "vocab")?, int(embed, "embed")?, int(slices, "slices")?];
        let cfg = config(launch::score_direct(n, slices));
        let mut launch = self.compute.launch_builder(&f);
        launch
            .arg(hidden)
            .arg(lm_head)
            .arg(&state.targets)
            .arg(&mut state.part_m)
            .arg(&mut state.part_s)
            .arg(&mut state.tgt);
        for x in &a {
            launch.arg(x);
        }
        // SAFETY: matches score_direct_*; block (x, y) reads picks 8x .. 8x+7 (< n checked in
        // the kernel) and vocabulary slice y; lengths checked above.
        unsafe { launch.launch(cfg) }?;
        self.score_finish(&state)
    }
}
