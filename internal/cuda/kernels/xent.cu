// xent.cu: the softmax pass of the fused LM-head cross-entropy. The host
// computes one chunk of logits with cuBLAS (x_chunk·wᵀ into the
// workspace), runs xent_rows over it, and feeds the resulting dlogits to
// two more GEMMs (dx = dlogits·w, dw += dlogitsᵀ·x_chunk).
#include "common.cuh"

// xent_rows: one block per row r of logits [rows,V] (in place):
//   z = softcap·tanh(logit/softcap) when softcap > 0, else the logit;
//   losses[r] = logsumexp(z) − z[t] (max and log in float, the sum of
//   exponentials in double), t = targets[r];
//   if grad: row = gs·(softmax(z) − onehot(t))·(1 − tanh²), gs =
//   grad_scale·row_scale[r] (row_scale NULL: 1).
// A negative target gives loss 0 and a zero row; a target >= V does the
// same and raises LATHE_ERR_TARGET.
extern "C" __global__ void xent_rows(float *logits, float *losses, const int *targets, const float *row_scale, int V,
                                     int grad, float grad_scale, float softcap, int *err) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    const int r = blockIdx.x;
    float *row = logits + (ll)r * V;
    const int t = targets[r];
    if (t < 0 || t >= V) {
        if (t >= V && threadIdx.x == 0) atomicOr(err, LATHE_ERR_TARGET);
        if (threadIdx.x == 0) losses[r] = 0.0f;
        if (grad)
            for (int c = threadIdx.x; c < V; c += blockDim.x) row[c] = 0.0f;
        return;
    }
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float z = row[c];
        if (softcap > 0.0f) {
            z = softcap * tanhf(z / softcap);
            row[c] = z;
        }
        mx = fmaxf(mx, z);
    }
    mx = block_max(mx, redf); // synchronises: the capped row is written
    const float zt = row[t];
    double sum = 0.0;
    for (int c = threadIdx.x; c < V; c += blockDim.x) sum += (double)expf(row[c] - mx);
    sum = block_sum_d(sum, redd);
    if (threadIdx.x == 0) losses[r] = (float)((double)mx + log(sum) - (double)zt);
    if (!grad) return;
    float gs = grad_scale;
    if (row_scale) gs *= row_scale[r];
    const float k = (float)((double)gs / sum);
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float z = row[c];
        float d = expf(z - mx) * k;
        if (c == t) d -= gs;
        if (softcap > 0.0f) {
            float th = z / softcap;
            d *= 1.0f - th * th;
        }
        row[c] = d;
    }
}
