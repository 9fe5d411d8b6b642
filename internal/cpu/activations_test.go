package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTanhf bounds tanhf's error against float64 tanh over the range the
// soft-caps see, and checks its special values.
func TestTanhf(t *testing.T) {
	var worst float64
	for x := float32(-12); x <= 12; x += 0.00137 {
		got, want := float64(tanhf(x)), math.Tanh(float64(x))
		if err := math.Abs(got-want) / math.Max(math.Abs(want), 1e-30); err > worst {
			worst = err
		}
	}
	for x := float32(1e-30); x < 1; x *= 1.37 { // tiny arguments: tanh x ≈ x
		got, want := float64(tanhf(x)), math.Tanh(float64(x))
		if err := math.Abs(got-want) / want; err > worst {
			worst = err
		}
	}
	if worst > 2.5e-7 {
		t.Errorf("tanhf relative error %.3g, want <= 2.5e-7", worst)
	}
	for _, tc := range []struct{ x, want float32 }{
		{0, 0}, {float32(math.Inf(1)), 1}, {float32(math.Inf(-1)), -1}, {30, 1}, {-30, -1},
	} {
		if got := tanhf(tc.x); got != tc.want {
			t.Errorf("tanhf(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
	if got := tanhf(float32(math.Copysign(0, -1))); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("tanhf(-0) = %v, want -0", got)
	}
	if got := tanhf(float32(math.NaN())); got == got {
		t.Errorf("tanhf(NaN) = %v, want NaN", got)
	}
	// softCapRow inlines tanhf's polynomial: with a cap of 1 it is tanhf,
	// bit for bit, and its derivative row is 1 − tanh².
	var row, want, wantD []float32
	for x := float32(-3); x <= 3; x += 0.0013 {
		row = append(row, x)
		want = append(want, tanhf(x))
		wantD = append(wantD, 1-tanhf(x)*tanhf(x))
	}
	d := make([]float32, len(row))
	softCapRow(row, d, 1)
	if !bitsEqual(row, want) || !bitsEqual(d, wantD) {
		t.Errorf("softCapRow with cap 1 differs from tanhf")
	}
}

// gelu64 is gelu's tanh approximation and its derivative in float64, as
// PyTorch writes them.
func gelu64(x float64) (g, dg float64) {
	const c, k = 0.7978845608028654, 0.044715
	th := math.Tanh(c * (x + k*x*x*x))
	g = 0.5 * x * (1 + th)
	dg = 0.5*(1+th) + 0.5*x*(1-th*th)*c*(1+3*k*x*x)
	return g, dg
}

func TestGeGLU(t *testing.T) {
	for _, n := range []int{1, 7, 40000} {
		r := rand.New(rand.NewPCG(8, uint64(n)))
		gate, up, dout := randF32(r, n, 3), randF32(r, n, 1), randF32(r, n, 1)
		gate[0] = 0
		if n > 4 {
			gate[1], gate[2], gate[3] = -30, 30, -5 // saturated and deep tail
		}
		be := New()
		gb, ub, db := upload(t, be, gate), upload(t, be, up), upload(t, be, dout)
		ob := upload(t, be, make([]float32, n))
		be.GeGLUForward(ob, gb, ub, n)
		want, wantDG, wantDU := make([]float64, n), make([]float64, n), make([]float64, n)
		for i, g := range gate {
			gl, dg := gelu64(float64(g))
			want[i] = gl * float64(up[i])
			wantDG[i] = float64(dout[i]) * float64(up[i]) * dg
			wantDU[i] = float64(dout[i]) * gl
		}
		if err := closeTo(download(t, be, ob), want, 1e-6, 1e-6); err != nil {
			t.Errorf("GeGLUForward n=%d: %v", n, err)
		}
		dgb, dub := upload(t, be, make([]float32, n)), upload(t, be, make([]float32, n))
		be.GeGLUBackward(dgb, dub, db, gb, ub, n)
		if err := closeTo(download(t, be, dgb), wantDG, 1e-6, 1e-6); err != nil {
			t.Errorf("GeGLUBackward dgate n=%d: %v", n, err)
		}
		if err := closeTo(download(t, be, dub), wantDU, 1e-6, 1e-6); err != nil {
			t.Errorf("GeGLUBackward dup n=%d: %v", n, err)
		}
		// In place: dgate over gate and dup over up give the same bits.
		g2, u2 := upload(t, be, gate), upload(t, be, up)
		be.GeGLUBackward(g2, u2, db, g2, u2, n)
		if !bitsEqual(download(t, be, g2), download(t, be, dgb)) || !bitsEqual(download(t, be, u2), download(t, be, dub)) {
			t.Errorf("n=%d: aliased GeGLU backward differs", n)
		}
		sameUnderProcs(t, "GeGLU", func() []byte {
			o, dg, du := upload(t, be, make([]float32, n)), upload(t, be, make([]float32, n)), upload(t, be, make([]float32, n))
			be.GeGLUForward(o, gb, ub, n)
			be.GeGLUBackward(dg, du, db, gb, ub, n)
			return f32Bytes(download(t, be, o), download(t, be, dg), download(t, be, du))
		})
	}
}

// TestGeGLUFiniteDifference checks the float32 backward against central
// differences of the float64 forward, L = Σ dout·gelu(gate)·up.
func TestGeGLUFiniteDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const n = 64
	gate, up, dout := randF32(r, n, 2.5), randF32(r, n, 1), randF32(r, n, 1)
	be := New()
	dg, du := upload(t, be, make([]float32, n)), upload(t, be, make([]float32, n))
	be.GeGLUBackward(dg, du, upload(t, be, dout), upload(t, be, gate), upload(t, be, up), n)
	loss := func(g, u []float64) float64 {
		var l float64
		for i := range g {
			gl, _ := gelu64(g[i])
			l += float64(dout[i]) * gl * u[i]
		}
		return l
	}
	g64, u64 := to64(gate), to64(up)
	fdg := fdGrad(func(g []float64) float64 { return loss(g, u64) }, slices.Clone(g64), 1e-5)
	fdu := fdGrad(func(u []float64) float64 { return loss(g64, u) }, slices.Clone(u64), 1e-5)
	if err := closeTo(download(t, be, dg), fdg, 1e-5, 1e-4); err != nil {
		t.Errorf("dgate: %v", err)
	}
	if err := closeTo(download(t, be, du), fdu, 1e-5, 1e-4); err != nil {
		t.Errorf("dup: %v", err)
	}
}

func TestGeGLUPanicsOnBadArgs(t *testing.T) {
	be := New()
	x, short := upload(t, be, make([]float32, 8)), upload(t, be, make([]float32, 3))
	ids := uploadI32(t, be, make([]int32, 8))
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"short out", func() { be.GeGLUForward(short, x, x, 8) }},
		{"short up", func() { be.GeGLUForward(x, x, short, 8) }},
		{"I32 gate", func() { be.GeGLUForward(x, ids, x, 8) }},
		{"short dgate", func() { be.GeGLUBackward(short, x, x, x, x, 8) }},
		{"short dout", func() { be.GeGLUBackward(x, x, short, x, x, 8) }},
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
