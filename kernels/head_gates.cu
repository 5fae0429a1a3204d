// Head gating in place on the per-head attention outputs [B, T, H, D], before the output
// projection: x = g * x + (1 - g) * fill, g = gate[b, h] broadcast over positions and dims, fill
// [H, D] (mean ablation) or zero when null. Computed in f32 and rounded once to the storage type,
// so gates of exactly 0 or 1 give exactly x or fill in every dtype.
//
// CPU twin: crate::model::ops::gate_heads_slice; on candle tensors through
// crate::model::ops::gate_heads_in_place (the GPU forward's head-ablation hook).
#include "common.cuh"

template <typename T>
__device__ void head_gates_impl(T* __restrict__ x, const float* __restrict__ gate, const T* __restrict__ fill,
                                int batch, int len, int heads, int dim) {
    const size_t total = (size_t)batch * len * heads * dim;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int d = idx % dim;
        const int h = (idx / dim) % heads;
        const int b = idx / ((size_t)len * heads * dim);
        const float g = gate[b * heads + h];
        if (g == 1.0f) continue; // kept: no store, the common case costs one read of the gate
        const float f = fill ? to_f32(fill[h * dim + d]) : 0.0f;
        x[idx] = from_f32<T>(g * to_f32(x[idx]) + (1.0f - g) * f);
    }
}

extern "C" __global__ void head_gates_f32(float* x, const float* gate, const float* fill, int batch, int len,
                                          int heads, int dim) {
    head_gates_impl(x, gate, fill, batch, len, heads, dim);
}
extern "C" __global__ void head_gates_bf16(__nv_bfloat16* x, const float* gate, const __nv_bfloat16* fill,
                                           int batch, int len, int heads, int dim) {
    head_gates_impl(x, gate, fill, batch, len, heads, dim);
}
extern "C" __global__ void head_gates_f16(__half* x, const float* gate, const __half* fill, int batch, int len,
                                          int heads, int dim) {
    head_gates_impl(x, gate, fill, batch, len, heads, dim);
}
