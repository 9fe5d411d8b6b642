// cuda_emu.h: just enough of CUDA to run lathe's kernels on the host, for
// emu_test.cpp. The blocks of a launch run one after another on one OS
// thread per CUDA thread: __shared__ variables become function statics
// (one block alive at a time), __syncthreads and __syncwarp are
// std::barriers, warp shuffles exchange values through a per-block slot
// array between two warp barriers, dynamic shared memory starts as NaNs.
// It checks the kernels' indexing, masking, tiling and reduction logic, not
// the GPU's memory model, its math library's last bits, or speed.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <barrier>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __constant__

namespace emu {
struct Block {
    std::unique_ptr<std::barrier<>> bar;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<uint64_t> slots; // one shuffle slot per thread
    std::vector<float4> dyn;     // dynamic shared memory
};
inline dim3 grid_dim, block_dim;
inline thread_local dim3 thread_idx, block_idx;
inline thread_local Block *blk;
inline thread_local unsigned linear_tid;

inline void *dynamic_smem() { return blk->dyn.data(); }

// launch runs call() as a kernel over grid × block threads with smem bytes
// of dynamic shared memory. One OS thread per CUDA thread of a block runs
// the blocks in order; a launch-wide barrier keeps the blocks apart (their
// __shared__ statics are one copy), and each block has fresh barriers, so a
// thread that returns early drops out of its block only.
inline void launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &call) {
    grid_dim = grid;
    block_dim = block;
    unsigned n = block.x * block.y * block.z;
    size_t nblocks = (size_t)grid.x * grid.y * grid.z;
    std::vector<Block> blocks(nblocks);
    for (auto &b : blocks) {
        b.bar = std::make_unique<std::barrier<>>(n);
        for (unsigned w = 0; w < (n + 31) / 32; w++)
            b.warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, n - 32 * w)));
        b.slots.assign(n, 0);
        b.dyn.assign((smem + 15) / 16, float4{NAN, NAN, NAN, NAN}); // garbage, as on a GPU
    }
    std::barrier<> between(n);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < n; t++)
        ts.emplace_back([&, t] {
            thread_idx = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            linear_tid = t;
            for (size_t i = 0; i < nblocks; i++) {
                between.arrive_and_wait();
                block_idx = dim3{(unsigned)(i % grid.x), (unsigned)(i / grid.x % grid.y), (unsigned)(i / ((size_t)grid.x * grid.y))};
                blk = &blocks[i];
                call();
                blk->bar->arrive_and_drop();
                blk->warps[t / 32]->arrive_and_drop();
            }
        });
    for (auto &t : ts) t.join();
}
} // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim

inline void __syncthreads() { emu::blk->bar->arrive_and_wait(); }
inline void __syncwarp() { emu::blk->warps[emu::linear_tid / 32]->arrive_and_wait(); }

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int o) {
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    unsigned t = emu::linear_tid, lane = t & 31, base = t - lane;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    emu::blk->slots[t] = bits;
    __syncwarp();
    uint64_t got = emu::blk->slots[base + (lane ^ (unsigned)o)];
    __syncwarp();
    T r;
    memcpy(&r, &got, sizeof(T));
    return r;
}

inline int atomicOr(int *p, int v) { return std::atomic_ref<int>(*p).fetch_or(v); }

inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned int u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
template <class T>
inline T __ldg(const T *p) { return *p; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
