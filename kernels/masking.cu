// Token and head masking built on the device from bit-packed player masks, so a batch uploads
// B x W u64 words (W = ceil(players / 64)) instead of B x L x L biases or B x L token ids.
//
// CPU twins: crate::value::ablate::{full_length_visibility, replaced_ids, head_gates_from_masks}
// and crate::model::ops::attention_bias (the bias layout and the "a query always sees itself"
// rule are exactly attention_bias's).
#include "common.cuh"
#include <math_constants.h>

// Additive attention bias [B, 1, L, L]: 0 where query i of row b may attend key j, -inf where not.
// Key j is visible in row b when its owner is -1 (fixed token) or the owner's bit is set;
// j == i is always visible (no empty softmax row); with `causal`, keys after the query are not.
// One thread per bias element; grid-stride so any grid size is correct.
template <typename T>
__device__ void attention_bias_impl(T* __restrict__ bias, const uint64_t* __restrict__ masks,
                                    const int32_t* __restrict__ owners, int batch, int len,
                                    int words, int causal) {
    const size_t total = (size_t)batch * len * len;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int j = idx % len;
        const int i = (idx / len) % len;
        const int b = idx / ((size_t)len * len);
        const bool visible = j == i || (!(causal && j > i) && row_keeps(masks, words, b, owners[j]));
        bias[idx] = from_f32<T>(visible ? 0.0f : -CUDART_INF_F);
    }
}

extern "C" __global__ void attention_bias_f32(float* bias, const uint64_t* masks, const int32_t* owners,
                                              int batch, int len, int words, int causal) {
    attention_bias_impl(bias, masks, owners, batch, len, words, causal);
}
extern "C" __global__ void attention_bias_bf16(__nv_bfloat16* bias, const uint64_t* masks,
                                               const int32_t* owners, int batch, int len, int words,
                                               int causal) {
    attention_bias_impl(bias, masks, owners, batch, len, words, causal);
}
extern "C" __global__ void attention_bias_f16(__half* bias, const uint64_t* masks, const int32_t* owners,
                                              int batch, int len, int words, int causal) {
    attention_bias_impl(bias, masks, owners, batch, len, words, causal);
}

// Replace mode: out[b, p] = replacement when position p's owner is ablated in row b, else ids[p].
extern "C" __global__ void replace_ids(uint32_t* __restrict__ out, const uint64_t* __restrict__ masks,
                                       const int32_t* __restrict__ owners, const uint32_t* __restrict__ ids,
                                       int batch, int len, int words, uint32_t replacement) {
    const size_t total = (size_t)batch * len;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int p = idx % len;
        const int b = idx / len;
        out[idx] = row_keeps(masks, words, b, owners[p]) ? ids[p] : replacement;
    }
}

// Dense head gates [layers, B, H] (f32, 1 = kept, 0 = ablated): head (l, h) is gated by mask bit
// bits[l * H + h], or never (-1). One thread per gate.
extern "C" __global__ void head_gates_from_masks(float* __restrict__ gates, const uint64_t* __restrict__ masks,
                                                 const int32_t* __restrict__ bits, int layers, int batch,
                                                 int heads, int words) {
    const size_t total = (size_t)layers * batch * heads;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int h = idx % heads;
        const int b = (idx / heads) % batch;
        const int l = idx / ((size_t)heads * batch);
        gates[idx] = row_keeps(masks, words, b, bits[l * heads + h]) ? 1.0f : 0.0f;
    }
}
