//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"gorgonia.org/cu"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// This file maps tensor.Backend's kernels onto the PTX kernels (kernels/)
// and cuBLAS. Argument checks mirror the CPU backend's (panics naming the
// kernel); data-dependent checks the CPU does on the host (ids, targets,
// decode lengths) are made by the kernels and reported by Sync.

// Copy sets dst = src (same dtype and length).
func (be *Backend) Copy(dst, src tensor.Buffer) {
	if dst.DType() != src.DType() || dst.Len() != src.Len() {
		panic(fmt.Sprintf("cuda.Copy: %v from %v", dst, src))
	}
	d := be.ptr("cuda.Copy dst", dst, dst.DType(), dst.Len())
	s := be.ptr("cuda.Copy src", src, src.DType(), src.Len())
	if dst.Bytes() == 0 || d == s {
		return
	}
	defer be.enter()()
	be.fail(cu.MemcpyDtoDAsync(cu.DevicePtr(d), cu.DevicePtr(s), int64(dst.Bytes()), be.stream))
}

// Zero sets every element of b to zero.
func (be *Backend) Zero(b tensor.Buffer) {
	p := be.ptr("cuda.Zero", b, b.DType(), b.Len())
	if b.Bytes() == 0 {
		return
	}
	defer be.enter()()
	be.fail(cu.MemsetD8Async(cu.DevicePtr(p), 0, int64(b.Bytes()), be.stream))
}

// Fill sets every element of an F32 buffer to v.
func (be *Backend) Fill(b tensor.Buffer, v float32) {
	n := b.Len()
	be.launch1D("fill_f32", n, be.ptr("cuda.Fill", b, tensor.F32, n), f32a(v), i64a(n))
}

// Add sets out = a + b.
func (be *Backend) Add(out, a, b tensor.Buffer, n int) {
	be.launch1D("add_f32", n, be.ptr("cuda.Add out", out, tensor.F32, n),
		be.ptr("cuda.Add a", a, tensor.F32, n), be.ptr("cuda.Add b", b, tensor.F32, n), i64a(n))
}

// Mul sets out = a·b.
func (be *Backend) Mul(out, a, b tensor.Buffer, n int) {
	be.launch1D("mul_f32", n, be.ptr("cuda.Mul out", out, tensor.F32, n),
		be.ptr("cuda.Mul a", a, tensor.F32, n), be.ptr("cuda.Mul b", b, tensor.F32, n), i64a(n))
}

// Axpy sets y += alpha·x.
func (be *Backend) Axpy(y, x tensor.Buffer, alpha float32, n int) {
	be.launch1D("axpy_f32", n, be.ptr("cuda.Axpy y", y, tensor.F32, n), be.ptr("cuda.Axpy x", x, tensor.F32, n), f32a(alpha), i64a(n))
}

// Scale sets x *= alpha.
func (be *Backend) Scale(x tensor.Buffer, alpha float32, n int) {
	be.launch1D("scale_f32", n, be.ptr("cuda.Scale x", x, tensor.F32, n), f32a(alpha), i64a(n))
}

// AddBias adds bias [cols] to every row of x [rows,cols].
func (be *Backend) AddBias(x, bias tensor.Buffer, rows, cols int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	be.launch1D("add_bias_f32", rows*cols, be.ptr("cuda.AddBias x", x, tensor.F32, rows*cols),
		be.ptr("cuda.AddBias bias", bias, tensor.F32, cols), i64a(rows), i32a(cols))
}

// colSum accumulates dst[j] += Σ_i a[i,j]·b[i,j]·s[i] (b, s optional) in
// two deterministic passes through scratch partial sums.
func (be *Backend) colSum(dst, a, b, s uint64, rows, cols int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	const chunkRows = 256 // COLSUM_ROWS
	chunks := (rows + chunkRows - 1) / chunkRows
	part := be.scratchPtr(8 * chunks * cols)
	be.launch("colsum_partial_f64", [3]int{(cols + 31) / 32, chunks, 1}, [3]int{32, 8, 1}, 0,
		ptrArg(part), a, b, s, i64a(rows), i32a(cols))
	be.launch("colsum_final_f64", [3]int{(cols + threads - 1) / threads, 1, 1}, [3]int{threads, 1, 1}, 0,
		dst, ptrArg(part), i32a(chunks), i32a(cols))
}

// BiasGrad accumulates dbias[j] += Σ_i dout[i,j].
func (be *Backend) BiasGrad(dbias, dout tensor.Buffer, rows, cols int) {
	be.colSum(be.ptr("cuda.BiasGrad dbias", dbias, tensor.F32, cols),
		be.ptr("cuda.BiasGrad dout", dout, tensor.F32, rows*cols), 0, 0, rows, cols)
}

// SwiGLUForward sets out = silu(gate)·up (rounded when out is BF16).
func (be *Backend) SwiGLUForward(out, gate, up tensor.Buffer, n int) {
	dt, kernel := actKernel("swiglu_fwd", out)
	be.launch1D(kernel, n, be.ptr("cuda.SwiGLUForward out", out, dt, n),
		be.ptr("cuda.SwiGLUForward gate", gate, dt, n), be.ptr("cuda.SwiGLUForward up", up, dt, n), i64a(n))
}

// SwiGLUBackward overwrites dgate and dup (either may alias an F32 gate or
// up); gate and up may be BF16.
func (be *Backend) SwiGLUBackward(dgate, dup, dout, gate, up tensor.Buffer, n int) {
	dt, kernel := actKernel("swiglu_bwd", gate)
	be.launch1D(kernel, n, be.ptr("cuda.SwiGLUBackward dgate", dgate, tensor.F32, n),
		be.ptr("cuda.SwiGLUBackward dup", dup, tensor.F32, n), be.ptr("cuda.SwiGLUBackward dout", dout, tensor.F32, n),
		be.ptr("cuda.SwiGLUBackward gate", gate, dt, n), be.ptr("cuda.SwiGLUBackward up", up, dt, n), i64a(n))
}

// GeGLUForward sets out = gelu_tanh(gate)·up (rounded when out is BF16).
func (be *Backend) GeGLUForward(out, gate, up tensor.Buffer, n int) {
	dt, kernel := actKernel("geglu_fwd", out)
	be.launch1D(kernel, n, be.ptr("cuda.GeGLUForward out", out, dt, n),
		be.ptr("cuda.GeGLUForward gate", gate, dt, n), be.ptr("cuda.GeGLUForward up", up, dt, n), i64a(n))
}

// GeGLUBackward overwrites dgate and dup (either may alias an F32 gate or
// up); gate and up may be BF16.
func (be *Backend) GeGLUBackward(dgate, dup, dout, gate, up tensor.Buffer, n int) {
	dt, kernel := actKernel("geglu_bwd", gate)
	be.launch1D(kernel, n, be.ptr("cuda.GeGLUBackward dgate", dgate, tensor.F32, n),
		be.ptr("cuda.GeGLUBackward dup", dup, tensor.F32, n), be.ptr("cuda.GeGLUBackward dout", dout, tensor.F32, n),
		be.ptr("cuda.GeGLUBackward gate", gate, dt, n), be.ptr("cuda.GeGLUBackward up", up, dt, n), i64a(n))
}

// EmbeddingForward gathers out[i,:] = table[ids[i],:]; an id outside the
// table is reported by Sync.
func (be *Backend) EmbeddingForward(out, table, ids tensor.Buffer, n, dim int) {
	if dim <= 0 || table.Len()%dim != 0 {
		panic(fmt.Sprintf("cuda.EmbeddingForward: table of %d elements is not rows of %d", table.Len(), dim))
	}
	be.launch1D("embed_fwd_f32", n*dim, be.ptr("cuda.EmbeddingForward out", out, tensor.F32, n*dim),
		be.ptr("cuda.EmbeddingForward table", table, tensor.F32, table.Len()), be.ptr("cuda.EmbeddingForward ids", ids, tensor.I32, n),
		i64a(n), i32a(dim), i32a(table.Len()/dim), ptrArg(be.errWord))
}

// embedBuckets is the number of id classes the embedding backward splits
// each column's work into.
const embedBuckets = 64

// EmbeddingBackward accumulates dtable[ids[i],:] += dout[i,:], every
// element in token order; an id outside the table is reported by Sync.
func (be *Backend) EmbeddingBackward(dtable, dout, ids tensor.Buffer, n, dim int) {
	if dim <= 0 || dtable.Len()%dim != 0 {
		panic(fmt.Sprintf("cuda.EmbeddingBackward: dtable of %d elements is not rows of %d", dtable.Len(), dim))
	}
	if n <= 0 {
		return
	}
	be.launch("embed_bwd_f32", [3]int{(dim + 127) / 128, embedBuckets, 1}, [3]int{128, 1, 1}, 0,
		be.ptr("cuda.EmbeddingBackward dtable", dtable, tensor.F32, dtable.Len()),
		be.ptr("cuda.EmbeddingBackward dout", dout, tensor.F32, n*dim), be.ptr("cuda.EmbeddingBackward ids", ids, tensor.I32, n),
		i64a(n), i32a(dim), i32a(dtable.Len()/dim), i32a(embedBuckets), ptrArg(be.errWord))
}

// rowThreads is the block size of the one-block-per-row kernels.
func rowThreads(dim int) int {
	switch {
	case dim >= 4096:
		return 1024
	case dim >= 1024:
		return 512
	case dim >= 256:
		return 256
	}
	return 128
}

// RMSNormForward normalises each row of x [n,dim] and scales it by w
// (rounded when out is BF16).
func (be *Backend) RMSNormForward(out, rstd, x, w tensor.Buffer, n, dim int, eps float32) {
	if n <= 0 {
		return
	}
	dt, kernel := actKernel("rmsnorm_fwd", out)
	be.launch(kernel, [3]int{n, 1, 1}, [3]int{rowThreads(dim), 1, 1}, 0,
		be.ptr("cuda.RMSNormForward out", out, dt, n*dim), be.ptr("cuda.RMSNormForward rstd", rstd, tensor.F32, n),
		be.ptr("cuda.RMSNormForward x", x, tensor.F32, n*dim), be.ptr("cuda.RMSNormForward w", w, tensor.F32, dim),
		i64a(n), i32a(dim), f32a(eps))
}

// RMSNormBackward accumulates dw (first: dx may alias dout) and overwrites
// dx.
func (be *Backend) RMSNormBackward(dx, dw, dout, x, w, rstd tensor.Buffer, n, dim int) {
	g := be.ptr("cuda.RMSNormBackward dout", dout, tensor.F32, n*dim)
	xs := be.ptr("cuda.RMSNormBackward x", x, tensor.F32, n*dim)
	rs := be.ptr("cuda.RMSNormBackward rstd", rstd, tensor.F32, n)
	be.colSum(be.ptr("cuda.RMSNormBackward dw", dw, tensor.F32, dim), g, xs, rs, n, dim)
	if n <= 0 {
		return
	}
	be.launch("rmsnorm_bwd_dx_f32", [3]int{n, 1, 1}, [3]int{rowThreads(dim), 1, 1}, 0,
		be.ptr("cuda.RMSNormBackward dx", dx, tensor.F32, n*dim), g, xs,
		be.ptr("cuda.RMSNormBackward w", w, tensor.F32, dim), rs, i64a(n), i32a(dim))
}

func (be *Backend) rope(name string, out, x, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int, sign float32) {
	if rotDim <= 0 || rotDim%2 != 0 || rotDim > headDim {
		panic(fmt.Sprintf("%s: rotary dim %d of head dim %d must be even, positive and at most the head dim", name, rotDim, headDim))
	}
	size := n * heads * headDim
	per := rotDim/2 + headDim - rotDim
	dt, kernel := actKernel("rope", out) // x and out: F32, or BF16 activations
	be.launch1D(kernel, n*heads*per, be.ptr(name+" out", out, dt, size), be.ptr(name+" x", x, dt, size),
		be.ptr(name+" pos", pos, tensor.I32, n), be.ptr(name+" invFreq", invFreq, tensor.F32, rotDim/2),
		i64a(n), i32a(heads), i32a(headDim), i32a(rotDim), f32a(sign))
}

// RoPEForward applies rotate-half rotary embeddings.
func (be *Backend) RoPEForward(out, x, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int) {
	be.rope("cuda.RoPEForward", out, x, pos, invFreq, n, heads, headDim, rotDim, 1)
}

// RoPEBackward applies the transposed rotation.
func (be *Backend) RoPEBackward(dx, dout, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int) {
	be.rope("cuda.RoPEBackward", dx, dout, pos, invFreq, n, heads, headDim, rotDim, -1)
}

// AdamW applies one AdamW step (torch.optim.AdamW's order).
func (be *Backend) AdamW(param, grad, m, v tensor.Buffer, n int, h tensor.AdamW) {
	if h.Step < 1 {
		panic(fmt.Sprintf("cuda.AdamW: step %d, want >= 1", h.Step))
	}
	bc1 := 1 - math.Pow(float64(h.Beta1), float64(h.Step))
	bc2 := 1 - math.Pow(float64(h.Beta2), float64(h.Step))
	be.launch1D("adamw_f32", n, be.ptr("cuda.AdamW param", param, tensor.F32, n), be.ptr("cuda.AdamW grad", grad, tensor.F32, n),
		be.ptr("cuda.AdamW m", m, tensor.F32, n), be.ptr("cuda.AdamW v", v, tensor.F32, n), i64a(n),
		f32a(1-h.LR*h.WeightDecay), f32a(h.Beta1), f32a(h.Beta2), f32a(float32(float64(h.LR)/bc1)),
		f32a(float32(math.Sqrt(bc2))), f32a(h.Eps))
}

// normChunk is NORM_CHUNK of elementwise.cu: the fixed reduction granule
// of GlobalNorm.
const normChunk = 8192

// GlobalNorm writes sqrt(Σ g²) over all grads to out[0]: per buffer, each
// chunk of normChunk elements is summed by one block in a fixed order into
// scratch, then one block adds the chunk sums in order.
func (be *Backend) GlobalNorm(out tensor.Buffer, grads []tensor.Buffer) {
	o := be.ptr("cuda.GlobalNorm out", out, tensor.F32, 1)
	total := 0
	for _, g := range grads {
		tensor.Need("cuda.GlobalNorm grads", g, tensor.F32, 0)
		total += (g.Len() + normChunk - 1) / normChunk
	}
	part := be.scratchPtr(8 * max(total, 1))
	off := 0
	for _, g := range grads {
		chunks := (g.Len() + normChunk - 1) / normChunk
		if chunks == 0 {
			continue
		}
		be.launch("sumsq_partial_f64", [3]int{chunks, 1, 1}, [3]int{256, 1, 1}, 0,
			ptrArg(part+cu.DevicePtr(8*off)), be.ptr("cuda.GlobalNorm grads", g, tensor.F32, g.Len()), i64a(g.Len()))
		off += chunks
	}
	be.launch("sum_sqrt_f64", [3]int{1, 1, 1}, [3]int{1024, 1, 1}, 0, o, ptrArg(part), i64a(total))
}

// ClipByNorm scales every grad by min(1, maxNorm/(norm[0]+1e-6)), reading
// the norm on the device (no host round trip).
func (be *Backend) ClipByNorm(grads []tensor.Buffer, norm tensor.Buffer, maxNorm float32) {
	np := be.ptr("cuda.ClipByNorm norm", norm, tensor.F32, 1)
	for _, g := range grads {
		be.launch1D("clip_f32", g.Len(), be.ptr("cuda.ClipByNorm grads", g, tensor.F32, g.Len()), np, f32a(maxNorm), i64a(g.Len()))
	}
}

// Convert copies n elements converting F32 <-> BF16 and F32 <-> F16; equal
// dtypes copy.
func (be *Backend) Convert(dst, src tensor.Buffer, n int) {
	sd, dd := src.DType(), dst.DType()
	if sd == dd {
		be.Copy(dst.View(0, n), src.View(0, n))
		return
	}
	var name string
	switch {
	case sd == tensor.F32 && dd == tensor.BF16:
		name = "f32_to_bf16"
	case sd == tensor.F32 && dd == tensor.F16:
		name = "f32_to_f16"
	case sd == tensor.BF16 && dd == tensor.F32:
		name = "bf16_to_f32"
	case sd == tensor.F16 && dd == tensor.F32:
		name = "f16_to_f32"
	default:
		panic(fmt.Sprintf("cuda.Convert: no conversion from %v to %v", sd, dd))
	}
	be.launch1D(name, n, be.ptr("cuda.Convert dst", dst, dd, n), be.ptr("cuda.Convert src", src, sd, n), i64a(n))
}

// actKernel returns the dtype of an activation output (F32, or BF16 under
// mixed precision; anything else is F32 and refused by ptr) and the kernel
// entry point writing it: name_f32 or name_bf16.
func actKernel(name string, out tensor.Buffer) (tensor.DType, string) {
	if out.DType() == tensor.BF16 {
		return tensor.BF16, name + "_bf16"
	}
	return tensor.F32, name + "_f32"
}

// extent is how many elements a rows×cols row-major matrix with row stride
// ld spans.
func extent(rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

// cudaType maps a buffer dtype to cuBLAS's.
func cudaType(what string, dt tensor.DType) int {
	switch dt {
	case tensor.F32:
		return cudaR32F
	case tensor.BF16:
		return cudaR16BF
	case tensor.F16:
		return cudaR16F
	}
	panic(fmt.Sprintf("cuda.Gemm: %s is %v; want f32, bf16 or f16", what, dt))
}

// Gemm runs g with cuBLAS. Row-major C = op(A)·op(B) is column-major
// Cᵀ = op(B)ᵀ·op(A)ᵀ, so cuBLAS gets B first. A and B must share a dtype
// (F32, BF16 or F16); C is F32 or that dtype; accumulation is float32
// (F32 inputs per Options.F32Compute).
func (be *Backend) Gemm(g tensor.Gemm) {
	batch := max(g.Batch, 1)
	if g.M < 0 || g.N < 0 || g.K < 0 || g.StrideA < 0 || g.StrideB < 0 || g.StrideC < 0 {
		panic(fmt.Sprintf("cuda.Gemm: negative shape or stride in %+v", g))
	}
	mixed := g.A.DType() != g.B.DType()
	if mixed && !(g.C.DType() == tensor.F32 && (g.A.DType() == tensor.BF16 && g.B.DType() == tensor.F32 || g.A.DType() == tensor.F32 && g.B.DType() == tensor.BF16)) {
		panic(fmt.Sprintf("cuda.Gemm: A is %v, B is %v, C is %v (mixed inputs: one BF16, one F32, F32 C)", g.A.DType(), g.B.DType(), g.C.DType()))
	}
	if g.C.DType() != tensor.F32 && g.C.DType() != g.A.DType() {
		panic(fmt.Sprintf("cuda.Gemm: C is %v with %v inputs", g.C.DType(), g.A.DType()))
	}
	ar, ac := g.M, g.K
	if g.TransA {
		ar, ac = g.K, g.M
	}
	br, bc := g.K, g.N
	if g.TransB {
		br, bc = g.N, g.K
	}
	if (ar > 0 && g.LDA < max(ac, 1)) || (br > 0 && g.LDB < max(bc, 1)) || (g.M > 0 && g.LDC < max(g.N, 1)) {
		panic(fmt.Sprintf("cuda.Gemm: leading dimensions too small in %+v", g))
	}
	last := batch - 1
	na, nb := last*g.StrideA+extent(ar, ac, g.LDA), last*g.StrideB+extent(br, bc, g.LDB)
	a := be.ptr("cuda.Gemm A", g.A, g.A.DType(), na)
	b := be.ptr("cuda.Gemm B", g.B, g.B.DType(), nb)
	c := be.ptr("cuda.Gemm C", g.C, g.C.DType(), last*g.StrideC+extent(g.M, g.N, g.LDC))
	if g.M == 0 || g.N == 0 {
		return
	}
	adt, bdt := g.A.DType(), g.B.DType()
	if mixed {
		// cuBLAS takes one input type: the F32 operand beside a BF16 one
		// (a gradient beside a bfloat16 weight or activation, a float32
		// adapter beside a bfloat16 activation) is rounded to bfloat16
		// into scratch, and the product runs on the tensor cores with
		// float32 accumulation.
		if adt == tensor.F32 {
			s := be.scratchPtr(2 * max(na, 1))
			be.launch1D("f32_to_bf16", na, ptrArg(s), a, i64a(na))
			a, adt = ptrArg(s), tensor.BF16
		} else {
			s := be.scratchPtr(2 * max(nb, 1))
			be.launch1D("f32_to_bf16", nb, ptrArg(s), b, i64a(nb))
			b, bdt = ptrArg(s), tensor.BF16
		}
	}
	compute := cublasCompute32F
	if adt == tensor.F32 {
		compute = be.opts.F32Compute.cublasValue()
	}
	call := gemmCall{transA: g.TransB, transB: g.TransA, m: g.N, n: g.M, k: g.K, alpha: g.Alpha, beta: g.Beta,
		a: b, b: a, c: c, atype: cudaType("B", bdt), btype: cudaType("A", adt), ctype: cudaType("C", g.C.DType()),
		lda: max(g.LDB, 1), ldb: max(g.LDA, 1), ldc: max(g.LDC, 1),
		strideA: int64(g.StrideB), strideB: int64(g.StrideA), strC: int64(g.StrideC), batch: batch, compute: compute}
	defer be.enter()()
	if err := be.blas.gemm(&call); err != nil {
		be.fail(err)
	}
}

// checkAttn panics unless a's shapes and options are valid for the
// kernels (D a multiple of 4, at most 256).
func checkAttn(what string, B, T, Hq, Hkv, D int, softCap float32, window int, alibi tensor.Buffer) {
	if B <= 0 || T <= 0 || Hq <= 0 || Hkv <= 0 || D <= 0 || Hq%Hkv != 0 {
		panic(fmt.Sprintf("%s: bad shape B=%d T=%d Hq=%d Hkv=%d D=%d (need positive sizes, Hq %% Hkv == 0)", what, B, T, Hq, Hkv, D))
	}
	if D%4 != 0 || D > 256 {
		panic(fmt.Sprintf("%s: head dim %d: the CUDA kernels need a multiple of 4 up to 256", what, D))
	}
	if !(softCap >= 0) || math.IsInf(float64(softCap), 1) {
		panic(fmt.Sprintf("%s: SoftCap=%v, want 0 (off) or a finite positive cap", what, softCap))
	}
	if window < 0 {
		panic(fmt.Sprintf("%s: Window=%d, want 0 (off) or > 0", what, window))
	}
	if !alibi.IsNil() {
		tensor.Need(what+" ALiBi", alibi, tensor.F32, Hq)
	}
}

// attnVariant picks the kernel instantiation for head dim D.
func attnVariant(D int) string {
	switch {
	case D <= 64:
		return "d64"
	case D <= 128:
		return "d128"
	}
	return "d256"
}

// AttentionForward runs causal grouped-query attention (attn_fwd_*, or
// attn_fwd_*_bf16 for bfloat16 q, k, v and out).
func (be *Backend) AttentionForward(out, lse, q, k, v, segIDs tensor.Buffer, a tensor.Attn) {
	checkAttn("cuda.AttentionForward", a.B, a.T, a.Hq, a.Hkv, a.D, a.SoftCap, a.Window, a.ALiBi)
	nq, nk := a.B*a.T*a.Hq*a.D, a.B*a.T*a.Hkv*a.D
	warps := 4
	if a.D > 128 {
		warps = 2
	}
	bq := 4 * warps // RW rows per warp
	smem := 4 * (bq*a.D + 32*(a.D+4) + bq*32)
	kernel, dt := "attn_fwd_"+attnVariant(a.D), out.DType()
	if dt == tensor.BF16 {
		kernel += "_bf16"
	}
	be.launch(kernel, [3]int{(a.T + bq - 1) / bq, a.Hq, a.B}, [3]int{32 * warps, 1, 1}, smem,
		be.ptr("cuda.AttentionForward out", out, dt, nq), be.ptr("cuda.AttentionForward lse", lse, tensor.F32, a.B*a.Hq*a.T),
		be.ptr("cuda.AttentionForward q", q, dt, nq), be.ptr("cuda.AttentionForward k", k, dt, nk),
		be.ptr("cuda.AttentionForward v", v, dt, nk), be.optPtr("cuda.AttentionForward segIDs", segIDs, tensor.I32, a.B*a.T),
		be.optPtr("cuda.AttentionForward ALiBi", a.ALiBi, tensor.F32, a.Hq),
		i32a(a.T), i32a(a.Hq), i32a(a.Hkv), i32a(a.D), f32a(a.Scale), f32a(a.SoftCap), i32a(a.Window))
}

// AttentionBackward overwrites dq, dk and dv: drow = rowsum(dO∘O) into
// scratch, then dk/dv per key tile and dq per query tile.
func (be *Backend) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, segIDs tensor.Buffer, a tensor.Attn) {
	checkAttn("cuda.AttentionBackward", a.B, a.T, a.Hq, a.Hkv, a.D, a.SoftCap, a.Window, a.ALiBi)
	nq, nk := a.B*a.T*a.Hq*a.D, a.B*a.T*a.Hkv*a.D
	pdq := be.ptr("cuda.AttentionBackward dq", dq, tensor.F32, nq)
	pdk := be.ptr("cuda.AttentionBackward dk", dk, tensor.F32, nk)
	pdv := be.ptr("cuda.AttentionBackward dv", dv, tensor.F32, nk)
	pdo := be.ptr("cuda.AttentionBackward dout", dout, tensor.F32, nq)
	qdt, suffix := q.DType(), ""
	if qdt == tensor.BF16 {
		suffix = "_bf16" // bfloat16 q, k, v
	}
	pq := be.ptr("cuda.AttentionBackward q", q, qdt, nq)
	pk := be.ptr("cuda.AttentionBackward k", k, qdt, nk)
	pv := be.ptr("cuda.AttentionBackward v", v, qdt, nk)
	odt, drowKernel := out.DType(), "attn_bwd_drow"
	if odt == tensor.BF16 {
		drowKernel += "_bf16"
	}
	po := be.ptr("cuda.AttentionBackward out", out, odt, nq)
	pl := be.ptr("cuda.AttentionBackward lse", lse, tensor.F32, a.B*a.Hq*a.T)
	pseg := be.optPtr("cuda.AttentionBackward segIDs", segIDs, tensor.I32, a.B*a.T)
	palibi := be.optPtr("cuda.AttentionBackward ALiBi", a.ALiBi, tensor.F32, a.Hq)
	rows := a.B * a.T * a.Hq
	drow := ptrArg(be.scratchPtr(4 * rows))
	be.launch(drowKernel, [3]int{(rows + 7) / 8, 1, 1}, [3]int{256, 1, 1}, 0,
		drow, pdo, po, i32a(a.B), i32a(a.T), i32a(a.Hq), i32a(a.D))
	opts := []uint64{i32a(a.T), i32a(a.Hq), i32a(a.Hkv), i32a(a.D), f32a(a.Scale), f32a(a.SoftCap), i32a(a.Window)}
	variant := attnVariant(a.D) + suffix

	// dk, dv: 4 warps of KW keys (KW = 8, or 4 for D > 128), query tiles of
	// 32 (attention.cu: attn_bwd_dkdv).
	kw := 8
	if a.D > 128 {
		kw = 4
	}
	kb := 4 * kw
	smem := 4 * (2*32*(a.D+4) + 2*32 + 2*kb*32)
	be.launch("attn_bwd_dkdv_"+variant, [3]int{(a.T + kb - 1) / kb, a.Hkv, a.B}, [3]int{128, 1, 1}, smem,
		append([]uint64{pdk, pdv, pdo, pq, pk, pv, pl, drow, pseg, palibi}, opts...)...)

	// dq: query tiles of 4 rows per warp, 4 warps for D <= 64, else 2.
	warps := 4
	if a.D > 64 {
		warps = 2
	}
	bq := 4 * warps
	smem = 4 * (2*bq*a.D + 2*32*(a.D+4) + bq*32)
	be.launch("attn_bwd_dq_"+variant, [3]int{(a.T + bq - 1) / bq, a.Hq, a.B}, [3]int{32 * warps, 1, 1}, smem,
		append([]uint64{pdq, pdo, pq, pk, pv, pl, drow, pseg, palibi}, opts...)...)
}

// decodeThreads is attn_decode's block size.
const decodeThreads = 128

// AttentionDecode runs one query per row against the KV cache (q and out
// F32, or both BF16); a length outside [1, MaxT] is reported by Sync.
func (be *Backend) AttentionDecode(out, q, kCache, vCache, lens tensor.Buffer, a tensor.AttnDecode) {
	if a.MaxT <= 0 {
		panic(fmt.Sprintf("cuda.AttentionDecode: bad shape %+v", a))
	}
	checkAttn("cuda.AttentionDecode", a.B, a.MaxT, a.Hq, a.Hkv, a.D, a.SoftCap, a.Window, a.ALiBi)
	nq, nc := a.B*a.Hq*a.D, a.B*a.MaxT*a.Hkv*a.D
	sc := be.scratchPtr(4 * a.B * a.Hq * a.MaxT)
	kernel, dt := "attn_decode", out.DType()
	if dt == tensor.BF16 {
		kernel += "_bf16"
	}
	be.launch(kernel, [3]int{a.Hq, a.B, 1}, [3]int{decodeThreads, 1, 1}, 0,
		be.ptr("cuda.AttentionDecode out", out, dt, nq), ptrArg(sc),
		be.ptr("cuda.AttentionDecode q", q, dt, nq), be.ptr("cuda.AttentionDecode kCache", kCache, tensor.F32, nc),
		be.ptr("cuda.AttentionDecode vCache", vCache, tensor.F32, nc), be.ptr("cuda.AttentionDecode lens", lens, tensor.I32, a.B),
		be.optPtr("cuda.AttentionDecode ALiBi", a.ALiBi, tensor.F32, a.Hq),
		i32a(a.MaxT), i32a(a.Hq), i32a(a.Hkv), i32a(a.D), f32a(a.Scale), f32a(a.SoftCap), i32a(a.Window), ptrArg(be.errWord))
}

// CrossEntropy runs the fused LM head + cross-entropy chunk by chunk:
// logits = x_chunk·wᵀ (cuBLAS) into the workspace, xent_rows turns them
// into losses and dlogits in place, then dx_chunk = dlogits·w and
// dw += dlogitsᵀ·x_chunk (cuBLAS). Unlike the CPU backend it cannot see the
// targets on the host, so it computes chunks whose targets are all ignored
// too (their loss and gradient are zero either way).
func (be *Backend) CrossEntropy(losses, dx, dw, x, w, targets, workspace tensor.Buffer, c tensor.CrossEntropy) {
	if c.N < 0 || c.C <= 0 || c.V <= 0 || c.ChunkRows <= 0 {
		panic(fmt.Sprintf("cuda.CrossEntropy: bad shape %+v", c))
	}
	if !(c.SoftCap >= 0) || math.IsInf(float64(c.SoftCap), 1) {
		panic(fmt.Sprintf("cuda.CrossEntropy: SoftCap=%v, want 0 (off) or a finite positive cap", c.SoftCap))
	}
	pl := be.ptr("cuda.CrossEntropy losses", losses, tensor.F32, c.N)
	pt := be.ptr("cuda.CrossEntropy targets", targets, tensor.I32, c.N)
	tensor.Need("cuda.CrossEntropy x", x, tensor.F32, c.N*c.C)
	tensor.Need("cuda.CrossEntropy w", w, tensor.F32, c.V*c.C)
	tensor.Need("cuda.CrossEntropy workspace", workspace, tensor.F32, min(c.ChunkRows, c.N)*c.V)
	grad := !dx.IsNil()
	var prs uint64
	if grad {
		tensor.Need("cuda.CrossEntropy dx", dx, tensor.F32, c.N*c.C)
		if !dw.IsNil() {
			tensor.Need("cuda.CrossEntropy dw", dw, tensor.F32, c.V*c.C)
		}
		prs = be.optPtr("cuda.CrossEntropy rowScale", c.RowScale, tensor.F32, c.N)
	}
	g := 0
	if grad {
		g = 1
	}
	for r0 := 0; r0 < c.N; r0 += c.ChunkRows {
		rows := min(c.ChunkRows, c.N-r0)
		xc := x.View(r0*c.C, rows*c.C)
		logits := workspace.View(0, rows*c.V)
		tensor.MatMul(be, logits, xc, w, rows, c.V, c.C, false, true, 0)
		var rs uint64
		if prs != 0 {
			rs = prs + uint64(4*r0)
		}
		be.launch("xent_rows", [3]int{rows, 1, 1}, [3]int{1024, 1, 1}, 0,
			be.ptr("cuda.CrossEntropy workspace", logits, tensor.F32, rows*c.V), pl+uint64(4*r0), pt+uint64(4*r0), rs,
			i32a(c.V), i32a(g), f32a(c.GradScale), f32a(c.SoftCap), ptrArg(be.errWord))
		if grad {
			tensor.MatMul(be, dx.View(r0*c.C, rows*c.C), logits, w, rows, c.C, c.V, false, false, 0)
			if !dw.IsNil() {
				tensor.MatMul(be, dw, logits, xc, c.V, c.C, rows, true, false, 1)
			}
		}
	}
}

// nf4Views checks q and returns its buffers' addresses.
func (be *Backend) nf4Ptrs(what string, q tensor.NF4Tensor) (codes, absq, scale2, offset uint64) {
	q.Check(what)
	blocks, groups := tensor.NF4Sizes(q.N)
	return be.ptr(what+" codes", q.Codes, tensor.NF4, q.N), be.ptr(what+" absmax", q.Absmax, tensor.U8, blocks),
		be.ptr(what+" scale2", q.Scale2, tensor.F32, groups), be.ptr(what+" offset", q.Offset, tensor.F32, 1)
}

// QuantizeNF4 quantises x [q.N] into q (the CPU backend's algorithm: block
// absmax, their mean as Offset, int8 absmax per group of 256 with Scale2,
// nearest codes against the decoded absmax).
func (be *Backend) QuantizeNF4(q tensor.NF4Tensor, x tensor.Buffer) {
	codes, absq, scale2, offset := be.nf4Ptrs("cuda.QuantizeNF4", q)
	px := be.ptr("cuda.QuantizeNF4 x", x, tensor.F32, q.N)
	blocks, groups := tensor.NF4Sizes(q.N)
	const sumChunk = 8192 // NF4_SUM_CHUNK
	parts := (blocks + sumChunk - 1) / sumChunk
	// Scratch: the true absmax per block, then the partial sums (8-byte
	// aligned).
	absOff := 0
	partOff := (4*blocks + 7) &^ 7
	base := be.scratchPtr(partOff + 8*parts)
	absTrue := ptrArg(base + cu.DevicePtr(absOff))
	part := ptrArg(base + cu.DevicePtr(partOff))
	be.launch1D("nf4_absmax", blocks, absTrue, px, i64a(blocks))
	be.launch("sum_partial_f64", [3]int{parts, 1, 1}, [3]int{256, 1, 1}, 0, part, absTrue, i64a(blocks))
	be.launch("mean_f64", [3]int{1, 1, 1}, [3]int{1024, 1, 1}, 0, offset, part, i64a(parts), i64a(blocks))
	be.launch("nf4_group", [3]int{groups, 1, 1}, [3]int{tensor.NF4GroupSize, 1, 1}, 0, absq, scale2, absTrue, offset, i64a(blocks))
	be.launch1D("nf4_codes_pack", q.N/2, codes, px, absq, scale2, offset, i64a(q.N))
}

// DequantNF4 expands values [start, start+n) of q into out [n].
func (be *Backend) DequantNF4(out tensor.Buffer, q tensor.NF4Tensor, start, n int) {
	const bs = tensor.NF4BlockSize
	if start < 0 || n < 0 || start%bs != 0 || n%bs != 0 || start+n > q.N {
		panic(fmt.Sprintf("cuda.DequantNF4: range [%d,%d) of %d values is not whole %d-value blocks", start, start+n, q.N, bs))
	}
	codes, absq, scale2, offset := be.nf4Ptrs("cuda.DequantNF4", q)
	be.launch1D("nf4_dequant", n/2, be.ptr("cuda.DequantNF4 out", out, tensor.F32, n), codes, absq, scale2, offset, i64a(start), i64a(n/2))
}
