package cpu

import (
	"math"
	"runtime"
	"testing"
)

// narrowKernel is the packed kernel whose products the strided kernels
// stand in for (the AVX-512 one); the test is skipped without it.
func narrowKernel(t *testing.T) *gemmKernel {
	for _, k := range kernels {
		if k.narrow {
			return k
		}
	}
	t.Skip("no strided kernels on this machine (AVX-512)")
	return nil
}

// TestSgemmStridedMatchesSgemm: for every column-vector count, row
// remainder and both A layouts, the strided product agrees with a float64
// reference, leaves C's padding alone, and equals Sgemm on the AVX-512
// kernel bit for bit (same summation order and scaling, k within one K
// block).
func TestSgemmStridedMatchesSgemm(t *testing.T) {
	if !stridedGemmEnabled {
		t.Skip("no strided kernels on this machine (AVX-512)")
	}
	useKernel(t, narrowKernel(t))
	seed := uint64(100)
	for _, m := range []int{1, 2, 3, 5, 7, 8, 9, 13, 64} {
		for _, n := range []int{1, 15, 16, 17, 31, 32, 33, 48, 49, 64} {
			for _, k := range []int{0, 1, 7, 16, 64} {
				for _, tA := range []bool{false, true} {
					for _, sc := range [][2]float32{{1, 0}, {0.25, 1}, {-1.5, 0.5}} {
						seed++
						tc := gemmCase{tA: tA, m: m, n: n, k: k, alpha: sc[0], beta: sc[1], pad: int(seed % 3 * 2)}
						a, lda, b, ldb, c, ldc := tc.operands(seed)
						c0 := append([]float32(nil), c...)
						ars, aps := lda, 1
						if tA {
							ars, aps = 1, lda
						}
						sgemmStrided(m, n, k, tc.alpha, a, ars, aps, b, ldb, tc.beta, c, ldc)
						checkAgainstReference(t, tc, a, lda, b, ldb, c0, c, ldc)
						if k == 0 {
							continue
						}
						want := append([]float32(nil), c0...)
						stridedGemmEnabled = false // the packed path
						Sgemm(tA, false, m, n, k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
						stridedGemmEnabled = true
						for i := range want {
							if math.Float32bits(c[i]) != math.Float32bits(want[i]) && !(c[i] != c[i] && want[i] != want[i]) {
								t.Fatalf("%v: C[%d] = %g, Sgemm %g", tc, i, c[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestSgemmStridedPanicsOnShortOperands: operands too short for the shape
// are refused before any kernel reads them.
func TestSgemmStridedPanicsOnShortOperands(t *testing.T) {
	if !stridedGemmEnabled {
		t.Skip("no strided kernels on this machine (AVX-512)")
	}
	a, b, c := make([]float32, 4*8), make([]float32, 8*16), make([]float32, 4*16)
	for _, tc := range []struct {
		name    string
		m, n, k int
		a, b, c []float32
	}{
		{"n too wide", 4, 65, 8, a, b, make([]float32, 4*65)},
		{"A short", 4, 16, 8, a[:30], b, c},
		{"B short", 4, 16, 8, a, b[:120], c},
		{"C short", 4, 16, 8, a, b, c[:60]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			sgemmStrided(tc.m, tc.n, tc.k, 1, tc.a, 8, 1, tc.b, 16, 0, tc.c, 16)
		})
	}
}

// BenchmarkSgemmStrided reports GFLOP/s of the strided kernels on the
// attention block products of a head dim of 16: a narrow C over 64 steps
// (P·V, dS·K; transposed A: Pᵀ·dO, dSᵀ·Q) and a 64-wide C over 16 steps
// (Q·Kᵀ, dO·Vᵀ).
func BenchmarkSgemmStrided(b *testing.B) {
	if !stridedGemmEnabled {
		b.Skip("no strided kernels on this machine (AVX-512)")
	}
	for _, s := range []struct {
		name    string
		tA      bool
		m, n, k int
	}{
		{"64x16x64", false, 64, 16, 64},
		{"64x16x64-tA", true, 64, 16, 64},
		{"64x64x16", false, 64, 64, 16},
		{"64x48x64", false, 64, 48, 64},
	} {
		b.Run(s.name, func(b *testing.B) {
			a := make([]float32, 64*64)
			bm := make([]float32, 64*64)
			c := make([]float32, 64*64)
			ars, aps := 64, 1
			if s.tA {
				ars, aps = 1, 64
			}
			for b.Loop() {
				sgemmStrided(s.m, s.n, s.k, 1, a, ars, aps, bm, 64, 1, c, 64)
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestSgemmNarrowSameBits: Sgemm on a narrow C runs on the strided kernels
// (narrowGemm, in 64-column strips) and gives the packed path's bits for every transpose, with
// several K blocks and any number of workers.
func TestSgemmNarrowSameBits(t *testing.T) {
	if !stridedGemmEnabled {
		t.Skip("no strided kernels on this machine (AVX-512)")
	}
	useKernel(t, narrowKernel(t))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	seed := uint64(300)
	for _, sz := range [][3]int{{1024, 64, 64}, {200, 33, 600}, {64, 64, 1024}, {7, 1, 3}, {130, 48, 257}, {64, 192, 1024}, {100, 250, 70}} {
		for ti := range 4 {
			for _, sc := range [][2]float32{{1, 0}, {0.5, 1}} {
				seed++
				tc := gemmCase{tA: ti&1 != 0, tB: ti&2 != 0, m: sz[0], n: sz[1], k: sz[2], alpha: sc[0], beta: sc[1], pad: int(seed % 2 * 5)}
				a, lda, b, ldb, c, ldc := tc.operands(seed)
				want := append([]float32(nil), c...)
				stridedGemmEnabled = false
				Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
				stridedGemmEnabled = true
				for _, procs := range []int{1, 2, 5} {
					runtime.GOMAXPROCS(procs)
					got := append([]float32(nil), c...)
					Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, got, ldc)
					if !sameBits(got, want) {
						t.Fatalf("%v GOMAXPROCS %d: narrow path differs from the packed one", tc, procs)
					}
				}
			}
		}
	}
}
