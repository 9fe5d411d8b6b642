package cpu

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// useKernel makes Sgemm run kern until the test ends.
func useKernel(t testing.TB, kern *gemmKernel) {
	t.Helper()
	prev := activeKernel.Swap(kern)
	t.Cleanup(func() { activeKernel.Store(prev) })
}

type gemmCase struct {
	tA, tB      bool
	m, n, k     int
	alpha, beta float32
	pad         int // extra elements per row beyond the width (stride > width)
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("tA=%v,tB=%v,%dx%dx%d,alpha=%g,beta=%g,pad=%d", tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.pad)
}

// operands builds random A, B and C (C filled with NaN when beta is 0) in the
// stored layouts of tc.
func (tc gemmCase) operands(seed uint64) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	fill := func(rows, cols, pad int) ([]float32, int) {
		ld := cols + pad
		x := make([]float32, max(rows*ld, 1))
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x, ld
	}
	if tc.tA {
		a, lda = fill(tc.k, tc.m, tc.pad)
	} else {
		a, lda = fill(tc.m, tc.k, tc.pad)
	}
	if tc.tB {
		b, ldb = fill(tc.n, tc.k, tc.pad)
	} else {
		b, ldb = fill(tc.k, tc.n, tc.pad)
	}
	c, ldc = fill(tc.m, tc.n, tc.pad)
	if tc.beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	return
}

// checkAgainstReference compares got with a float64 evaluation of tc on the
// original operands; the tolerance is relative to Σ|a||b| per element.
// Padding elements of C must be left untouched.
func checkAgainstReference(t *testing.T, tc gemmCase, a []float32, lda int, b []float32, ldb int, c0, got []float32, ldc int) {
	t.Helper()
	at := func(i, p int) float64 {
		if tc.tA {
			return float64(a[p*lda+i])
		}
		return float64(a[i*lda+p])
	}
	bt := func(p, j int) float64 {
		if tc.tB {
			return float64(b[j*ldb+p])
		}
		return float64(b[p*ldb+j])
	}
	bad := 0
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			var sum, mag float64
			for p := 0; p < tc.k; p++ {
				sum += at(i, p) * bt(p, j)
				mag += math.Abs(at(i, p) * bt(p, j))
			}
			want := float64(tc.alpha) * sum
			tol := 1e-5 * (math.Abs(float64(tc.alpha))*mag + 1)
			if tc.beta != 0 {
				cv := float64(c0[i*ldc+j])
				want += float64(tc.beta) * cv
				tol += 1e-6 * math.Abs(float64(tc.beta)*cv)
			}
			g := float64(got[i*ldc+j])
			if !(math.Abs(g-want) <= tol) {
				if bad < 5 {
					t.Errorf("%v: C[%d][%d] = %g, want %g (tol %g)", tc, i, j, g, want, tol)
				}
				bad++
			}
		}
		for j := tc.n; j < ldc && i*ldc+j < len(got); j++ {
			if g, w := got[i*ldc+j], c0[i*ldc+j]; math.Float32bits(g) != math.Float32bits(w) {
				t.Fatalf("%v: padding C[%d][%d] changed from %g to %g", tc, i, j, w, g)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%v: %d wrong elements", tc, bad)
	}
}

func runCase(t *testing.T, tc gemmCase, seed uint64) {
	t.Helper()
	a, lda, b, ldb, c, ldc := tc.operands(seed)
	c0 := append([]float32(nil), c...)
	Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	checkAgainstReference(t, tc, a, lda, b, ldb, c0, c, ldc)
}

func TestSgemmKernelsAgainstReference(t *testing.T) {
	sizes := [][3]int{
		{1, 1, 1}, {1, 7, 17}, {7, 1, 33}, {17, 33, 7}, {33, 17, 100},
		{12, 32, 5}, {13, 33, 1}, {100, 100, 100}, {257, 31, 19}, {5, 257, 300},
		{50, 70, 777},                                      // k spans several kc blocks
		{8, 16, 9}, {4, 48, 20}, {20, 48, 3}, {16, 64, 40}, // exact edge-kernel fits
	}
	scalars := [][2]float32{{1, 0}, {1, 1}, {0.5, -2}, {-1.5, 0}}
	for _, kern := range kernels {
		t.Run(kern.name, func(t *testing.T) {
			useKernel(t, kern)
			seed := uint64(1)
			for _, sz := range sizes {
				for ti := 0; ti < 4; ti++ {
					for si, sc := range scalars {
						seed++
						tc := gemmCase{
							tA: ti&1 != 0, tB: ti&2 != 0,
							m: sz[0], n: sz[1], k: sz[2],
							alpha: sc[0], beta: sc[1],
							pad: (si + ti) % 3 * 3,
						}
						runCase(t, tc, seed)
					}
				}
			}
		})
	}
}

// TestSgemmLargeBlocks covers several M, N and K blocks at once on the
// default kernel, with B packed whole and panel by panel.
func TestSgemmLargeBlocks(t *testing.T) {
	k := kernels[0]
	for _, budget := range []int{bPackBudget, 0} {
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
			setPackBudget(t, budget)
			for i, tc := range []gemmCase{
				{m: 3*k.mr + 5, n: k.nc + 3*k.nr + 1, k: 2*k.kc + 3, alpha: 1, beta: 0},
				{tA: true, tB: true, m: k.mc + 1, n: 2*k.nr - 1, k: k.kc + 1, alpha: 2, beta: 0.5, pad: 1},
				{tB: true, m: 3, n: 5*k.nr + 2, k: 3*k.kc - 1, alpha: 1, beta: 1},
			} {
				runCase(t, tc, uint64(100+i))
			}
		})
	}
}

// setPackBudget sets bPackBudget until the test ends (0 forces the
// panel-by-panel loop order).
func setPackBudget(t testing.TB, budget int) {
	prev := bPackBudget
	bPackBudget = budget
	t.Cleanup(func() { bPackBudget = prev })
}

func TestSgemmDegenerate(t *testing.T) {
	nan := float32(math.NaN())
	// k = 0: C = beta·C, and beta = 0 clears NaNs.
	c := []float32{nan, nan, nan, nan}
	Sgemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0, c, 2)
	for i, v := range c {
		if v != 0 {
			t.Fatalf("k=0 beta=0: c[%d] = %g, want 0", i, v)
		}
	}
	c = []float32{1, 2, 3, 4}
	Sgemm(true, true, 2, 2, 0, 1, nil, 2, nil, 1, 3, c, 2)
	for i, v := range c {
		if want := float32(3 * (i + 1)); v != want {
			t.Fatalf("k=0 beta=3: c[%d] = %g, want %g", i, v, want)
		}
	}
	// alpha = 0 ignores A and B even when they hold NaN.
	a := []float32{nan, nan}
	c = []float32{1, 2}
	Sgemm(false, false, 1, 2, 1, 0, a, 1, a, 2, 2, c, 2)
	if c[0] != 2 || c[1] != 4 {
		t.Fatalf("alpha=0: c = %v, want [2 4]", c)
	}
	// m = 0 or n = 0 touch nothing.
	Sgemm(false, false, 0, 3, 3, 1, nil, 3, make([]float32, 9), 3, 0, nil, 3)
	Sgemm(false, false, 3, 0, 3, 1, make([]float32, 9), 3, nil, 1, 0, nil, 1)
}

func TestSgemmPanicsOnShortOperands(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func()
	}{
		{"short A", func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}},
		{"short C", func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		}},
		{"small ldb", func() {
			Sgemm(false, true, 2, 2, 3, 1, make([]float32, 6), 3, make([]float32, 6), 2, 0, make([]float32, 4), 2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.call()
		})
	}
}

// TestSgemmDeterministicAcrossThreads checks bit-identical results for
// GOMAXPROCS 1, 2 and 8, and for both loop orders, with every kernel, on
// shapes that split over M and (for small M) over N.
func TestSgemmDeterministicAcrossThreads(t *testing.T) {
	shapes := []gemmCase{
		{m: 301, n: 203, k: 517, alpha: 1, beta: 0},
		{tA: true, m: 5, n: 901, k: 300, alpha: 0.7, beta: 0.3},
		{tB: true, m: 64, n: 300, k: 1000, alpha: 1, beta: 1, pad: 2},
		{tA: true, tB: true, m: 129, n: 77, k: 800, alpha: -1, beta: 0},
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, kern := range kernels {
		t.Run(kern.name, func(t *testing.T) {
			useKernel(t, kern)
			for i, tc := range shapes {
				a, lda, b, ldb, c0, ldc := tc.operands(uint64(200 + i))
				var ref []float32
				for _, budget := range []int{bPackBudget, 0} {
					setPackBudget(t, budget)
					for _, procs := range []int{1, 2, 8} {
						runtime.GOMAXPROCS(procs)
						c := append([]float32(nil), c0...)
						Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
						if ref == nil {
							ref = c
							checkAgainstReference(t, tc, a, lda, b, ldb, c0, c, ldc)
							continue
						}
						for j := range c {
							if math.Float32bits(c[j]) != math.Float32bits(ref[j]) {
								t.Fatalf("%v: GOMAXPROCS=%d budget=%d differs from the first run at %d: %g vs %g", tc, procs, budget, j, c[j], ref[j])
							}
						}
					}
				}
			}
		})
	}
}

func TestSgemmKernelSelected(t *testing.T) {
	if got, want := SgemmKernel(), kernels[0].name; got != want {
		t.Fatalf("active kernel %q, want best available %q", got, want)
	}
	if kernels[len(kernels)-1] != kernelGo {
		t.Fatal("the Go kernel must always be available as the last resort")
	}
}

func TestParallelForCoversRange(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 2, 3, 8} {
		runtime.GOMAXPROCS(procs)
		for _, tc := range []struct{ n, grain int }{{0, 1}, {1, 1}, {10, 3}, {100, 1}, {7, 0}, {5, 1}, {1001, 1}, {13, 4}} {
			// Once with even work, once with the first half slow, so the
			// other workers take chunks of its share: every item runs
			// once, in the same chunks.
			var chunks [2]map[[2]int]bool
			for slow := range 2 {
				hits := make([]atomic.Int32, tc.n)
				var mu sync.Mutex
				chunks[slow] = map[[2]int]bool{}
				parallelFor(tc.n, tc.grain, func(lo, hi int) {
					if slow == 1 && lo < tc.n/2 {
						time.Sleep(200 * time.Microsecond)
					}
					for i := lo; i < hi; i++ {
						hits[i].Add(1)
					}
					mu.Lock()
					chunks[slow][[2]int{lo, hi}] = true
					mu.Unlock()
				})
				for i := range hits {
					if h := hits[i].Load(); h != 1 {
						t.Fatalf("procs=%d n=%d grain=%d slow=%d: index %d visited %d times", procs, tc.n, tc.grain, slow, i, h)
					}
				}
			}
			if !maps.Equal(chunks[0], chunks[1]) {
				t.Fatalf("procs=%d n=%d grain=%d: chunks %v, then %v with a slow worker", procs, tc.n, tc.grain, chunks[0], chunks[1])
			}
		}
	}
}

// TestSgemmDoesNotAllocate checks that steady-state calls reuse their pack
// buffers and worker state, on the parallel path too.
func TestSgemmDoesNotAllocate(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, tc := range []gemmCase{
		{m: 200, n: 300, k: 100, alpha: 1, beta: 0},
		{tA: true, tB: true, m: 7, n: 500, k: 600, alpha: 1, beta: 1},
	} {
		a, lda, b, ldb, c, ldc := tc.operands(9)
		fn := func() { Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc) }
		fn()
		if n := testing.AllocsPerRun(20, fn); n != 0 {
			t.Errorf("%v: %v allocations per call", tc, n)
		}
	}
}
