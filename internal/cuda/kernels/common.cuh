// common.cuh: helpers shared by lathe's CUDA kernels (see ../doc.go).
//
// Conventions of every kernel in this directory:
//   - Kernels are extern "C" so the Go side finds them by their plain name.
//   - Element counts and offsets that can exceed 2^31 (a 7B model's
//     parameter buffer) are long long; row/column sizes that are bounded by
//     a model dimension are int.
//   - All math is float32 unless a comment says double; exp, log, tanh,
//     sin and cos are the accurate CUDA versions (no --use_fast_math).
//   - Every reduction runs in an order fixed by the shapes (a fixed tree
//     over a fixed assignment of elements to threads, never atomics), so
//     results are bit-identical from run to run on the same GPU.
//   - Data-dependent errors (an embedding id outside the table, a target
//     outside the vocabulary) cannot panic on the device: the kernel skips
//     the element and ORs a bit into the error word (*err), which the Go
//     side reads at Sync.
#pragma once

#ifdef LATHE_EMU
// Compiled for the host by emu/emu_test.cpp, which emulates the CUDA
// built-ins these kernels use (threads, blocks, warps, shared memory).
#include "emu/cuda_emu.h"
#define DYNAMIC_SMEM(type, name) type *name = (type *)emu::dynamic_smem()
#else
#define DYNAMIC_SMEM(type, name) extern __shared__ type name[]
#endif

typedef long long ll;

// Error bits of the device error word (mirrored in ../backend.go).
#define LATHE_ERR_EMBED_ID 1
#define LATHE_ERR_TARGET 2
#define LATHE_ERR_DECODE_LEN 4

// The global thread index and the grid-stride step of a 1-D launch.
__device__ __forceinline__ ll gtid() { return (ll)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ ll gstride() { return (ll)gridDim.x * blockDim.x; }

// Warp reductions over all 32 lanes with a fixed butterfly order: every
// lane ends with the same, deterministic result.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// block_sum_d returns the sum of v over the block (blockDim.x a multiple of
// 32, at most 1024) to every thread: each warp reduces its lanes, then warp
// 0 reduces the warp sums. red must hold 32 doubles. The order depends only
// on blockDim.x.
__device__ double block_sum_d(double v, double *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) red[w] = v;
    __syncthreads();
    double t = lane < nw ? red[lane] : 0.0;
    t = warp_sum_d(t);
    return t;
}

// block_max returns the maximum of v over the block to every thread (NaN
// is ignored by fmaxf unless every value is NaN). red must hold 32 floats.
__device__ float block_max(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : -INFINITY;
    return warp_max(t);
}

// sigmoidf is 1/(1+e^-x) as the CPU backend computes it (its exp argument
// clamped to the float range, so huge |x| gives exactly 0 or 1).
__device__ __forceinline__ float sigmoidf_(float x) {
    float t = expf(fminf(fmaxf(-x, -87.33654f), 88.0f));
    return 1.0f / (1.0f + t);
}

// gelu_tanh returns gelu(x) with the tanh approximation and writes
// sig = sigmoid(2y), y = sqrt(2/pi)(x + 0.044715 x^3): x/2(1 + tanh y) =
// x·sigmoid(2y) (the CPU backend's formulation, free of the cancellation
// of 1 + tanh y for negative x).
__device__ __forceinline__ float gelu_tanh(float x, float *sig) {
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    float x3 = x * x * x;
    float y = k0 * (x + k1 * x3);
    float s = sigmoidf_(y + y);
    *sig = s;
    return x * s;
}

// The bfloat16 and IEEE half conversions, bit for bit those of
// internal/tensor/convert.go (round to nearest even; NaN stays a quiet NaN
// with its sign and top payload bits; overflow becomes Inf).
__device__ __forceinline__ unsigned short bf16_from_f32(float f) {
    unsigned int b = __float_as_uint(f);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((b >> 16) | 0x0040u);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (unsigned short)(b >> 16);
}
__device__ __forceinline__ float f32_from_bf16(unsigned short h) { return __uint_as_float((unsigned int)h << 16); }

// An activation a kernel writes or reads is float32 or, under mixed
// precision (llama.Options.BF16Activations), bfloat16 held as unsigned
// short: put_act stores a float32 result (rounded for bfloat16), get_act
// loads one widened. Kernels templated on the activation type instantiate
// an _f32 and a _bf16 entry point.
__device__ __forceinline__ void put_act(float *p, ll i, float v) { p[i] = v; }
__device__ __forceinline__ void put_act(unsigned short *p, ll i, float v) { p[i] = bf16_from_f32(v); }
__device__ __forceinline__ float get_act(const float *p, ll i) { return p[i]; }
__device__ __forceinline__ float get_act(const unsigned short *p, ll i) { return f32_from_bf16(p[i]); }
// ldg4 loads 4 consecutive activations through the read-only cache.
__device__ __forceinline__ float4 ldg4(const float *p) { return make_float4(__ldg(p), __ldg(p + 1), __ldg(p + 2), __ldg(p + 3)); }
__device__ __forceinline__ float4 ldg4(const unsigned short *p) {
    return make_float4(f32_from_bf16(__ldg(p)), f32_from_bf16(__ldg(p + 1)), f32_from_bf16(__ldg(p + 2)), f32_from_bf16(__ldg(p + 3)));
}

__device__ unsigned short f16_from_f32(float f) {
    unsigned int b = __float_as_uint(f);
    unsigned short sign = (unsigned short)((b >> 16) & 0x8000u);
    int exp = (int)((b >> 23) & 0xffu);
    unsigned int man = b & 0x7fffffu;
    if (exp == 0xff) {
        if (man != 0) return sign | 0x7e00u | (unsigned short)(man >> 13);
        return sign | 0x7c00u;
    }
    int e = exp - 127 + 15;
    if (e >= 0x1f) return sign | 0x7c00u;
    if (e <= 0) {
        if (e < -10) return sign;
        unsigned int m = man | 0x800000u;
        unsigned int shift = (unsigned int)(14 - e);
        unsigned int h = m >> shift;
        unsigned int rem = m & ((1u << shift) - 1u);
        unsigned int half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return sign | (unsigned short)h;
    }
    unsigned int h = ((unsigned int)e << 10) | (man >> 13);
    unsigned int rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; // a carry into the exponent is correct, up to Inf
    return sign | (unsigned short)h;
}

__device__ float f32_from_f16(unsigned short h) {
    unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
    unsigned int exp = ((unsigned int)h >> 10) & 0x1fu;
    unsigned int man = h & 0x3ffu;
    if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        float v = (float)man * (1.0f / 16777216.0f); // exact: man < 2^10
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}
