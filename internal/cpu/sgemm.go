package cpu

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major float32
// matrices, where op(X) is X or Xᵀ as transA/transB say. op(A) is m×k,
// op(B) is k×n, C is m×n; lda, ldb, ldc are the row strides of A, B and C as
// stored. beta = 0 overwrites C without reading it (NaNs in C do not leak).
//
// The implementation is Goto/BLIS-style: op(B) is packed into kc×nc panels
// shared by all workers, each worker packs mc×kc blocks of op(A) and runs an
// assembly micro-kernel (AVX-512 12×32 or AVX2+FMA 6×16, picked at run time;
// a 4×4 Go kernel elsewhere) over them. Packing absorbs the transposes.
// A narrow C (see narrowFits) on AVX-512 skips the packing instead: the
// strided kernels read op(A) in place (narrowGemm), with the same bits.
//
// The result is bit-identical whatever the number of threads: work is split
// over M and N only, never K, so each element of C is reduced over k in one
// fixed order (fixed kc blocks, each summed in order by one kernel call).
//
// Sgemm panics if a slice is too short or a stride too small for the shape.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("cpu.Sgemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	if m == 0 || n == 0 {
		return
	}
	checkOperand("C", c, m, n, ldc)
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	if transA {
		checkOperand("A", a, k, m, lda)
	} else {
		checkOperand("A", a, m, k, lda)
	}
	if transB {
		checkOperand("B", b, n, k, ldb)
	} else {
		checkOperand("B", b, k, n, ldb)
	}
	kern := activeKernel.Load()
	if kern.narrow && stridedGemmEnabled && narrowFits(m, n) {
		narrowGemm(kern, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	gemm(kern, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
}

// checkOperand panics unless x holds a rows×cols row-major matrix with row
// stride ld.
func checkOperand(name string, x []float32, rows, cols, ld int) {
	if ld < max(cols, 1) {
		panic(fmt.Sprintf("cpu.Sgemm: stride of %s is %d, below its %d columns", name, ld, cols))
	}
	if rows > 0 && cols > 0 && len(x) < (rows-1)*ld+cols {
		panic(fmt.Sprintf("cpu.Sgemm: %s has %d elements, %d×%d with stride %d needs %d", name, len(x), rows, cols, ld, (rows-1)*ld+cols))
	}
}

// scaleC sets C = beta·C (C = 0 when beta is 0, whatever C held).
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		if beta == 1 {
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// gemmKernel describes one micro-kernel and the cache blocking tuned for it.
type gemmKernel struct {
	name string
	// mr×nr is the register tile; fn computes one full tile.
	mr, nr int
	// kc, mc, nc are the largest K, M and N blocks (mc a multiple of mr, nc
	// of nr).
	kc, mc, nc int
	// fn computes c[r*ldc+j] = alpha·Σ_p a[p*mr+r]·b[p*nr+j] + beta·c[r*ldc+j]
	// for the mr×nr tile, summing p = 0..k-1 in order; beta = 0 does not
	// read c.
	fn func(k int, a, b, c []float32, ldc int, alpha, beta float32)
	// edges optionally lists kernels for partial tiles, smallest first;
	// each computes a rows×cols corner of the tile from the same packed
	// panels with the same per-element arithmetic as fn.
	edges []edgeKernel
	// narrow says that products with n <= stridedMaxN run on the strided
	// kernels (narrowGemm), which give the same bits as fn and its edges.
	narrow bool
}

// edgeKernel computes the top-left rows×cols of an mr×nr tile.
type edgeKernel struct {
	rows, cols int
	fn         func(k int, a, b, c []float32, ldc int, alpha, beta float32)
}

// kernels lists the usable micro-kernels, best first; activeKernel is the one
// Sgemm uses (tests may switch it).
var (
	kernels      = availableKernels()
	activeKernel atomic.Pointer[gemmKernel]
)

func init() { activeKernel.Store(kernels[0]) }

// SgemmKernel names the micro-kernel Sgemm runs on this machine: "avx512"
// (12×32 zmm tile), "avx2" (6×16 ymm tile, AVX2+FMA) or "go" (portable).
func SgemmKernel() string { return activeKernel.Load().name }

// minFlopsPerWorker keeps small products on few goroutines: below it the
// cost of waking a worker exceeds its share of the work.
const minFlopsPerWorker = 1 << 21

// gemmState is one Sgemm call in flight: its arguments, blocking, pack
// buffers and the progress of its parallel phases. States are recycled
// through a free list (never released to the GC: fresh pages are expensive
// to touch here) and their buffers only grow, so a steady stream of calls
// allocates nothing.
type gemmState struct {
	bufB    []float32   // packed op(B) block, shared by the workers
	pre     []float32   // or all of op(B), packed by the caller (packedB)
	bufA    [][]float32 // per-worker packed op(A) block
	bufTile [][]float32 // per-worker scratch tile for edges
	group   taskGroup

	kern           *gemmKernel
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
	kc, mc         int
	mBlocks        int

	// The current B block: columns jc..jc+nb (nPanels panels, split
	// nSplit ways per A block) and K rows ps..ps+ks.
	packing             bool // phase: packing B, else computing
	jc, nb, nPanels     int
	nSplit, units       int
	ps, ks, packWorkers int
	next                atomic.Int64
}

var (
	stateMu   sync.Mutex
	stateFree []*gemmState
)

func getState(workers, bSize, aSize, tileSize int) *gemmState {
	stateMu.Lock()
	var g *gemmState
	if n := len(stateFree); n > 0 {
		g = stateFree[n-1]
		stateFree = stateFree[:n-1]
	} else {
		g = new(gemmState)
	}
	stateMu.Unlock()
	g.bufB = growBuf(g.bufB, bSize)
	for len(g.bufA) < workers {
		g.bufA = append(g.bufA, nil)
		g.bufTile = append(g.bufTile, nil)
	}
	for w := 0; w < workers; w++ {
		g.bufA[w] = growBuf(g.bufA[w], aSize)
		g.bufTile[w] = growBuf(g.bufTile[w], tileSize)
	}
	return g
}

func putState(g *gemmState) {
	g.a, g.b, g.c, g.pre, g.kern = nil, nil, nil, nil, nil // do not pin the caller's matrices
	stateMu.Lock()
	stateFree = append(stateFree, g)
	stateMu.Unlock()
}

func growBuf(x []float32, n int) []float32 {
	if cap(x) >= n {
		return x[:n]
	}
	return make([]float32, n)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// kBlock is the K block gemm uses with kern for a product over k: it
// depends on k and the kernel only.
func kBlock(kern *gemmKernel, k int) int { return ceilDiv(k, ceilDiv(k, kern.kc)) }

// bPackBudget bounds, in floats, a packed op(B) block spanning several kc
// blocks of K: when k·n fits, B is packed once and each worker runs all K
// blocks of its rows in one go (two parallel phases per call); otherwise B
// is packed nc columns and as many kc blocks as fit at a time. With a budget
// of 0 this is the classic one kc×nc panel at a time.
var bPackBudget = 1 << 21 // a variable so tests can force both loop orders

// gemm runs the blocked product with micro-kernel kern; arguments are
// validated and k > 0, alpha != 0. With pre non-nil, op(B) is taken from
// pre (packed for kern, k and n) and b, ldb, transB are ignored.
func gemm(kern *gemmKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, pre *packedB) {
	mr, nr := kern.mr, kern.nr

	// K blocks depend on k and the kernel only, so the summation order of
	// every element is the same for any thread count and loop order.
	kc := kBlock(kern, k)

	workers := runtime.GOMAXPROCS(0)
	if f := 2 * m * n * k / minFlopsPerWorker; f < workers {
		workers = max(f, 1)
	}
	// M blocks: a multiple of the workers in number (balanced when the
	// cores are free), up to 4 per worker when M allows (so a worker can
	// take over work when another is descheduled), each at most kern.mc
	// rows and a whole number of mr tiles.
	mTiles := ceilDiv(m, mr)
	blocks := workers * max(ceilDiv(mTiles, workers*(kern.mc/mr)), min(4, mTiles/(2*workers)), 1)
	mc := ceilDiv(mTiles, blocks) * mr
	nAll := ceilDiv(n, nr) * nr
	nc := min(kern.nc, nAll)
	if k*nAll <= bPackBudget {
		nc = nAll
	}
	// kSpan: the K rows covered by one packed B block, a whole number of
	// kc blocks within the budget (fewer parallel phases for long K).
	kSpan := min(k, max(kc, bPackBudget/nc/kc*kc))
	bSize := kSpan * nc
	// fixedSplit: the N split of the prepacked path (0: the default one).
	fixedSplit := 0
	if pre != nil {
		// All of op(B) is packed already: one block, no packing phase.
		// Packed B is then streamed from memory, so for a short M every
		// panel should serve all the rows of a worker while in cache, and
		// each A block should be packed once: with many panels, one M
		// block and the panels split over the workers (several parts each,
		// for balance); with few, the M tiles split over the workers.
		nc, kSpan, bSize = nAll, k, 0
		if nPanels := nAll / nr; mTiles*mr <= kern.mc && nPanels >= 8*workers {
			mc = mTiles * mr
			fixedSplit = min(3*workers, nPanels/8)
		} else {
			mc = ceilDiv(mTiles, workers*max(1, ceilDiv(mTiles, workers*(kern.mc/mr)))) * mr
			fixedSplit = 1
		}
	}

	g := getState(workers, bSize, kc*mc, mr*nr)
	defer putState(g)
	if pre != nil {
		g.pre = pre.buf
	}
	g.kern, g.transA, g.transB = kern, transA, transB
	g.m, g.n, g.k, g.alpha, g.beta = m, n, k, alpha, beta
	g.a, g.b, g.c, g.lda, g.ldb, g.ldc = a, b, c, lda, ldb, ldc
	g.kc, g.mc, g.mBlocks = kc, mc, ceilDiv(m, mc)

	for jc := 0; jc < n; jc += nc {
		g.jc, g.nb = jc, min(nc, n-jc)
		g.nPanels = ceilDiv(g.nb, nr)
		// With few M blocks for the workers, also split the panels of the
		// N block (each part packs the same A block), aiming at 3 units per
		// worker so uneven edge blocks still balance.
		g.nSplit = 1
		switch {
		case fixedSplit > 0:
			g.nSplit = fixedSplit
		case workers > 1 && g.mBlocks < 3*workers:
			g.nSplit = min(ceilDiv(3*workers, g.mBlocks), g.nPanels)
		}
		g.units = g.mBlocks * g.nSplit
		for ps := 0; ps < k; ps += kSpan {
			g.ps, g.ks = ps, min(kSpan, k-ps)
			if pre == nil {
				// Packing is cheap next to waking a worker: split it only when large.
				g.packWorkers = min(workers, max(1, g.nPanels*g.ks*nr/(1<<16)))
				g.packing = true
				runTask(g.packWorkers, g, &g.group)
				g.packing = false
			}
			g.next.Store(0)
			runTask(min(workers, g.units), g, &g.group)
		}
	}
}

// runWorker is worker w's share of the current phase.
func (g *gemmState) runWorker(w int) {
	nr := g.kern.nr
	// Packed B for K rows ps..ps+ks: one run of panels per kc block, the
	// block starting at row pc held at (pc-ps)·nPanels·nr.
	bp := g.pre
	if bp == nil {
		bp = g.bufB[:g.nPanels*g.ks*nr]
	}
	if g.packing {
		lo, hi := w*g.nPanels/g.packWorkers, (w+1)*g.nPanels/g.packWorkers
		for pc := g.ps; pc < g.ps+g.ks; pc += g.kc {
			kb := min(g.kc, g.k-pc)
			packB(bp[(pc-g.ps)*g.nPanels*nr:], g.b, g.ldb, g.transB, pc, kb, g.jc, g.nb, nr, lo, hi)
		}
		return
	}
	ap, tile := g.bufA[w], g.bufTile[w]
	for {
		u := int(g.next.Add(1) - 1)
		if u >= g.units {
			return
		}
		ib, js := u/g.nSplit, u%g.nSplit
		i0 := ib * g.mc
		mb := min(g.mc, g.m-i0)
		jlo, jhi := js*g.nPanels/g.nSplit, (js+1)*g.nPanels/g.nSplit
		for pc := g.ps; pc < g.ps+g.ks; pc += g.kc {
			kb := min(g.kc, g.k-pc)
			beta := g.beta
			if pc > 0 {
				beta = 1
			}
			packA(ap, g.a, g.lda, g.transA, i0, mb, pc, kb, g.kern.mr)
			macroKernel(g.kern, kb, ap, bp[(pc-g.ps)*g.nPanels*nr:], i0, mb, g.jc, g.nb, jlo, jhi, g.alpha, beta, g.c, g.ldc, g.m, g.n, tile)
		}
	}
}

// macroKernel multiplies the packed mb×kb block of A (rows from i0) by the
// packed panels jlo..jhi of B (columns from jc) into C.
func macroKernel(kern *gemmKernel, kb int, ap, bp []float32, i0, mb, jc, nb, jlo, jhi int, alpha, beta float32, c []float32, ldc, m, n int, tile []float32) {
	mr, nr := kern.mr, kern.nr
	fn := kern.fn
	mPanels := ceilDiv(mb, mr)
	for jp := jlo; jp < jhi; jp++ {
		j := jc + jp*nr
		cols := min(nr, n-j)
		bpan := bp[jp*kb*nr : (jp+1)*kb*nr]
		for ip := 0; ip < mPanels; ip++ {
			i := i0 + ip*mr
			rows := min(mr, i0+mb-i) // the block's rows, not all of C's
			apan := ap[ip*kb*mr : (ip+1)*kb*mr]
			if rows == mr && cols == nr {
				fn(kb, apan, bpan, c[i*ldc+j:], ldc, alpha, beta)
				continue
			}
			// Edge tile: the smallest kernel that covers it, straight into C
			// when it fits exactly, else on a scratch copy. Every kernel
			// does the same per-element arithmetic as fn.
			efn := fn
			for _, e := range kern.edges {
				if e.rows >= rows && e.cols >= cols {
					if e.rows == rows && e.cols == cols {
						e.fn(kb, apan, bpan, c[i*ldc+j:], ldc, alpha, beta)
						efn = nil
					} else {
						efn = e.fn
					}
					break
				}
			}
			if efn == nil {
				continue
			}
			if beta != 0 {
				for r := 0; r < rows; r++ {
					copy(tile[r*nr:r*nr+cols], c[(i+r)*ldc+j:(i+r)*ldc+j+cols])
				}
			}
			efn(kb, apan, bpan, tile, nr, alpha, beta)
			for r := 0; r < rows; r++ {
				copy(c[(i+r)*ldc+j:(i+r)*ldc+j+cols], tile[r*nr:r*nr+cols])
			}
		}
	}
}

// packA packs rows i0..i0+mb and columns p0..p0+kb of op(A) into dst as
// ceil(mb/mr) panels of kb groups of mr values (zero padded).
func packA(dst, a []float32, lda int, trans bool, i0, mb, p0, kb, mr int) {
	for ip := 0; ip*mr < mb; ip++ {
		rows := min(mr, mb-ip*mr)
		d := dst[ip*kb*mr : (ip+1)*kb*mr]
		row0 := i0 + ip*mr
		if trans {
			// op(A)[i][p] = a[p*lda+i]: each k step is a contiguous run.
			if rows == mr {
				copyRows(d, a[p0*lda+row0:], kb, mr, lda)
				continue
			}
			for p := 0; p < kb; p++ {
				dp := d[p*mr : p*mr+mr]
				copy(dp[:rows], a[(p0+p)*lda+row0:][:rows])
				clear(dp[rows:])
			}
			continue
		}
		r := 0
		for ; r+4 <= rows; r += 4 {
			transposeRows4(d[r:], mr, a[(row0+r)*lda+p0:], lda, kb)
		}
		for ; r < rows; r++ {
			s := a[(row0+r)*lda+p0:][:kb]
			for p, v := range s {
				d[p*mr+r] = v
			}
		}
		if rows < mr {
			for p := 0; p < kb; p++ {
				clear(d[p*mr+rows : p*mr+mr])
			}
		}
	}
}

// packB packs panels jlo..jhi (nr columns each, from column j0; the block is
// nb wide) of rows p0..p0+kb of op(B) into dst as kb groups of nr values
// per panel (zero padded).
func packB(dst, b []float32, ldb int, trans bool, p0, kb, j0, nb, nr, jlo, jhi int) {
	for jp := jlo; jp < jhi; jp++ {
		cols := min(nr, nb-jp*nr)
		d := dst[jp*kb*nr : (jp+1)*kb*nr]
		col0 := j0 + jp*nr
		if !trans && cols == nr {
			copyRows(d, b[p0*ldb+col0:], kb, nr, ldb)
			continue
		}
		if !trans {
			copyRowsPadded(d, b[p0*ldb+col0:], kb, cols, nr, ldb)
			continue
		}
		// op(B)[p][j] = b[j*ldb+p]: transpose four columns at a time.
		q := 0
		for ; q+4 <= cols; q += 4 {
			transposeRows4(d[q:], nr, b[(col0+q)*ldb+p0:], ldb, kb)
		}
		for ; q < cols; q++ {
			s := b[(col0+q)*ldb+p0:][:kb]
			for p, v := range s {
				d[p*nr+q] = v
			}
		}
		if cols < nr {
			for p := 0; p < kb; p++ {
				clear(d[p*nr+cols : p*nr+nr])
			}
		}
	}
}

// copyRowsPaddedGo is the portable copyRowsPadded.
func copyRowsPaddedGo(dst, src []float32, rows, cols, width, srcStride int) {
	for i := 0; i < rows; i++ {
		d := dst[i*width : (i+1)*width]
		copy(d[:cols], src[i*srcStride:i*srcStride+cols])
		clear(d[cols:])
	}
}

// copyRowsGo is the portable copyRows.
func copyRowsGo(dst, src []float32, rows, width, srcStride int) {
	for i := 0; i < rows; i++ {
		copy(dst[i*width:(i+1)*width], src[i*srcStride:i*srcStride+width])
	}
}

// transposeRows4Go is the portable transposeRows4.
func transposeRows4Go(dst []float32, dstStride int, src []float32, srcStride, n int) {
	s0 := src[:n]
	s1 := src[srcStride:][:n]
	s2 := src[2*srcStride:][:n]
	s3 := src[3*srcStride:][:n]
	for p := range s0 {
		dp := dst[p*dstStride : p*dstStride+4 : p*dstStride+4]
		dp[0], dp[1], dp[2], dp[3] = s0[p], s1[p], s2[p], s3[p]
	}
}
