// Host stand-in for <cuda_fp16.h> (see cuda_emu.h): the compiler's IEEE binary16 (_Float16),
// whose conversions round to nearest even.
#pragma once
#include "cuda_emu.h"

struct __half {
    _Float16 h;
};

inline float __half2float(__half x) { return float(x.h); }
inline __half __float2half_rn(float f) { return {_Float16(f)}; }
