package cpu

import (
	"fmt"
	"math"
)

// This file holds the fused LM head + softmax cross-entropy. Logits are
// computed chunkRows rows at a time into a caller-provided workspace, turned
// into losses and (optionally) their gradient in place, and fed straight
// into the dx and dw products, so the N×V logit matrix is never
// materialised. Logits may be soft-capped (Gemma 2's
// final_logit_softcapping) before the softmax. It does not do label
// smoothing or z-loss.

// xentJob carries one chunk's softmax pass to the workers through a
// function value bound once per job object, so a call allocates no closure.
type xentJob struct {
	losses, logits []float32
	targets        []int32
	V              int
	grad           bool
	gradScale      float32
	rowScale       []float32 // nil: 1 for every row
	softCap        float32   // > 0: logits z = softCap·tanh(z/softCap)
	fn             func(lo, hi int)

	// The head packed once per call for the chunks' products: wᵀ for the
	// logits, w for dx (see xentPackBudget).
	wt, wn packedB
}

// xentPackBudget bounds, in floats, the size of the head (V·C) for which
// CrossEntropy packs it once per call instead of once per chunk and
// product; each packed copy takes V·C floats of scratch, kept for the next
// call. The products' results are the same bits either way.
var xentPackBudget = 1 << 25

var xentJobList reuseList[xentJob]

// xentCapScratch is one worker's row of 1 − tanh² of the soft-capped
// logits, kept for the gradient.
type xentCapScratch struct{ d []float32 }

var xentCapScratchList reuseList[xentCapScratch]

// CrossEntropy computes losses[i] = -log softmax(x_i·wᵀ)[targets[i]] for
// x [N,C] (final hidden states) and w [V,C] (LM head or tied embedding);
// rows with targets[i] < 0 are ignored (loss 0, no gradient). If dx is not
// nil, dx [N,C] is OVERWRITTEN with dL/dx and dw [V,C] is ACCUMULATED (+=)
// with dL/dw, for L = gradScale·Σ losses.
//
// Per chunk of at most chunkRows rows: logits = x_chunk·wᵀ (Sgemm) into
// workspace (len >= chunkRows·V), a stable log-softmax per row, then in
// place dlogits = gradScale·(softmax - onehot), dx_chunk = dlogits·w and
// dw += dlogitsᵀ·x_chunk. Chunks run in order and each product is Sgemm's
// (deterministic for any thread count), so results are bit-identical for any
// GOMAXPROCS; they do depend on chunkRows (it groups the dw sum). It
// allocates nothing once warm, apart from what Sgemm allocates.
func CrossEntropy(losses, dx, dw, x, w []float32, targets []int32, N, C, V int, gradScale float32, workspace []float32, chunkRows int) {
	if dx != nil && dw == nil {
		panic("cpu.CrossEntropy: dx without dw")
	}
	crossEntropy(losses, dx, dw, x, w, targets, N, C, V, gradScale, nil, 0, workspace, chunkRows)
}

// crossEntropy is CrossEntropy with optional per-row gradient scales
// (rowScale [N] or nil), an optional head gradient (dw nil: frozen) and
// optional logit soft-capping (softCap > 0: the logits are
// softCap·tanh(x·wᵀ/softCap); 0: off).
func crossEntropy(losses, dx, dw, x, w []float32, targets []int32, N, C, V int, gradScale float32, rowScale []float32, softCap float32, workspace []float32, chunkRows int) {
	switch {
	case N < 0 || C <= 0 || V <= 0:
		panic(fmt.Sprintf("cpu.CrossEntropy: bad shape N=%d C=%d V=%d", N, C, V))
	case !(softCap >= 0) || math.IsInf(float64(softCap), 1):
		panic(fmt.Sprintf("cpu.CrossEntropy: SoftCap=%v, want 0 (off) or a finite positive cap", softCap))
	case chunkRows <= 0:
		panic(fmt.Sprintf("cpu.CrossEntropy: chunkRows=%d, want > 0", chunkRows))
	case len(losses) < N:
		panic(fmt.Sprintf("cpu.CrossEntropy: losses has %d elements, want N=%d", len(losses), N))
	case len(targets) < N:
		panic(fmt.Sprintf("cpu.CrossEntropy: targets has %d elements, want N=%d", len(targets), N))
	case len(x) < N*C:
		panic(fmt.Sprintf("cpu.CrossEntropy: x has %d elements, want N*C=%d", len(x), N*C))
	case len(w) < V*C:
		panic(fmt.Sprintf("cpu.CrossEntropy: w has %d elements, want V*C=%d", len(w), V*C))
	case len(workspace) < min(chunkRows, N)*V:
		panic(fmt.Sprintf("cpu.CrossEntropy: workspace has %d elements, want min(chunkRows,N)*V=%d", len(workspace), min(chunkRows, N)*V))
	case dx != nil && len(dx) < N*C:
		panic(fmt.Sprintf("cpu.CrossEntropy: dx has %d elements, want N*C=%d", len(dx), N*C))
	case dw != nil && len(dw) < V*C:
		panic(fmt.Sprintf("cpu.CrossEntropy: dw has %d elements, want V*C=%d", len(dw), V*C))
	}
	for i, t := range targets[:N] {
		if int(t) >= V {
			panic(fmt.Sprintf("cpu.CrossEntropy: targets[%d]=%d is out of range for V=%d", i, t, V))
		}
	}
	grad := dx != nil

	job := xentJobList.get()
	if job.fn == nil {
		job.fn = job.rows
	}
	job.V, job.grad, job.gradScale, job.softCap = V, grad, gradScale, softCap

	// Several chunks share the head: pack it once for all of them.
	var wt, wn *packedB
	if V*C <= xentPackBudget && activeChunks(targets[:N], chunkRows) > 1 {
		kern := activeKernel.Load()
		wt = &job.wt
		wt.pack(kern, true, C, V, w, C)
		if grad {
			wn = &job.wn
			wn.pack(kern, false, V, C, w, C)
		}
	}

	for r0 := 0; r0 < N; r0 += chunkRows {
		rows := min(chunkRows, N-r0)
		tg := targets[r0 : r0+rows]
		active := false
		for _, t := range tg {
			if t >= 0 {
				active = true
				break
			}
		}
		if !active {
			// Every row ignored: zero loss and zero gradient, no products.
			clear(losses[r0 : r0+rows])
			if grad {
				clear(dx[r0*C : (r0+rows)*C])
			}
			continue
		}
		xc := x[r0*C : (r0+rows)*C]
		logits := workspace[:rows*V]
		if wt != nil {
			sgemmPacked(false, rows, 1, xc, C, wt, 0, logits, V)
		} else {
			blockGemm(false, true, rows, V, C, 1, xc, C, w, C, 0, logits, V)
		}

		job.losses, job.logits, job.targets = losses[r0:r0+rows], logits, tg
		job.rowScale = nil
		if rowScale != nil {
			job.rowScale = rowScale[r0 : r0+rows]
		}
		// Rows are independent; ~V·20 flops each, so a few rows per task.
		parallelFor(rows, max(1, 4096/V), job.fn)

		if grad {
			if wn != nil {
				sgemmPacked(false, rows, 1, logits, V, wn, 0, dx[r0*C:], C)
			} else {
				blockGemm(false, false, rows, C, V, 1, logits, V, w, C, 0, dx[r0*C:], C)
			}
			if dw != nil {
				blockGemm(true, false, V, C, rows, 1, logits, V, xc, C, 1, dw, C)
			}
		}
	}
	job.losses, job.logits, job.targets, job.rowScale = nil, nil, nil, nil
	xentJobList.put(job)
}

// activeChunks counts the chunks of chunkRows targets with a target >= 0
// (the chunks whose logits are computed).
func activeChunks(targets []int32, chunkRows int) int {
	n := 0
	for r0 := 0; r0 < len(targets); r0 += chunkRows {
		for _, t := range targets[r0:min(r0+chunkRows, len(targets))] {
			if t >= 0 {
				n++
				break
			}
		}
	}
	return n
}

// rows turns logits rows lo..hi-1 of the current chunk into losses and, if
// grad, into gradScale·(softmax - onehot) in place (zero rows when ignored),
// times 1 − tanh² of the capped logits with soft-capping.
func (j *xentJob) rows(lo, hi int) {
	V := j.V
	var capd *xentCapScratch
	if j.softCap > 0 && j.grad {
		capd = xentCapScratchList.get()
		capd.d = growScratch(capd.d, V)
		defer xentCapScratchList.put(capd)
	}
	for r := lo; r < hi; r++ {
		row := j.logits[r*V : (r+1)*V]
		t := j.targets[r]
		if t < 0 {
			j.losses[r] = 0
			if j.grad {
				clear(row)
			}
			continue
		}
		if j.softCap > 0 {
			var d []float32
			if capd != nil {
				d = capd.d
			}
			softCapRow(row, d, j.softCap)
		}
		mx := rowMax(row)
		zt := row[t]
		// The chunk's logits are consumed: exp(z - max) overwrites them.
		sum := expSubRow(row, mx)
		lse := float64(mx) + math.Log(sum)
		j.losses[r] = float32(lse - float64(zt))
		if !j.grad {
			continue
		}
		gs := j.gradScale
		if j.rowScale != nil {
			gs *= j.rowScale[r]
		}
		scaleRow(row, float32(float64(gs)/sum))
		row[t] -= gs
		if capd != nil {
			for c, d := range capd.d[:V] {
				row[c] *= d
			}
		}
	}
}
