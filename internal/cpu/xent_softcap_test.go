package cpu

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// refCrossEntropyCap is refCrossEntropy with soft-capped logits z =
// cap·tanh(x·w/cap) and per-row gradient scales (nil: 1), in float64.
func refCrossEntropyCap(c xentCase, d xentData, softCap float64, rowScale []float32) (losses, dx, dw []float64) {
	N, C, V := c.N, c.C, c.V
	losses = make([]float64, N)
	dx = make([]float64, N*C)
	dw = make([]float64, V*C)
	z := make([]float64, V)
	dz := make([]float64, V)
	for i := 0; i < N; i++ {
		t := int(d.targets[i])
		if t < 0 {
			continue
		}
		mx := math.Inf(-1)
		for v := 0; v < V; v++ {
			var s float64
			for k := 0; k < C; k++ {
				s += float64(d.x[i*C+k]) * float64(d.w[v*C+k])
			}
			th := math.Tanh(s / softCap)
			z[v], dz[v] = softCap*th, 1-th*th
			mx = math.Max(mx, z[v])
		}
		var sum float64
		for v := range z {
			sum += math.Exp(z[v] - mx)
		}
		losses[i] = mx + math.Log(sum) - z[t]
		gs := float64(d.gradScale)
		if rowScale != nil {
			gs *= float64(rowScale[i])
		}
		for v := 0; v < V; v++ {
			g := math.Exp(z[v]-mx) / sum
			if v == t {
				g--
			}
			g *= gs * dz[v]
			for k := 0; k < C; k++ {
				dx[i*C+k] += g * float64(d.w[v*C+k])
				dw[v*C+k] += g * float64(d.x[i*C+k])
			}
		}
	}
	return losses, dx, dw
}

// xentCapData is xentTestData with the inputs scaled so that the logits
// reach the cap's non-linear range.
func xentCapData(c xentCase, seed uint64, mul float32) xentData {
	d := xentTestData(c, seed)
	for i := range d.x {
		d.x[i] *= mul
	}
	return d
}

func runXentCap(c xentCase, d xentData, softCap float32, rowScale []float32) xentResult {
	r := xentResult{losses: make([]float32, c.N), dx: make([]float32, c.N*c.C), dw: make([]float32, c.V*c.C)}
	for i := range r.dx {
		r.dx[i] = float32(math.NaN())
	}
	for i := range r.dw {
		r.dw[i] = 0.25
	}
	ws := make([]float32, c.chunk*c.V)
	crossEntropy(r.losses, r.dx, r.dw, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, rowScale, softCap, ws, c.chunk)
	return r
}

func TestCrossEntropySoftCapAgainstReference(t *testing.T) {
	for i, c := range xentCases {
		for _, softCap := range []float32{2, 30} {
			d := xentCapData(c, uint64(i+40), 3)
			var rs []float32
			if i%2 == 1 { // per-row scales too
				rs = randF32(rand.New(rand.NewPCG(1, uint64(i))), c.N, 1)
			}
			losses, dx, dw := refCrossEntropyCap(c, d, float64(softCap), rs)
			for j := range dw {
				dw[j] += 0.25
			}
			got := runXentCap(c, d, softCap, rs)
			attnClose(t, c.String()+" losses", got.losses, losses, 2e-6)
			attnClose(t, c.String()+" dx", got.dx, dx, 1e-5)
			attnClose(t, c.String()+" dw", got.dw, dw, 1e-5)
			// The losses without gradients are the same bits.
			nog := make([]float32, c.N)
			crossEntropy(nog, nil, nil, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, nil, softCap, make([]float32, c.chunk*c.V), c.chunk)
			if !bitsEqual(nog, got.losses) {
				t.Errorf("%v cap %v: losses differ between dx == nil and dx != nil", c, softCap)
			}
			if c.ignored != 1 { // not every row ignored: the cap must matter
				plain := runXentCap(c, d, 0, rs)
				if bitsEqual(plain.losses, got.losses) || bitsEqual(plain.dx, got.dx) {
					t.Errorf("%v cap %v: same results as without the cap", c, softCap)
				}
			}
		}
	}
}

// TestCrossEntropySoftCapFiniteDifference spot-checks dx and dw against
// central differences of the float32 kernel's losses.
func TestCrossEntropySoftCapFiniteDifference(t *testing.T) {
	c := xentCase{N: 12, C: 16, V: 40, chunk: 5, ignored: 4}
	d := xentCapData(c, 78, 3)
	const softCap = 3
	got := runXentCap(c, d, softCap, nil)
	for i := range got.dw {
		got.dw[i] -= 0.25
	}
	losses := make([]float32, c.N)
	ws := make([]float32, c.chunk*c.V)
	loss := func() float64 {
		crossEntropy(losses, nil, nil, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, nil, softCap, ws, c.chunk)
		var s float64
		for _, l := range losses {
			s += float64(l)
		}
		return float64(d.gradScale) * s
	}
	checkFiniteDifference(t, loss, 6, 12, 1e-4, 1e-2, fdOperand{"x", d.x, got.dx}, fdOperand{"w", d.w, got.dw})
}

func TestCrossEntropySoftCapDeterministicAcrossProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	c := xentCase{N: 300, C: 64, V: 3000, chunk: 128, ignored: 7}
	d := xentCapData(c, 22, 2)
	var first xentResult
	for n, p := range procs {
		runtime.GOMAXPROCS(p)
		got := runXentCap(c, d, 10, nil)
		if n == 0 {
			first = got
			continue
		}
		if !bitsEqual(first.losses, got.losses) || !bitsEqual(first.dx, got.dx) || !bitsEqual(first.dw, got.dw) {
			t.Fatalf("GOMAXPROCS=%d differs from GOMAXPROCS=%d", p, procs[0])
		}
	}
}

func TestCrossEntropySoftCapDoesNotAllocate(t *testing.T) {
	c := xentCase{N: 100, C: 32, V: 500, chunk: 32, ignored: 5}
	d := xentTestData(c, 3)
	r := runXentCap(c, d, 5, nil)
	ws := make([]float32, c.chunk*c.V)
	for _, k := range []struct {
		name string
		fn   func()
	}{
		{"loss only", func() {
			crossEntropy(r.losses, nil, nil, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, nil, 5, ws, c.chunk)
		}},
		{"with gradients", func() {
			crossEntropy(r.losses, r.dx, r.dw, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, nil, 5, ws, c.chunk)
		}},
	} {
		if _, own := ownAllocsPerRun(t, 5, k.fn); own != 0 {
			t.Errorf("%s: %v allocations per call outside Sgemm", k.name, own)
		}
	}
}

// TestCrossEntropySoftCapBackend runs the cap through tensor.CrossEntropy:
// the same bits as the slice-level kernel, and bad caps panic.
func TestCrossEntropySoftCapBackend(t *testing.T) {
	c := xentCase{N: 33, C: 24, V: 301, chunk: 8, ignored: 4}
	d := xentCapData(c, 5, 3)
	rs := randF32(rand.New(rand.NewPCG(2, 2)), c.N, 1)
	want := runXentCap(c, d, 4, rs)
	be := New()
	dw0 := make([]float32, c.V*c.C)
	for i := range dw0 {
		dw0[i] = 0.25
	}
	lb, dxb, dwb := upload(t, be, make([]float32, c.N)), upload(t, be, make([]float32, c.N*c.C)), upload(t, be, dw0)
	xb, wb, tb := upload(t, be, d.x), upload(t, be, d.w), uploadI32(t, be, d.targets)
	ws := upload(t, be, make([]float32, c.chunk*c.V))
	cfg := tensor.CrossEntropy{N: c.N, C: c.C, V: c.V, GradScale: d.gradScale, ChunkRows: c.chunk,
		RowScale: upload(t, be, rs), SoftCap: 4}
	be.CrossEntropy(lb, dxb, dwb, xb, wb, tb, ws, cfg)
	if !bitsEqual(download(t, be, lb), want.losses) || !bitsEqual(download(t, be, dxb), want.dx) || !bitsEqual(download(t, be, dwb), want.dw) {
		t.Errorf("Backend CrossEntropy with SoftCap differs from the slice-level kernel")
	}
	for _, bad := range []float32{-1, float32(math.NaN()), float32(math.Inf(1))} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SoftCap %v: no panic", bad)
				}
			}()
			cfg := cfg
			cfg.SoftCap = bad
			be.CrossEntropy(lb, dxb, dwb, xb, wb, tb, ws, cfg)
		}()
	}
}
