package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

type xentCase struct {
	N, C, V, chunk int
	ignored        int // every ignored-th target is -1 (0: none)
}

func (c xentCase) String() string {
	return fmt.Sprintf("N%d_C%d_V%d_chunk%d_ign%d", c.N, c.C, c.V, c.chunk, c.ignored)
}

var xentCases = []xentCase{
	{N: 7, C: 16, V: 50, chunk: 3},
	{N: 33, C: 24, V: 301, chunk: 8, ignored: 4},
	{N: 64, C: 40, V: 1000, chunk: 64, ignored: 3},
	{N: 20, C: 8, V: 17, chunk: 100, ignored: 1}, // every row ignored
	{N: 50, C: 32, V: 129, chunk: 7, ignored: 5},
}

type xentData struct {
	x, w      []float32
	targets   []int32
	gradScale float32
}

func xentTestData(c xentCase, seed uint64) xentData {
	r := rand.New(rand.NewPCG(seed, 11))
	d := xentData{x: make([]float32, c.N*c.C), w: make([]float32, c.V*c.C),
		targets: make([]int32, c.N), gradScale: 1 / float32(c.N)}
	for i := range d.x {
		d.x[i] = float32(r.NormFloat64())
	}
	for i := range d.w {
		d.w[i] = float32(0.3 * r.NormFloat64())
	}
	for i := range d.targets {
		d.targets[i] = int32(r.IntN(c.V))
		if c.ignored > 0 && i%c.ignored == 0 {
			d.targets[i] = -1
		}
	}
	return d
}

// refCrossEntropy is the explicit float64 computation: full logits,
// softmax, -log p[target], and dL/dx, dL/dw for L = gradScale·Σ losses.
func refCrossEntropy(c xentCase, d xentData) (losses, dx, dw []float64) {
	N, C, V := c.N, c.C, c.V
	losses = make([]float64, N)
	dx = make([]float64, N*C)
	dw = make([]float64, V*C)
	z := make([]float64, V)
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
			z[v] = s
			mx = math.Max(mx, s)
		}
		var sum float64
		for v := range z {
			sum += math.Exp(z[v] - mx)
		}
		losses[i] = mx + math.Log(sum) - z[t]
		for v := 0; v < V; v++ {
			g := math.Exp(z[v]-mx) / sum
			if v == t {
				g--
			}
			g *= float64(d.gradScale)
			for k := 0; k < C; k++ {
				dx[i*C+k] += g * float64(d.w[v*C+k])
				dw[v*C+k] += g * float64(d.x[i*C+k])
			}
		}
	}
	return losses, dx, dw
}

type xentResult struct{ losses, dx, dw []float32 }

// runXent runs CrossEntropy with NaN-filled losses and dx (they must be
// overwritten) and dw starting at dw0 (it must be accumulated into).
func runXent(c xentCase, d xentData, grad bool, dw0 float32) xentResult {
	r := xentResult{losses: make([]float32, c.N)}
	for i := range r.losses {
		r.losses[i] = float32(math.NaN())
	}
	if grad {
		r.dx = make([]float32, c.N*c.C)
		for i := range r.dx {
			r.dx[i] = float32(math.NaN())
		}
		r.dw = make([]float32, c.V*c.C)
		for i := range r.dw {
			r.dw[i] = dw0
		}
	}
	ws := make([]float32, c.chunk*c.V)
	CrossEntropy(r.losses, r.dx, r.dw, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, ws, c.chunk)
	return r
}

func TestCrossEntropyAgainstReference(t *testing.T) {
	for i, c := range xentCases {
		t.Run(c.String(), func(t *testing.T) {
			d := xentTestData(c, uint64(i+1))
			losses, dx, dw := refCrossEntropy(c, d)
			const dw0 = 0.25
			for j := range dw {
				dw[j] += dw0
			}
			got := runXent(c, d, true, dw0)
			attnClose(t, "losses", got.losses, losses, 2e-6)
			attnClose(t, "dx", got.dx, dx, 1e-5)
			attnClose(t, "dw", got.dw, dw, 1e-5)
			// Without gradients the losses are the same bits.
			if nog := runXent(c, d, false, 0); !bitsEqual(nog.losses, got.losses) {
				t.Errorf("losses differ between dx == nil and dx != nil")
			}
		})
	}
}

// TestCrossEntropyFiniteDifference spot-checks dx and dw against central
// differences of gradScale·Σ losses computed by the float32 kernel.
func TestCrossEntropyFiniteDifference(t *testing.T) {
	c := xentCase{N: 12, C: 16, V: 40, chunk: 5, ignored: 4}
	d := xentTestData(c, 77)
	got := runXent(c, d, true, 0)
	losses := make([]float32, c.N)
	ws := make([]float32, c.chunk*c.V)
	loss := func() float64 {
		CrossEntropy(losses, nil, nil, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, ws, c.chunk)
		var s float64
		for _, l := range losses {
			s += float64(l)
		}
		return float64(d.gradScale) * s
	}
	checkFiniteDifference(t, loss, 5, 12, 1e-4, 1e-2, fdOperand{"x", d.x, got.dx}, fdOperand{"w", d.w, got.dw})
}

func TestCrossEntropyDeterministicAcrossProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	c := xentCase{N: 300, C: 64, V: 3000, chunk: 128, ignored: 7}
	d := xentTestData(c, 21)
	var first xentResult
	for n, p := range []int{1, 2, 16} {
		runtime.GOMAXPROCS(p)
		got := runXent(c, d, true, 0.5)
		if n == 0 {
			first = got
			continue
		}
		if !bitsEqual(first.losses, got.losses) || !bitsEqual(first.dx, got.dx) || !bitsEqual(first.dw, got.dw) {
			t.Fatalf("GOMAXPROCS=%d differs from GOMAXPROCS=1", p)
		}
	}
}

func TestCrossEntropyDoesNotAllocate(t *testing.T) {
	c := xentCase{N: 100, C: 32, V: 500, chunk: 32, ignored: 5}
	d := xentTestData(c, 3)
	r := runXent(c, d, true, 0)
	ws := make([]float32, c.chunk*c.V)
	for _, k := range []struct {
		name string
		fn   func()
	}{
		{"loss only", func() {
			CrossEntropy(r.losses, nil, nil, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, ws, c.chunk)
		}},
		{"with gradients", func() {
			CrossEntropy(r.losses, r.dx, r.dw, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, ws, c.chunk)
		}},
	} {
		total, own := ownAllocsPerRun(t, 5, k.fn)
		if own != 0 {
			t.Errorf("%s: %v allocations per call outside Sgemm", k.name, own)
		}
		if total != 0 {
			t.Logf("%s: %v allocations per call, all inside Sgemm", k.name, total)
		}
	}
}

func TestCrossEntropyPanicsOnBadArgs(t *testing.T) {
	const N, C, V = 4, 8, 10
	x, w := make([]float32, N*C), make([]float32, V*C)
	l, ws := make([]float32, N), make([]float32, 2*V)
	tg := []int32{1, 2, -1, 3}
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"target out of range", func() { CrossEntropy(l, nil, nil, x, w, []int32{1, 2, 10, 0}, N, C, V, 1, ws, 2) }},
		{"short workspace", func() { CrossEntropy(l, nil, nil, x, w, tg, N, C, V, 1, ws[:V], 2) }},
		{"zero chunkRows", func() { CrossEntropy(l, nil, nil, x, w, tg, N, C, V, 1, ws, 0) }},
		{"short w", func() { CrossEntropy(l, nil, nil, x, w[:5], tg, N, C, V, 1, ws, 2) }},
		{"short dw", func() { CrossEntropy(l, make([]float32, N*C), w[:5], x, w, tg, N, C, V, 1, ws, 2) }},
		{"short losses", func() { CrossEntropy(l[:2], nil, nil, x, w, tg, N, C, V, 1, ws, 2) }},
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

// BenchmarkCrossEntropy runs the stories15M LM head (N=2048, C=288,
// V=32000) in chunks of 256 rows. GFLOP/s counts the products: 2·N·C·V
// for the logits, 6·N·C·V with the dx and dw products.
func BenchmarkCrossEntropy(b *testing.B) {
	for _, c := range []xentCase{
		{N: 2048, C: 288, V: 32000, chunk: 64},
		{N: 2048, C: 288, V: 32000, chunk: 256},
		{N: 2048, C: 288, V: 32000, chunk: 512},
		{N: 1024, C: 64, V: 512, chunk: 512}, // the tiny model of bench-train
	} {
		chunk := c.chunk
		d := xentTestData(c, 1)
		r := runXent(c, d, true, 0)
		ws := make([]float32, c.chunk*c.V)
		flops := 2 * float64(c.N) * float64(c.C) * float64(c.V)
		name := fmt.Sprintf("V=%d/chunk=%d", c.V, chunk)
		b.Run(name+"/loss", func(b *testing.B) {
			for b.Loop() {
				CrossEntropy(r.losses, nil, nil, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, ws, c.chunk)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(name+"/grad", func(b *testing.B) {
			for b.Loop() {
				CrossEntropy(r.losses, r.dx, r.dw, d.x, d.w, d.targets, c.N, c.C, c.V, d.gradScale, ws, c.chunk)
			}
			b.ReportMetric(3*flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
