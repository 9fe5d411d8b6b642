package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// attnCase is one attention shape; seg picks the segment-id pattern.
type attnCase struct {
	B, T, Hq, Hkv, D int
	seg              string // "", "runs" (packed samples), "mixed" (ids revisit)
}

func (c attnCase) String() string {
	return fmt.Sprintf("B%d_T%d_Hq%d_Hkv%d_D%d_seg=%s", c.B, c.T, c.Hq, c.Hkv, c.D, c.seg)
}

// attnCases covers T not a multiple of the block, D = 8/16/64, Hq/Hkv =
// 1, 2, 4, with and without segment ids, and B > 1.
var attnCases = []attnCase{
	{B: 2, T: 70, Hq: 4, Hkv: 2, D: 16},
	{B: 2, T: 130, Hq: 4, Hkv: 1, D: 8, seg: "runs"},
	{B: 1, T: 100, Hq: 2, Hkv: 2, D: 64, seg: "mixed"},
	{B: 3, T: 64, Hq: 4, Hkv: 4, D: 8, seg: "runs"},
	{B: 2, T: 5, Hq: 2, Hkv: 1, D: 16},
	{B: 1, T: 193, Hq: 8, Hkv: 2, D: 16, seg: "runs"},
}

type attnData struct {
	q, k, v, dout []float32
	seg           []int32
	scale         float32
}

func attnTestData(c attnCase, seed uint64) attnData {
	r := rand.New(rand.NewPCG(seed, 7))
	nq, nkv := c.B*c.T*c.Hq*c.D, c.B*c.T*c.Hkv*c.D
	gauss := func(n int, s float64) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(s * r.NormFloat64())
		}
		return x
	}
	d := attnData{q: gauss(nq, 1), k: gauss(nkv, 1), v: gauss(nkv, 1), dout: gauss(nq, 1),
		scale: float32(1 / math.Sqrt(float64(c.D)))}
	switch c.seg {
	case "runs":
		// Packed samples: runs of random length 1..80, ids increasing.
		d.seg = make([]int32, c.B*c.T)
		for b := 0; b < c.B; b++ {
			id, left := int32(0), 1+r.IntN(80)
			for t := 0; t < c.T; t++ {
				if left == 0 {
					id, left = id+1, 1+r.IntN(80)
				}
				d.seg[b*c.T+t] = id
				left--
			}
		}
	case "mixed":
		// Ids that come back after other ids, and a lone position.
		d.seg = make([]int32, c.B*c.T)
		for i := range d.seg {
			d.seg[i] = int32((i % c.T / 7) % 3)
		}
		d.seg[c.T/2] = 99
	}
	return d
}

// refAttention is the plain float64 attention: full softmax over the
// visible keys of each query, and its exact gradient.
func refAttention(c attnCase, d attnData) (out, dq, dk, dv []float64) {
	B, T, Hq, Hkv, D := c.B, c.T, c.Hq, c.Hkv, c.D
	out = make([]float64, B*T*Hq*D)
	dq = make([]float64, B*T*Hq*D)
	dk = make([]float64, B*T*Hkv*D)
	dv = make([]float64, B*T*Hkv*D)
	scale := float64(d.scale)
	p := make([]float64, T)
	dp := make([]float64, T)
	for b := 0; b < B; b++ {
		for h := 0; h < Hq; h++ {
			g := h / (Hq / Hkv)
			qr := func(t int) int { return ((b*T+t)*Hq + h) * D }
			kr := func(t int) int { return ((b*T+t)*Hkv + g) * D }
			for i := 0; i < T; i++ {
				mx := math.Inf(-1)
				for j := 0; j < T; j++ {
					p[j] = math.Inf(-1)
					if j > i || (d.seg != nil && d.seg[b*T+j] != d.seg[b*T+i]) {
						continue
					}
					var s float64
					for x := 0; x < D; x++ {
						s += float64(d.q[qr(i)+x]) * float64(d.k[kr(j)+x])
					}
					p[j] = s * scale
					mx = math.Max(mx, p[j])
				}
				var sum float64
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				for j := range p {
					p[j] /= sum
				}
				// out_i = Σ_j p_j v_j; dp_j = dO_i·v_j; ds_j = p_j(dp_j - Σ p dp).
				var pdp float64
				for j := 0; j < T; j++ {
					var s float64
					for x := 0; x < D; x++ {
						out[qr(i)+x] += p[j] * float64(d.v[kr(j)+x])
						s += float64(d.dout[qr(i)+x]) * float64(d.v[kr(j)+x])
					}
					dp[j] = s
					pdp += p[j] * s
				}
				for j := 0; j < T; j++ {
					ds := p[j] * (dp[j] - pdp)
					for x := 0; x < D; x++ {
						dq[qr(i)+x] += scale * ds * float64(d.k[kr(j)+x])
						dk[kr(j)+x] += scale * ds * float64(d.q[qr(i)+x])
						dv[kr(j)+x] += p[j] * float64(d.dout[qr(i)+x])
					}
				}
			}
		}
	}
	return out, dq, dk, dv
}

type attnResult struct {
	out, lse, dq, dk, dv []float32
}

func runAttention(c attnCase, d attnData) attnResult {
	nq, nkv := c.B*c.T*c.Hq*c.D, c.B*c.T*c.Hkv*c.D
	r := attnResult{out: make([]float32, nq), lse: make([]float32, c.B*c.Hq*c.T),
		dq: make([]float32, nq), dk: make([]float32, nkv), dv: make([]float32, nkv)}
	// Garbage in the outputs: they must be overwritten, not accumulated.
	for _, x := range [][]float32{r.out, r.lse, r.dq, r.dk, r.dv} {
		for i := range x {
			x[i] = float32(math.NaN())
		}
	}
	AttentionForward(r.out, r.lse, d.q, d.k, d.v, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale)
	AttentionBackward(r.dq, r.dk, r.dv, d.dout, d.q, d.k, d.v, r.out, r.lse, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale)
	return r
}

// attnClose fails unless got matches want within atol + rtol·max|want|.
func attnClose(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	var scale float64
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	lim := tol * math.Max(scale, 1e-3)
	for i := range want {
		if g := float64(got[i]); math.IsNaN(g) || math.Abs(g-want[i]) > lim {
			t.Fatalf("%s[%d] = %v, want %v (limit %.3g)", name, i, g, want[i], lim)
		}
	}
}

func TestAttentionAgainstReference(t *testing.T) {
	for i, c := range attnCases {
		t.Run(c.String(), func(t *testing.T) {
			d := attnTestData(c, uint64(i+1))
			defer func() { attnBackwardMode = 0 }()
			attnBackwardMode = 1
			got := runAttention(c, d)
			out, dq, dk, dv := refAttention(c, d)
			attnClose(t, "out", got.out, out, 2e-5)
			attnClose(t, "dq", got.dq, dq, 1e-4)
			attnClose(t, "dk", got.dk, dk, 1e-4)
			attnClose(t, "dv", got.dv, dv, 1e-4)
			// The two-pass backward must give the very same bits.
			attnBackwardMode = 2
			split := runAttention(c, d)
			if !bitsEqual(split.dq, got.dq) || !bitsEqual(split.dk, got.dk) || !bitsEqual(split.dv, got.dv) {
				t.Errorf("two-pass backward differs from one-pass")
			}
			// lse against the reference log-sum-exp of one query per row.
			for _, pos := range []int{0, c.T / 3, c.T - 1} {
				var s float64
				b, h := c.B-1, c.Hq-1
				g := h / (c.Hq / c.Hkv)
				for j := 0; j <= pos; j++ {
					if d.seg != nil && d.seg[b*c.T+j] != d.seg[b*c.T+pos] {
						continue
					}
					var dot float64
					for x := 0; x < c.D; x++ {
						dot += float64(d.q[((b*c.T+pos)*c.Hq+h)*c.D+x]) * float64(d.k[((b*c.T+j)*c.Hkv+g)*c.D+x])
					}
					s += math.Exp(dot * float64(d.scale))
				}
				if want, g := math.Log(s), float64(got.lse[(b*c.Hq+h)*c.T+pos]); math.Abs(g-want) > 1e-5*math.Max(1, math.Abs(want)) {
					t.Errorf("lse[b=%d,h=%d,t=%d] = %v, want %v", b, h, pos, g, want)
				}
			}
		})
	}
}

// TestAttentionFiniteDifference spot-checks the backward against central
// differences of the float32 forward, L = Σ dout∘out.
func TestAttentionFiniteDifference(t *testing.T) {
	c := attnCase{B: 2, T: 70, Hq: 4, Hkv: 2, D: 8, seg: "runs"}
	d := attnTestData(c, 42)
	got := runAttention(c, d)
	out := make([]float32, len(got.out))
	lse := make([]float32, len(got.lse))
	loss := func() float64 {
		AttentionForward(out, lse, d.q, d.k, d.v, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale)
		var s float64
		for i := range out {
			s += float64(out[i]) * float64(d.dout[i])
		}
		return s
	}
	checkFiniteDifference(t, loss, 3, 12, 2e-3, 2e-2, fdOperand{"q", d.q, got.dq}, fdOperand{"k", d.k, got.dk}, fdOperand{"v", d.v, got.dv})
}

func TestAttentionDeterministicAcrossProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	// Under GOMAXPROCS 1, 2, 16 these take both backward strategies.
	for i, c := range []attnCase{attnCases[1], attnCases[5], {B: 3, T: 150, Hq: 4, Hkv: 2, D: 16}} {
		d := attnTestData(c, uint64(100+i))
		var first attnResult
		for n, p := range []int{1, 2, 16} {
			runtime.GOMAXPROCS(p)
			got := runAttention(c, d)
			if n == 0 {
				first = got
				continue
			}
			for _, pair := range [][2][]float32{{first.out, got.out}, {first.lse, got.lse}, {first.dq, got.dq}, {first.dk, got.dk}, {first.dv, got.dv}} {
				if !bitsEqual(pair[0], pair[1]) {
					t.Fatalf("%v: GOMAXPROCS=%d differs from GOMAXPROCS=1", c, p)
				}
			}
		}
	}
}

func bitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// ownAllocsPerRun is testing.AllocsPerRun of fn, less the allocations made
// inside Sgemm (counted through the blockGemm hook): the kernels' own
// contract is zero; Sgemm's allocations are Sgemm's. When Sgemm allocates
// nothing, this is exactly testing.AllocsPerRun.
func ownAllocsPerRun(t *testing.T, runs int, fn func()) (total, own float64) {
	t.Helper()
	var inGemm atomic.Uint64
	var ms runtime.MemStats
	blockGemm = func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		runtime.ReadMemStats(&ms)
		inGemm.Add(ms.Mallocs - before)
	}
	defer func() { blockGemm = Sgemm }()
	fn() // warm up
	total = testing.AllocsPerRun(runs, fn)
	// AllocsPerRun runs fn runs+1 times (one warm-up) at GOMAXPROCS=1.
	old := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(old)
	// The memory statistics count every goroutine: let the pool's helpers,
	// woken by the warm-up, finish spinning and park (a parking goroutine
	// may allocate its wait record) before counting.
	time.Sleep(4 * spinFor)
	inGemm.Store(0)
	runtime.ReadMemStats(&ms)
	start := ms.Mallocs
	for i := 0; i < runs; i++ {
		fn()
	}
	runtime.ReadMemStats(&ms)
	all := ms.Mallocs - start
	own = float64(all-inGemm.Load()) / float64(runs)
	return total, own
}

func TestAttentionDoesNotAllocate(t *testing.T) {
	c := attnCase{B: 2, T: 130, Hq: 4, Hkv: 2, D: 16, seg: "runs"}
	d := attnTestData(c, 9)
	r := runAttention(c, d)
	for _, k := range []struct {
		name string
		fn   func()
	}{
		{"forward", func() {
			AttentionForward(r.out, r.lse, d.q, d.k, d.v, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale)
		}},
		{"backward", func() {
			attnBackwardMode = 1
			AttentionBackward(r.dq, r.dk, r.dv, d.dout, d.q, d.k, d.v, r.out, r.lse, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale)
		}},
		{"backward two-pass", func() {
			attnBackwardMode = 2
			AttentionBackward(r.dq, r.dk, r.dv, d.dout, d.q, d.k, d.v, r.out, r.lse, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale)
		}},
	} {
		defer func() { attnBackwardMode = 0 }()
		total, own := ownAllocsPerRun(t, 5, k.fn)
		if own != 0 {
			t.Errorf("%s: %v allocations per call outside Sgemm", k.name, own)
		}
		if total != 0 {
			t.Logf("%s: %v allocations per call, all inside Sgemm", k.name, total)
		}
	}
}

func TestAttentionPanicsOnBadArgs(t *testing.T) {
	x := make([]float32, 2*3*4*8)
	lse := make([]float32, 2*4*3)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Hq not multiple of Hkv", func() { AttentionForward(x, lse, x, x, x, nil, 2, 3, 4, 3, 8, 1) }},
		{"short q", func() { AttentionForward(x, lse, x[:10], x, x, nil, 2, 3, 4, 4, 8, 1) }},
		{"short lse", func() { AttentionForward(x, lse[:5], x, x, x, nil, 2, 3, 4, 4, 8, 1) }},
		{"short segIDs", func() { AttentionForward(x, lse, x, x, x, make([]int32, 5), 2, 3, 4, 4, 8, 1) }},
		{"short dk", func() { AttentionBackward(x, x[:3], x, x, x, x, x, x, lse, nil, 2, 3, 4, 4, 8, 1) }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			tc.fn()
		}()
	}
}

func TestExpf(t *testing.T) {
	var worst float64
	for x := float32(-87.3); x <= 88.72; x += 0.0137 {
		got, want := float64(expf(x)), math.Exp(float64(x))
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 3e-7 {
		t.Errorf("expf relative error %.3g, want <= 3e-7", worst)
	}
	for _, tc := range []struct{ x, want float32 }{
		{float32(math.Inf(-1)), 0}, {-200, 0}, {0, 1}, {float32(math.Inf(1)), float32(math.Inf(1))},
	} {
		if got := expf(tc.x); got != tc.want {
			t.Errorf("expf(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
	if got := expf(float32(math.NaN())); got == got {
		t.Errorf("expf(NaN) = %v, want NaN", got)
	}
	// expSubRow is expf inlined: same bits, and the sum of the row.
	var row, want []float32
	for x := float32(-120); x <= 100; x += 0.173 {
		row = append(row, x)
	}
	row = append(row, float32(math.Inf(-1)))
	var sum float64
	for _, x := range row {
		e := expf(x - 3)
		want = append(want, e)
		sum += float64(e)
	}
	if got := expSubRow(row, 3); math.Abs(got-sum) > 1e-6*sum {
		t.Errorf("expSubRow sum = %v, want %v", got, sum)
	}
	if !bitsEqual(row, want) {
		t.Errorf("expSubRow differs from expf")
	}
}

// BenchmarkAttention runs the stories15M shape (B=8, T=256, H=6, D=48)
// and the tiny one of `make bench-train` (B=8, T=128, H=4, D=16).
// GFLOP/s counts the causal block products only: 4·B·H·D·T(T+1)/2 forward
// (QKᵀ, PV), 2.5× that backward (QKᵀ, dO·Vᵀ, PᵀdO, dS·K, dSᵀQ).
func BenchmarkAttention(b *testing.B) {
	for _, sh := range []struct {
		name string
		c    attnCase
	}{
		{"stories15M", attnCase{B: 8, T: 256, Hq: 6, Hkv: 6, D: 48}},
		{"tiny", attnCase{B: 8, T: 128, Hq: 4, Hkv: 4, D: 16}},
	} {
		c := sh.c
		d := attnTestData(c, 1)
		r := runAttention(c, d)
		causal := float64(c.B*c.Hq*c.D) * float64(c.T*(c.T+1)/2)
		b.Run(sh.name+"/forward", func(b *testing.B) {
			for b.Loop() {
				AttentionForward(r.out, r.lse, d.q, d.k, d.v, nil, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale)
			}
			b.ReportMetric(4*causal*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(sh.name+"/backward", func(b *testing.B) {
			for b.Loop() {
				AttentionBackward(r.dq, r.dk, r.dv, d.dout, d.q, d.k, d.v, r.out, r.lse, nil, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale)
			}
			b.ReportMetric(10*causal*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
