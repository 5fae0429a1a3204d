// Fused target scoring: log softmax(lm_head . hidden[n])[target[n]] for N picked (row, position)
// pairs without ever holding the N x V logits. Each pick keeps a running log-sum-exp state
// (m = max logit so far, s = sum of exp(logit - m)) that is merged over vocabulary pieces in f32,
// plus the target's logit; score_finish turns that into log-probabilities.
//
// Two ways to feed the state, one state layout ([N, S] partial (m, s), [N] target logits):
// * score_tile_*: the vocabulary in tiles of logits [N, Vt] produced by any GEMM (cuBLAS through
//   candle on the GPU path); memory is bounded by the tile, the GEMM runs on tensor cores. S = 1;
//   tiles are processed in order on one stream, each row's state touched by one warp.
// * score_direct_*: no GEMM library: a block takes ROWS picks and a slice of the vocabulary and
//   computes the dot products itself (f32 accumulation), writing partial state per slice (S =
//   slices). Reads lm_head once per ROWS picks: bandwidth-bound, the fallback and the reference
//   for the tile path.
//
// CPU twin: crate::model::ops::score_targets (f32); the bf16/f16 variants differ from it only
// by the rounding of their inputs.
#include "common.cuh"
#include <math_constants.h>

// Merges (m2, s2) into (m, s). exp(-inf - -inf) is NaN, so an empty side is skipped.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
    if (s2 == 0.0f) return;
    if (s == 0.0f) { m = m2; s = s2; return; }
    const float mx = fmaxf(m, m2);
    s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
    m = mx;
}

// Adds one logit to (m, s).
__device__ __forceinline__ void lse_push(float& m, float& s, float x) {
    if (x == -CUDART_INF_F) return; // contributes exp(-inf) = 0; skipping avoids -inf - -inf
    if (x > m) { s = s * __expf(m - x) + 1.0f; m = x; } else { s += __expf(x - m); }
}

__device__ __forceinline__ void lse_warp_reduce(float& m, float& s) {
    for (int off = 16; off > 0; off >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, off);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, off);
        lse_merge(m, s, m2, s2);
    }
}

// Empty state for `count` partials and `picks` target logits (NaN until the target is seen, so a
// target outside the vocabulary shows as NaN rather than as a plausible number).
extern "C" __global__ void score_init(float* part_m, float* part_s, float* tgt, int count, int picks) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
        part_m[i] = -CUDART_INF_F;
        part_s[i] = 0.0f;
        if (i < picks) tgt[i] = CUDART_NAN_F;
    }
}

// One warp per pick: folds logits[n, 0..vt) (columns v0 .. v0 + vt of the vocabulary, row stride
// ld elements) into the pick's state part_m[n], part_s[n] (S = 1) and records the target's logit.
template <typename T>
__device__ void score_tile_impl(const T* __restrict__ logits, const uint32_t* __restrict__ targets,
                                float* __restrict__ part_m, float* __restrict__ part_s, float* __restrict__ tgt,
                                int picks, int vt, int ld, int v0) {
    const int lane = threadIdx.x & 31;
    const int n = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (n >= picks) return;
    const T* row = logits + (size_t)n * ld;
    float m = -CUDART_INF_F, s = 0.0f;
    for (int v = lane; v < vt; v += 32) lse_push(m, s, to_f32(row[v]));
    lse_warp_reduce(m, s);
    if (lane == 0) {
        lse_merge(part_m[n], part_s[n], m, s);
        const int t = (int)targets[n] - v0;
        if (t >= 0 && t < vt) tgt[n] = to_f32(row[t]);
    }
}

extern "C" __global__ void score_tile_f32(const float* logits, const uint32_t* targets, float* part_m,
                                          float* part_s, float* tgt, int picks, int vt, int ld, int v0) {
    score_tile_impl(logits, targets, part_m, part_s, tgt, picks, vt, ld, v0);
}
extern "C" __global__ void score_tile_bf16(const __nv_bfloat16* logits, const uint32_t* targets, float* part_m,
                                           float* part_s, float* tgt, int picks, int vt, int ld, int v0) {
    score_tile_impl(logits, targets, part_m, part_s, tgt, picks, vt, ld, v0);
}
extern "C" __global__ void score_tile_f16(const __half* logits, const uint32_t* targets, float* part_m,
                                          float* part_s, float* tgt, int picks, int vt, int ld, int v0) {
    score_tile_impl(logits, targets, part_m, part_s, tgt, picks, vt, ld, v0);
}

// Picks per block of the direct kernel: each lm_head row read serves ROWS picks.
#define ROWS 8

// Block (x, y): picks ROWS*x .. ROWS*x + ROWS - 1, vocabulary slice y of `slices` (contiguous).
// Warp w takes vocabulary entries w, w + warps, ...; each lane sums a strided part of the
// E-long dot product for every pick, the warp reduces, and lane r keeps pick r's state.
// hidden [N, E] (the picked rows, gathered), lm_head [V, E]; blockDim.x a multiple of 32, <= 1024.
template <typename T>
__device__ void score_direct_impl(const T* __restrict__ hidden, const T* __restrict__ lm_head,
                                  const uint32_t* __restrict__ targets, float* __restrict__ part_m,
                                  float* __restrict__ part_s, float* __restrict__ tgt, int picks, int vocab,
                                  int embed, int slices) {
    __shared__ float sm[32][ROWS], ss[32][ROWS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int n0 = blockIdx.x * ROWS;
    const int per = (vocab + slices - 1) / slices;
    const int vb = blockIdx.y * per, ve = min(vocab, vb + per);
    float m = -CUDART_INF_F, s = 0.0f; // state of pick n0 + lane (lanes < ROWS)
    for (int v = vb + warp; v < ve; v += warps) {
        float acc[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) acc[r] = 0.0f;
        const T* w = lm_head + (size_t)v * embed;
        for (int e = lane; e < embed; e += 32) {
            const float x = to_f32(w[e]);
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
                if (n0 + r < picks) acc[r] += x * to_f32(hidden[(size_t)(n0 + r) * embed + e]);
        }
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
            if (lane == r && n0 + r < picks) {
                lse_push(m, s, acc[r]);
                if (targets[n0 + r] == (uint32_t)v) tgt[n0 + r] = acc[r];
            }
        }
    }
    if (lane < ROWS) { sm[warp][lane] = m; ss[warp][lane] = s; }
    __syncthreads();
    if (threadIdx.x < ROWS && n0 + (int)threadIdx.x < picks) {
        float bm = -CUDART_INF_F, bs = 0.0f;
        for (int k = 0; k < warps; ++k) lse_merge(bm, bs, sm[k][threadIdx.x], ss[k][threadIdx.x]);
        const size_t at = (size_t)(n0 + threadIdx.x) * slices + blockIdx.y;
        part_m[at] = bm;
        part_s[at] = bs;
    }
}

extern "C" __global__ void score_direct_f32(const float* hidden, const float* lm_head, const uint32_t* targets,
                                            float* part_m, float* part_s, float* tgt, int picks, int vocab,
                                            int embed, int slices) {
    score_direct_impl(hidden, lm_head, targets, part_m, part_s, tgt, picks, vocab, embed, slices);
}
extern "C" __global__ void score_direct_bf16(const __nv_bfloat16* hidden, const __nv_bfloat16* lm_head,
                                             const uint32_t* targets, float* part_m, float* part_s, float* tgt,
                                             int picks, int vocab, int embed, int slices) {
    score_direct_impl(hidden, lm_head, targets, part_m, part_s, tgt, picks, vocab, embed, slices);
}
extern "C" __global__ void score_direct_f16(const __half* hidden, const __half* lm_head, const uint32_t* targets,
                                            float* part_m, float* part_s, float* tgt, int picks, int vocab,
                                            int embed, int slices) {
    score_direct_impl(hidden, lm_head, targets, part_m, part_s, tgt, picks, vocab, embed, slices);
}

// out[n] = tgt[n] - log-sum-exp over the pick's S partial states. One thread per pick.
extern "C" __global__ void score_finish(float* out, const float* part_m, const float* part_s, const float* tgt,
                                        int picks, int slices) {
    for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < picks; n += gridDim.x * blockDim.x) {
        float m = -CUDART_INF_F, s = 0.0f;
        for (int k = 0; k < slices; ++k) lse_merge(m, s, part_m[(size_t)n * slices + k], part_s[(size_t)n * slices + k]);
        out[n] = tgt[n] - (m + logf(s));
    }
}
