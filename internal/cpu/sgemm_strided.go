package cpu

import (
	"fmt"
	"runtime"
)

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

// narrowFits reports whether Sgemm runs an m×n product on the strided
// kernels (narrowGemm, in strips of stridedMaxN columns) rather than
// packing: always for n <= 64, where packing costs most next to the
// product, and up to four strips for short M (the tiny model's 192-wide
// products and its weight gradients, whose M of 64 or 192 rows the packed
// path splits badly over the workers). Measured with BenchmarkSgemm (the
// "-packed" twins); wide and tall products stay packed.
func narrowFits(m, n int) bool {
	return n <= stridedMaxN || n <= 4*stridedMaxN && m <= 1024
}

// narrowJob is one Sgemm call run on the strided kernels (see
// narrowGemm). Jobs are recycled, their transposed-B scratch only grows, and
// the row function is bound once per job, so a call allocates nothing.
type narrowJob struct {
	transA        bool
	m, n, k, kc   int
	alpha, beta   float32
	a, b, c       []float32
	lda, ldb, ldc int
	bt            []float32 // op(B), k×n, when B is stored transposed
	fn            func(lo, hi int)
}

var narrowJobs reuseList[narrowJob]

// narrowGemm is Sgemm on the strided kernels, in strips of stridedMaxN
// columns: op(A) is read where it lies (no packing), op(B) as stored or,
// when transposed, transposed once into a k×n scratch. It sums over the same K blocks as the
// packed path (kBlock of kern), each block scaled and accumulated into C the
// same way, so it gives the same bits; rows are split over the workers.
// Arguments are validated by Sgemm; k > 0, alpha != 0.
func narrowGemm(kern *gemmKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	j := narrowJobs.get()
	if j.fn == nil {
		j.fn = j.rows
	}
	j.transA, j.m, j.n, j.k, j.kc = transA, m, n, k, kBlock(kern, k)
	j.alpha, j.beta = alpha, beta
	j.a, j.lda, j.c, j.ldc = a, lda, c, ldc
	j.b, j.ldb = b, ldb
	if transB {
		// op(B)[p][q] = b[q·ldb + p]: four columns of op(B) at a time.
		j.bt = growScratch(j.bt, k*n)
		q := 0
		for ; q+4 <= n; q += 4 {
			transposeRows4(j.bt[q:], n, b[q*ldb:], ldb, k)
		}
		for ; q < n; q++ {
			for p := range k {
				j.bt[p*n+q] = b[q*ldb+p]
			}
		}
		j.b, j.ldb = j.bt, n
	}
	workers := runtime.GOMAXPROCS(0)
	if f := 2 * m * n * k / minFlopsPerWorker; f < workers {
		workers = max(f, 1)
	}
	parallelFor(m, ceilDiv(m, workers), j.fn)
	j.a, j.b, j.c = nil, nil, nil // do not pin the caller's matrices
	narrowJobs.put(j)
}

// rows computes rows lo..hi-1 of C, K block by K block.
func (j *narrowJob) rows(lo, hi int) {
	ars, aps := j.lda, 1
	if j.transA {
		ars, aps = 1, j.lda
	}
	for pc := 0; pc < j.k; pc += j.kc {
		kb := min(j.kc, j.k-pc)
		beta := j.beta
		if pc > 0 {
			beta = 1
		}
		for q := 0; q < j.n; q += stridedMaxN {
			sgemmStrided(hi-lo, min(stridedMaxN, j.n-q), kb, j.alpha, j.a[lo*ars+pc*aps:], ars, aps, j.b[pc*j.ldb+q:], j.ldb, beta, j.c[lo*j.ldc+q:], j.ldc)
		}
	}
}
