// attention.cu: causal grouped-query attention with segment ids and the
// score options of tensor.Attn (soft-cap, ALiBi, sliding window), tiled the
// FlashAttention-2 way: no T×T matrix is stored; the forward keeps an online
// softmax per query row and saves its log-sum-exp, the backward recomputes
// each tile's probabilities from it. Plus attention of one new query per
// row against a KV cache (decode).
//
// Layouts: q, out, dout [B,T,Hq,D]; k, v [B,T,Hkv,D]; lse, drow [B,Hq,T];
// seg [B·T] or NULL; alibi [Hq] or NULL. Query head h reads KV head
// h/(Hq/Hkv).
//
// These kernels run on the CUDA cores in float32 (no tensor cores): simple
// and exact enough to be checked against the CPU backend, not the fastest
// possible. Each block owns its outputs and visits keys (forward, dq) or
// queries (dk, dv) in a fixed order, so results are deterministic without
// atomics. D must be a multiple of 4 and at most 256 (the host checks);
// the kernels are instantiated for D <= 64, 128 and 256 (DPL = D/32
// rounded up: the per-lane share of a head vector).
#include "common.cuh"

#define RW 4  // query rows per warp (forward, dq)
#define BK 32 // keys per tile (forward, dq): one per lane
#define BQB 32 // queries per tile in the dk/dv pass: one per lane

// Score options of one call.
struct AttnOpts {
    float scale, softcap;
    int window;
    const float *alibi; // [Hq] or NULL
};

// visible reports whether query i may attend to key j of the same row of T.
__device__ __forceinline__ bool visible(int i, int j, int T, const int *segr, int window) {
    if (j > i || j >= T || i >= T) return false;
    if (window > 0 && j <= i - window) return false;
    if (segr && segr[i] != segr[j]) return false;
    return true;
}

// score turns q·k into the final score of (query i, key j) in the order of
// tensor.Attn: scale, soft-cap, ALiBi. dt (if not NULL) receives 1 − tanh²
// of the soft-capped score (1 without soft-capping).
__device__ __forceinline__ float score(float dot, const AttnOpts &o, float slope, int i, int j, float *dt) {
    float s = dot * o.scale;
    float d = 1.0f;
    if (o.softcap > 0.0f) {
        float t = tanhf(s / o.softcap);
        s = o.softcap * t;
        d = 1.0f - t * t;
    }
    if (o.alibi) s += slope * (float)(j - i);
    if (dt) *dt = d;
    return s;
}

// dot4 accumulates Σ_d a[d]·b[d] over D (a multiple of 4) with 16-byte
// shared-memory loads; a and b are 16-byte aligned.
__device__ __forceinline__ float dot4(const float *a, const float *b, int D) {
    const float4 *a4 = (const float4 *)a, *b4 = (const float4 *)b;
    float s = 0.0f;
    for (int d = 0; d < D / 4; d++) {
        float4 x = a4[d], y = b4[d];
        s += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
    }
    return s;
}

// ---------------------------------------------------------------------------
// Forward. Block (query tile of BQ = RW·warps rows, head h, batch b); warp
// w owns rows w·RW .. w·RW+RW−1 of the tile. For each key tile of BK keys:
// lane j scores key j0+j against the warp's rows (Q tile broadcast from
// shared memory, K tile row j), the warp updates each row's running max m,
// sum l and accumulator (lane owns dims lane, lane+32, ...), then the tile's
// probabilities times the V tile are added.
//
// Shared memory (dynamic): Qs [BQ][D], KVs [BK][D+4] (K, then V of the tile),
// Ps [BQ][BK].
template <int DPL, typename A>
__device__ void attn_fwd(A *out, float *lse, const A *q, const A *k, const A *v, const int *seg,
                         int T, int Hq, int Hkv, int D, AttnOpts o) {
    DYNAMIC_SMEM(float4, smem4);
    float *sm = (float *)smem4;
    const int nw = blockDim.x >> 5, BQ = nw * RW;
    float *Qs = sm, *KVs = Qs + BQ * D, *Ps = KVs + BK * (D + 4);
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * BQ;
    const int g = h / (Hq / Hkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int *segr = seg ? seg + (ll)b * T : 0;
    const float slope = o.alibi ? o.alibi[h] : 0.0f;
    const ll ldq = (ll)Hq * D, ldk = (ll)Hkv * D;
    const A *qb = q + ((ll)b * T * Hq + h) * D;
    const A *kb = k + ((ll)b * T * Hkv + g) * D;
    const A *vb = v + ((ll)b * T * Hkv + g) * D;

    for (int e = threadIdx.x; e < BQ * D; e += blockDim.x) {
        int r = e / D, d = e - r * D, t = i0 + r;
        Qs[e] = t < T ? get_act(qb, (ll)t * ldq + d) : 0.0f;
    }
    float m[RW], l[RW], acc[RW][DPL];
#pragma unroll
    for (int r = 0; r < RW; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[r][c] = 0.0f;
    }
    const int ilast = min(i0 + BQ, T) - 1;
    const int jfirst = o.window > 0 ? max(0, i0 - o.window + 1) : 0;
    for (int j0 = (jfirst / BK) * BK; j0 <= ilast; j0 += BK) {
        __syncthreads(); // the Q tile is loaded; the previous V tile is consumed
        for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
            int r = e / D, d = e - r * D, j = j0 + r;
            KVs[r * (D + 4) + d] = j < T ? get_act(kb, (ll)j * ldk + d) : 0.0f;
        }
        __syncthreads();
        const int j = j0 + lane;
#pragma unroll
        for (int r = 0; r < RW; r++) {
            const int ri = warp * RW + r, i = i0 + ri;
            float dot = dot4(Qs + ri * D, KVs + lane * (D + 4), D);
            bool vis = visible(i, j, T, segr, o.window);
            float s = vis ? score(dot, o, slope, i, j, 0) : -INFINITY;
            float mnew = fmaxf(m[r], warp_max(s));
            float p = 0.0f, alpha = 1.0f;
            if (mnew != -INFINITY) {
                p = vis ? expf(s - mnew) : 0.0f;
                alpha = expf(m[r] - mnew); // 0 while m[r] is -Inf
            }
            l[r] = l[r] * alpha + warp_sum(p);
#pragma unroll
            for (int c = 0; c < DPL; c++) acc[r][c] *= alpha;
            m[r] = mnew;
            Ps[ri * BK + lane] = p;
        }
        __syncthreads(); // every warp is done with the K tile
        for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
            int r = e / D, d = e - r * D, j2 = j0 + r;
            KVs[r * (D + 4) + d] = j2 < T ? get_act(vb, (ll)j2 * ldk + d) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < RW; r++) {
            const float *pr = Ps + (warp * RW + r) * BK;
            for (int jj = 0; jj < BK; jj++) {
                float p = pr[jj];
                const float *vr = KVs + jj * (D + 4);
#pragma unroll
                for (int c = 0; c < DPL; c++) {
                    int d = lane + 32 * c;
                    if (d < D) acc[r][c] += p * vr[d];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RW; r++) {
        int i = i0 + warp * RW + r;
        if (i >= T) continue;
        float inv = 1.0f / l[r];
        A *orow = out + (((ll)b * T + i) * Hq + h) * D;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + 32 * c;
            if (d < D) put_act(orow, d, acc[r][c] * inv);
        }
        if (lane == 0) lse[((ll)b * Hq + h) * T + i] = m[r] + logf(l[r]);
    }
}

// attn_fwd_dNN takes float32 q, k, v and out; attn_fwd_dNN_bf16 bfloat16
// ones (activations under mixed precision: read widened, out rounded).
#define ATTN_ARGS_FWD(O) O *out, float *lse, const O *q, const O *k, const O *v, const int *seg, const float *alibi, \
                         int T, int Hq, int Hkv, int D, float scale, float softcap, int window
#define ATTN_OPTS AttnOpts o = {scale, softcap, window, alibi}
#define FWD_CALL(DPL) ATTN_OPTS; attn_fwd<DPL>(out, lse, q, k, v, seg, T, Hq, Hkv, D, o)
extern "C" __global__ void attn_fwd_d64(ATTN_ARGS_FWD(float)) { FWD_CALL(2); }
extern "C" __global__ void attn_fwd_d128(ATTN_ARGS_FWD(float)) { FWD_CALL(4); }
extern "C" __global__ void attn_fwd_d256(ATTN_ARGS_FWD(float)) { FWD_CALL(8); }
extern "C" __global__ void attn_fwd_d64_bf16(ATTN_ARGS_FWD(unsigned short)) { FWD_CALL(2); }
extern "C" __global__ void attn_fwd_d128_bf16(ATTN_ARGS_FWD(unsigned short)) { FWD_CALL(4); }
extern "C" __global__ void attn_fwd_d256_bf16(ATTN_ARGS_FWD(unsigned short)) { FWD_CALL(8); }

// ---------------------------------------------------------------------------
// Backward, step 1: drow[b,h,i] = Σ_d dout·out of every query row (the
// softmax Jacobian's correction). One warp per (b, i, h) row.
// attn_bwd_drow_bf16 reads a bfloat16 out (the forward's _bf16 output).
template <typename O>
__device__ void attn_bwd_drow_t(float *drow, const float *dout, const O *out, int B, int T, int Hq, int D) {
    ll row = (ll)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= (ll)B * T * Hq) return;
    const O *o = out + row * D;
    const float *dO = dout + row * D;
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s += get_act(o, d) * dO[d];
    s = warp_sum(s);
    int h = (int)(row % Hq);
    ll bt = row / Hq;
    int b = (int)(bt / T), i = (int)(bt % T);
    if (lane == 0) drow[((ll)b * Hq + h) * T + i] = s;
}
extern "C" __global__ void attn_bwd_drow(float *drow, const float *dout, const float *out, int B, int T, int Hq, int D) {
    attn_bwd_drow_t(drow, dout, out, B, T, Hq, D);
}
extern "C" __global__ void attn_bwd_drow_bf16(float *drow, const float *dout, const unsigned short *out, int B, int T, int Hq, int D) {
    attn_bwd_drow_t(drow, dout, out, B, T, Hq, D);
}

// Backward, step 2: dk and dv. Block (key tile of KB = KW·warps keys, KV
// head g, batch b); warp w owns KW keys and holds their dk, dv rows (lane
// owns dims lane, lane+32, ...). For every query head of the group, in
// order, and every query tile of BQB queries that can see the key tile, in
// order: lane i computes, for each of the warp's keys, the probability p
// and dS = p·(dP − drow)·(1 − tanh²) of query i0+i (Q and dO tiles in
// shared memory, the key's K and V rows broadcast from global memory),
// then the warp adds Σ_i p·dO[i] to dv and Σ_i dS·Q[i] to dk.
//
// Shared memory (dynamic): Qs, dOs [BQB][D+4], lse_s, dr_s [BQB],
// Ps, dSs [KB][BQB].
template <int DPL, int KW, typename A>
__device__ void attn_bwd_dkdv(float *dk, float *dv, const float *dout, const A *q, const A *k, const A *v,
                              const float *lse, const float *drow, const int *seg, int T, int Hq, int Hkv, int D, AttnOpts o) {
    DYNAMIC_SMEM(float4, smem4);
    float *sm = (float *)smem4;
    const int nw = blockDim.x >> 5, KB = nw * KW;
    float *Qs = sm, *dOs = Qs + BQB * (D + 4), *lse_s = dOs + BQB * (D + 4), *dr_s = lse_s + BQB;
    float *Ps = dr_s + BQB, *dSs = Ps + KB * BQB;
    const int b = blockIdx.z, g = blockIdx.y, j0 = blockIdx.x * KB;
    const int rep = Hq / Hkv;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int *segr = seg ? seg + (ll)b * T : 0;
    const ll ldq = (ll)Hq * D, ldk = (ll)Hkv * D;
    const A *kb = k + ((ll)b * T * Hkv + g) * D;
    const A *vb = v + ((ll)b * T * Hkv + g) * D;

    float dka[KW][DPL], dva[KW][DPL];
#pragma unroll
    for (int kk = 0; kk < KW; kk++)
#pragma unroll
        for (int c = 0; c < DPL; c++) dka[kk][c] = dva[kk][c] = 0.0f;

    const int jlast = min(j0 + KB, T) - 1;
    // Queries that can see a key of the tile: i >= j0 and, with a window,
    // i < jlast + window.
    const int ilast = o.window > 0 ? min(T - 1, jlast + o.window - 1) : T - 1;
    for (int hh = 0; hh < rep; hh++) {
        const int h = g * rep + hh;
        const float slope = o.alibi ? o.alibi[h] : 0.0f;
        const A *qb = q + ((ll)b * T * Hq + h) * D;
        const float *dob = dout + ((ll)b * T * Hq + h) * D;
        const float *lseb = lse + ((ll)b * Hq + h) * T;
        const float *drb = drow + ((ll)b * Hq + h) * T;
        for (int i0 = (j0 / BQB) * BQB; i0 <= ilast; i0 += BQB) {
            __syncthreads(); // the previous tile is consumed
            for (int e = threadIdx.x; e < BQB * D; e += blockDim.x) {
                int r = e / D, d = e - r * D, t = i0 + r;
                bool in = t < T;
                Qs[r * (D + 4) + d] = in ? get_act(qb, (ll)t * ldq + d) : 0.0f;
                dOs[r * (D + 4) + d] = in ? dob[(ll)t * ldq + d] : 0.0f;
            }
            for (int r = threadIdx.x; r < BQB; r += blockDim.x) {
                int t = i0 + r;
                lse_s[r] = t < T ? lseb[t] : 0.0f;
                dr_s[r] = t < T ? drb[t] : 0.0f;
            }
            __syncthreads();
            const int i = i0 + lane;
            for (int kk = 0; kk < KW; kk++) { // indexes shared memory only: not unrolled
                const int kr = warp * KW + kk, j = j0 + kr;
                float p = 0.0f, ds = 0.0f;
                if (visible(i, j, T, segr, o.window)) {
                    const A *krow = kb + (ll)j * ldk, *vrow = vb + (ll)j * ldk;
                    const float *qr = Qs + lane * (D + 4), *dor = dOs + lane * (D + 4);
                    float dot = 0.0f, dp = 0.0f;
                    for (int d = 0; d < D; d += 4) {
                        float4 q4 = *(const float4 *)(qr + d), o4 = *(const float4 *)(dor + d);
                        float4 k4 = ldg4(krow + d), v4 = ldg4(vrow + d);
                        dot += q4.x * k4.x + q4.y * k4.y + q4.z * k4.z + q4.w * k4.w;
                        dp += o4.x * v4.x + o4.y * v4.y + o4.z * v4.z + o4.w * v4.w;
                    }
                    float dt;
                    float s = score(dot, o, slope, i, j, &dt);
                    p = expf(s - lse_s[lane]);
                    ds = p * (dp - dr_s[lane]) * dt;
                }
                Ps[kr * BQB + lane] = p;
                dSs[kr * BQB + lane] = ds;
            }
            __syncwarp();
#pragma unroll
            for (int kk = 0; kk < KW; kk++) {
                const int kr = warp * KW + kk;
                for (int ii = 0; ii < BQB; ii++) {
                    float p = Ps[kr * BQB + ii], ds = dSs[kr * BQB + ii];
                    const float *qr = Qs + ii * (D + 4), *dor = dOs + ii * (D + 4);
#pragma unroll
                    for (int c = 0; c < DPL; c++) {
                        int d = lane + 32 * c;
                        if (d < D) {
                            dva[kk][c] += p * dor[d];
                            dka[kk][c] += ds * qr[d];
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int kk = 0; kk < KW; kk++) {
        int j = j0 + warp * KW + kk;
        if (j >= T) continue;
        float *dkr = dk + (((ll)b * T + j) * Hkv + g) * D, *dvr = dv + (((ll)b * T + j) * Hkv + g) * D;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + 32 * c;
            if (d < D) {
                dkr[d] = dka[kk][c] * o.scale;
                dvr[d] = dva[kk][c];
            }
        }
    }
}

// The _bf16 entry points read bfloat16 q, k and v (the gradients stay
// float32).
#define ATTN_ARGS_DKDV(A) float *dk, float *dv, const float *dout, const A *q, const A *k, const A *v, const float *lse, \
                          const float *drow, const int *seg, const float *alibi, int T, int Hq, int Hkv, int D, float scale, float softcap, int window
#define DKDV_CALL(DPL, KW) ATTN_OPTS; attn_bwd_dkdv<DPL, KW>(dk, dv, dout, q, k, v, lse, drow, seg, T, Hq, Hkv, D, o)
extern "C" __global__ void attn_bwd_dkdv_d64(ATTN_ARGS_DKDV(float)) { DKDV_CALL(2, 8); }
extern "C" __global__ void attn_bwd_dkdv_d128(ATTN_ARGS_DKDV(float)) { DKDV_CALL(4, 8); }
extern "C" __global__ void attn_bwd_dkdv_d256(ATTN_ARGS_DKDV(float)) { DKDV_CALL(8, 4); }
extern "C" __global__ void attn_bwd_dkdv_d64_bf16(ATTN_ARGS_DKDV(unsigned short)) { DKDV_CALL(2, 8); }
extern "C" __global__ void attn_bwd_dkdv_d128_bf16(ATTN_ARGS_DKDV(unsigned short)) { DKDV_CALL(4, 8); }
extern "C" __global__ void attn_bwd_dkdv_d256_bf16(ATTN_ARGS_DKDV(unsigned short)) { DKDV_CALL(8, 4); }

// Backward, step 3: dq. Block (query tile of BQ = RW·warps rows, head h,
// batch b) as the forward: for each key tile, lane j recomputes the
// probability and dS of key j0+j for each of the warp's rows (Q and dO
// rows broadcast, K and V tiles in shared memory), then the warp adds
// Σ_j dS·K[j] to its rows' dq.
//
// Shared memory (dynamic): Qs, dOs [BQ][D], Ks, Vs [BK][D+4], dSs [BQ][BK].
template <int DPL, typename A>
__device__ void attn_bwd_dq(float *dq, const float *dout, const A *q, const A *k, const A *v, const float *lse,
                            const float *drow, const int *seg, int T, int Hq, int Hkv, int D, AttnOpts o) {
    DYNAMIC_SMEM(float4, smem4);
    float *sm = (float *)smem4;
    const int nw = blockDim.x >> 5, BQ = nw * RW;
    float *Qs = sm, *dOs = Qs + BQ * D, *Ks = dOs + BQ * D, *Vs = Ks + BK * (D + 4), *dSs = Vs + BK * (D + 4);
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * BQ;
    const int g = h / (Hq / Hkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int *segr = seg ? seg + (ll)b * T : 0;
    const float slope = o.alibi ? o.alibi[h] : 0.0f;
    const ll ldq = (ll)Hq * D, ldk = (ll)Hkv * D;
    const A *qb = q + ((ll)b * T * Hq + h) * D;
    const float *dob = dout + ((ll)b * T * Hq + h) * D;
    const A *kb = k + ((ll)b * T * Hkv + g) * D, *vb = v + ((ll)b * T * Hkv + g) * D;
    const float *lseb = lse + ((ll)b * Hq + h) * T, *drb = drow + ((ll)b * Hq + h) * T;

    for (int e = threadIdx.x; e < BQ * D; e += blockDim.x) {
        int r = e / D, d = e - r * D, t = i0 + r;
        Qs[e] = t < T ? get_act(qb, (ll)t * ldq + d) : 0.0f;
        dOs[e] = t < T ? dob[(ll)t * ldq + d] : 0.0f;
    }
    float acc[RW][DPL], lse_r[RW], dr_r[RW];
#pragma unroll
    for (int r = 0; r < RW; r++) {
        int i = i0 + warp * RW + r;
        lse_r[r] = i < T ? lseb[i] : 0.0f;
        dr_r[r] = i < T ? drb[i] : 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[r][c] = 0.0f;
    }
    const int ilast = min(i0 + BQ, T) - 1;
    const int jfirst = o.window > 0 ? max(0, i0 - o.window + 1) : 0;
    for (int j0 = (jfirst / BK) * BK; j0 <= ilast; j0 += BK) {
        __syncthreads();
        for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
            int r = e / D, d = e - r * D, j = j0 + r;
            bool in = j < T;
            Ks[r * (D + 4) + d] = in ? get_act(kb, (ll)j * ldk + d) : 0.0f;
            Vs[r * (D + 4) + d] = in ? get_act(vb, (ll)j * ldk + d) : 0.0f;
        }
        __syncthreads();
        const int j = j0 + lane;
#pragma unroll
        for (int r = 0; r < RW; r++) {
            const int ri = warp * RW + r, i = i0 + ri;
            float ds = 0.0f;
            if (visible(i, j, T, segr, o.window)) {
                float dot = dot4(Qs + ri * D, Ks + lane * (D + 4), D);
                float dp = dot4(dOs + ri * D, Vs + lane * (D + 4), D);
                float dt;
                float s = score(dot, o, slope, i, j, &dt);
                float p = expf(s - lse_r[r]);
                ds = p * (dp - dr_r[r]) * dt;
            }
            dSs[ri * BK + lane] = ds;
        }
        __syncwarp();
#pragma unroll
        for (int r = 0; r < RW; r++) {
            const float *dsr = dSs + (warp * RW + r) * BK;
            for (int jj = 0; jj < BK; jj++) {
                float ds = dsr[jj];
                const float *kr = Ks + jj * (D + 4);
#pragma unroll
                for (int c = 0; c < DPL; c++) {
                    int d = lane + 32 * c;
                    if (d < D) acc[r][c] += ds * kr[d];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RW; r++) {
        int i = i0 + warp * RW + r;
        if (i >= T) continue;
        float *dqr = dq + (((ll)b * T + i) * Hq + h) * D;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + 32 * c;
            if (d < D) dqr[d] = acc[r][c] * o.scale;
        }
    }
}

#define ATTN_ARGS_DQ(A) float *dq, const float *dout, const A *q, const A *k, const A *v, const float *lse, \
                        const float *drow, const int *seg, const float *alibi, int T, int Hq, int Hkv, int D, float scale, float softcap, int window
#define DQ_CALL(DPL) ATTN_OPTS; attn_bwd_dq<DPL>(dq, dout, q, k, v, lse, drow, seg, T, Hq, Hkv, D, o)
extern "C" __global__ void attn_bwd_dq_d64(ATTN_ARGS_DQ(float)) { DQ_CALL(2); }
extern "C" __global__ void attn_bwd_dq_d128(ATTN_ARGS_DQ(float)) { DQ_CALL(4); }
extern "C" __global__ void attn_bwd_dq_d256(ATTN_ARGS_DQ(float)) { DQ_CALL(8); }
extern "C" __global__ void attn_bwd_dq_d64_bf16(ATTN_ARGS_DQ(unsigned short)) { DQ_CALL(2); }
extern "C" __global__ void attn_bwd_dq_d128_bf16(ATTN_ARGS_DQ(unsigned short)) { DQ_CALL(4); }
extern "C" __global__ void attn_bwd_dq_d256_bf16(ATTN_ARGS_DQ(unsigned short)) { DQ_CALL(8); }

// ---------------------------------------------------------------------------
// Decode: one new query per row b against the cache's first lens[b]
// positions (the query sits at position lens[b]−1). Block (head h, row b),
// DEC_THREADS threads. Scores go to the scratch sc [B,Hq,MaxT]: warp w
// scores keys t0+w, t0+w+nw, ... (lanes split the dot); then a block max,
// exponentials and their sum in double, and thread d accumulates out[d]
// over the keys in order. A length outside [1, MaxT] zeroes the output and
// raises LATHE_ERR_DECODE_LEN. attn_decode_bf16 takes a bfloat16 q and
// writes out as bfloat16 (the cache is float32).
template <typename A>
__device__ void attn_decode_t(A *out, float *sc, const A *q, const float *kc, const float *vc, const int *lens,
                              const float *alibi, int MaxT, int Hq, int Hkv, int D, float scale, float softcap, int window,
                              int *err) {
    __shared__ float red[32];
    __shared__ double redd[32];
    const int h = blockIdx.x, b = blockIdx.y, g = h / (Hq / Hkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    const int n = lens[b];
    A *orow = out + ((ll)b * Hq + h) * D;
    if (n <= 0 || n > MaxT) {
        for (int d = threadIdx.x; d < D; d += blockDim.x) put_act(orow, d, 0.0f);
        if (threadIdx.x == 0) atomicOr(err, LATHE_ERR_DECODE_LEN);
        return;
    }
    AttnOpts o = {scale, softcap, window, alibi};
    const float slope = alibi ? alibi[h] : 0.0f;
    const int i = n - 1;
    const int t0 = window > 0 ? max(0, n - window) : 0;
    const A *qr = q + ((ll)b * Hq + h) * D;
    float *s = sc + ((ll)b * Hq + h) * MaxT;
    for (int t = t0 + warp; t < n; t += nw) {
        const float *kr = kc + (((ll)b * MaxT + t) * Hkv + g) * D;
        float dot = 0.0f;
        for (int d = lane; d < D; d += 32) dot += get_act(qr, d) * kr[d];
        dot = warp_sum(dot);
        if (lane == 0) s[t] = score(dot, o, slope, i, t, 0);
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int t = t0 + threadIdx.x; t < n; t += blockDim.x) mx = fmaxf(mx, s[t]);
    mx = block_max(mx, red);
    double sum = 0.0;
    for (int t = t0 + threadIdx.x; t < n; t += blockDim.x) {
        float e = expf(s[t] - mx);
        s[t] = e;
        sum += (double)e;
    }
    sum = block_sum_d(sum, redd); // synchronises: every s[t] is written
    const float inv = (float)(1.0 / sum);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int t = t0; t < n; t++) acc += (s[t] * inv) * vc[(((ll)b * MaxT + t) * Hkv + g) * D + d];
        put_act(orow, d, acc);
    }
}
#define ATTN_ARGS_DEC(O) O *out, float *sc, const O *q, const float *kc, const float *vc, const int *lens, const float *alibi, \
                         int MaxT, int Hq, int Hkv, int D, float scale, float softcap, int window, int *err
#define DEC_CALL attn_decode_t(out, sc, q, kc, vc, lens, alibi, MaxT, Hq, Hkv, D, scale, softcap, window, err)
extern "C" __global__ void attn_decode(ATTN_ARGS_DEC(float)) { DEC_CALL; }
extern "C" __global__ void attn_decode_bf16(ATTN_ARGS_DEC(unsigned short)) { DEC_CALL; }
