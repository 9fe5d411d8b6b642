package cpu

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// This file holds causal scaled-dot-product attention with grouped KV heads
// and segment ids, tiled the FlashAttention-2 way: queries and keys are
// processed in attnBlock×attnBlock tiles with an online softmax, so no T×T
// matrix is ever built, and the backward pass recomputes the probabilities
// of each tile from the saved log-sum-exp. The block products run on the
// strided kernels where the head dim allows (attnStrided), else on Sgemm.
//
// Options (attnOpts) transform each score tile after its Q·Kᵀ product:
// soft-capping (Gemma 2), ALiBi biases (Baichuan 2 13B) and a sliding
// window (Mistral, Gemma 2); tiles wholly outside the window are skipped.
//
// It does not do dropout, arbitrary additive biases, or non-causal
// attention.

// attnBlock is the query and key tile size. 64×64 score tiles (×D) keep the
// block products in Sgemm's efficient range while the working set of one
// tile (scores, probabilities, accumulators) stays in L1/L2.
const attnBlock = 64

// forwardTile keeps one bit per row of a tile in a uint64: this fails to
// compile if attnBlock grows past 64.
const _ = uint64(1) << (attnBlock - 1)

// blockGemm is the matrix product the attention and cross-entropy kernels
// run their block products on. It is Sgemm; tests swap it to account for
// Sgemm's own allocations.
var blockGemm = Sgemm

// attnStrided reports whether the attention block products for head dim D
// run on the strided kernels (sgemmStrided: no packing, the operands read
// in place, keys and values transposed once per block for the score
// products) rather than on blockGemm. With a head dim up to 64 every block
// product has a C at most 64 wide, and packing its operands would cost
// about as much as the product. Both paths give the same bits.
func attnStrided(D int) bool { return stridedGemmEnabled && D <= stridedMaxN }

// diagRows is the row group of the strided products of a diagonal (causal)
// tile: rows r0..r0+diagRows-1 of the tile see keys up to r0+diagRows-1, so
// each group computes only those columns (or sums only over those keys),
// about 56% of the whole tile for 64 rows.
const diagRows = 16

// Causal limits of diagProduct on a diagonal tile.
const (
	diagCols   = iota // group r0: columns < r0+diagRows (score-like products)
	diagPrefix        // group r0: sum over p < r0+diagRows (rows are queries, p keys)
	diagSuffix        // group r0: sum over p >= r0 (rows are keys, p queries)
)

// diagProduct is sgemmStrided on a diagonal tile (m×n C, k steps) in row
// groups of diagRows, leaving out what the causal mask zeroes (see the
// limits above). Skipped terms are exact zeros (P or dS of a key after its
// query), so the sums equal those of the whole tile; columns left out by
// diagCols are stale and must be masked by the caller.
func diagProduct(limit, m, n, k int, alpha float32, a []float32, ars, aps int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for r0 := 0; r0 < m; r0 += diagRows {
		g := min(diagRows, m-r0)
		nn, p0, kk := n, 0, k
		switch limit {
		case diagCols:
			nn = min(n, r0+diagRows)
		case diagPrefix:
			kk = min(k, r0+diagRows)
		case diagSuffix:
			p0 = min(r0, k)
			kk = k - p0
		}
		sgemmStrided(g, nn, kk, alpha, a[r0*ars+p0*aps:], ars, aps, b[p0*ldb:], ldb, beta, c[r0*ldc:], ldc)
	}
}

// tileProduct is the strided product of a tile: the whole of it, or on
// the diagonal (diag) with diagProduct's limit.
func tileProduct(diag bool, limit, m, n, k int, alpha float32, a []float32, ars, aps int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if diag {
		diagProduct(limit, m, n, k, alpha, a, ars, aps, b, ldb, beta, c, ldc)
		return
	}
	sgemmStrided(m, n, k, alpha, a, ars, aps, b, ldb, beta, c, ldc)
}

// transposeBlock writes dst[d·attnBlock + j] = src[j·ld + d] for j < n and
// d < D: a block of n keys (or values) as D rows, the right operand of the
// strided score products.
func transposeBlock(dst, src []float32, ld, n, D int) {
	j := 0
	for ; j+4 <= n; j += 4 {
		transposeRows4(dst[j:], attnBlock, src[j*ld:], ld, D)
	}
	for ; j < n; j++ {
		for d := range D {
			dst[d*attnBlock+j] = src[j*ld+d]
		}
	}
}

// reuseList is a mutex-guarded free list of scratch objects. Unlike a
// sync.Pool it never drops its objects at a GC, so kernels that take their
// scratch from it allocate nothing once warm.
type reuseList[T any] struct {
	mu   sync.Mutex
	free []*T
}

func (l *reuseList[T]) get() *T {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.free); n > 0 {
		x := l.free[n-1]
		l.free = l.free[:n-1]
		return x
	}
	return new(T)
}

func (l *reuseList[T]) put(x *T) {
	l.mu.Lock()
	l.free = append(l.free, x)
	l.mu.Unlock()
}

// growScratch returns x resliced to n elements, reallocated only if too small.
func growScratch(x []float32, n int) []float32 {
	if cap(x) >= n {
		return x[:n]
	}
	return make([]float32, n)
}

// attnScratch is one worker's tile scratch.
type attnScratch struct {
	s    []float32 // attnBlock² scores, then probabilities
	dp   []float32 // attnBlock² dP, then dS (backward)
	dt   []float32 // attnBlock² 1 − tanh² of the soft-capped scores (backward)
	acc  []float32 // attnBlock×D output accumulator (forward)
	m, l []float32 // attnBlock running max and sum (forward)
	rowD []float32 // T values of rowsum(dO∘O) for one (b, h) (backward)
	sub  []float32 // attnBlock: what each row's exps subtract
	sums []float64 // attnBlock: each row's sum of exps (forward)
	kt   []float32 // D×attnBlock: a key block transposed (strided path)
	vt   []float32 // D×attnBlock: a value block transposed (strided backward)
}

var attnScratchList reuseList[attnScratch]

func getAttnScratch(T, D int) *attnScratch {
	s := attnScratchList.get()
	s.s = growScratch(s.s, attnBlock*attnBlock)
	s.dp = growScratch(s.dp, attnBlock*attnBlock)
	s.dt = growScratch(s.dt, attnBlock*attnBlock)
	s.acc = growScratch(s.acc, attnBlock*D)
	s.m = growScratch(s.m, attnBlock)
	s.l = growScratch(s.l, attnBlock)
	s.rowD = growScratch(s.rowD, T)
	s.sub = growScratch(s.sub, attnBlock)
	if cap(s.sums) < attnBlock {
		s.sums = make([]float64, attnBlock)
	}
	s.kt = growScratch(s.kt, D*attnBlock)
	s.vt = growScratch(s.vt, D*attnBlock)
	return s
}

// attnArgs are one attention call's operands. An attnJob carries them to
// the workers through a function value bound once per job object, so a call
// allocates no closure.
type attnArgs struct {
	out, lse, q, k, v         []float32
	dq, dk, dv, dout          []float32
	seg                       []int32
	B, T, Hq, Hkv, D, nBlocks int
	scale                     float32
	attnOpts
}

// attnOpts are the score options of tensor.Attn (see there) on host
// memory; the zero value is plain causal attention.
type attnOpts struct {
	softCap float32   // > 0: s = softCap·tanh(s/softCap)
	window  int       // > 0: keys j > i − window only
	alibi   []float32 // [Hq] slopes, or nil: s += alibi[h]·(j − i)
}

// any reports whether an option transforms the score tiles.
func (o *attnOpts) any() bool { return o.softCap != 0 || o.window != 0 || o.alibi != nil }

// outsideWindow reports whether the sliding window hides every key
// j0..j0+bk−1 from every query from i0 on: the latest key is older than the
// earliest query's window.
func (o *attnOpts) outsideWindow(i0, j0, bk int) bool {
	return o.window > 0 && j0+bk-1 <= i0-o.window
}

type attnJob struct {
	attnArgs
	fwd, bwd, bwdKV, bwdQ func(lo, hi int)
}

var attnJobList reuseList[attnJob]

func getAttnJob(a attnArgs) *attnJob {
	j := attnJobList.get()
	if j.fwd == nil {
		j.fwd = j.forwardRange
		j.bwd = j.backwardRange
		j.bwdKV = j.backwardKVRange
		j.bwdQ = j.backwardQRange
	}
	j.attnArgs = a
	return j
}

func putAttnJob(j *attnJob) {
	j.attnArgs = attnArgs{} // drop references to the caller's slices
	attnJobList.put(j)
}

// checkAttnShapes panics with a precise message unless the operands fit
// the shape.
func checkAttnShapes(fn string, segIDs []int32, o attnOpts, B, T, Hq, Hkv, D int, ops ...attnOperand) {
	if B < 0 || T < 0 || Hq <= 0 || Hkv <= 0 || D <= 0 {
		panic(fmt.Sprintf("cpu.%s: bad shape B=%d T=%d Hq=%d Hkv=%d D=%d", fn, B, T, Hq, Hkv, D))
	}
	checkAttnOpts(fn, o, Hq)
	if Hq%Hkv != 0 {
		panic(fmt.Sprintf("cpu.%s: Hq=%d is not a multiple of Hkv=%d", fn, Hq, Hkv))
	}
	if segIDs != nil && len(segIDs) < B*T {
		panic(fmt.Sprintf("cpu.%s: segIDs has %d entries, want B*T=%d", fn, len(segIDs), B*T))
	}
	for _, o := range ops {
		if len(o.x) < o.n {
			panic(fmt.Sprintf("cpu.%s: %s has %d elements, want %d", fn, o.name, len(o.x), o.n))
		}
	}
}

// checkAttnOpts panics unless the score options are valid for Hq heads;
// fn names the kernel (without the package).
func checkAttnOpts(fn string, o attnOpts, Hq int) {
	if !(o.softCap >= 0) || math.IsInf(float64(o.softCap), 1) {
		panic(fmt.Sprintf("cpu.%s: SoftCap=%v, want 0 (off) or a finite positive cap", fn, o.softCap))
	}
	if o.window < 0 {
		panic(fmt.Sprintf("cpu.%s: Window=%d, want 0 (off) or > 0", fn, o.window))
	}
	if o.alibi != nil && len(o.alibi) < Hq {
		panic(fmt.Sprintf("cpu.%s: ALiBi has %d slopes, want Hq=%d", fn, len(o.alibi), Hq))
	}
}

type attnOperand struct {
	name string
	x    []float32
	n    int
}

// AttentionForward computes causal attention with grouped KV heads:
// q [B,T,Hq,D], k and v [B,T,Hkv,D], out [B,T,Hq,D], lse [B,Hq,T] (the
// log-sum-exp of each query's scaled scores, saved for backward); Hq % Hkv
// == 0 and query head h uses KV head h/(Hq/Hkv). segIDs is nil or B*T ids:
// a query attends only to keys at positions <= its own with the same id.
// scale multiplies q·k (usually 1/sqrt(D)).
//
// Work is split over (batch, head, query block); each output is computed
// by one worker in a fixed order, so results are bit-identical for any
// GOMAXPROCS. Memory is linear in T. It allocates nothing once warm, apart
// from what Sgemm allocates.
func AttentionForward(out, lse, q, k, v []float32, segIDs []int32, B, T, Hq, Hkv, D int, scale float32) {
	attentionForward(out, lse, q, k, v, segIDs, B, T, Hq, Hkv, D, scale, attnOpts{})
}

// attentionForward is AttentionForward with score options (see
// tensor.Attn); lse is then the log-sum-exp of the transformed scores.
func attentionForward(out, lse, q, k, v []float32, segIDs []int32, B, T, Hq, Hkv, D int, scale float32, o attnOpts) {
	nq, nkv := B*T*Hq*D, B*T*Hkv*D
	checkAttnShapes("AttentionForward", segIDs, o, B, T, Hq, Hkv, D,
		attnOperand{"out", out, nq}, attnOperand{"lse", lse, B * Hq * T},
		attnOperand{"q", q, nq}, attnOperand{"k", k, nkv}, attnOperand{"v", v, nkv})
	if B == 0 || T == 0 {
		return
	}
	nb := (T + attnBlock - 1) / attnBlock
	j := getAttnJob(attnArgs{out: out, lse: lse, q: q, k: k, v: v, seg: segIDs,
		B: B, T: T, Hq: Hq, Hkv: Hkv, D: D, nBlocks: nb, scale: scale, attnOpts: o})
	parallelFor(B*Hq*nb, 1, j.fwd)
	putAttnJob(j)
}

// forwardRange computes the work items lo..hi-1, item = (b·Hq + h)·nBlocks
// + query block.
func (a *attnJob) forwardRange(lo, hi int) {
	sc := getAttnScratch(a.T, a.D)
	for it := lo; it < hi; it++ {
		qb := it % a.nBlocks
		bh := it / a.nBlocks
		a.forwardTile(sc, bh/a.Hq, bh%a.Hq, qb)
	}
	attnScratchList.put(sc)
}

// forwardTile computes out and lse for query block qb of head h in batch b.
func (a *attnJob) forwardTile(sc *attnScratch, b, h, qb int) {
	T, Hq, Hkv, D := a.T, a.Hq, a.Hkv, a.D
	g := h / (Hq / Hkv)
	ldq, ldk := Hq*D, Hkv*D
	i0 := qb * attnBlock
	bq := min(attnBlock, T-i0)
	qOff := ((b*T+i0)*Hq + h) * D

	m, l, acc, s := sc.m[:bq], sc.l[:bq], sc.acc[:bq*D], sc.s
	for r := range m {
		m[r] = float32(math.Inf(-1))
		l[r] = 0
	}
	clear(acc)
	var seg []int32
	if a.seg != nil {
		seg = a.seg[b*T : (b+1)*T]
	}

	opts := a.attnOpts.any()
	strided := attnStrided(D)
	for kb := 0; kb <= qb; kb++ {
		j0 := kb * attnBlock
		bk := min(attnBlock, T-j0)
		if seg != nil && !anyVisible(seg, i0, bq, j0, bk) || a.outsideWindow(i0, j0, bk) {
			continue
		}
		kOff := ((b*T+j0)*Hkv + g) * D
		if strided {
			transposeBlock(sc.kt, a.k[kOff:], ldk, bk, D)
			tileProduct(kb == qb, diagCols, bq, bk, D, a.scale, a.q[qOff:], ldq, 1, sc.kt, attnBlock, 0, s, attnBlock)
		} else {
			blockGemm(false, true, bq, bk, D, a.scale, a.q[qOff:], ldq, a.k[kOff:], ldk, 0, s, attnBlock)
		}
		if opts {
			a.scoreTile(s, nil, h, i0, bq, j0, bk)
		}
		if seg != nil {
			maskTile(s, seg, i0, bq, j0, bk)
		}
		// Each row's new running max, then the exps of the whole tile.
		sub, sums := sc.sub[:bq], sc.sums[:bq]
		var hidden uint64 // rows with no visible key in this block
		for r := 0; r < bq; r++ {
			row := s[r*attnBlock : r*attnBlock+bk]
			if kb == qb {
				// Diagonal tile: keys after the query are invisible.
				clear(row[r+1:])
				row = row[:r+1]
			}
			mx := rowMax(row)
			if math.IsInf(float64(mx), -1) {
				clear(row)
				hidden |= 1 << r
				sub[r] = float32(math.Inf(1)) // exp(0 − ∞) = 0: the zeros stay
				continue
			}
			sub[r] = max(m[r], mx)
		}
		expSubRows(s, attnBlock, bq, bk, kb == qb, sub, sums)
		for r := 0; r < bq; r++ {
			if hidden&(1<<r) != 0 {
				continue
			}
			mNew, sum := sub[r], float32(sums[r])
			if mNew != m[r] {
				alpha := expf(m[r] - mNew) // 0 when m[r] is -Inf
				l[r] *= alpha
				ar := acc[r*D : (r+1)*D]
				for d := range ar {
					ar[d] *= alpha
				}
				m[r] = mNew
			}
			l[r] += sum
		}
		if strided {
			tileProduct(kb == qb, diagPrefix, bq, D, bk, 1, s, attnBlock, 1, a.v[kOff:], ldk, 1, acc, D)
		} else {
			blockGemm(false, false, bq, D, bk, 1, s, attnBlock, a.v[kOff:], ldk, 1, acc, D)
		}
	}

	lseOff := (b*Hq+h)*T + i0
	for r := 0; r < bq; r++ {
		inv := 1 / l[r]
		o := a.out[qOff+r*ldq : qOff+r*ldq+D]
		ar := acc[r*D : (r+1)*D]
		for d := range o {
			o[d] = ar[d] * inv
		}
		a.lse[lseOff+r] = m[r] + float32(math.Log(float64(l[r])))
	}
}

// scoreTile applies the score options to the bq×bk tile s (row stride
// attnBlock) of query head h, queries from i0, keys from j0: soft-cap (and,
// if dt is not nil, dt = 1 − tanh² for the backward), ALiBi bias, then
// -Inf for keys outside the window. Causal and segment masking are left to
// the caller.
func (a *attnJob) scoreTile(s, dt []float32, h, i0, bq, j0, bk int) {
	ninf := float32(math.Inf(-1))
	softCap := a.softCap
	var slope float32
	if a.alibi != nil {
		slope = a.alibi[h]
	}
	for r := 0; r < bq; r++ {
		i := i0 + r
		row := s[r*attnBlock : r*attnBlock+bk]
		if softCap > 0 {
			var d []float32
			if dt != nil {
				d = dt[r*attnBlock : r*attnBlock+bk]
			}
			softCapRow(row, d, softCap)
		}
		if a.alibi != nil {
			for c := range row {
				row[c] += slope * float32(j0+c-i)
			}
		}
		if a.window > 0 {
			// Keys j <= i − window are outside: columns c <= i − window − j0.
			for c := range min(bk, max(0, i-a.window-j0+1)) {
				row[c] = ninf
			}
		}
	}
}

// anyVisible reports whether some query i0..i0+bq-1 may attend to some key
// j0..j0+bk-1 (key position <= query position, same segment id).
func anyVisible(seg []int32, i0, bq, j0, bk int) bool {
	for r := 0; r < bq; r++ {
		i := i0 + r
		id := seg[i]
		for j := j0; j < min(j0+bk, i+1); j++ {
			if seg[j] == id {
				return true
			}
		}
	}
	return false
}

// maskTile sets the scores of invisible (query, key) pairs to -Inf: keys
// after the query, and with segment ids, keys of another segment.
func maskTile(s []float32, seg []int32, i0, bq, j0, bk int) {
	ninf := float32(math.Inf(-1))
	for r := 0; r < bq; r++ {
		i := i0 + r
		row := s[r*attnBlock : r*attnBlock+bk]
		// Causal: columns with j0+c > i.
		for c := max(0, i-j0+1); c < bk; c++ {
			row[c] = ninf
		}
		if seg == nil {
			continue
		}
		id := seg[i]
		keys := seg[j0 : j0+bk]
		for c, kid := range keys {
			if kid != id {
				row[c] = ninf
			}
		}
	}
}

// AttentionBackward computes the gradients of AttentionForward: dq, dk, dv
// (shaped like q, k, v) are OVERWRITTEN, given dout (shaped like out) and
// the forward's q, k, v, out and lse. The attention probabilities are
// recomputed tile by tile from lse (FlashAttention-2), never stored whole.
//
// With enough (batch, KV head) pairs to keep the workers busy, one worker
// owns dk and dv of a KV head and dq of its query heads and computes them in
// one pass. With fewer, it runs two passes with finer work items: dk, dv
// per (batch, KV head, key block), then dq per (batch, head, query block),
// recomputing the tiles (about 40% more arithmetic). Both strategies make
// the same block products and accumulate every output element in the same
// fixed order (dk, dv over query heads, then query blocks; dq over key
// blocks), so the results are bit-identical for any GOMAXPROCS. It
// allocates nothing once warm, apart from what Sgemm allocates.
func AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse []float32, segIDs []int32, B, T, Hq, Hkv, D int, scale float32) {
	attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, segIDs, B, T, Hq, Hkv, D, scale, attnOpts{})
}

// attentionBackward is AttentionBackward with score options (those of the
// forward).
func attentionBackward(dq, dk, dv, dout, q, k, v, out, lse []float32, segIDs []int32, B, T, Hq, Hkv, D int, scale float32, o attnOpts) {
	nq, nkv := B*T*Hq*D, B*T*Hkv*D
	checkAttnShapes("AttentionBackward", segIDs, o, B, T, Hq, Hkv, D,
		attnOperand{"dq", dq, nq}, attnOperand{"dk", dk, nkv}, attnOperand{"dv", dv, nkv},
		attnOperand{"dout", dout, nq}, attnOperand{"q", q, nq}, attnOperand{"k", k, nkv},
		attnOperand{"v", v, nkv}, attnOperand{"out", out, nq}, attnOperand{"lse", lse, B * Hq * T})
	if B == 0 || T == 0 {
		return
	}
	nb := (T + attnBlock - 1) / attnBlock
	j := getAttnJob(attnArgs{dq: dq, dk: dk, dv: dv, dout: dout, out: out, lse: lse,
		q: q, k: k, v: v, seg: segIDs, B: B, T: T, Hq: Hq, Hkv: Hkv, D: D, nBlocks: nb, scale: scale, attnOpts: o})
	if attnSplitBackward(B*Hkv, nb) {
		parallelFor(B*Hkv*nb, 1, j.bwdKV)
		parallelFor(B*Hq*nb, 1, j.bwdQ)
	} else {
		parallelFor(B*Hkv, 1, j.bwd)
	}
	putAttnJob(j)
}

// attnBackwardMode forces a backward strategy in tests: 0 picks by
// GOMAXPROCS, 1 the one-pass, 2 the two-pass.
var attnBackwardMode = 0

// attnSplitBackward reports whether the backward runs as two passes: when
// there are fewer than two (batch, KV head) items per worker and more than
// one key block to split them by.
func attnSplitBackward(groups, nBlocks int) bool {
	switch attnBackwardMode {
	case 1:
		return false
	case 2:
		return true
	}
	return nBlocks > 1 && groups < 2*runtime.GOMAXPROCS(0)
}

// backwardRange runs the one-pass backward of (batch, KV head) items
// lo..hi-1, item = b·Hkv + g.
func (a *attnJob) backwardRange(lo, hi int) {
	sc := getAttnScratch(a.T, a.D)
	for it := lo; it < hi; it++ {
		a.backwardGroup(sc, it/a.Hkv, it%a.Hkv)
	}
	attnScratchList.put(sc)
}

// backwardGroup computes dk, dv of KV head g in batch b and dq of the query
// heads that share it.
func (a *attnJob) backwardGroup(sc *attnScratch, b, g int) {
	group := a.Hq / a.Hkv
	for h := g * group; h < (g+1)*group; h++ {
		a.fillRowD(sc.rowD, b, h, 0, a.T)
		for qb := 0; qb < a.nBlocks; qb++ {
			dqSet := false
			for kb := 0; kb <= qb; kb++ {
				// dk, dv of block kb start at the group's first head's
				// diagonal tile (always computed); dq at its first
				// computed tile.
				firstKV := h == g*group && qb == kb
				if a.backwardTile(sc, b, h, g, qb, kb, true, true, !dqSet, firstKV) {
					dqSet = true
				}
			}
		}
	}
}

// backwardKVRange runs the dk, dv pass of the two-pass backward over items
// lo..hi-1, item = (b·Hkv + g)·nBlocks + key block.
func (a *attnJob) backwardKVRange(lo, hi int) {
	sc := getAttnScratch(a.T, a.D)
	T, Hkv := a.T, a.Hkv
	group := a.Hq / Hkv
	for it := lo; it < hi; it++ {
		kb := it % a.nBlocks
		b, g := it/a.nBlocks/Hkv, it/a.nBlocks%Hkv
		j0 := kb * attnBlock
		for h := g * group; h < (g+1)*group; h++ {
			a.fillRowD(sc.rowD, b, h, j0, T)
			for qb := kb; qb < a.nBlocks; qb++ {
				a.backwardTile(sc, b, h, g, qb, kb, false, true, false, h == g*group && qb == kb)
			}
		}
	}
	attnScratchList.put(sc)
}

// backwardQRange runs the dq pass of the two-pass backward over items
// lo..hi-1, item = (b·Hq + h)·nBlocks + query block.
func (a *attnJob) backwardQRange(lo, hi int) {
	sc := getAttnScratch(a.T, a.D)
	Hq := a.Hq
	for it := lo; it < hi; it++ {
		qb := it % a.nBlocks
		b, h := it/a.nBlocks/Hq, it/a.nBlocks%Hq
		g := h / (Hq / a.Hkv)
		i0 := qb * attnBlock
		i1 := min(i0+attnBlock, a.T)
		a.fillRowD(sc.rowD, b, h, i0, i1)
		dqSet := false
		for kb := 0; kb <= qb; kb++ {
			if a.backwardTile(sc, b, h, g, qb, kb, true, false, !dqSet, false) {
				dqSet = true
			}
		}
	}
	attnScratchList.put(sc)
}

// fillRowD sets rowD[t] = Σ_d dO[t,d]·O[t,d] (the softmax-Jacobian
// correction) of head h in batch b for t0 <= t < t1.
func (a *attnJob) fillRowD(rowD []float32, b, h, t0, t1 int) {
	T, Hq, D := a.T, a.Hq, a.D
	for t := t0; t < t1; t++ {
		r := ((b*T+t)*Hq + h) * D
		o, do := a.out[r:r+D], a.dout[r:r+D]
		var acc float32
		for d := range o {
			acc += o[d] * do[d]
		}
		rowD[t] = acc
	}
}

// backwardTile recomputes the probabilities of query block qb of head h
// against key block kb of KV head g (batch b) and accumulates the tile's
// contributions to dq (if wantQ) and to dk, dv (if wantKV); with firstQ
// (firstKV) they overwrite the block instead, which is how the gradients
// start (they are never zeroed). sc.rowD must hold the rows of the query
// block. It reports whether the tile had anything visible: a skipped tile
// writes nothing. A diagonal tile (qb == kb) is never skipped.
func (a *attnJob) backwardTile(sc *attnScratch, b, h, g, qb, kb int, wantQ, wantKV, firstQ, firstKV bool) bool {
	T, Hq, Hkv, D := a.T, a.Hq, a.Hkv, a.D
	ldq, ldk := Hq*D, Hkv*D
	i0, j0 := qb*attnBlock, kb*attnBlock
	bq, bk := min(attnBlock, T-i0), min(attnBlock, T-j0)
	if a.outsideWindow(i0, j0, bk) {
		return false
	}
	var seg []int32
	if a.seg != nil {
		seg = a.seg[b*T : (b+1)*T]
		if !anyVisible(seg, i0, bq, j0, bk) {
			return false
		}
	}
	betaQ, betaKV := float32(1), float32(1)
	if firstQ {
		betaQ = 0
	}
	if firstKV {
		betaKV = 0
	}
	qOff := ((b*T+i0)*Hq + h) * D
	kOff := ((b*T+j0)*Hkv + g) * D
	lse := a.lse[(b*Hq+h)*T+i0 : (b*Hq+h)*T+i0+bq]
	s, dp := sc.s, sc.dp
	strided := attnStrided(D)

	// P = exp(S - lse), S = scale·Q Kᵀ transformed by the options, masked.
	diag := kb == qb
	if strided {
		transposeBlock(sc.kt, a.k[kOff:], ldk, bk, D)
		tileProduct(diag, diagCols, bq, bk, D, a.scale, a.q[qOff:], ldq, 1, sc.kt, attnBlock, 0, s, attnBlock)
	} else {
		blockGemm(false, true, bq, bk, D, a.scale, a.q[qOff:], ldq, a.k[kOff:], ldk, 0, s, attnBlock)
	}
	var dt []float32 // 1 − tanh² of the soft-capped scores
	if a.softCap > 0 {
		dt = sc.dt
	}
	if a.attnOpts.any() {
		a.scoreTile(s, dt, h, i0, bq, j0, bk)
	}
	if seg != nil {
		maskTile(s, seg, i0, bq, j0, bk)
	}
	if diag {
		for r := 0; r < bq; r++ {
			clear(s[r*attnBlock+r+1 : r*attnBlock+bk]) // keys after the query
		}
	}
	expSubRows(s, attnBlock, bq, bk, diag, lse, nil)
	if wantKV {
		// dV += Pᵀ dO.
		if strided {
			tileProduct(diag, diagSuffix, bk, D, bq, 1, s, 1, attnBlock, a.dout[qOff:], ldq, betaKV, a.dv[kOff:], ldk)
		} else {
			blockGemm(true, false, bk, D, bq, 1, s, attnBlock, a.dout[qOff:], ldq, betaKV, a.dv[kOff:], ldk)
		}
	}
	// dP = dO Vᵀ, then dS = P∘(dP - rowD) in place (and ∘(1 − tanh²)
	// through the soft-cap).
	if strided {
		transposeBlock(sc.vt, a.v[kOff:], ldk, bk, D)
		tileProduct(diag, diagCols, bq, bk, D, 1, a.dout[qOff:], ldq, 1, sc.vt, attnBlock, 0, dp, attnBlock)
	} else {
		blockGemm(false, true, bq, bk, D, 1, a.dout[qOff:], ldq, a.v[kOff:], ldk, 0, dp, attnBlock)
	}
	for r := 0; r < bq; r++ {
		pr := s[r*attnBlock : r*attnBlock+bk]
		dr := dp[r*attnBlock : r*attnBlock+bk]
		if diag {
			// Keys after the query: P is 0, dP may be stale (not computed).
			clear(dr[r+1:])
			pr, dr = pr[:r+1], dr[:r+1]
		}
		di := sc.rowD[i0+r]
		if dt != nil {
			tr := dt[r*attnBlock : r*attnBlock+bk]
			for c := range dr {
				dr[c] = pr[c] * (dr[c] - di) * tr[c]
			}
			continue
		}
		dsRow(dr, pr, di)
	}
	if wantQ {
		// dQ += scale·dS K.
		if strided {
			tileProduct(diag, diagPrefix, bq, D, bk, a.scale, dp, attnBlock, 1, a.k[kOff:], ldk, betaQ, a.dq[qOff:], ldq)
		} else {
			blockGemm(false, false, bq, D, bk, a.scale, dp, attnBlock, a.k[kOff:], ldk, betaQ, a.dq[qOff:], ldq)
		}
	}
	if wantKV {
		// dK += scale·dSᵀ Q.
		if strided {
			tileProduct(diag, diagSuffix, bk, D, bq, a.scale, dp, 1, attnBlock, a.q[qOff:], ldq, betaKV, a.dk[kOff:], ldk)
		} else {
			blockGemm(true, false, bk, D, bq, a.scale, dp, attnBlock, a.q[qOff:], ldq, betaKV, a.dk[kOff:], ldk)
		}
	}
	return true
}

// expf is a float32 e^x accurate to about 1 ulp (Cephes' expf polynomial
// after a Cody-Waite reduction by ln 2); it returns 0 below -87.3 (including
// -Inf) and +Inf above 88.72. It is a pure function of x, so results do not
// depend on scheduling. expSubRow inlines the same arithmetic.
func expf(x float32) float32 {
	switch {
	case x != x:
		return x // NaN
	case x < expfMin:
		return 0
	case x <= expfMax:
		return expfCore(x)
	case x <= 88.72283:
		// 2^round(x/ln2) would overflow the exponent field; rare enough
		// for float64.
		return float32(math.Exp(float64(x)))
	}
	return float32(math.Inf(1))
}

// The constants of expfCore, which is valid for expfMin <= x <= expfMax,
// where 2^round(x/ln2) is a normal float32.
const (
	expfMin   = -87.33654
	expfMax   = 88.0
	expfLog2e = 1.44269504088896341
	expfLn2Hi = 0.693359375
	expfLn2Lo = -2.12194440e-4
	expfMagic = 12582912.0 // 1.5·2^23: adding it rounds to an integer
	expfC0    = 5.0000001201e-1
	expfC1    = 1.6666665459e-1
	expfC2    = 4.1665795894e-2
	expfC3    = 8.3334519073e-3
	expfC4    = 1.3981999507e-3
	expfC5    = 1.9875691500e-4
)

// expfCore is e^x for expfMin <= x <= expfMax (see the constants above).
// Every product is rounded on its own (the float32 conversions forbid the
// compiler to fuse it into an FMA, which it may do for GOAMD64=v3), so the
// result is the same bits as the AVX-512 code in vecmath_amd64.s.
func expfCore(x float32) float32 {
	kf := float32(x*expfLog2e) + expfMagic
	n := int32(math.Float32bits(kf)) - 0x4B400000
	fn := kf - expfMagic
	r := x - float32(fn*expfLn2Hi) - float32(fn*expfLn2Lo)
	p := float32(expfC5*r) + expfC4
	p = float32(p*r) + expfC3
	p = float32(p*r) + expfC2
	p = float32(p*r) + expfC1
	p = float32(p*r) + expfC0
	p = float32(p*float32(r*r)) + r + 1
	return p * math.Float32frombits(uint32(n+127)<<23)
}

// rowMax returns the largest element of row, ignoring NaNs (-Inf for an
// empty or all-NaN row); see rowMaxGo. It runs on AVX-512 where the CPU
// has it, with the same result bits.
func rowMax(row []float32) float32 {
	if mx, ok := rowMaxVec(row); ok {
		return mx
	}
	return rowMaxGo(row)
}

// expSubRow replaces every x in row by expf(x - sub) and returns their sum
// (see expSubRowGo for the summation order); it runs on AVX-512 where the
// CPU has it, with the same result bits.
func expSubRow(row []float32, sub float32) float64 {
	if len(row) == 0 {
		return 0
	}
	total, done := expSubRowVec(row, sub)
	if done < len(row) {
		total += expSubRowGo(row[done:], sub)
	}
	return total
}
