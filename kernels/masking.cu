// Token and head masking built on the device from bit-packed player masks, so a batch uploads
// B x W u64 words (W = ceil(players / 64)) instead of B x L x L biases or B x L token ids.
//
// CPU twins: crate::value::ablate::{full_length_visibility, replaced_ids, compacted_rows,
// dense_head_gates} and crate::model::ops::attention_bias (the bias layout and the "a query always
// sees itself" rule are exactly attention_bias's).
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

// Attention mode, compacted: the rows drop the positions their masks hide (a hidden key is seen by
// no query, and nothing reads its own output), which saves the forward that share of its work.
// Row b holds, in base order, the positions p that are read (read[p] != 0) or kept (owner -1 or
// its bit set), right-aligned in `slots` slots so that the end of the input (the target and the
// token predicting it) lands on the same slots in every row; the slots before them hold pad_id
// at position 0. Writes the ids and positions [B, slots] and the additive bias
// [B, 1, slots, slots]: a kept position is a visible key (padding and read-but-hidden ones are
// not), a query always sees itself, and causal masking follows the slots (they keep base order).
// Positions that do not fit are dropped from the front; the host sizes `slots` to the longest row.
// With `renumber` (remove mode: the read flags are all 0, ablated tokens are deleted and the
// positions shift), each slot's position is instead its rank in the row, from 0.
//
// One block per row (grid-stride over rows). The block walks the row from its end a tile of
// blockDim.x positions at a time: an inclusive scan in shared memory over "included" flags, thread
// 0 taking the tile's last position, gives each position its slot counted from the right.
constexpr int MAX_BLOCK = 1024;

template <typename T>
__device__ void compact_rows_impl(uint32_t* __restrict__ ids_out, uint32_t* __restrict__ pos_out,
                                  T* __restrict__ bias, const uint64_t* __restrict__ masks,
                                  const int32_t* __restrict__ owners, const int32_t* __restrict__ read,
                                  const uint32_t* __restrict__ ids, int batch, int len, int words, int slots,
                                  uint32_t pad_id, int causal, int renumber) {
    __shared__ int scan[MAX_BLOCK];
    __shared__ int after; // included positions after the current tile
    const int t = threadIdx.x, n = blockDim.x;
    for (int b = blockIdx.x; b < batch; b += gridDim.x) {
        if (t == 0) after = 0;
        __syncthreads();
        for (int tile = (len - 1) / n; tile >= 0; --tile) {
            const int p = tile * n + (n - 1 - t);
            const bool in = p < len && (read[p] != 0 || row_keeps(masks, words, b, owners[p]));
            scan[t] = in;
            __syncthreads();
            for (int off = 1; off < n; off <<= 1) {
                const int add = t >= off ? scan[t - off] : 0;
                __syncthreads();
                scan[t] += add;
                __syncthreads();
            }
            const int slot = slots - (after + scan[t]); // scan[t]: included positions in [p, tile end)
            if (in && slot >= 0) {
                ids_out[(size_t)b * slots + slot] = ids[p];
                pos_out[(size_t)b * slots + slot] = p;
            }
            __syncthreads();
            if (t == 0) after += scan[n - 1];
            __syncthreads();
        }
        const int pad = slots - after; // negative when positions were dropped: no padding
        for (int k = t; k < pad; k += n) {
            ids_out[(size_t)b * slots + k] = pad_id;
            pos_out[(size_t)b * slots + k] = 0;
        }
        __syncthreads(); // every position is written before the bias reads them
        const size_t cells = (size_t)slots * slots;
        for (size_t c = t; c < cells; c += n) {
            const int i = c / slots, j = c % slots;
            const bool key = j >= pad && row_keeps(masks, words, b, owners[pos_out[(size_t)b * slots + j]]);
            const bool visible = j == i || (!(causal && j > i) && key);
            bias[(size_t)b * cells + c] = from_f32<T>(visible ? 0.0f : -CUDART_INF_F);
        }
        __syncthreads(); // the bias has read the base positions before they are renumbered
        for (int k = pad > 0 ? pad + t : t; renumber && k < slots; k += n) pos_out[(size_t)b * slots + k] = k - pad;
        __syncthreads(); // nobody still reads `after` when thread 0 resets it for the next row
    }
}

#define COMPACT_ROWS(SUFFIX, T)                                                                             \
    extern "C" __global__ void compact_rows_##SUFFIX(uint32_t* ids_out, uint32_t* pos_out, T* bias,          \
                                                     const uint64_t* masks, const int32_t* owners,          \
                                                     const int32_t* read, const uint32_t* ids, int batch,   \
                                                     int len, int words, int slots, uint32_t pad_id,        \
                                                     int causal, int renumber) {                            \
        compact_rows_impl(ids_out, pos_out, bias, masks, owners, read, ids, batch, len, words, slots, pad_id, \
                          causal, renumber);                                                                \
    }
COMPACT_ROWS(f32, float)
COMPACT_ROWS(bf16, __nv_bfloat16)
COMPACT_ROWS(f16, __half)
