package cpu

import "fmt"

// packedB is op(B), a k×n matrix, packed once for the micro-kernel kern in
// the layout gemm packs it in (per kc block of K, in order: ceil(n/nr)
// panels of kb groups of nr columns), so that several products with the
// same right operand skip its packing: the fused cross-entropy multiplies
// every chunk of rows by the same LM head. Products through a packedB give
// the same bits as plain Sgemm (same K blocks, same kernel).
type packedB struct {
	kern    *gemmKernel
	k, n    int
	kc      int
	nPanels int
	buf     []float32

	// The packing job, run over panels by parallelFor.
	b      []float32
	ldb    int
	transB bool
	fn     func(lo, hi int)
}

// pack packs op(B) (k×n; b row-major with stride ldb, transposed if
// transB) for kern, reusing the buffer of an earlier pack.
func (p *packedB) pack(kern *gemmKernel, transB bool, k, n int, b []float32, ldb int) {
	if k <= 0 || n <= 0 {
		panic(fmt.Sprintf("cpu: packedB: bad shape k=%d n=%d", k, n))
	}
	if transB {
		checkOperand("B", b, n, k, ldb)
	} else {
		checkOperand("B", b, k, n, ldb)
	}
	p.kern, p.k, p.n = kern, k, n
	p.kc = kBlock(kern, k)
	p.nPanels = ceilDiv(n, kern.nr)
	p.buf = growBuf(p.buf, p.nPanels*kern.nr*k)
	p.b, p.ldb, p.transB = b, ldb, transB
	if p.fn == nil {
		p.fn = p.packPanels
	}
	// About 64K floats per task: enough to amortise waking a worker.
	parallelFor(p.nPanels, max(1, (1<<16)/(kern.nr*k)), p.fn)
	p.b = nil
}

// packPanels packs panels lo..hi-1 of every K block.
func (p *packedB) packPanels(lo, hi int) {
	nr := p.kern.nr
	for pc := 0; pc < p.k; pc += p.kc {
		kb := min(p.kc, p.k-pc)
		packB(p.buf[pc*p.nPanels*nr:], p.b, p.ldb, p.transB, pc, kb, 0, p.n, nr, lo, hi)
	}
}

// sgemmPacked computes C = alpha·op(A)·B + beta·C like Sgemm, with B the
// k×n matrix in pre (k = pre.k, n = pre.n).
func sgemmPacked(transA bool, m int, alpha float32, a []float32, lda int, pre *packedB, beta float32, c []float32, ldc int) {
	n, k := pre.n, pre.k
	if m < 0 {
		panic(fmt.Sprintf("cpu.Sgemm: negative dimension m=%d", m))
	}
	if m == 0 {
		return
	}
	checkOperand("C", c, m, n, ldc)
	if alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	if transA {
		checkOperand("A", a, k, m, lda)
	} else {
		checkOperand("A", a, m, k, lda)
	}
	gemm(pre.kern, transA, false, m, n, k, alpha, a, lda, nil, 0, beta, c, ldc, pre)
}
