// emu_test.cpp runs lathe's CUDA kernels on the host (cuda_emu.h) against
// straightforward double-precision references, with the launch
// configurations internal/cuda/kernels.go uses (mirrored in the launch_*
// helpers below; keep them in step). internal/cuda's
// TestKernelsOnHostEmulator (go test) builds and runs it:
//
//   g++ -std=c++20 -O1 -pthread -DLATHE_EMU emu_test.cpp && ./a.out
//
// It exercises the logic a GPU run would otherwise be the first to test:
// attention's tiling, online softmax, masks (causal, segments, window),
// soft-cap and ALiBi in the forward, both backward passes and decode; the
// cross-entropy rows; RMSNorm, the column reductions, RoPE, the embedding
// scatter, the norm reductions and NF4. Output: one line per check and
// "N passed, M failed".
#include "../common.cuh"

#include "../attention.cu"
#include "../elementwise.cu"
#include "../nf4.cu"
#include "../norm.cu"
#include "../xent.cu"

#include <cstdio>
#include <cstring>
#include <random>
#include <string>

static int passed, failed;

// check compares got with want: |got-want| <= rel·|want| + abs·max|want|.
static void check(const std::string &name, const std::vector<float> &got, const std::vector<double> &want, double rel, double abs) {
    double scale = 0, worst = 0, maxd = 0;
    size_t at = 0;
    for (double w : want) scale = fmax(scale, fabs(w));
    bool bad = got.size() != want.size();
    for (size_t i = 0; i < got.size() && i < want.size(); i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d == d)) d = INFINITY;
        double allowed = rel * fabs(want[i]) + abs * scale + 1e-30;
        if (d / allowed > worst) worst = d / allowed, at = i;
        maxd = fmax(maxd, d);
    }
    bad = bad || worst > 1;
    printf("%s %-58s max|d| %.3g (worst %.3g of allowed, at %zu: got %.8g want %.8g)\n", bad ? "FAIL" : "ok  ", name.c_str(), maxd,
           worst, at, at < got.size() ? got[at] : NAN, at < want.size() ? want[at] : NAN);
    (bad ? failed : passed)++;
}

static void check_true(const std::string &name, bool ok) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
    (ok ? passed : failed)++;
}

static std::mt19937_64 rng(12345);
static std::vector<float> randn(size_t n, double std = 1) {
    std::normal_distribution<double> d(0, std);
    std::vector<float> v(n);
    for (auto &x : v) x = (float)d(rng);
    return v;
}

// ---------------------------------------------------------------- attention

struct AttnShape {
    int B, T, Hq, Hkv, D;
    bool seg;
    float softcap;
    int window;
    bool alibi;
};

// run_attention mirrors kernels.go's AttentionForward and AttentionBackward.
static void run_attention(const AttnShape &s, const std::vector<float> &q, const std::vector<float> &k, const std::vector<float> &v,
                          const std::vector<float> &dout, const std::vector<int> &seg, const std::vector<float> &alibi,
                          std::vector<float> &out, std::vector<float> &lse, std::vector<float> &dq, std::vector<float> &dk,
                          std::vector<float> &dv) {
    int B = s.B, T = s.T, Hq = s.Hq, Hkv = s.Hkv, D = s.D;
    float scale = 1.0f / sqrtf((float)D);
    const int *segp = s.seg ? seg.data() : nullptr;
    const float *al = s.alibi ? alibi.data() : nullptr;
    int dpl = D <= 64 ? 2 : D <= 128 ? 4 : 8;
    // forward
    int warps = D > 128 ? 2 : 4, bq = 4 * warps;
    size_t smem = 4 * (bq * D + 32 * (D + 4) + bq * 32);
    emu::launch({(unsigned)((T + bq - 1) / bq), (unsigned)Hq, (unsigned)B}, {(unsigned)(32 * warps), 1, 1}, smem, [&] {
        auto f = dpl == 2 ? attn_fwd_d64 : dpl == 4 ? attn_fwd_d128 : attn_fwd_d256;
        f(out.data(), lse.data(), q.data(), k.data(), v.data(), segp, al, T, Hq, Hkv, D, scale, s.softcap, s.window);
    });
    // backward
    std::vector<float> drow((size_t)B * Hq * T);
    int rows = B * T * Hq;
    emu::launch({(unsigned)((rows + 7) / 8), 1, 1}, {256, 1, 1}, 0,
                [&] { attn_bwd_drow(drow.data(), dout.data(), out.data(), B, T, Hq, D); });
    int kw = D > 128 ? 4 : 8, kb = 4 * kw;
    smem = 4 * (2 * 32 * (D + 4) + 2 * 32 + 2 * kb * 32);
    emu::launch({(unsigned)((T + kb - 1) / kb), (unsigned)Hkv, (unsigned)B}, {128, 1, 1}, smem, [&] {
        auto f = dpl == 2 ? attn_bwd_dkdv_d64 : dpl == 4 ? attn_bwd_dkdv_d128 : attn_bwd_dkdv_d256;
        f(dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), lse.data(), drow.data(), segp, al, T, Hq, Hkv, D, scale,
          s.softcap, s.window);
    });
    warps = D > 64 ? 2 : 4;
    bq = 4 * warps;
    smem = 4 * (2 * bq * D + 2 * 32 * (D + 4) + bq * 32);
    emu::launch({(unsigned)((T + bq - 1) / bq), (unsigned)Hq, (unsigned)B}, {(unsigned)(32 * warps), 1, 1}, smem, [&] {
        auto f = dpl == 2 ? attn_bwd_dq_d64 : dpl == 4 ? attn_bwd_dq_d128 : attn_bwd_dq_d256;
        f(dq.data(), dout.data(), q.data(), k.data(), v.data(), lse.data(), drow.data(), segp, al, T, Hq, Hkv, D, scale, s.softcap,
          s.window);
    });
}

static void test_attention(const AttnShape &s) {
    int B = s.B, T = s.T, Hq = s.Hq, Hkv = s.Hkv, D = s.D, rep = Hq / Hkv;
    size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
    auto q = randn(nq), k = randn(nk), v = randn(nk), dout = randn(nq);
    std::vector<int> seg(B * T);
    for (int b = 0; b < B; b++) {
        int id = 0;
        for (int t = 0; t < T; t++) {
            if (t > 0 && rng() % 13 == 0) id++;
            seg[b * T + t] = id;
        }
    }
    std::vector<float> alibi(Hq);
    for (int h = 0; h < Hq; h++) alibi[h] = powf(2.0f, -8.0f * (h + 1) / Hq);
    std::vector<float> out(nq), lse((size_t)B * Hq * T), dq(nq, NAN), dk(nk, NAN), dv(nk, NAN);
    run_attention(s, q, k, v, dout, seg, alibi, out, lse, dq, dk, dv);

    // Reference in double (with the kernels' float32 scale).
    double scale = (double)(1.0f / sqrtf((float)D));
    std::vector<double> rout(nq), rlse((size_t)B * Hq * T), rdq(nq), rdk(nk), rdv(nk);
    auto Q = [&](int b, int t, int h, int d) { return (double)q[(((size_t)b * T + t) * Hq + h) * D + d]; };
    auto K = [&](int b, int t, int g, int d) { return (double)k[(((size_t)b * T + t) * Hkv + g) * D + d]; };
    auto V = [&](int b, int t, int g, int d) { return (double)v[(((size_t)b * T + t) * Hkv + g) * D + d]; };
    auto dO = [&](int b, int t, int h, int d) { return (double)dout[(((size_t)b * T + t) * Hq + h) * D + d]; };
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            int g = h / rep;
            for (int i = 0; i < T; i++) {
                std::vector<double> sc(T, -INFINITY), dt(T, 1), p(T, 0);
                double mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    if (s.window > 0 && j <= i - s.window) continue;
                    if (s.seg && seg[b * T + i] != seg[b * T + j]) continue;
                    double dot = 0;
                    for (int d = 0; d < D; d++) dot += Q(b, i, h, d) * K(b, j, g, d);
                    double x = dot * scale;
                    if (s.softcap > 0) {
                        double th = tanh(x / s.softcap);
                        x = s.softcap * th;
                        dt[j] = 1 - th * th;
                    }
                    if (s.alibi) x += alibi[h] * (double)(j - i);
                    sc[j] = x;
                    mx = fmax(mx, x);
                }
                double sum = 0;
                for (int j = 0; j <= i; j++)
                    if (sc[j] > -INFINITY) sum += exp(sc[j] - mx);
                for (int j = 0; j <= i; j++) p[j] = sc[j] > -INFINITY ? exp(sc[j] - mx) / sum : 0;
                rlse[((size_t)b * Hq + h) * T + i] = mx + log(sum);
                for (int d = 0; d < D; d++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++) o += p[j] * V(b, j, g, d);
                    rout[(((size_t)b * T + i) * Hq + h) * D + d] = o;
                }
                // backward of this query row
                double Di = 0;
                for (int d = 0; d < D; d++) Di += dO(b, i, h, d) * rout[(((size_t)b * T + i) * Hq + h) * D + d];
                for (int j = 0; j <= i; j++) {
                    if (p[j] == 0) continue;
                    double dp = 0;
                    for (int d = 0; d < D; d++) dp += dO(b, i, h, d) * V(b, j, g, d);
                    double ds = p[j] * (dp - Di) * dt[j];
                    for (int d = 0; d < D; d++) {
                        rdq[(((size_t)b * T + i) * Hq + h) * D + d] += scale * ds * K(b, j, g, d);
                        rdk[(((size_t)b * T + j) * Hkv + g) * D + d] += scale * ds * Q(b, i, h, d);
                        rdv[(((size_t)b * T + j) * Hkv + g) * D + d] += p[j] * dO(b, i, h, d);
                    }
                }
            }
        }
    char name[160];
    snprintf(name, sizeof name, "attention B%d T%d Hq%d Hkv%d D%d%s%s", B, T, Hq, Hkv, D, s.seg ? " seg" : "",
             s.softcap > 0 || s.window > 0 || s.alibi ? " cap/win/alibi" : "");
    check(std::string(name) + " out", out, rout, 1e-4, 1e-5);
    check(std::string(name) + " lse", lse, rlse, 1e-5, 1e-5);
    check(std::string(name) + " dq", dq, rdq, 1e-4, 1e-5);
    check(std::string(name) + " dk", dk, rdk, 1e-4, 1e-5);
    check(std::string(name) + " dv", dv, rdv, 1e-4, 1e-5);
}

static void test_decode(bool opts) {
    const int B = 3, MaxT = 45, Hq = 4, Hkv = 2, D = 48;
    auto q = randn(B * Hq * D), kc = randn((size_t)B * MaxT * Hkv * D), vc = randn((size_t)B * MaxT * Hkv * D);
    std::vector<int> lens = {1, 30, 45};
    std::vector<float> alibi = {0.5f, 0.25f, 0.125f, 0.0625f};
    float scale = 0.2f, softcap = opts ? 15.0f : 0.0f;
    int window = opts ? 7 : 0;
    std::vector<float> out(B * Hq * D), sc((size_t)B * Hq * MaxT);
    int err = 0;
    // mirrors kernels.go's AttentionDecode: grid (Hq, B), 128 threads
    emu::launch({(unsigned)Hq, (unsigned)B, 1}, {128, 1, 1}, 0, [&] {
        attn_decode(out.data(), sc.data(), q.data(), kc.data(), vc.data(), lens.data(), opts ? alibi.data() : nullptr, MaxT, Hq, Hkv,
                    D, scale, softcap, window, &err);
    });
    std::vector<double> ref(B * Hq * D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            int g = h / (Hq / Hkv), n = lens[b], t0 = window > 0 ? std::max(0, n - window) : 0;
            std::vector<double> s(n, -INFINITY);
            double mx = -INFINITY, sum = 0;
            for (int t = t0; t < n; t++) {
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (double)q[(b * Hq + h) * D + d] * kc[(((size_t)b * MaxT + t) * Hkv + g) * D + d];
                double x = dot * scale;
                if (softcap > 0) x = softcap * tanh(x / softcap);
                if (opts) x += alibi[h] * (double)(t - (n - 1));
                s[t] = x;
                mx = fmax(mx, x);
            }
            for (int t = t0; t < n; t++) sum += exp(s[t] - mx);
            for (int d = 0; d < D; d++) {
                double o = 0;
                for (int t = t0; t < n; t++) o += exp(s[t] - mx) / sum * vc[(((size_t)b * MaxT + t) * Hkv + g) * D + d];
                ref[(b * Hq + h) * D + d] = o;
            }
        }
    check(opts ? "decode B3 MaxT45 D48 cap/win/alibi" : "decode B3 MaxT45 D48", out, ref, 1e-4, 1e-5);
    check_true("decode: no error raised for valid lengths", err == 0);
    lens[1] = 0;
    emu::launch({(unsigned)Hq, (unsigned)B, 1}, {128, 1, 1}, 0, [&] {
        attn_decode(out.data(), sc.data(), q.data(), kc.data(), vc.data(), lens.data(), nullptr, MaxT, Hq, Hkv, D, scale, 0, 0, &err);
    });
    check_true("decode: a zero length raises LATHE_ERR_DECODE_LEN", err == LATHE_ERR_DECODE_LEN);
}

// ---------------------------------------------------------------- cross-entropy

static void test_xent(float softcap, bool rowscale) {
    const int rows = 9, V = 3001;
    auto logits = randn((size_t)rows * V, 3);
    auto orig = logits;
    std::vector<int> tg = {5, -100, 3000, 0, 17, -1, 2999, 42, 7};
    std::vector<float> rs = randn(rows), losses(rows, NAN);
    int err = 0;
    float gs = 0.125f;
    // mirrors kernels.go's CrossEntropy: one block of 1024 threads per row
    emu::launch({(unsigned)rows, 1, 1}, {1024, 1, 1}, 0, [&] {
        xent_rows(logits.data(), losses.data(), tg.data(), rowscale ? rs.data() : nullptr, V, 1, gs, softcap, &err);
    });
    std::vector<double> rl(rows), rg((size_t)rows * V);
    for (int r = 0; r < rows; r++) {
        if (tg[r] < 0) continue;
        std::vector<double> z(V), d(V, 1);
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < V; c++) {
            double x = orig[(size_t)r * V + c];
            if (softcap > 0) {
                double th = tanh(x / softcap);
                x = softcap * th;
                d[c] = 1 - th * th;
            }
            z[c] = x;
            mx = fmax(mx, x);
        }
        for (int c = 0; c < V; c++) sum += exp(z[c] - mx);
        rl[r] = mx + log(sum) - z[tg[r]];
        double g = gs * (rowscale ? rs[r] : 1);
        for (int c = 0; c < V; c++) rg[(size_t)r * V + c] = (g * exp(z[c] - mx) / sum - (c == tg[r] ? g : 0)) * d[c];
    }
    std::string name = std::string("xent_rows V3001") + (softcap > 0 ? " softcap" : "") + (rowscale ? " rowScale" : "");
    check(name + " losses", losses, rl, 1e-5, 1e-6);
    check(name + " dlogits", logits, rg, 1e-4, 1e-5);
    check_true(name + ": no error raised", err == 0);
    tg[0] = V;
    emu::launch({1, 1, 1}, {1024, 1, 1}, 0, [&] { xent_rows(logits.data(), losses.data(), tg.data(), nullptr, V, 0, 1, 0, &err); });
    check_true("xent_rows: a target >= V raises LATHE_ERR_TARGET", err == LATHE_ERR_TARGET && losses[0] == 0);
}

// ---------------------------------------------------------------- norms, rope, embedding, reductions

static int row_threads(int dim) { return dim >= 4096 ? 1024 : dim >= 1024 ? 512 : dim >= 256 ? 256 : 128; }

static void colsum(float *dst, const float *a, const float *b, const float *s, int rows, int cols) {
    int chunks = (rows + 255) / 256;
    std::vector<double> part((size_t)chunks * cols, NAN);
    emu::launch({(unsigned)((cols + 31) / 32), (unsigned)chunks, 1}, {32, 8, 1}, 0,
                [&] { colsum_partial_f64(part.data(), a, b, s, rows, cols); });
    emu::launch({(unsigned)((cols + 255) / 256), 1, 1}, {256, 1, 1}, 0, [&] { colsum_final_f64(dst, part.data(), chunks, cols); });
}

static void test_rmsnorm(int n, int dim) {
    auto x = randn((size_t)n * dim, 2), w = randn(dim), g = randn((size_t)n * dim), dw0 = randn(dim);
    std::vector<float> out((size_t)n * dim), rstd(n), dx((size_t)n * dim), dw = dw0;
    float eps = 1e-6f;
    emu::launch({(unsigned)n, 1, 1}, {(unsigned)row_threads(dim), 1, 1}, 0,
                [&] { rmsnorm_fwd_f32(out.data(), rstd.data(), x.data(), w.data(), n, dim, eps); });
    colsum(dw.data(), g.data(), x.data(), rstd.data(), n, dim);
    emu::launch({(unsigned)n, 1, 1}, {(unsigned)row_threads(dim), 1, 1}, 0,
                [&] { rmsnorm_bwd_dx_f32(dx.data(), g.data(), x.data(), w.data(), rstd.data(), n, dim); });
    std::vector<double> rout((size_t)n * dim), rr(n), rdx((size_t)n * dim), rdw(dw0.begin(), dw0.end());
    for (int i = 0; i < n; i++) {
        double ss = 0, dot = 0;
        for (int j = 0; j < dim; j++) ss += (double)x[(size_t)i * dim + j] * x[(size_t)i * dim + j];
        double r = 1 / sqrt(ss / dim + eps);
        rr[i] = r;
        for (int j = 0; j < dim; j++) {
            size_t e = (size_t)i * dim + j;
            rout[e] = x[e] * r * w[j];
            rdw[j] += (double)g[e] * x[e] * r;
            dot += (double)g[e] * w[j] * x[e];
        }
        for (int j = 0; j < dim; j++) {
            size_t e = (size_t)i * dim + j;
            rdx[e] = r * (g[e] * w[j] - x[e] * dot * r * r / dim);
        }
    }
    std::string name = "rmsnorm n" + std::to_string(n) + " dim" + std::to_string(dim);
    check(name + " out", out, rout, 1e-5, 1e-6);
    check(name + " rstd", rstd, rr, 1e-6, 0);
    check(name + " dx", dx, rdx, 1e-4, 1e-5);
    check(name + " dw (+=)", dw, rdw, 1e-5, 1e-6);
}

static void test_rope(int n, int heads, int hd, int rot) {
    auto x = randn((size_t)n * heads * hd);
    std::vector<int> pos(n);
    for (auto &p : pos) p = (int)(rng() % 3000);
    std::vector<float> inv(rot / 2);
    for (int i = 0; i < rot / 2; i++) inv[i] = (float)(1 / pow(10000.0, 2.0 * i / rot));
    std::vector<float> out(x.size()), back(x.size());
    int per = rot / 2 + hd - rot;
    long long total = (long long)n * heads * per;
    unsigned blocks = (unsigned)std::min<long long>((total + 255) / 256, 1 << 16);
    emu::launch({blocks, 1, 1}, {256, 1, 1}, 0, [&] { rope_f32(out.data(), x.data(), pos.data(), inv.data(), n, heads, hd, rot, 1); });
    back = out;
    emu::launch({blocks, 1, 1}, {256, 1, 1}, 0, [&] { rope_f32(back.data(), back.data(), pos.data(), inv.data(), n, heads, hd, rot, -1); });
    std::vector<double> ref(x.size()), orig(x.begin(), x.end());
    for (int t = 0; t < n; t++)
        for (int h = 0; h < heads; h++) {
            size_t base = ((size_t)t * heads + h) * hd;
            for (int d = rot; d < hd; d++) ref[base + d] = x[base + d];
            for (int i = 0; i < rot / 2; i++) {
                double a = (double)((float)pos[t] * inv[i]), c = cos(a), s = sin(a);
                double x1 = x[base + i], x2 = x[base + i + rot / 2];
                ref[base + i] = x1 * c - x2 * s;
                ref[base + i + rot / 2] = x2 * c + x1 * s;
            }
        }
    std::string name = "rope n" + std::to_string(n) + " hd" + std::to_string(hd) + " rot" + std::to_string(rot);
    check(name + " forward", out, ref, 1e-5, 1e-6);
    check(name + " backward in place undoes it", back, orig, 1e-5, 1e-6);
}

static void test_embedding() {
    const int vocab = 37, dim = 200, n = 300;
    auto table = randn((size_t)vocab * dim), dout = randn((size_t)n * dim), dt0 = randn((size_t)vocab * dim);
    std::vector<int> ids(n);
    for (auto &i : ids) i = (int)(rng() % vocab);
    std::vector<float> out((size_t)n * dim), dt = dt0;
    int err = 0;
    emu::launch({(unsigned)(((long long)n * dim + 255) / 256), 1, 1}, {256, 1, 1}, 0,
                [&] { embed_fwd_f32(out.data(), table.data(), ids.data(), n, dim, vocab, &err); });
    emu::launch({(unsigned)((dim + 127) / 128), 64, 1}, {128, 1, 1}, 0,
                [&] { embed_bwd_f32(dt.data(), dout.data(), ids.data(), n, dim, vocab, 64, &err); });
    std::vector<double> rout((size_t)n * dim), rdt(dt0.begin(), dt0.end());
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            rout[(size_t)i * dim + j] = table[(size_t)ids[i] * dim + j];
            rdt[(size_t)ids[i] * dim + j] += dout[(size_t)i * dim + j];
        }
    check("embedding forward", out, rout, 0, 0);
    check("embedding backward (+=, repeated ids)", dt, rdt, 1e-5, 1e-6);
    check_true("embedding: no error raised", err == 0);
    ids[7] = vocab;
    emu::launch({(unsigned)(((long long)n * dim + 255) / 256), 1, 1}, {256, 1, 1}, 0,
                [&] { embed_fwd_f32(out.data(), table.data(), ids.data(), n, dim, vocab, &err); });
    check_true("embedding: an id outside the table raises LATHE_ERR_EMBED_ID", err == LATHE_ERR_EMBED_ID && out[7 * dim] == 0);
}

static void test_norm_and_sums() {
    // GlobalNorm's two passes over two buffers, as kernels.go.
    auto a = randn(20001), b = randn(9000, 3);
    int ca = (20001 + 8191) / 8192, cb = (9000 + 8191) / 8192;
    std::vector<double> part(ca + cb);
    std::vector<float> norm(1);
    emu::launch({(unsigned)ca, 1, 1}, {256, 1, 1}, 0, [&] { sumsq_partial_f64(part.data(), a.data(), 20001); });
    emu::launch({(unsigned)cb, 1, 1}, {256, 1, 1}, 0, [&] { sumsq_partial_f64(part.data() + ca, b.data(), 9000); });
    emu::launch({1, 1, 1}, {1024, 1, 1}, 0, [&] { sum_sqrt_f64(norm.data(), part.data(), ca + cb); });
    double ss = 0;
    for (float x : a) ss += (double)x * x;
    for (float x : b) ss += (double)x * x;
    check("global norm (2 buffers, 4 chunks)", norm, {sqrt(ss)}, 1e-6, 0);
    std::vector<float> bias = randn(70), col(70, 0.0f);
    std::vector<double> rcol(70, 0.0);
    auto m = randn(600 * 70);
    colsum(col.data(), m.data(), nullptr, nullptr, 600, 70);
    for (int i = 0; i < 600; i++)
        for (int j = 0; j < 70; j++) rcol[j] += m[i * 70 + j];
    check("column sums 600x70 (3 row chunks)", col, rcol, 1e-6, 1e-7);
}

static void test_nf4() {
    const long long N = 64 * 300;
    auto x = randn(N, 0.05);
    long long blocks = N / 64, groups = (blocks + 255) / 256, parts = (blocks + 8191) / 8192;
    std::vector<unsigned char> codes(N / 2), absq(blocks);
    std::vector<float> scale2(groups), offset(1), abs_true(blocks), out(N);
    std::vector<double> part(parts);
    auto grid = [](long long n) { return dim3{(unsigned)std::min<long long>((n + 255) / 256, 1 << 16), 1, 1}; };
    emu::launch(grid(blocks), {256, 1, 1}, 0, [&] { nf4_absmax(abs_true.data(), x.data(), blocks); });
    emu::launch({(unsigned)parts, 1, 1}, {256, 1, 1}, 0, [&] { sum_partial_f64(part.data(), abs_true.data(), blocks); });
    emu::launch({1, 1, 1}, {1024, 1, 1}, 0, [&] { mean_f64(offset.data(), part.data(), parts, blocks); });
    emu::launch({(unsigned)groups, 1, 1}, {256, 1, 1}, 0,
                [&] { nf4_group(absq.data(), scale2.data(), abs_true.data(), offset.data(), blocks); });
    emu::launch(grid(N / 2), {256, 1, 1}, 0,
                [&] { nf4_codes_pack(codes.data(), x.data(), absq.data(), scale2.data(), offset.data(), N); });
    emu::launch(grid(N / 2), {256, 1, 1}, 0,
                [&] { nf4_dequant(out.data(), codes.data(), absq.data(), scale2.data(), offset.data(), 0, N / 2); });
    double mean = 0;
    for (float a : abs_true) mean += a;
    mean /= blocks;
    check("nf4 offset = mean absmax", offset, {mean}, 1e-6, 0);
    // Every dequantised value is within half the widest code gap
    // ((1 − 0.6962)/2 = 0.152) of its block's absmax, plus the absmax's own
    // int8 error (under 1% here), of x; and the block maxima come back
    // almost exactly (code ±1).
    bool ok = true;
    double worst = 0;
    for (long long i = 0; i < N; i++) {
        double a = abs_true[i / 64], d = fabs(out[i] - x[i]);
        worst = fmax(worst, d / a);
        ok = ok && d <= 0.152 * a + 0.01 * a;
    }
    printf("     nf4 round trip: worst |dequant − x| = %.4f × block absmax\n", worst);
    check_true("nf4 quantise/dequantise round trip within the code spacing", ok);
}

// ---------------------------------------------------------------- bfloat16 activations

// same_rounded reports whether every bfloat16 value of h is the float32 f
// rounded to nearest even.
static bool same_rounded(const std::vector<unsigned short> &h, const std::vector<float> &f) {
    for (size_t i = 0; i < f.size(); i++)
        if (h[i] != bf16_from_f32(f[i])) return false;
    return true;
}

// bf16_pair returns n bfloat16-representable values as float32 and as
// bfloat16.
static std::pair<std::vector<float>, std::vector<unsigned short>> bf16_pair(size_t n, double std = 1) {
    auto f = randn(n, std);
    std::vector<unsigned short> h(n);
    for (size_t i = 0; i < n; i++) {
        h[i] = bf16_from_f32(f[i]);
        f[i] = f32_from_bf16(h[i]);
    }
    return {f, h};
}

static bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// test_bf16_activations: each _bf16 entry point, given bfloat16 inputs,
// computes exactly what the _f32 one computes on the widened values (the
// launch shapes of kernels.go): bfloat16 outputs are its result rounded,
// float32 outputs (gradients, drow) are bit-identical.
static void test_bf16_activations() {
    const int n = 7, dim = 300;
    auto x = randn((size_t)n * dim, 2), w = randn(dim);
    std::vector<float> out((size_t)n * dim), rstd(n);
    std::vector<unsigned short> outh((size_t)n * dim);
    emu::launch({(unsigned)n, 1, 1}, {(unsigned)row_threads(dim), 1, 1}, 0,
                [&] { rmsnorm_fwd_f32(out.data(), rstd.data(), x.data(), w.data(), n, dim, 1e-6f); });
    emu::launch({(unsigned)n, 1, 1}, {(unsigned)row_threads(dim), 1, 1}, 0,
                [&] { rmsnorm_fwd_bf16(outh.data(), rstd.data(), x.data(), w.data(), n, dim, 1e-6f); });
    check_true("rmsnorm_fwd_bf16 = rounded rmsnorm_fwd_f32", same_rounded(outh, out));

    const long long m = 1000;
    auto [gate, gateh] = bf16_pair(m, 3);
    auto [up, uph] = bf16_pair(m);
    auto dout = randn(m);
    std::vector<float> act(m), dg(m), du(m), dgh(m), duh(m);
    std::vector<unsigned short> acth(m);
    emu::launch({4, 1, 1}, {256, 1, 1}, 0, [&] { swiglu_fwd_f32(act.data(), gate.data(), up.data(), m); });
    emu::launch({4, 1, 1}, {256, 1, 1}, 0, [&] { swiglu_fwd_bf16(acth.data(), gateh.data(), uph.data(), m); });
    check_true("swiglu_fwd_bf16 = rounded swiglu_fwd_f32", same_rounded(acth, act));
    emu::launch({4, 1, 1}, {256, 1, 1}, 0, [&] { swiglu_bwd_f32(dg.data(), du.data(), dout.data(), gate.data(), up.data(), m); });
    emu::launch({4, 1, 1}, {256, 1, 1}, 0, [&] { swiglu_bwd_bf16(dgh.data(), duh.data(), dout.data(), gateh.data(), uph.data(), m); });
    check_true("swiglu_bwd_bf16 = swiglu_bwd_f32", same_bits(dg, dgh) && same_bits(du, duh));
    emu::launch({4, 1, 1}, {256, 1, 1}, 0, [&] { geglu_fwd_f32(act.data(), gate.data(), up.data(), m); });
    emu::launch({4, 1, 1}, {256, 1, 1}, 0, [&] { geglu_fwd_bf16(acth.data(), gateh.data(), uph.data(), m); });
    check_true("geglu_fwd_bf16 = rounded geglu_fwd_f32", same_rounded(acth, act));
    emu::launch({4, 1, 1}, {256, 1, 1}, 0, [&] { geglu_bwd_f32(dg.data(), du.data(), dout.data(), gate.data(), up.data(), m); });
    emu::launch({4, 1, 1}, {256, 1, 1}, 0, [&] { geglu_bwd_bf16(dgh.data(), duh.data(), dout.data(), gateh.data(), uph.data(), m); });
    check_true("geglu_bwd_bf16 = geglu_bwd_f32", same_bits(dg, dgh) && same_bits(du, duh));

    {
        const int rn = 9, heads = 3, hd = 64, rot = 32; // partial rotary: pass-through dims too
        auto [rx, rxh] = bf16_pair((size_t)rn * heads * hd);
        std::vector<int> pos(rn);
        for (auto &p : pos) p = (int)(rng() % 3000);
        std::vector<float> inv(rot / 2);
        for (int i = 0; i < rot / 2; i++) inv[i] = (float)(1 / pow(10000.0, 2.0 * i / rot));
        emu::launch({8, 1, 1}, {256, 1, 1}, 0, [&] { rope_f32(rx.data(), rx.data(), pos.data(), inv.data(), rn, heads, hd, rot, 1); });
        emu::launch({8, 1, 1}, {256, 1, 1}, 0, [&] { rope_bf16(rxh.data(), rxh.data(), pos.data(), inv.data(), rn, heads, hd, rot, 1); });
        check_true("rope_bf16 in place = rounded rope_f32", same_rounded(rxh, rx));
    }

    for (int D : {32, 96, 160}) {
        const int B = 2, T = 19, Hq = 4, Hkv = 2;
        size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
        auto [q, qh] = bf16_pair(nq);
        auto [k, kh] = bf16_pair(nk);
        auto [v, vh] = bf16_pair(nk);
        auto dO = randn(nq);
        int dpl = D <= 64 ? 2 : D <= 128 ? 4 : 8;
        std::string tag = dpl == 2 ? "d64" : dpl == 4 ? "d128" : "d256";
        std::vector<float> o(nq), lse((size_t)B * Hq * T), lseh(lse.size());
        std::vector<unsigned short> oh(nq);
        int warps = D > 128 ? 2 : 4, bq = 4 * warps;
        size_t smem = 4 * (bq * D + 32 * (D + 4) + bq * 32);
        dim3 grid = {(unsigned)((T + bq - 1) / bq), (unsigned)Hq, (unsigned)B}, block = {(unsigned)(32 * warps), 1, 1};
        float scale = 0.25f;
        emu::launch(grid, block, smem, [&] {
            auto f = dpl == 2 ? attn_fwd_d64 : dpl == 4 ? attn_fwd_d128 : attn_fwd_d256;
            f(o.data(), lse.data(), q.data(), k.data(), v.data(), nullptr, nullptr, T, Hq, Hkv, D, scale, 0, 0);
        });
        emu::launch(grid, block, smem, [&] {
            auto f = dpl == 2 ? attn_fwd_d64_bf16 : dpl == 4 ? attn_fwd_d128_bf16 : attn_fwd_d256_bf16;
            f(oh.data(), lseh.data(), qh.data(), kh.data(), vh.data(), nullptr, nullptr, T, Hq, Hkv, D, scale, 0, 0);
        });
        check_true("attn_fwd_" + tag + "_bf16 = rounded attn_fwd_" + tag, same_rounded(oh, o) && same_bits(lse, lseh));
        // The backward from the rounded out, in float32 and bfloat16.
        std::vector<float> ow(nq), drow((size_t)B * Hq * T), drowh(drow.size());
        for (size_t i = 0; i < nq; i++) ow[i] = f32_from_bf16(oh[i]);
        int rows = B * T * Hq;
        emu::launch({(unsigned)((rows + 7) / 8), 1, 1}, {256, 1, 1}, 0,
                    [&] { attn_bwd_drow(drow.data(), dO.data(), ow.data(), B, T, Hq, D); });
        emu::launch({(unsigned)((rows + 7) / 8), 1, 1}, {256, 1, 1}, 0,
                    [&] { attn_bwd_drow_bf16(drowh.data(), dO.data(), oh.data(), B, T, Hq, D); });
        check_true("attn_bwd_drow_bf16 = attn_bwd_drow of the widened out (" + tag + ")", same_bits(drow, drowh));
        std::vector<float> dq(nq), dk(nk), dv(nk), dqh(nq), dkh(nk), dvh(nk);
        int kw = D > 128 ? 4 : 8, kb = 4 * kw;
        smem = 4 * (2 * 32 * (D + 4) + 2 * 32 + 2 * kb * 32);
        dim3 kgrid = {(unsigned)((T + kb - 1) / kb), (unsigned)Hkv, (unsigned)B};
        emu::launch(kgrid, {128, 1, 1}, smem, [&] {
            auto f = dpl == 2 ? attn_bwd_dkdv_d64 : dpl == 4 ? attn_bwd_dkdv_d128 : attn_bwd_dkdv_d256;
            f(dk.data(), dv.data(), dO.data(), q.data(), k.data(), v.data(), lse.data(), drow.data(), nullptr, nullptr, T, Hq, Hkv, D, scale,
              0, 0);
        });
        emu::launch(kgrid, {128, 1, 1}, smem, [&] {
            auto f = dpl == 2 ? attn_bwd_dkdv_d64_bf16 : dpl == 4 ? attn_bwd_dkdv_d128_bf16 : attn_bwd_dkdv_d256_bf16;
            f(dkh.data(), dvh.data(), dO.data(), qh.data(), kh.data(), vh.data(), lse.data(), drow.data(), nullptr, nullptr, T, Hq, Hkv, D,
              scale, 0, 0);
        });
        check_true("attn_bwd_dkdv_" + tag + "_bf16 = attn_bwd_dkdv_" + tag, same_bits(dk, dkh) && same_bits(dv, dvh));
        warps = D > 64 ? 2 : 4;
        bq = 4 * warps;
        smem = 4 * (2 * bq * D + 2 * 32 * (D + 4) + bq * 32);
        dim3 qgrid = {(unsigned)((T + bq - 1) / bq), (unsigned)Hq, (unsigned)B}, qblock = {(unsigned)(32 * warps), 1, 1};
        emu::launch(qgrid, qblock, smem, [&] {
            auto f = dpl == 2 ? attn_bwd_dq_d64 : dpl == 4 ? attn_bwd_dq_d128 : attn_bwd_dq_d256;
            f(dq.data(), dO.data(), q.data(), k.data(), v.data(), lse.data(), drow.data(), nullptr, nullptr, T, Hq, Hkv, D, scale, 0, 0);
        });
        emu::launch(qgrid, qblock, smem, [&] {
            auto f = dpl == 2 ? attn_bwd_dq_d64_bf16 : dpl == 4 ? attn_bwd_dq_d128_bf16 : attn_bwd_dq_d256_bf16;
            f(dqh.data(), dO.data(), qh.data(), kh.data(), vh.data(), lse.data(), drow.data(), nullptr, nullptr, T, Hq, Hkv, D, scale, 0, 0);
        });
        check_true("attn_bwd_dq_" + tag + "_bf16 = attn_bwd_dq_" + tag, same_bits(dq, dqh));
    }

    const int B = 2, MaxT = 20, Hq = 4, Hkv = 2, D = 48;
    auto [q, qh] = bf16_pair(B * Hq * D);
    auto kc = randn((size_t)B * MaxT * Hkv * D), vc = randn((size_t)B * MaxT * Hkv * D);
    std::vector<int> lens = {20, 7};
    std::vector<float> dout2(B * Hq * D), sc((size_t)B * Hq * MaxT);
    std::vector<unsigned short> douth(B * Hq * D);
    int err = 0;
    emu::launch({(unsigned)Hq, (unsigned)B, 1}, {128, 1, 1}, 0, [&] {
        attn_decode(dout2.data(), sc.data(), q.data(), kc.data(), vc.data(), lens.data(), nullptr, MaxT, Hq, Hkv, D, 0.2f, 0, 0, &err);
    });
    emu::launch({(unsigned)Hq, (unsigned)B, 1}, {128, 1, 1}, 0, [&] {
        attn_decode_bf16(douth.data(), sc.data(), qh.data(), kc.data(), vc.data(), lens.data(), nullptr, MaxT, Hq, Hkv, D, 0.2f, 0, 0,
                         &err);
    });
    check_true("attn_decode_bf16 = rounded attn_decode", same_rounded(douth, dout2) && err == 0);
}

int main() {
    test_attention({2, 45, 4, 2, 32, false, 0, 0, false});
    test_attention({1, 70, 2, 1, 48, true, 0, 0, false});
    test_attention({1, 50, 4, 2, 64, true, 12.0f, 9, true});
    test_attention({1, 37, 2, 1, 100, false, 0, 0, true});
    test_attention({1, 21, 2, 2, 160, true, 0, 5, false});
    test_decode(false);
    test_decode(true);
    test_xent(0, false);
    test_xent(20.0f, true);
    test_rmsnorm(5, 896);
    test_rmsnorm(3, 4100);
    test_rope(13, 3, 64, 64);
    test_rope(9, 2, 96, 32);
    test_embedding();
    test_norm_and_sums();
    test_nf4();
    test_bf16_activations();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
