//! This crate's kernels as operations on candle's CUDA tensors (feature `candle-cuda`): launched
//! on candle's stream (so they order with candle's own work), the PTX loaded once per device
//! through candle's custom-function cache. The CPU side of each operation is in
//! [`crate::model::ops`].

use candle_core::backend::BackendStorage;
use candle_core::cuda::CudaDType;
use candle_core::{CudaStorage, DType, Layout};

use super::kernels::{launch_head_gates, GpuFloat};
use super::{ptx, CudaError};
use crate::model::ops::contiguous_range;

fn to_candle(e: CudaError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// `head_gates_*` in place on `x: [B, L, H, D]` (f32, bf16 or f16) with `f32` gates `[B, H]` and
/// an optional fill `[H, D]` of `x`'s dtype: the CUDA side of
/// [`crate::model::ops::gate_heads_in_place`].
pub(crate) fn gate_heads(
    x: &mut CudaStorage,
    lx: &Layout,
    gate: &CudaStorage,
    lg: &Layout,
    fill: Option<(&CudaStorage, &Layout)>,
    dims: [usize; 4],
) -> candle_core::Result<()> {
    match x.dtype() {
        DType::F32 => gate_heads_as::<f32>(x, lx, gate, lg, fill, dims),
        DType::BF16 => gate_heads_as::<half::bf16>(x, lx, gate, lg, fill, dims),
        DType::F16 => gate_heads_as::<half::f16>(x, lx, gate, lg, fill, dims),
        other => candle_core::bail!("head gating: attention output of dtype {other:?} (expected f32, bf16 or f16)"),
    }
}

fn gate_heads_as<T: GpuFloat + CudaDType>(
    x: &mut CudaStorage,
    lx: &Layout,
    gate: &CudaStorage,
    lg: &Layout,
    fill: Option<(&CudaStorage, &Layout)>,
    dims: [usize; 4],
) -> candle_core::Result<()> {
    let dev = x.device.clone();
    let cap = dev.cuda_stream().context().compute_capability().map_err(|e| to_candle(e.into()))?;
    let src = ptx::select("head_gates", cap).map_err(to_candle)?;
    let func = dev.get_or_load_custom_func(&format!("head_gates_{}", T::SUFFIX), "spex_head_gates", src)?;
    let gate = gate.as_cuda_slice::<f32>()?.slice(contiguous_range(lg)?);
    let fill = match fill {
        Some((f, lf)) => Some(f.as_cuda_slice::<T>()?.slice(contiguous_range(lf)?)),
        None => None,
    };
    let mut xv = x.as_cuda_slice_mut::<T>()?.slice_mut(contiguous_range(lx)?);
    launch_head_gates(&dev.cuda_stream(), &func, &mut xv, &gate, fill.as_ref(), dims).map_err(to_candle)
}
