// Shared helpers of the spex kernels: dtype conversions (all arithmetic is done in f32) and
// bit-packed mask access (the layout of src/mask.rs: 64 players per u64 word, LSB first).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// Loads and stores through f32, so every kernel accumulates in f32 whatever the storage type.
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
// Round to nearest even, as the CPU twins do (half::bf16::from_f32, half::f16::from_f32).
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

// Whether player `p` is kept in the mask row starting at `words`.
__device__ __forceinline__ bool mask_bit(const uint64_t* words, int p) {
    return (words[p >> 6] >> (p & 63)) & 1ull;
}

// Whether row `b` of `masks` (`words` u64 per row) keeps the player of mask bit `bit`; -1 marks a
// fixed token or an ungated head, always kept.
__device__ __forceinline__ bool row_keeps(const uint64_t* masks, int words, int b, int bit) {
    return bit < 0 || mask_bit(masks + (size_t)b * words, bit);
}
