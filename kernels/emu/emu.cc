// The kernels of kernels/*.cu built for the host with cuda_emu.h, plus the launcher that
// tests/kernels_emulated.rs calls (compiled by that test with the system C++ compiler).
#include "cuda_emu.h"

#include <cstdlib>
#include <memory>
#include <mutex>
#include <ucontext.h>

#include "../head_gates.cu"
#include "../masking.cu"
#include "../score.cu"

namespace emu {
namespace {
constexpr size_t STACK = 256 * 1024;

struct Fiber {
    ucontext_t ctx;
    std::unique_ptr<char[]> stack{new char[STACK]};
    bool done = false;
};

thread_local ucontext_t scheduler;
thread_local std::vector<Fiber>* fibers = nullptr;
thread_local unsigned current = 0;
thread_local unsigned long progress_count = 0;
thread_local void (*body)(void*) = nullptr;
thread_local void* body_ctx = nullptr;

void fiber_main() {
    body(body_ctx);
    block->warps[current / 32].drop();
    block->all.drop();
    (*fibers)[current].done = true;
    progress();
} // returns to `scheduler` through uc_link

// Runs one block's fibers to completion; false if they deadlock.
bool run_block(std::vector<Fiber>& fs, unsigned threads) {
    Block b;
    b.all.expected = threads;
    for (unsigned w = 0; w * 32 < threads; ++w) b.warps.push_back(Barrier{std::min(32u, threads - w * 32)});
    b.exchange[0].assign(threads, 0.0f);
    b.exchange[1].assign(threads, 0.0f);
    b.parity.assign(threads, 0);
    block = &b;
    for (unsigned t = 0; t < threads; ++t) {
        Fiber& f = fs[t];
        f.done = false;
        getcontext(&f.ctx);
        f.ctx.uc_stack = {f.stack.get(), 0, STACK};
        f.ctx.uc_link = &scheduler;
        makecontext(&f.ctx, fiber_main, 0);
    }
    unsigned live = threads, idle_rounds = 0;
    while (live > 0) {
        const unsigned long before = progress_count;
        for (unsigned t = 0; t < threads; ++t) {
            if (fs[t].done) continue;
            current = t;
            threadIdx = {t, 0, 0};
            swapcontext(&scheduler, &fs[t].ctx);
            if (fs[t].done) --live;
        }
        // Two rounds in which no barrier completed and no thread finished: nothing can move.
        idle_rounds = progress_count == before ? idle_rounds + 1 : 0;
        if (idle_rounds == 2) return false;
    }
    return true;
}
} // namespace

void yield() { swapcontext(&(*fibers)[current].ctx, &scheduler); }
void progress() { ++progress_count; }
} // namespace emu

// Runs `thread(ctx)` as every thread of a (grid_x, grid_y) x block_x launch; `thread` calls the
// kernel with its arguments. Launches are serialised (as on one stream; `static` shared
// memory). Returns 0, or 1 when a block deadlocked (a barrier not every thread reaches).
extern "C" int emu_launch(unsigned grid_x, unsigned grid_y, unsigned block_x, void (*thread)(void*), void* ctx) {
    static std::mutex one_at_a_time;
    std::lock_guard<std::mutex> lock(one_at_a_time);
    std::vector<emu::Fiber> fs(block_x);
    emu::fibers = &fs;
    emu::body = thread;
    emu::body_ctx = ctx;
    blockDim = {block_x, 1, 1};
    gridDim = {grid_x, grid_y, 1};
    for (unsigned by = 0; by < grid_y; ++by) {
        for (unsigned bx = 0; bx < grid_x; ++bx) {
            blockIdx = {bx, by, 0};
            if (!emu::run_block(fs, block_x)) return 1;
        }
    }
    return 0;
}
