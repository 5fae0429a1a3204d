//! A causal-LM value function on a CUDA device (feature `candle-cuda`): the model runs on
//! candle's CUDA backend in bf16 (cuBLAS, f32 accumulation), the masking inputs are built on the
//! device by this crate's kernels from the bit-packed masks, and targets are scored by the fused
//! tile scorer — the `[picks, V]` logits never exist beyond one vocabulary tile.
//!
//! One batch of masks:
//! 1. the masks go up through [`MaskUploader`] (pinned, double-buffered on the copy stream: the
//!    upload of chunk `i + 1` overlaps the compute of chunk `i`);
//! 2. in attention mode `compact_rows_*` drops the hidden tokens, in remove mode the ablated ones
//!    (ids, per-row positions and bias of rows right-aligned in as many slots as the chunk's
//!    longest row; CPU reference [`crate::value::ablate::Layout::build_compacted`]); otherwise
//!    `attention_bias_*` or `replace_ids` build the full-length form
//!    ([`crate::value::ablate::Layout::build_full_length`]); `head_gates_from_masks` builds the
//!    gates; all on candle's stream, wrapped as candle tensors without a copy. Behind a prefix
//!    cache ([`LmValue::cached_prefix`]: the fixed tokens the input begins with, run once on the
//!    device), the rows hold only the positions after it ([`Layout::after`]) and attend its keys;
//! 3. the forward gives the hidden states; the picked rows are multiplied by the LM head one tile
//!    of [`VOCAB_TILE`] tokens at a time and folded into the running log-sum-exp by `score_tile_*`;
//! 4. log-probabilities come back through pinned memory ([`ValueDownloader`]) and are summed
//!    per mask in f64; a logit difference reads the two LM-head rows only.
//!
//! Each chunk's work on the device is bracketed by timing events ([`GpuTimeline`]): the time
//! the compute stream spends on chunks, and the time it sits idle between them.
//!
//! Batches are sized from free device memory ([`crate::model::memory::auto_batch_rows`]) and
//! cut into forward passes of rows of similar compacted lengths
//! ([`crate::model::memory::plan_forwards`]); a CUDA out-of-memory error halves the batch and
//! retries the same masks ([`crate::model::memory::sweep_halving`]).

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Device, Storage, Tensor};
use cudarc::driver::{sys::CUevent_flags, CudaEvent, CudaSlice};

use super::kernels::{BaseMaps, CompactedRows, DeviceMasks, ScoreState};
use super::stream::{MaskUploader, ValueDownloader};
use super::{CudaError, Gpu};
use crate::mask::MaskSlice;
use crate::model::memory::{auto_batch_rows, decoder_row_bytes, plan_for, sweep_halving, ForwardPlan};
use crate::model::{HeadGates, Ids, KvPrefix, Model, ModelError, ModelInput};
use crate::value::ablate::Layout;
use crate::value::lm::{LmMetric, LmValue};
use crate::value::players::TokenMode;
use crate::value::{PerDevice, ValueError, ValueFunction};

/// Vocabulary columns per LM-head tile of the fused scorer: bounds the logits in memory to
/// `picks × VOCAB_TILE` bf16 values.
pub const VOCAB_TILE: usize = 16_384;

/// Fraction of free device memory left unused when sizing batches.
pub const HEADROOM: f64 = 0.15;

/// Largest batch tried, whatever the memory.
pub const MAX_ROWS: usize = 4096;

/// Where a [`GpuLmValue`]'s device time went, from timing events recorded on the compute stream
/// at the start and end of every chunk (one forward pass).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GpuTimeline {
    /// Seconds from each chunk's start event to its end event, summed (short waits inside a
    /// chunk, while the host queues work behind a synchronising upload, count here).
    pub busy_s: f64,
    /// Seconds from one chunk's end to the next chunk's start on the device, summed: the GPU
    /// idle between batches (host work between forwards, uploads the device waited for).
    pub idle_s: f64,
    /// Chunks timed.
    pub chunks: usize,
}

impl GpuTimeline {
    /// The idle share of the device time spanned, `idle / (busy + idle)` (0 before two chunks).
    pub fn idle_share(&self) -> f64 {
        let total = self.busy_s + self.idle_s;
        if total > 0.0 {
            self.idle_s / total
        } else {
            0.0
        }
    }
}

/// [`LmValue`] evaluated on a CUDA device.
pub struct GpuLmValue {
    spec: LmValue,
    /// The layout of the rows run: the spec's, after the prefix cache's positions
    /// ([`Layout::after`]); the maps below are this layout's.
    layout: Layout,
    /// Keys and values of the spec's [`LmValue::cached_prefix`], computed once on the device by
    /// this device's model; `None` without a prefix cache.
    prefix: Option<Arc<KvPrefix>>,
    /// `[1]`: the prefix's length, added to the compacted rows' positions (the kernels number
    /// them in [`GpuLmValue::layout`]); `None` without a prefix cache.
    position_offset: Option<Tensor>,
    gpu: Gpu,
    device: Device,
    model: Model,
    lm_head: Tensor,
    /// Mean-ablation values per layer, moved to the device once (not per forward).
    head_fill: Option<Vec<Tensor>>,
    owners: CudaSlice<i32>,
    /// Per base position, 1 when every compacted row includes it
    /// ([`crate::value::ablate::Layout::compaction_read`]), for `compact_rows`.
    read: CudaSlice<i32>,
    head_bits: CudaSlice<i32>,
    /// The base token ids `[L]`, for the `replace_ids` and `compact_rows` kernels.
    base_ids: CudaSlice<u32>,
    /// The same ids as a `[1, L]` tensor, broadcast over the rows in attention mode.
    ids_row: Tensor,
    /// The positions of the full-length form `[1, L]` (behind the prefix), broadcast over rows.
    positions_row: Tensor,
    uploader: MaskUploader,
    downloader: ValueDownloader,
    batch: usize,
    /// Whether attention-mode chunks run compacted (see [`GpuLmValue::set_compaction`]).
    compaction: bool,
    /// Whether batches are planned by length (see [`GpuLmValue::set_planning`]).
    planning: bool,
    /// The slot and row range of a chunk already uploaded ahead of its forward.
    pending: Option<(usize, Range<usize>)>,
    timeline: GpuTimeline,
    /// The end event of the last chunk timed (the start of the next idle gap).
    last_end: Option<CudaEvent>,
}

fn candle(e: candle_core::Error) -> CudaError {
    // Out-of-memory must stay recognisable for halving.
    if crate::model::memory::is_out_of_memory(&e) {
        CudaError::OutOfMemory
    } else {
        CudaError::Input(format!("candle: {e}"))
    }
}

fn model_err(e: ModelError) -> CudaError {
    match e {
        ModelError::Candle(c) => candle(c),
        other => CudaError::Input(other.to_string()),
    }
}

impl GpuLmValue {
    /// Puts `spec`'s model on CUDA device `ordinal` in `dtype` (bf16 or f16 for speed, f32 for
    /// checks; once per model, device and dtype: [`crate::model::LoadedModel::model_on`], so that
    /// a sweep's inputs share the weights there) and prepares the per-input maps.
    pub fn new(spec: LmValue, ordinal: usize, dtype: DType) -> Result<Self, CudaError> {
        let device = shared_device(ordinal)?;
        let gpu = Gpu::from_candle(device.as_cuda_device().map_err(candle)?)?;
        let model = spec.model().model_on(&device, dtype).map_err(model_err)?;
        let lm_head = model.lm_head().expect("LmValue checked for an LM head").clone();
        let skip = spec.cached_prefix();
        let lay = spec.layout().after(skip).map_err(model_err)?;
        let prefix = match skip {
            0 => None,
            p => Some(Arc::new(model.prefill(&spec.layout().ids[..p]).map_err(model_err)?)),
        };
        let position_offset = prefix.as_ref().map(|_| Tensor::new(&[skip as u32], &device)).transpose();
        let end = (skip + lay.ids.len()) as u32;
        let head_fill = lay
            .head_fill
            .as_ref()
            .map(|f| f.iter().map(|t| t.to_device(&device)?.to_dtype(dtype)).collect::<Result<Vec<_>, _>>())
            .transpose()
            .map_err(candle)?;
        let st = gpu.compute_stream().clone();
        let words = crate::mask::words_for(lay.n_players());
        let batch = initial_batch(&gpu, &spec, dtype)?;
        let read: Vec<i32> = lay.compaction_read().iter().map(|&r| r as i32).collect();
        Ok(GpuLmValue {
            owners: st.clone_htod(&lay.owner_map())?,
            read: st.clone_htod(&read)?,
            head_bits: st.clone_htod(&lay.head_bit_map())?,
            base_ids: st.clone_htod(&lay.ids)?,
            ids_row: Tensor::from_slice(&lay.ids, (1, lay.ids.len()), &device).map_err(candle)?,
            positions_row: Tensor::arange(skip as u32, end, &device).and_then(|t| t.unsqueeze(0)).map_err(candle)?,
            position_offset: position_offset.map_err(candle)?,
            prefix,
            layout: lay,
            uploader: MaskUploader::new(&gpu, batch, words)?,
            downloader: ValueDownloader::new(&gpu, batch * spec.target_tokens().len())?,
            spec,
            gpu,
            device,
            model,
            lm_head,
            head_fill,
            batch,
            compaction: true,
            planning: true,
            pending: None,
            timeline: GpuTimeline::default(),
            last_end: None,
        })
    }

    /// The device time since construction or the last call, and a fresh start (the gap before
    /// the next chunk is not counted).
    pub fn take_timeline(&mut self) -> GpuTimeline {
        self.last_end = None;
        std::mem::take(&mut self.timeline)
    }

    /// Whether attention-mode chunks drop the positions their masks hide before the forward
    /// (`compact_rows`: rows right-aligned in as many slots as the chunk's longest row), which
    /// saves that share of the work; on by default. Off, every chunk runs the full-length form.
    /// Both give the same values (`tests/gpu.rs` runs both).
    pub fn set_compaction(&mut self, on: bool) {
        self.compaction = on;
    }

    /// Whether each batch is cut into passes of rows of similar lengths ([`GpuLmValue::plan`]);
    /// on by default. Off, masks run in their own order in passes of [`GpuLmValue::batch`] rows
    /// ([`ForwardPlan::in_order`]), for comparison. Both give the same values.
    pub fn set_planning(&mut self, on: bool) {
        self.planning = on;
    }

    /// Most masks per forward pass currently in use (after any out-of-memory halving).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Evaluates masks in forward passes of at most [`GpuLmValue::batch`] rows of similar
    /// lengths ([`GpuLmValue::plan`]), halving on OOM.
    pub fn evaluate_masks(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, CudaError> {
        self.pending = None;
        let lengths = self.row_lengths(masks)?;
        let plan = self.plan_of(&lengths);
        let sorted = masks.select(&plan.order);
        let sorted_lengths: Vec<usize> = plan.order.iter().map(|&row| lengths[row]).collect();
        let all = sorted.as_slice();
        let sweep = sweep_halving(&plan.pieces, self.batch, CudaError::is_oom, |r, next| {
            let longest = sorted_lengths[r.clone()].iter().copied().max().unwrap_or(0);
            self.evaluate_chunk(all, r, next, longest)
        })?;
        self.batch = sweep.batch;
        Ok(plan.restore(sweep.values))
    }

    /// How [`GpuLmValue::evaluate_masks`] cuts `masks` into forward passes: sorted by the length
    /// of their compacted rows when chunks run compacted, so that each pass is padded only to
    /// its own longest row, a pass counted as at least [`crate::model::memory::min_forward_tokens`]
    /// positions so that none is split too small to keep the device busy ([`plan_for`]).
    pub fn plan(&self, masks: MaskSlice<'_>) -> Result<ForwardPlan, CudaError> {
        Ok(self.plan_of(&self.row_lengths(masks)?))
    }

    /// Per mask, the positions its forward runs: its compacted row, or every base position when
    /// it runs full-length (attention mode with compaction off).
    fn row_lengths(&self, masks: MaskSlice<'_>) -> Result<Vec<usize>, CudaError> {
        let lay = &self.layout;
        let mut lengths = lay.row_lengths(masks).map_err(model_err)?;
        if lay.mode == TokenMode::Attention && !self.compaction {
            lengths.fill(lay.ids.len());
        }
        Ok(lengths)
    }

    /// [`GpuLmValue::plan`] of rows of `lengths`.
    fn plan_of(&self, lengths: &[usize]) -> ForwardPlan {
        if self.planning {
            plan_for(&self.model, lengths, self.batch)
        } else {
            ForwardPlan::in_order(lengths, self.batch)
        }
    }

    /// One forward pass over rows `r` of `all`, whose longest row has `longest` positions. The
    /// upload of the `next` chunk is queued on the copy stream before this chunk's forward, so
    /// the two overlap.
    fn evaluate_chunk(
        &mut self,
        all: MaskSlice<'_>,
        r: Range<usize>,
        next: Option<Range<usize>>,
        longest: usize,
    ) -> Result<Vec<f64>, CudaError> {
        let masks = all.slice(r.clone());
        let k = match self.pending.take() {
            Some((k, pr)) if pr == r => k,
            _ => self.uploader.upload(&self.gpu, masks)?,
        };
        let start = self.timing_event()?;
        let compacted = self.compacted_slots(longest);
        let slots = compacted.unwrap_or(self.layout.ids.len());
        let input = ModelInput { past: self.prefix.clone(), ..self.device_input(k, compacted)? };
        self.uploader.release(&self.gpu, k)?;
        if let Some(next) = next {
            self.pending = Some((self.uploader.upload(&self.gpu, all.slice(next.clone()))?, next));
        }
        // Host→device copies synchronise candle's stream: make the scoring inputs before the
        // forward is queued, so nothing waits on the host between the forward and the scoring.
        let scoring = self.score_inputs(masks.len(), slots)?;
        let hidden = self.model.forward(&input).map_err(model_err)?.hidden;
        let (values, end) = self.values(&hidden, scoring, masks.len())?;
        self.record_chunk(start, end)?;
        Ok(values)
    }

    /// The values of the `rows` rows of `hidden`, with the timing event that ends the chunk's
    /// device work (recorded before the values come back).
    fn values(&mut self, hidden: &Tensor, scoring: Scoring, rows: usize) -> Result<(Vec<f64>, CudaEvent), CudaError> {
        Ok(match scoring {
            Scoring::Targets(idx, mut state) => {
                let lp = self.score(hidden, &idx, &mut state)?;
                let end = self.timing_event()?;
                let t = self.spec.target_tokens().len();
                let values = self.downloader.download(&self.gpu, &lp.slice(..rows * t))?;
                (values.chunks(t).map(|c| c.iter().sum()).collect(), end)
            }
            Scoring::LogitDiff(idx, ab) => {
                let diff = logit_diff(hidden, &idx, &ab).map_err(candle)?;
                let end = self.timing_event()?;
                (diff.to_vec1::<f32>().map_err(candle)?.into_iter().map(f64::from).collect(), end)
            }
        })
    }

    /// A timing event recorded on the compute stream now.
    fn timing_event(&self) -> Result<CudaEvent, CudaError> {
        Ok(self.gpu.compute_stream().record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?)
    }

    /// Adds a finished chunk (`start`, `end` complete: its values are on the host) to the
    /// timeline, with the idle gap since the previous chunk's end.
    fn record_chunk(&mut self, start: CudaEvent, end: CudaEvent) -> Result<(), CudaError> {
        self.timeline.busy_s += f64::from(start.elapsed_ms(&end)?) / 1e3;
        if let Some(prev) = &self.last_end {
            self.timeline.idle_s += f64::from(prev.elapsed_ms(&start)?) / 1e3;
        }
        self.timeline.chunks += 1;
        self.last_end = Some(end);
        Ok(())
    }

    /// The slots of a chunk's compacted rows, the longest of which has `longest` positions, when
    /// it runs compacted: always in remove mode; in attention mode with compaction on when that
    /// drops a position. `None`: the full-length form.
    fn compacted_slots(&self, longest: usize) -> Option<usize> {
        let lay = &self.layout;
        match lay.mode {
            TokenMode::Remove => Some(longest),
            TokenMode::Attention if self.compaction => Some(longest).filter(|&s| s < lay.ids.len()),
            _ => None,
        }
    }

    /// The model input of the masks in slot `k`: compacted rows of `compacted` slots, or the
    /// full-length form; either way built on the device.
    fn device_input(&self, k: usize, compacted: Option<usize>) -> Result<ModelInput, CudaError> {
        let lay = &self.layout;
        if let Some(slots) = compacted {
            return self.compacted_input(k, slots);
        }
        let m = self.uploader.masks(k);
        let dm = m.device_masks();
        let (b, len) = (m.rows, lay.ids.len());
        let st = self.gpu.compute_stream();
        let attn_bias = if lay.mode == TokenMode::Attention {
            // SAFETY: attention_bias writes every element.
            let mut bias = unsafe { st.alloc::<half::bf16>(b * len * len)? };
            self.gpu.attention_bias(&mut bias.as_view_mut(), dm, &self.owners.as_view(), lay.causal)?;
            Some(self.wrap(bias, &[b, 1, len, len])?)
        } else {
            None
        };
        let tokens = match lay.mode {
            TokenMode::Replace(id) => {
                // SAFETY: replace_ids writes every element.
                let mut ids = unsafe { st.alloc::<u32>(b * len)? };
                self.gpu.replace_ids(
                    &mut ids.as_view_mut(),
                    dm,
                    &self.owners.as_view(),
                    &self.base_ids.as_view(),
                    id,
                )?;
                self.wrap(ids, &[b * len])?
            }
            _ => self.ids_row.broadcast_as((b, len)).map_err(candle)?,
        };
        let positions = self.positions_row.broadcast_as((b, len)).map_err(candle)?;
        let head_gates = self.head_gates(dm)?;
        Ok(ModelInput::rows(b, len, Ids::Device(tokens), Ids::Device(positions), attn_bias, head_gates))
    }

    /// Compacted rows of the masks in slot `k` (`compact_rows`; attention or remove mode): ids,
    /// per-row positions and the bias, all built on the device.
    fn compacted_input(&self, k: usize, slots: usize) -> Result<ModelInput, CudaError> {
        let lay = &self.layout;
        let m = self.uploader.masks(k);
        let dm = m.device_masks();
        let b = m.rows;
        let st = self.gpu.compute_stream();
        // SAFETY: compact_rows writes every element of all three.
        let (mut ids, mut positions, mut bias) = unsafe {
            (st.alloc::<u32>(b * slots)?, st.alloc::<u32>(b * slots)?, st.alloc::<half::bf16>(b * slots * slots)?)
        };
        let out = CompactedRows {
            ids: &mut ids.as_view_mut(),
            positions: &mut positions.as_view_mut(),
            bias: &mut bias.as_view_mut(),
            slots,
        };
        let maps =
            BaseMaps { owners: &self.owners.as_view(), read: &self.read.as_view(), ids: &self.base_ids.as_view() };
        self.gpu.compact_rows(out, dm, &maps, lay.pad_id, lay.causal, lay.mode == TokenMode::Remove)?;
        let mut positions = self.wrap(positions, &[b * slots])?;
        if let Some(offset) = &self.position_offset {
            positions = positions.broadcast_add(offset).map_err(candle)?;
        }
        Ok(ModelInput::rows(
            b,
            slots,
            Ids::Device(self.wrap(ids, &[b * slots])?),
            Ids::Device(positions),
            Some(self.wrap(bias, &[b, 1, slots, slots])?),
            self.head_gates(dm)?,
        ))
    }

    /// The per-layer head gates of the masks `dm`, built on the device (`None` without head
    /// players).
    fn head_gates(&self, dm: DeviceMasks<'_>) -> Result<Option<HeadGates>, CudaError> {
        let lay = &self.layout;
        let b = dm.rows;
        let st = self.gpu.compute_stream();
        Ok(if lay.heads.is_empty() {
            None
        } else {
            let (nl, nh) = (lay.num_layers, lay.num_heads);
            // SAFETY: head_gates_from_masks writes every element.
            let mut g = unsafe { st.alloc::<f32>(nl * b * nh)? };
            self.gpu.head_gates_from_masks(&mut g.as_view_mut(), dm, &self.head_bits.as_view(), nl, nh)?;
            let g = self.wrap(g, &[nl, b, nh])?;
            // Layers without head players keep every head: no gating work there.
            let gated = |l: usize| lay.heads.iter().any(|h| h.layer == l);
            let gates = (0..nl)
                .map(|l| if gated(l) { g.get(l).map(Some) } else { Ok(None) })
                .collect::<Result<Vec<_>, _>>()
                .map_err(candle)?;
            Some(HeadGates { gates, fill: self.head_fill.clone() })
        })
    }

    /// A device buffer as a candle tensor of `shape` (no copy).
    fn wrap<T: candle_core::cuda::CudaDType>(&self, slice: CudaSlice<T>, shape: &[usize]) -> Result<Tensor, CudaError> {
        let dev = self.device.as_cuda_device().map_err(candle)?.clone();
        let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev));
        Ok(Tensor::from_storage(storage, shape, BackpropOp::none(), false))
    }

    /// What the scoring of `rows` rows of `slots` slots needs on the device: the flat row index
    /// (row × slots + slot) of every pick, and a fresh scoring state holding their targets, or
    /// the two LM-head rows of a logit difference.
    fn score_inputs(&self, rows: usize, slots: usize) -> Result<Scoring, CudaError> {
        let flat = |at: &[(usize, usize)]| -> Result<Tensor, CudaError> {
            let idx: Vec<u32> = at.iter().map(|&(r, p)| (r * slots + p) as u32).collect();
            Tensor::from_vec(idx, at.len(), &self.device).map_err(candle)
        };
        Ok(match self.spec.metric() {
            LmMetric::TargetLogProb => {
                let picks = self.spec.compacted_picks(rows, slots);
                let at: Vec<(usize, usize)> = picks.iter().map(|&(r, p, _)| (r, p)).collect();
                let targets: Vec<u32> = picks.iter().map(|p| p.2).collect();
                Scoring::Targets(flat(&at)?, Box::new(self.gpu.score_begin(&targets, 1)?))
            }
            LmMetric::LogitDiff { a, b } => {
                let ab = Tensor::from_vec(vec![*a, *b], 2, &self.device).map_err(candle)?;
                let ab = self.lm_head.index_select(&ab, 0).map_err(candle)?;
                Scoring::LogitDiff(flat(&self.spec.logit_rows(rows, slots))?, ab)
            }
        })
    }

    /// Fused scoring of the picks `idx` of `hidden: [B, L, E]`: LM-head tiles through cuBLAS,
    /// each folded into the running log-sum-exp by `score_tile_*`.
    fn score(&self, hidden: &Tensor, idx: &Tensor, state: &mut ScoreState) -> Result<CudaSlice<f32>, CudaError> {
        let (b, l, e) = hidden.dims3().map_err(candle)?;
        let sel = hidden.reshape((b * l, e)).and_then(|h| h.index_select(idx, 0)).map_err(candle)?;
        let vocab = self.lm_head.dim(0).map_err(candle)?;
        for v0 in (0..vocab).step_by(VOCAB_TILE) {
            let vt = VOCAB_TILE.min(vocab - v0);
            let tile = self.lm_head.narrow(0, v0, vt).and_then(|w| sel.matmul(&w.t()?)).map_err(candle)?;
            self.fold_tile(state, &tile, v0, vt)?;
        }
        self.gpu.score_finish(state)
    }

    /// Folds one contiguous `[picks, vt]` logits tile into `state`, in its dtype.
    fn fold_tile(&self, state: &mut ScoreState, tile: &Tensor, v0: usize, vt: usize) -> Result<(), CudaError> {
        let tile = tile.contiguous().map_err(candle)?;
        let (storage, layout) = tile.storage_and_layout();
        let Storage::Cuda(cs) = &*storage else {
            return Err(CudaError::Input("logits tile is not on the CUDA device".into()));
        };
        let (start, end) = layout.contiguous_offsets().expect("made contiguous above");
        match tile.dtype() {
            DType::BF16 => {
                let s = cs.as_cuda_slice::<half::bf16>().map_err(candle)?;
                self.gpu.score_tile(state, &s.slice(start..end), v0, vt, vt)
            }
            DType::F16 => {
                let s = cs.as_cuda_slice::<half::f16>().map_err(candle)?;
                self.gpu.score_tile(state, &s.slice(start..end), v0, vt, vt)
            }
            DType::F32 => {
                let s = cs.as_cuda_slice::<f32>().map_err(candle)?;
                self.gpu.score_tile(state, &s.slice(start..end), v0, vt, vt)
            }
            other => Err(CudaError::Input(format!("cannot score logits of dtype {other:?}"))),
        }
    }
}

/// The device inputs of a chunk's scoring ([`GpuLmValue::score_inputs`]).
enum Scoring {
    /// Flat pick rows and the fused scorer's state for target log-probabilities.
    Targets(Tensor, Box<ScoreState>),
    /// Flat rows read and the LM-head rows `[2, E]` of tokens `a` and `b`.
    LogitDiff(Tensor, Tensor),
}

/// `logit(a) − logit(b)` (f32, one per row) at rows `idx` of `hidden: [B, L, E]`, with `ab` the
/// LM-head rows of `a` and `b`: two dot products per row, in the model's dtype with f32
/// accumulation (cuBLAS), no vocabulary-wide logits.
fn logit_diff(hidden: &Tensor, idx: &Tensor, ab: &Tensor) -> candle_core::Result<Tensor> {
    let (b, l, e) = hidden.dims3()?;
    let sel = hidden.reshape((b * l, e))?.index_select(idx, 0)?;
    let logits = sel.matmul(&ab.t()?)?.to_dtype(DType::F32)?; // [rows, 2]
    logits.narrow(1, 0, 1)?.sub(&logits.narrow(1, 1, 1)?)?.flatten_all()
}

/// Candle's device for CUDA device `ordinal`, made once per process and shared. Candle ties a
/// tensor to the device value it was made on (its id), not just to the GPU: value functions
/// that share a model's weights there ([`crate::model::LoadedModel::model_on`]) must share the
/// device too. Without a driver or device, a clean error (not a panic).
pub fn shared_device(ordinal: usize) -> Result<Device, CudaError> {
    static DEVICES: Mutex<Vec<(usize, Device)>> = Mutex::new(Vec::new());
    let count = super::device_count()?;
    if ordinal >= count {
        return Err(CudaError::NoDevice { ordinal, count });
    }
    let mut devices = DEVICES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, device)) = devices.iter().find(|(o, _)| *o == ordinal) {
        return Ok(device.clone());
    }
    let device = Device::new_cuda(ordinal).map_err(candle)?;
    devices.push((ordinal, device.clone()));
    Ok(device)
}

/// Rows per forward pass from free device memory (after the weights are resident): each row
/// runs the positions after the cached prefix and attends all of them.
fn initial_batch(gpu: &Gpu, spec: &LmValue, dtype: DType) -> Result<usize, CudaError> {
    let info = spec.model().model.info();
    let keys = spec.layout().ids.len();
    let queries = keys - spec.cached_prefix();
    let elem = dtype.size_in_bytes();
    let row = decoder_row_bytes(&info, queries, keys, elem)
        + queries * keys * elem
        + spec.target_tokens().len() * VOCAB_TILE * elem;
    let (free, _) = gpu.memory()?;
    Ok(auto_batch_rows(free, 0, row, HEADROOM, MAX_ROWS))
}

impl ValueFunction for GpuLmValue {
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
        self.evaluate_masks(masks).map_err(|e| ValueError::Failed(e.to_string()))
    }
}

/// A [`GpuLmValue`] of `spec` on every visible device (multi-GPU on one box), each with its own
/// copy of the model in `dtype`: each batch is split across them ([`PerDevice`]).
pub fn on_every_gpu(spec: &LmValue, dtype: DType) -> Result<PerDevice<GpuLmValue>, CudaError> {
    let count = super::device_count()?;
    if count == 0 {
        return Err(CudaError::NoDevice { ordinal: 0, count });
    }
    let workers = (0..count).map(|d| GpuLmValue::new(spec.clone(), d, dtype)).collect::<Result<Vec<_>, _>>()?;
    PerDevice::new(workers).map_err(|e| CudaError::Input(e.to_string()))
}
