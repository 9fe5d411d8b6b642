// nf4.cu: NF4 quantisation with double-quantised absmax (QLoRA's format,
// see internal/tensor/nf4.go) and dequantisation, bit for bit the CPU
// backend's arithmetic: every product and sum is rounded on its own
// (__fmul_rn, __fadd_rn), the code search is the same binary search over
// the same float32 midpoints.
#include "common.cuh"

__constant__ float nf4_codes[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

#define NF4_BLOCK 64
#define NF4_GROUP 256

// nf4_code returns the index of the code nearest to v: the first midpoint
// (c[i]+c[i+1])/2 that v does not exceed.
__device__ unsigned int nf4_code(float v) {
    int lo = 0, hi = 15;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        float m = __fdiv_rn(__fadd_rn(nf4_codes[mid], nf4_codes[mid + 1]), 2.0f);
        if (v > m) lo = mid + 1;
        else hi = mid;
    }
    return (unsigned int)lo;
}

// nf4_absmax_value decodes a double-quantised absmax.
__device__ __forceinline__ float nf4_absmax_value(unsigned char q, float scale2, float offset) {
    return __fadd_rn(__fmul_rn((float)(signed char)q, __fdiv_rn(scale2, 127.0f)), offset);
}

// nf4_absmax: abs_true[b] = max |x| over block b (one thread per block).
extern "C" __global__ void nf4_absmax(float *abs_true, const float *x, ll blocks) {
    for (ll b = gtid(); b < blocks; b += gstride()) {
        float m = 0.0f;
        const float *xb = x + b * NF4_BLOCK;
        for (int i = 0; i < NF4_BLOCK; i++) m = fmaxf(m, fabsf(xb[i]));
        abs_true[b] = m;
    }
}

// sum_partial_f64: part[c] = Σ x over chunk c of NF4_SUM_CHUNK elements
// (double, fixed per-thread stride and block tree), for the absmax mean.
#define NF4_SUM_CHUNK 8192
extern "C" __global__ void sum_partial_f64(double *part, const float *x, ll n) {
    __shared__ double red[32];
    ll c0 = (ll)blockIdx.x * NF4_SUM_CHUNK;
    ll c1 = c0 + NF4_SUM_CHUNK < n ? c0 + NF4_SUM_CHUNK : n;
    double acc = 0.0;
    for (ll i = c0 + threadIdx.x; i < c1; i += blockDim.x) acc += (double)x[i];
    double t = block_sum_d(acc, red);
    if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// mean_f64: out[0] = (Σ part[0..n)) / count by one block.
extern "C" __global__ void mean_f64(float *out, const double *part, ll n, ll count) {
    __shared__ double red[32];
    double acc = 0.0;
    for (ll i = threadIdx.x; i < n; i += blockDim.x) acc += part[i];
    double t = block_sum_d(acc, red);
    if (threadIdx.x == 0) out[0] = (float)(t / (double)count);
}

// nf4_group: block g (NF4_GROUP threads, one per absmax of the group):
// scale2[g] = max |a − offset| over the group, absq = round(127·(a −
// offset)/scale2) clamped to ±127 (0 when scale2 is 0).
extern "C" __global__ void nf4_group(unsigned char *absq, float *scale2, const float *abs_true, const float *offset, ll blocks) {
    __shared__ float red[32];
    ll b = (ll)blockIdx.x * NF4_GROUP + threadIdx.x;
    float off = offset[0];
    float a = b < blocks ? abs_true[b] : 0.0f;
    float dev = b < blocks ? fabsf(__fsub_rn(a, off)) : 0.0f;
    float s = block_max(dev, red); // max is exact in any order
    if (threadIdx.x == 0) scale2[blockIdx.x] = s;
    if (b >= blocks) return;
    double q = 0.0;
    if (s > 0.0f) q = round(127.0 * (double)__fsub_rn(a, off) / (double)s);
    q = fmax(-127.0, fmin(127.0, q));
    absq[b] = (unsigned char)(signed char)(int)q;
}

// nf4_codes_pack: one thread per byte (value pair): codes = code(x0/a)<<4 |
// code(x1/a), a the decoded absmax of the pair's block (1/a is 0 for a 0).
extern "C" __global__ void nf4_codes_pack(unsigned char *codes, const float *x, const unsigned char *absq, const float *scale2,
                                          const float *offset, ll n) {
    float off = offset[0];
    for (ll p = gtid(); p < n / 2; p += gstride()) {
        ll b = p / (NF4_BLOCK / 2);
        float a = nf4_absmax_value(absq[b], scale2[b / NF4_GROUP], off);
        float inv = a != 0.0f ? __fdiv_rn(1.0f, a) : 0.0f;
        unsigned int hi = nf4_code(__fmul_rn(x[2 * p], inv)), lo = nf4_code(__fmul_rn(x[2 * p + 1], inv));
        codes[p] = (unsigned char)((hi << 4) | lo);
    }
}

// nf4_dequant: out[0 .. 2·pairs) = values [start, start + 2·pairs) of the
// tensor (start a multiple of NF4_BLOCK), one thread per byte.
extern "C" __global__ void nf4_dequant(float *out, const unsigned char *codes, const unsigned char *absq, const float *scale2,
                                       const float *offset, ll start, ll pairs) {
    float off = offset[0];
    for (ll p = gtid(); p < pairs; p += gstride()) {
        ll gp = start / 2 + p; // global byte index
        ll b = gp / (NF4_BLOCK / 2);
        float a = nf4_absmax_value(absq[b], scale2[b / NF4_GROUP], off);
        unsigned char c = codes[gp];
        out[2 * p] = __fmul_rn(nf4_codes[c >> 4], a);
        out[2 * p + 1] = __fmul_rn(nf4_codes[c & 15], a);
    }
}
