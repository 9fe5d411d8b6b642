package cpu

import (
	"fmt"
	"testing"
)

// BenchmarkSgemm reports GFLOP/s of Sgemm on a few training shapes (the
// full side-by-side table against OpenBLAS is bench/bench_kernels.sh).
// Products with n <= 64 run on the strided kernels where AVX-512 has them;
// their "-packed" twins time the packed path for the ratio.
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
		{false, true, 1024, 64, 64},    // tiny forward q_proj
		{false, false, 1024, 64, 192},  // tiny dX of gate_proj
		{true, false, 64, 64, 1024},    // tiny dW of q_proj
		{false, true, 1024, 192, 64},   // tiny forward gate_proj
		{true, false, 64, 192, 1024},   // tiny dW of down_proj
		{false, true, 2048, 288, 288},  // stories15M forward q_proj
		{true, false, 288, 288, 2048},  // stories15M dW of q_proj
		{true, false, 768, 288, 2048},  // stories15M dW of gate_proj
		{false, false, 2048, 288, 768}, // stories15M dX of gate_proj
	} {
		name := fmt.Sprintf("tA=%v,tB=%v,%dx%dx%d", s.tA, s.tB, s.m, s.n, s.k)
		b.Run(name, func(b *testing.B) { benchSgemm(b, s.tA, s.tB, s.m, s.n, s.k) })
		if narrowFits(s.m, s.n) && stridedGemmEnabled {
			b.Run(name+"-packed", func(b *testing.B) {
				stridedGemmEnabled = false
				defer func() { stridedGemmEnabled = true }()
				benchSgemm(b, s.tA, s.tB, s.m, s.n, s.k)
			})
		}
	}
}

func benchSgemm(b *testing.B, tA, tB bool, m, n, k int) {
	a := make([]float32, m*k)
	bm := make([]float32, k*n)
	c := make([]float32, m*n)
	for i := range a {
		a[i] = float32(i%7) * 0.1
	}
	for i := range bm {
		bm[i] = float32(i%5) * 0.1
	}
	lda, ldb := k, n
	if tA {
		lda = m
	}
	if tB {
		ldb = k
	}
	for b.Loop() {
		Sgemm(tA, tB, m, n, k, 1, a, lda, bm, ldb, 0, c, n)
	}
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
