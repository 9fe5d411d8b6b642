package cpu

import (
	"fmt"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// extent returns how many elements a rows×cols matrix with row stride ld
// spans.
func extent(rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

// Gemm runs g as Batch calls of Sgemm on sub-slices of the buffers. A BF16
// operand (A or B; C is F32) is first widened to F32, which is exact, into
// a scratch slice the backend keeps: the product is the F32 product of the
// bfloat16 values.
func (be *Backend) Gemm(g tensor.Gemm) {
	batch := max(g.Batch, 1)
	if g.M < 0 || g.N < 0 || g.K < 0 || g.StrideA < 0 || g.StrideB < 0 || g.StrideC < 0 {
		panic(fmt.Sprintf("cpu.Gemm: negative shape or stride in %+v", g))
	}
	ar, ac := g.M, g.K
	if g.TransA {
		ar, ac = g.K, g.M
	}
	br, bc := g.K, g.N
	if g.TransB {
		br, bc = g.N, g.K
	}
	last := batch - 1
	a := be.actIn(slotA, "cpu.Gemm A", g.A, last*g.StrideA+extent(ar, ac, g.LDA))
	b := be.actIn(slotB, "cpu.Gemm B", g.B, last*g.StrideB+extent(br, bc, g.LDB))
	c := f32("cpu.Gemm C", g.C, last*g.StrideC+extent(g.M, g.N, g.LDC))
	for i := 0; i < batch; i++ {
		Sgemm(g.TransA, g.TransB, g.M, g.N, g.K, g.Alpha,
			a[i*g.StrideA:], g.LDA, b[i*g.StrideB:], g.LDB, g.Beta, c[i*g.StrideC:], g.LDC)
	}
}
