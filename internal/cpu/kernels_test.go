package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

func TestElementwise(t *testing.T) {
	for _, n := range []int{1, 7, 40000} {
		r := rand.New(rand.NewPCG(1, uint64(n)))
		a, b := randF32(r, n, 1), randF32(r, n, 1)
		be := New()
		ab, bb, ob := upload(t, be, a), upload(t, be, b), upload(t, be, make([]float32, n))

		be.Add(ob, ab, bb, n)
		want := make([]float64, n)
		for i := range want {
			want[i] = float64(a[i] + b[i])
		}
		if err := closeTo(download(t, be, ob), want, 0, 0); err != nil {
			t.Errorf("Add n=%d: %v", n, err)
		}
		be.Axpy(ob, ab, -0.5, n)
		for i := range want {
			want[i] = float64(a[i] + b[i] + -0.5*a[i])
		}
		if err := closeTo(download(t, be, ob), want, 1e-6, 1e-6); err != nil {
			t.Errorf("Axpy n=%d: %v", n, err)
		}
		be.Scale(ob, 3, n)
		for i := range want {
			want[i] *= 3
		}
		if err := closeTo(download(t, be, ob), want, 1e-6, 1e-6); err != nil {
			t.Errorf("Scale n=%d: %v", n, err)
		}
		be.Copy(ob, ab)
		if err := closeTo(download(t, be, ob), to64(a), 0, 0); err != nil {
			t.Errorf("Copy n=%d: %v", n, err)
		}
		be.Zero(ob)
		if err := closeTo(download(t, be, ob), make([]float64, n), 0, 0); err != nil {
			t.Errorf("Zero n=%d: %v", n, err)
		}
	}
}

func TestBias(t *testing.T) {
	for _, s := range []struct{ rows, cols int }{{1, 1}, {3, 5}, {300, 130}} {
		r := rand.New(rand.NewPCG(2, uint64(s.rows)))
		x, bias := randF32(r, s.rows*s.cols, 1), randF32(r, s.cols, 1)
		be := New()
		xb, bb := upload(t, be, x), upload(t, be, bias)
		be.AddBias(xb, bb, s.rows, s.cols)
		want := make([]float64, len(x))
		for i := range want {
			want[i] = float64(x[i] + bias[i%s.cols])
		}
		if err := closeTo(download(t, be, xb), want, 0, 0); err != nil {
			t.Errorf("AddBias %v: %v", s, err)
		}

		// BiasGrad accumulates onto the existing values; checked against
		// finite differences of L = Σ dout ⊙ (x + bias).
		dout := randF32(r, len(x), 1)
		init := randF32(r, s.cols, 1)
		db := upload(t, be, init)
		be.BiasGrad(db, upload(t, be, dout), s.rows, s.cols)
		loss := func(b []float64) float64 {
			var l float64
			for i, d := range dout {
				l += float64(d) * (float64(x[i]) + b[i%s.cols])
			}
			return l
		}
		fd := fdGrad(loss, to64(bias), 1e-3)
		for j := range fd {
			fd[j] += float64(init[j])
		}
		if err := closeTo(download(t, be, db), fd, 1e-4, 1e-5); err != nil {
			t.Errorf("BiasGrad %v: %v", s, err)
		}
		sameUnderProcs(t, "BiasGrad", func() []byte {
			db := upload(t, be, init)
			be.BiasGrad(db, upload(t, be, dout), s.rows, s.cols)
			return f32Bytes(download(t, be, db))
		})
	}
}

func swigluRef(g, u float64) float64 { return g / (1 + math.Exp(-g)) * u }

func TestSwiGLU(t *testing.T) {
	for _, n := range []int{1, 33, 5000} {
		r := rand.New(rand.NewPCG(3, uint64(n)))
		g, u, dout := randF32(r, n, 3), randF32(r, n, 1), randF32(r, n, 1)
		be := New()
		gb, ub, ob := upload(t, be, g), upload(t, be, u), upload(t, be, make([]float32, n))
		be.SwiGLUForward(ob, gb, ub, n)
		want := make([]float64, n)
		for i := range want {
			want[i] = swigluRef(float64(g[i]), float64(u[i]))
		}
		if err := closeTo(download(t, be, ob), want, 1e-6, 1e-5); err != nil {
			t.Errorf("SwiGLUForward n=%d: %v", n, err)
		}
		dg, du := upload(t, be, make([]float32, n)), upload(t, be, make([]float32, n))
		be.SwiGLUBackward(dg, du, upload(t, be, dout), gb, ub, n)
		// Elementwise, so one finite difference per element gives the
		// whole gradient.
		wantG, wantU := make([]float64, n), make([]float64, n)
		const h = 1e-4
		for i := range wantG {
			gi, ui, di := float64(g[i]), float64(u[i]), float64(dout[i])
			wantG[i] = di * (swigluRef(gi+h, ui) - swigluRef(gi-h, ui)) / (2 * h)
			wantU[i] = di * (swigluRef(gi, ui+h) - swigluRef(gi, ui-h)) / (2 * h)
		}
		if err := closeTo(download(t, be, dg), wantG, 1e-5, 1e-4); err != nil {
			t.Errorf("SwiGLUBackward dgate n=%d: %v", n, err)
		}
		if err := closeTo(download(t, be, du), wantU, 1e-5, 1e-4); err != nil {
			t.Errorf("SwiGLUBackward dup n=%d: %v", n, err)
		}
	}
}

func TestGemm(t *testing.T) {
	type tc struct {
		ta, tb      bool
		m, n, k     int
		alpha, beta float32
		batch       int
	}
	cases := []tc{
		{false, false, 1, 1, 1, 1, 0, 1},
		{false, false, 5, 7, 3, 1, 0, 1},
		{false, true, 17, 9, 33, 1, 1, 1}, // NT: linear forward
		{true, false, 8, 21, 19, 1, 1, 1}, // TN: weight gradient, accumulating
		{true, true, 4, 6, 5, 0.5, -2, 1},
		{false, true, 6, 5, 8, 0.125, 0, 3}, // batched, e.g. per-head scores
		{true, false, 3, 4, 7, 1, 0.5, 4},
	}
	for _, c := range cases {
		r := rand.New(rand.NewPCG(4, uint64(c.m*1000+c.n*10+c.k)))
		ar, ac := c.m, c.k
		if c.ta {
			ar, ac = c.k, c.m
		}
		br, bc := c.k, c.n
		if c.tb {
			br, bc = c.n, c.k
		}
		// Strided batches with padding between them and wider rows.
		lda, ldb, ldc := ac+1, bc+2, c.n+3
		sa, sb, sc := ar*lda+5, br*ldb+1, c.m*ldc+2
		a := randF32(r, c.batch*sa, 1)
		b := randF32(r, c.batch*sb, 1)
		c0 := randF32(r, c.batch*sc, 1)
		want := to64(c0)
		for p := 0; p < c.batch; p++ {
			for i := 0; i < c.m; i++ {
				for j := 0; j < c.n; j++ {
					var s float64
					for q := 0; q < c.k; q++ {
						ai, bi := p*sa+i*lda+q, p*sb+q*ldb+j
						if c.ta {
							ai = p*sa + q*lda + i
						}
						if c.tb {
							bi = p*sb + j*ldb + q
						}
						av, bv := a[ai], b[bi]
						s += float64(av) * float64(bv)
					}
					o := p*sc + i*ldc + j
					want[o] = float64(c.alpha)*s + float64(c.beta)*want[o]
				}
			}
		}
		be := New()
		cb := upload(t, be, c0)
		be.Gemm(tensor.Gemm{TransA: c.ta, TransB: c.tb, M: c.m, N: c.n, K: c.k, Alpha: c.alpha, Beta: c.beta,
			A: upload(t, be, a), B: upload(t, be, b), C: cb, LDA: lda, LDB: ldb, LDC: ldc,
			StrideA: sa, StrideB: sb, StrideC: sc, Batch: c.batch})
		if err := closeTo(download(t, be, cb), want, 1e-4, 1e-4); err != nil {
			t.Errorf("Gemm %+v: %v", c, err)
		}
	}
}
func TestMatMulHelper(t *testing.T) {
	// y [2,3] = x [2,4] · Wᵀ with W [3,4] (NT), then dW [3,4] = dyᵀ · x (TN).
	be := New()
	x := upload(t, be, []float32{1, 2, 3, 4, 5, 6, 7, 8})
	w := upload(t, be, []float32{1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1})
	y := upload(t, be, make([]float32, 6))
	tensor.MatMul(be, y, x, w, 2, 3, 4, false, true, 0)
	if err := closeTo(download(t, be, y), []float64{1, 2, 10, 5, 6, 26}, 0, 0); err != nil {
		t.Errorf("NT: %v", err)
	}
	dw := upload(t, be, make([]float32, 12))
	tensor.MatMul(be, dw, y, x, 3, 4, 2, true, false, 0)
	want := []float64{1*1 + 5*5, 1*2 + 5*6, 1*3 + 5*7, 1*4 + 5*8,
		2*1 + 6*5, 2*2 + 6*6, 2*3 + 6*7, 2*4 + 6*8,
		10*1 + 26*5, 10*2 + 26*6, 10*3 + 26*7, 10*4 + 26*8}
	if err := closeTo(download(t, be, dw), want, 0, 0); err != nil {
		t.Errorf("TN: %v", err)
	}
}
