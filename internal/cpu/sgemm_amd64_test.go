//go:build amd64 && !purego

package cpu

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// TestTransposeRows4MatchesGo checks the assembly transposes (AVX-512 and
// SSE) against the portable loop, for lengths around the vector widths and
// padded strides; elements outside the transposed ones must stay as they
// were.
func TestTransposeRows4MatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	for _, avx512 := range []bool{true, false} {
		if avx512 && !cpu.X86.HasAVX512F {
			continue
		}
		transposeAVX512 = avx512
		for _, n := range []int{1, 3, 4, 5, 15, 16, 17, 31, 32, 36, 47, 64, 100, 257} {
			for _, strides := range [][2]int{{4, n}, {12, n + 3}, {32, 2*n + 1}} {
				dstStride, srcStride := strides[0], strides[1]
				src := randF32(r, 3*srcStride+n, 1)
				want := randF32(r, (n-1)*dstStride+4+dstStride, 1)
				got := append([]float32(nil), want...)
				transposeRows4Go(want, dstStride, src, srcStride, n)
				transposeRows4(got, dstStride, src, srcStride, n)
				if !bitsEqual(got, want) {
					t.Errorf("avx512=%v n=%d strides=%v: transposeRows4 differs from the Go loop", avx512, n, strides)
				}
			}
		}
	}
	transposeAVX512 = true
}
