package cpu

import (
	"fmt"
	"testing"
)

// BenchmarkSgemm reports GFLOP/s of Sgemm on a few training shapes (the
// full side-by-side table against OpenBLAS is bench/bench_kernels.sh).
func BenchmarkSgemm(b *testing.B) {
	for _, s := range []struct {
		tA, tB  bool
		m, n, k int
	}{
		{false, false, 1024, 1024, 1024},
		{false, true, 4096, 768, 288},  // forward y = x·Wᵀ
		{false, false, 4096, 288, 768}, // dX = dy·W
		{true, false, 288, 768, 4096},  // dW = dyᵀ·x
		{true, false, 64, 172, 1024},   // tiny model dW
	} {
		name := fmt.Sprintf("tA=%v,tB=%v,%dx%dx%d", s.tA, s.tB, s.m, s.n, s.k)
		b.Run(name, func(b *testing.B) {
			a := make([]float32, s.m*s.k)
			bm := make([]float32, s.k*s.n)
			c := make([]float32, s.m*s.n)
			for i := range a {
				a[i] = float32(i%7) * 0.1
			}
			for i := range bm {
				bm[i] = float32(i%5) * 0.1
			}
			lda, ldb := s.k, s.n
			if s.tA {
				lda = s.m
			}
			if s.tB {
				ldb = s.k
			}
			for b.Loop() {
				Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
			}
			b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
