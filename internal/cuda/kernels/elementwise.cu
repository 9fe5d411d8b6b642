// elementwise.cu: fills, residual adds, scaling, bias, the gated MLP
// activations, embedding gather/scatter, column reductions, AdamW, the
// global gradient norm and dtype conversions. One thread per element with
// a grid-stride loop unless a comment says otherwise.
#include "common.cuh"

extern "C" __global__ void fill_f32(float *x, float v, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) x[i] = v;
}

extern "C" __global__ void add_f32(float *out, const float *a, const float *b, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) out[i] = a[i] + b[i];
}

extern "C" __global__ void mul_f32(float *out, const float *a, const float *b, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) out[i] = a[i] * b[i];
}

// axpy_f32: y += alpha·x.
extern "C" __global__ void axpy_f32(float *y, const float *x, float alpha, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) y[i] += alpha * x[i];
}

extern "C" __global__ void scale_f32(float *x, float alpha, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) x[i] *= alpha;
}

// add_bias_f32: x[r,c] += bias[c] for x [rows,cols].
extern "C" __global__ void add_bias_f32(float *x, const float *bias, ll rows, int cols) {
    ll n = rows * cols;
    for (ll i = gtid(); i < n; i += gstride()) x[i] += bias[i % cols];
}

// The gated MLP activations. The _f32 entry points take float32 gate, up
// and out; the _bf16 ones bfloat16 gate, up and out (activations under
// mixed precision: read widened, out rounded); the gradients are float32.

// swiglu_fwd: out = silu(gate)·up.
template <typename A>
__device__ void swiglu_fwd(A *out, const A *gate, const A *up, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) {
        float g = get_act(gate, i);
        put_act(out, i, g * sigmoidf_(g) * get_act(up, i));
    }
}
extern "C" __global__ void swiglu_fwd_f32(float *out, const float *gate, const float *up, ll n) { swiglu_fwd(out, gate, up, n); }
extern "C" __global__ void swiglu_fwd_bf16(unsigned short *out, const unsigned short *gate, const unsigned short *up, ll n) {
    swiglu_fwd(out, gate, up, n);
}

// swiglu_bwd overwrites dgate and dup; each may alias a float32 gate or up
// (every element is read before it is written, by the same thread).
template <typename A>
__device__ void swiglu_bwd(float *dgate, float *dup, const float *dout, const A *gate, const A *up, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) {
        float g = get_act(gate, i), u = get_act(up, i), d = dout[i];
        float s = sigmoidf_(g);
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
        dup[i] = d * g * s;
    }
}
extern "C" __global__ void swiglu_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up, ll n) {
    swiglu_bwd(dgate, dup, dout, gate, up, n);
}
extern "C" __global__ void swiglu_bwd_bf16(float *dgate, float *dup, const float *dout, const unsigned short *gate, const unsigned short *up,
                                           ll n) {
    swiglu_bwd(dgate, dup, dout, gate, up, n);
}

// geglu_fwd: out = gelu_tanh(gate)·up.
template <typename A>
__device__ void geglu_fwd(A *out, const A *gate, const A *up, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) {
        float s;
        put_act(out, i, gelu_tanh(get_act(gate, i), &s) * get_act(up, i));
    }
}
extern "C" __global__ void geglu_fwd_f32(float *out, const float *gate, const float *up, ll n) { geglu_fwd(out, gate, up, n); }
extern "C" __global__ void geglu_fwd_bf16(unsigned short *out, const unsigned short *gate, const unsigned short *up, ll n) {
    geglu_fwd(out, gate, up, n);
}

// geglu_bwd: dgate = dout·up·gelu'(gate), dup = dout·gelu(gate), with
// gelu' = s + 2x·s(1−s)·sqrt(2/pi)(1 + 3·0.044715·x²), s = sigmoid(2y).
template <typename A>
__device__ void geglu_bwd(float *dgate, float *dup, const float *dout, const A *gate, const A *up, ll n) {
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    for (ll i = gtid(); i < n; i += gstride()) {
        float x = get_act(gate, i), u = get_act(up, i), d = dout[i];
        float s;
        float gl = gelu_tanh(x, &s);
        float dy = k0 * (1.0f + 3.0f * k1 * (x * x));
        float gr = s + (2.0f * x) * (s * (1.0f - s)) * dy;
        dgate[i] = (d * u) * gr;
        dup[i] = d * gl;
    }
}
extern "C" __global__ void geglu_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up, ll n) {
    geglu_bwd(dgate, dup, dout, gate, up, n);
}
extern "C" __global__ void geglu_bwd_bf16(float *dgate, float *dup, const float *dout, const unsigned short *gate, const unsigned short *up,
                                          ll n) {
    geglu_bwd(dgate, dup, dout, gate, up, n);
}

// embed_fwd_f32: out[i,:] = table[ids[i],:]; an id outside [0, vocab)
// zeroes its row and raises LATHE_ERR_EMBED_ID.
extern "C" __global__ void embed_fwd_f32(float *out, const float *table, const int *ids, ll n, int dim, int vocab, int *err) {
    ll total = n * dim;
    for (ll e = gtid(); e < total; e += gstride()) {
        ll i = e / dim;
        int j = (int)(e - i * dim);
        int id = ids[i];
        if (id < 0 || id >= vocab) {
            out[e] = 0.0f;
            if (j == 0) atomicOr(err, LATHE_ERR_EMBED_ID);
            continue;
        }
        out[e] = table[(ll)id * dim + j];
    }
}

// embed_bwd_f32: dtable[ids[i],:] += dout[i,:]. Thread (column j, bucket
// b) owns the table elements of column j whose id % nbuckets == b and adds
// their tokens' gradients in token order, so every element sums in token
// order (the CPU backend's order) without atomics. Launch: grid.x·block.x
// covers dim, grid.y = nbuckets. An id outside [0, vocab) is skipped and
// raises LATHE_ERR_EMBED_ID.
extern "C" __global__ void embed_bwd_f32(float *dtable, const float *dout, const int *ids, ll n, int dim, int vocab, int nbuckets, int *err) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    int b = blockIdx.y;
    if (j >= dim) return;
    for (ll i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= vocab) {
            if (j == 0 && b == 0) atomicOr(err, LATHE_ERR_EMBED_ID);
            continue;
        }
        if (id % nbuckets != b) continue;
        dtable[(ll)id * dim + j] += dout[i * dim + j];
    }
}

// colsum_partial_f64 is the first pass of a column reduction
// dst[j] += Σ_i a[i,j]·b[i,j]·s[i] (b, s may be NULL for 1) over rows
// [0, rows): block (x = column in a 32-column tile, y = 0..7) of grid
// (column tiles, row chunks of COLSUM_ROWS) sums its chunk's rows
// y, y+8, ... in double, then the 8 partials in order, into
// part[chunk·cols + j]. colsum_final adds the chunks in order.
#define COLSUM_ROWS 256
extern "C" __global__ void colsum_partial_f64(double *part, const float *a, const float *b, const float *s, ll rows, int cols) {
    __shared__ double red[8][32];
    int j = blockIdx.x * 32 + threadIdx.x;
    ll r0 = (ll)blockIdx.y * COLSUM_ROWS;
    ll r1 = r0 + COLSUM_ROWS < rows ? r0 + COLSUM_ROWS : rows;
    double acc = 0.0;
    if (j < cols) {
        for (ll r = r0 + threadIdx.y; r < r1; r += 8) {
            double v = (double)a[r * cols + j];
            if (b) v *= (double)b[r * cols + j];
            if (s) v *= (double)s[r];
            acc += v;
        }
    }
    red[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        double t = 0.0;
        for (int y = 0; y < 8; y++) t += red[y][threadIdx.x];
        part[(ll)blockIdx.y * cols + j] = t;
    }
}

extern "C" __global__ void colsum_final_f64(float *dst, const double *part, int chunks, int cols) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    double t = 0.0;
    for (int c = 0; c < chunks; c++) t += part[(ll)c * cols + j];
    dst[j] += (float)t;
}

// adamw_f32 is one AdamW step in torch.optim.AdamW's operation order:
// p = p·decay; m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
// p -= stepSize·m / (sqrt(v)/bc2s + eps), with decay = 1 − lr·wd,
// stepSize = lr/(1 − b1^t) and bc2s = sqrt(1 − b2^t) computed on the host.
extern "C" __global__ void adamw_f32(float *p, const float *g, float *m, float *v, ll n,
                                     float decay, float b1, float b2, float step_size, float bc2s, float eps) {
    float b1c = 1.0f - b1, b2c = 1.0f - b2;
    for (ll i = gtid(); i < n; i += gstride()) {
        // __fmul_rn/__fadd_rn keep every product rounded on its own (no
        // FMA contraction), as the CPU backend does, so both give the same
        // bits.
        float gi = g[i];
        float pi = __fmul_rn(p[i], decay);
        float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(b1c, gi));
        float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(b2c, gi), gi));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2s), eps);
        p[i] = __fsub_rn(pi, __fdiv_rn(__fmul_rn(step_size, mi), denom));
    }
}

// sumsq_partial_f64: part[blockIdx.x] = Σ x² over the NORM_CHUNK elements
// of chunk blockIdx.x (the last one shorter), in double with a fixed
// per-thread stride and block tree. Launch with NORM_THREADS threads.
#define NORM_CHUNK 8192
#define NORM_THREADS 256
extern "C" __global__ void sumsq_partial_f64(double *part, const float *x, ll n) {
    __shared__ double red[32];
    ll c0 = (ll)blockIdx.x * NORM_CHUNK;
    ll c1 = c0 + NORM_CHUNK < n ? c0 + NORM_CHUNK : n;
    double acc = 0.0;
    for (ll i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
        double v = (double)x[i];
        acc += v * v;
    }
    double t = block_sum_d(acc, red);
    if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// sum_sqrt_f64: out[0] = sqrt(Σ part[0..n)) by one block: thread t sums
// part[t], part[t+blockDim], ... in order, then the block tree.
extern "C" __global__ void sum_sqrt_f64(float *out, const double *part, ll n) {
    __shared__ double red[32];
    double acc = 0.0;
    for (ll i = threadIdx.x; i < n; i += blockDim.x) acc += part[i];
    double t = block_sum_d(acc, red);
    if (threadIdx.x == 0) out[0] = (float)sqrt(t);
}

// clip_f32: x *= min(1, maxNorm/(norm[0]+1e-6)); a NaN norm (or a
// coefficient >= 1) leaves x unchanged.
extern "C" __global__ void clip_f32(float *x, const float *norm, float max_norm, ll n) {
    float coef = max_norm / (norm[0] + 1e-6f);
    if (!(coef < 1.0f)) return;
    for (ll i = gtid(); i < n; i += gstride()) x[i] *= coef;
}

// Conversions (see common.cuh for the rounding rules).
extern "C" __global__ void f32_to_bf16(unsigned short *dst, const float *src, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) dst[i] = bf16_from_f32(src[i]);
}
extern "C" __global__ void bf16_to_f32(float *dst, const unsigned short *src, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) dst[i] = f32_from_bf16(src[i]);
}
extern "C" __global__ void f32_to_f16(unsigned short *dst, const float *src, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) dst[i] = f16_from_f32(src[i]);
}
extern "C" __global__ void f16_to_f32(float *dst, const unsigned short *src, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) dst[i] = f32_from_f16(src[i]);
}
