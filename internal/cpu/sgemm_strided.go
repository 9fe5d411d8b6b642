package cpu

import "fmt"

// This file holds the strided product: C = alpha·op(A)·B + beta·C for a
// narrow C (n <= 64 columns) with both operands read where they lie, no
// packing. The attention tiles multiply 64×64 score blocks by head-dim-wide
// blocks (and 64-key blocks by short head dims); with a small head dim
// packing such operands costs as much as the product, so the attention
// kernels take this path where it exists (AVX-512) and fall back to Sgemm
// elsewhere.

// stridedKernel computes rows rows of a strided product (see
// bench/gen_sgemm_asm.py): rows × (16·nvec columns, the last vector under
// mask) of C = alpha·op(A)·B + beta·C, op(A)[r][p] = a[r·ars + p·aps].
type stridedKernel struct {
	rows int
	fn   func(k int, a *float32, ars, aps int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, mask uint16)
}

// stridedMaxN is the widest C the strided kernels compute.
const stridedMaxN = 64

// stridedGemmEnabled says whether the attention kernels use sgemmStrided
// (a variable so tests can run both paths).
var stridedGemmEnabled = vecAVX512

// sgemmStrided computes C = alpha·op(A)·B + beta·C where C is m×n (row
// stride ldc), B is k×n (row stride ldb) and op(A)[r][p] = a[r·ars +
// p·aps]: ars = lda, aps = 1 reads A as stored, ars = 1, aps = lda reads
// it transposed. 1 <= n <= stridedMaxN. Each element is summed over p in
// order (one FMA per step) and then scaled like the packed kernels, so the
// result does not depend on how rows are grouped. beta = 0 does not read C.
// Only call it when stridedGemmEnabled.
func sgemmStrided(m, n, k int, alpha float32, a []float32, ars, aps int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 1 || n > stridedMaxN || k < 0 {
		panic(fmt.Sprintf("cpu.sgemmStrided: bad shape m=%d n=%d k=%d", m, n, k))
	}
	if m == 0 {
		return
	}
	if need := (m-1)*ldc + n; len(c) < need {
		panic(fmt.Sprintf("cpu.sgemmStrided: C has %d elements, want %d", len(c), need))
	}
	if k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	if need := (m-1)*ars + (k-1)*aps + 1; len(a) < need {
		panic(fmt.Sprintf("cpu.sgemmStrided: A has %d elements, want %d", len(a), need))
	}
	if need := (k-1)*ldb + n; len(b) < need {
		panic(fmt.Sprintf("cpu.sgemmStrided: B has %d elements, want %d", len(b), need))
	}
	nvec := (n + 15) / 16
	mask := uint16(uint32(1)<<(n-16*(nvec-1)) - 1)
	r := 0
	for _, kern := range stridedKernelsAVX512[nvec-1] {
		for ; r+kern.rows <= m; r += kern.rows {
			kern.fn(k, &a[r*ars], ars, aps, &b[0], ldb, &c[r*ldc], ldc, alpha, beta, mask)
		}
	}
}
