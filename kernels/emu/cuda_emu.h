// Host emulation of the CUDA execution model, just enough to run kernels/*.cu on the CPU as
// plain C++ (g++ >= 12 or clang, C++20): the kernels' own source, checked against their CPU twins
// by tests/kernels_emulated.rs on every test run, on machines with no GPU and no CUDA toolkit.
// The GPU itself (memory model, PTX, driver) is checked by tests/gpu.rs (scripts/gpu-check.sh).
//
// Model: a launch runs its blocks one after another; the threads of a block are fibers
// (ucontext) on the calling OS thread, switched cooperatively: __syncthreads is a barrier of the
// block, a warp shuffle a barrier of the warp around an exchange buffer, and a waiting fiber
// yields to the next. A thread that returns drops out of both barriers, as on a GPU. A barrier
// that can never complete (a divergent __syncthreads) fails the launch instead of hanging.
// __shared__ is `static`: correct because one block runs at a time and launches are serialised.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h> // logf, fmaxf, expf in the global namespace, as in CUDA
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// Set by the scheduler before it switches to a fiber (one runs at a time).
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

namespace emu {
void yield();
void progress();

// A barrier of cooperative fibers: waiting means yielding until the generation moves on.
struct Barrier {
    unsigned expected = 0, arrived = 0, generation = 0;
    void release() {
        arrived = 0;
        ++generation;
        progress();
    }
    void wait() {
        const unsigned g = generation;
        if (++arrived == expected) return release();
        while (generation == g) yield();
    }
    // A finished thread: the others no longer wait for it.
    void drop() {
        if (--expected > 0 && arrived == expected) release();
    }
};

struct Block {
    Barrier all;
    std::vector<Barrier> warps;
    // Two exchange buffers used alternately: one barrier per shuffle suffices, since no lane
    // can write a buffer again before every lane has passed the next shuffle's barrier.
    std::vector<float> exchange[2];
    std::vector<unsigned char> parity;
};
inline thread_local Block* block = nullptr;
} // namespace emu

inline void __syncthreads() { emu::block->all.wait(); }

// Lane `lane ^ off` of this warp's value (every lane of the warp must call it, as on a GPU).
inline float __shfl_xor_sync(unsigned /*mask*/, float v, int off) {
    emu::Block& b = *emu::block;
    const unsigned t = threadIdx.x, base = t / 32 * 32;
    std::vector<float>& buf = b.exchange[b.parity[t]];
    b.parity[t] ^= 1;
    buf[t] = v;
    b.warps[t / 32].wait();
    return buf[base + ((t - base) ^ unsigned(off))];
}

inline float __expf(float x) { return expf(x); }
inline int min(int a, int b) { return a < b ? a : b; }
