// norm.cu: RMSNorm (forward and the input gradient; the weight gradient is
// a column reduction in elementwise.cu) and rotary position embeddings.
#include "common.cuh"

// rmsnorm_fwd_f32: one block per row of x [n,dim]: rstd[i] =
// 1/sqrt(mean_j x² + eps) (sum in double, as the CPU backend),
// out[i,j] = x[i,j]·rstd[i]·w[j]. out may alias x. rmsnorm_fwd_bf16
// writes out as bfloat16 (rounded).
template <typename O>
__device__ void rmsnorm_fwd(O *out, float *rstd, const float *x, const float *w, ll n, int dim, float eps) {
    __shared__ double red[32];
    ll i = blockIdx.x;
    if (i >= n) return;
    const float *xr = x + i * dim;
    double ss = 0.0;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        double v = (double)xr[j];
        ss += v * v;
    }
    ss = block_sum_d(ss, red);
    float r = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
    if (threadIdx.x == 0) rstd[i] = r;
    O *o = out + i * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) put_act(o, j, xr[j] * r * w[j]);
}
extern "C" __global__ void rmsnorm_fwd_f32(float *out, float *rstd, const float *x, const float *w, ll n, int dim, float eps) {
    rmsnorm_fwd(out, rstd, x, w, n, dim, eps);
}
extern "C" __global__ void rmsnorm_fwd_bf16(unsigned short *out, float *rstd, const float *x, const float *w, ll n, int dim, float eps) {
    rmsnorm_fwd(out, rstd, x, w, n, dim, eps);
}

// rmsnorm_bwd_dx_f32: one block per row: dx = rstd·(dout·w − x·c) with
// c = (Σ_j dout·w·x)·rstd/dim·rstd (the dot in double). dx may alias
// dout: each thread reads its own elements for the dot, and the block
// synchronises (inside block_sum_d) before anyone writes.
extern "C" __global__ void rmsnorm_bwd_dx_f32(float *dx, const float *dout, const float *x, const float *w, const float *rstd, ll n, int dim) {
    __shared__ double red[32];
    ll i = blockIdx.x;
    if (i >= n) return;
    const float *g = dout + i * dim, *xr = x + i * dim;
    float r = rstd[i];
    double dot = 0.0;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dot += (double)g[j] * (double)w[j] * (double)xr[j];
    dot = block_sum_d(dot, red);
    float c = (float)(dot * (double)r / (double)dim) * r;
    float *d = dx + i * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) d[j] = r * (g[j] * w[j] - xr[j] * c);
}

// rope_f32 rotates the first rot dims of every head of x [n,heads,hd]
// (rotate-half layout) by angle pos[t]·inv_freq[i] (times sign: +1
// forward, −1 for the transposed rotation of the backward) and copies dims
// rot..hd−1 when out != x. One thread per (token, head, i) with i <
// rot/2 rotating the pair (i, i+rot/2), or i >= rot/2 copying one
// pass-through dim. The angle is rounded to float32 as transformers does;
// its cosine and sine are taken in double and rounded, as the CPU backend.
// rope_bf16 rotates bfloat16 activations (x and out, in place or not),
// widened and rounded.
template <typename A>
__device__ void rope(A *out, const A *x, const int *pos, const float *inv_freq, ll n, int heads, int hd, int rot, float sign) {
    int half = rot / 2;
    int per = half + (hd - rot); // work items per head
    ll total = n * heads * per;
    for (ll e = gtid(); e < total; e += gstride()) {
        ll th = e / per;   // token·heads + head
        int i = (int)(e - th * per);
        ll t = th / heads;
        ll base = th * hd;
        if (i >= half) {
            int d = rot + (i - half);
            if ((const A *)out != x) out[base + d] = x[base + d];
            continue;
        }
        float a = (float)pos[t] * inv_freq[i];
        double ad = (double)a;
        float c = (float)cos(ad), s = sign * (float)sin(ad);
        float x1 = get_act(x, base + i), x2 = get_act(x, base + i + half);
        put_act(out, base + i, x1 * c - x2 * s);
        put_act(out, base + i + half, x2 * c + x1 * s);
    }
}
extern "C" __global__ void rope_f32(float *out, const float *x, const int *pos, const float *inv_freq, ll n, int heads, int hd, int rot,
                                    float sign) {
    rope(out, x, pos, inv_freq, n, heads, hd, rot, sign);
}
extern "C" __global__ void rope_bf16(unsigned short *out, const unsigned short *x, const int *pos, const float *inv_freq, ll n, int heads,
                                     int hd, int rot, float sign) {
    rope(out, x, pos, inv_freq, n, heads, hd, rot, sign);
}
