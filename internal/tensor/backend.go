package tensor

// Backend is a compute device: it owns memory and runs kernels on it. See the
// package comment for the conventions every method follows. Unless stated,
// buffers are F32 and shapes are row-major over the named dimensions.
type Backend interface {
	// Name identifies the backend ("cpu", "cuda:0", ...).
	Name() string

	Allocator
	Transferer
	// Sync waits for all issued kernels and reports any deferred error.
	Sync() error

	// Copy sets dst = src; both have the same dtype and length.
	Copy(dst, src Buffer)
	// Zero sets every element of b to zero (any dtype).
	Zero(b Buffer)
	// Fill sets every element of an F32 buffer to v.
	Fill(b Buffer, v float32)

	// Gemm runs a (possibly batched, strided) matrix multiply; see Gemm.
	Gemm(g Gemm)

	// EmbeddingForward gathers rows: out[i,:] = table[ids[i],:].
	// out [n,dim], table [vocab,dim], ids I32 [n].
	EmbeddingForward(out, table, ids Buffer, n, dim int)
	// EmbeddingBackward scatter-adds: dtable[ids[i],:] += dout[i,:], in
	// token order for every row.
	EmbeddingBackward(dtable, dout, ids Buffer, n, dim int)

	// RMSNormForward: rstd[i] = 1/sqrt(mean_j x[i,j]² + eps),
	// out[i,j] = x[i,j]·rstd[i]·w[j]. x, out [n,dim], w [dim], rstd [n].
	// out may be BF16 (a bfloat16 activation): the float32 result rounded.
	RMSNormForward(out, rstd, x, w Buffer, n, dim int, eps float32)
	// RMSNormBackward overwrites dx [n,dim] (dx may equal dout) and
	// accumulates dw [dim] given dout, the forward input x and the saved
	// rstd.
	RMSNormBackward(dx, dw, dout, x, w, rstd Buffer, n, dim int)

	// RoPEForward rotates the first rotDim dims of every head with the
	// rotate-half (Hugging Face) layout: for i < rotDim/2, with
	// a = pos[t]·invFreq[i], (x[i], x[i+rotDim/2]) turns by angle a. Dims at
	// and after rotDim are copied unchanged. x, out [n,heads,headDim]
	// (out may equal x; both may be BF16, rotated in float32 and rounded),
	// pos I32 [n], invFreq [rotDim/2] (see RoPEInvFreq).
	RoPEForward(out, x, pos, invFreq Buffer, n, heads, headDim, rotDim int)
	// RoPEBackward is the transpose of RoPEForward: dx = Rᵀ·dout (dx may
	// equal dout).
	RoPEBackward(dx, dout, pos, invFreq Buffer, n, heads, headDim, rotDim int)

	// AttentionForward is causal scaled-dot-product attention with grouped
	// KV heads and optional segment ids: q, out [B,T,Hq,D], k, v
	// [B,T,Hkv,D], lse [B,Hq,T] (log-sum-exp of the final scores, saved for
	// backward), segIDs I32 [B*T] or the zero Buffer. A query attends to
	// keys at positions <= its own with the same segment id (and within
	// a.Window when set). a's SoftCap, Window and ALiBi shape the scores;
	// see Attn. q, k, v and out may be BF16 (bfloat16 activations: the
	// inputs widened exactly, the float32 result rounded into out).
	AttentionForward(out, lse, q, k, v, segIDs Buffer, a Attn)
	// AttentionBackward overwrites dq, dk, dv given dout and the forward's
	// inputs, output and lse (q, k, v, out F32 or BF16, as the forward
	// had them; the gradients F32).
	AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, segIDs Buffer, a Attn)

	// AttentionDecode is attention of one new query per row against a KV
	// cache (generation): q, out [B, Hq, D]; kCache, vCache [B, MaxT, Hkv,
	// D]; lens I32 [B]: row b's query attends to cache positions
	// [0, lens[b]) (its own key and value already written at lens[b]−1).
	// GQA, and the SoftCap, Window and ALiBi options, as AttentionForward
	// with the query at position lens[b]−1. q and out may be BF16.
	AttentionDecode(out, q, kCache, vCache, lens Buffer, a AttnDecode)

	// SwiGLUForward: out = silu(gate)·up, elementwise over n; gate and up
	// (together) and out may be BF16 (widened exactly, rounded).
	SwiGLUForward(out, gate, up Buffer, n int)
	// SwiGLUBackward overwrites dgate and dup (each may equal gate or up
	// when those are F32; gate and up may be BF16).
	SwiGLUBackward(dgate, dup, dout, gate, up Buffer, n int)
	// GeGLUForward: out = gelu(gate)·up, elementwise over n, with gelu's
	// tanh approximation (PyTorch gelu(approximate="tanh"), Hugging Face
	// "gelu_pytorch_tanh"): gelu(x) = x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
	// gate, up and out may be BF16, as SwiGLUForward.
	GeGLUForward(out, gate, up Buffer, n int)
	// GeGLUBackward overwrites dgate and dup (each may equal gate or up
	// when those are F32; gate and up may be BF16).
	GeGLUBackward(dgate, dup, dout, gate, up Buffer, n int)

	// AddBias: x[i,:] += bias for x [rows,cols], bias [cols].
	AddBias(x, bias Buffer, rows, cols int)
	// BiasGrad accumulates the column sums: dbias[j] += Σ_i dout[i,j].
	BiasGrad(dbias, dout Buffer, rows, cols int)

	// Add: out = a + b over n elements (out may alias a or b).
	Add(out, a, b Buffer, n int)
	// Axpy: y += alpha·x over n elements.
	Axpy(y, x Buffer, alpha float32, n int)
	// Scale: x *= alpha over n elements.
	Scale(x Buffer, alpha float32, n int)
	// Mul: out = a·b elementwise over n elements (out may alias a or b).
	Mul(out, a, b Buffer, n int)

	// CrossEntropy is the fused LM head + softmax cross-entropy; see
	// CrossEntropy's field docs. losses [N], x [N,C], w [V,C], targets I32
	// [N] (entries < 0 are ignored), workspace [chunkRows*V]. If dx is not
	// the zero Buffer, dx [N,C] is overwritten with dL/dx and dw [V,C]
	// accumulates dL/dw (unless dw is the zero Buffer: a frozen head) for
	// L = gradScale·Σ rowScale[i]·losses[i] (rowScale 1 when c.RowScale is
	// the zero Buffer).
	CrossEntropy(losses, dx, dw, x, w, targets, workspace Buffer, c CrossEntropy)

	// AdamW updates param in place from grad, with moment buffers m and v
	// (all [n]); see AdamW for the rule.
	AdamW(param, grad, m, v Buffer, n int, h AdamW)

	// GlobalNorm writes sqrt(Σ over all grads of g²) to out[0] (F32 [1]).
	GlobalNorm(out Buffer, grads []Buffer)
	// ClipByNorm scales every grad by min(1, maxNorm/(norm[0]+1e-6)), as
	// torch.nn.utils.clip_grad_norm_ does. norm is GlobalNorm's output.
	// A NaN norm leaves the grads unchanged: callers check the norm and
	// stop on divergence.
	ClipByNorm(grads []Buffer, norm Buffer, maxNorm float32)

	// Convert copies n elements from src to dst converting the dtype:
	// F32 -> BF16 and F32 -> F16 round to nearest even (NaN stays NaN,
	// overflow becomes Inf); BF16 -> F32 and F16 -> F32 are exact; equal
	// dtypes copy.
	Convert(dst, src Buffer, n int)

	// QuantizeNF4 quantises x [q.N] into q; see NF4Tensor for the format.
	QuantizeNF4(q NF4Tensor, x Buffer)
	// DequantNF4 expands values [start, start+n) of q into out [n] (F32);
	// start and n are multiples of NF4BlockSize (a whole tensor is 0, q.N).
	// A caller dequantising tile by tile keeps only one tile in F32.
	DequantNF4(out Buffer, q NF4Tensor, start, n int)
}

// Allocator is the memory half of a Backend.
type Allocator interface {
	// Alloc returns n zeroed elements of dt.
	Alloc(dt DType, n int) (Buffer, error)
	// Free releases an allocation made by Alloc (pass the Buffer Alloc
	// returned, not a view). Using it afterwards is an error.
	Free(b Buffer)
}

// Transferer moves bytes between the host and a Backend's memory.
type Transferer interface {
	// Upload copies len(src) == dst.Bytes() bytes from the host into dst.
	Upload(dst Buffer, src []byte) error
	// Download copies src.Bytes() == len(dst) bytes from src to the host,
	// after all previously issued kernels have finished.
	Download(dst []byte, src Buffer) error
}

// Gemm describes C = Alpha·op(A)·op(B) + Beta·C for Batch independent
// matrices. op(A) is M×K, op(B) is K×N, C is M×N; op(X) is Xᵀ when TransX.
// Matrices are row-major with row strides LDA, LDB, LDC (as stored: A is
// M×K or, transposed, K×M). Batch element b uses A at element offset
// b·StrideA, and likewise B and C. Batch 0 means 1. Beta 0 overwrites C
// without reading it.
//
// C is F32. A and B are F32 or BF16, in any combination (a model's
// bfloat16 weights, see llama.Options.BF16): the CPU backend multiplies
// the exactly widened values in float32; the CUDA backend multiplies on
// the tensor cores with float32 accumulation, rounding an F32 operand
// beside a BF16 one to bfloat16 first. (The CUDA backend also takes F16
// and same-type C; see internal/cuda.)
type Gemm struct {
	TransA, TransB   bool
	M, N, K          int
	Alpha, Beta      float32
	A, B, C          Buffer
	LDA, LDB, LDC    int
	StrideA, StrideB int
	StrideC          int
	Batch            int
}

// Attn holds attention's shapes: batch B, sequence T, query heads Hq, KV
// heads Hkv (Hq % Hkv == 0), head dim D, the score scale (usually
// 1/sqrt(D)), and score options whose zero values mean plain causal
// softmax attention.
//
// The score of query i and key j (positions within the row of T) in query
// head h is
//
//	s = Scale·q_i·k_j
//	s = SoftCap·tanh(s/SoftCap)        if SoftCap > 0
//	s = s + ALiBi[h]·(j − i)           if ALiBi is not the zero Buffer
//
// and the query takes the softmax over the keys j <= i with its segment id
// and, if Window > 0, with j > i − Window. This is the order of Hugging
// Face's Gemma 2 (scale, soft-cap, then the mask) and Baichuan 2 (ALiBi
// added to the scaled scores).
type Attn struct {
	B, T, Hq, Hkv, D int
	Scale            float32

	// SoftCap > 0 soft-caps the scaled scores into (−SoftCap, SoftCap), as
	// Gemma 2's attn_logit_softcapping; the backward multiplies by
	// 1 − tanh². 0 is off; negative is an error.
	SoftCap float32
	// Window > 0 is sliding-window attention: a query at position i sees
	// the keys at i−Window+1 .. i (Window keys, itself included). This is
	// Hugging Face's sliding-window mask for Mistral and Gemma 2
	// (masking_utils.sliding_window_overlay: kv_idx > q_idx −
	// sliding_window; Gemma 2's older eager mask,
	// tril(diagonal=−sliding_window), is the same). Positions are those in
	// the row of T, also with segment ids. 0 is off; negative is an error.
	Window int
	// ALiBi, when not the zero Buffer, is F32 [Hq]: per-head slopes m_h
	// adding m_h·(j − i) to the scores (Press et al.; Baichuan 2 13B,
	// BLOOM). Baichuan writes the bias as m_h·j; softmax is invariant to
	// the row's offset, so the results are the same. See ALiBiSlopes.
	ALiBi Buffer
}

// AttnDecode holds AttentionDecode's shapes and its score options, which
// mean what Attn's do with the query at position lens[b]−1.
type AttnDecode struct {
	B, MaxT, Hq, Hkv, D int
	Scale               float32

	SoftCap float32
	Window  int
	ALiBi   Buffer
}

// CrossEntropy holds the fused LM-head cross-entropy's shapes: N rows of
// hidden size C against a vocabulary of V; logits are computed ChunkRows
// rows at a time into the workspace; the gradient is that of
// GradScale·Σ losses (e.g. 1/number of unmasked targets).
type CrossEntropy struct {
	N, C, V   int
	GradScale float32
	ChunkRows int
	// RowScale, when not the zero Buffer, is F32 [N]: row i's gradient is
	// additionally scaled by RowScale[i] (per-sequence weights, e.g. the
	// DPO loss's derivative with respect to each sequence's log-prob).
	RowScale Buffer
	// SoftCap > 0 soft-caps the logits before the softmax,
	// z = SoftCap·tanh(x·wᵀ/SoftCap), as Gemma 2's
	// final_logit_softcapping; gradients flow through it. 0 is off;
	// negative is an error.
	SoftCap float32
}

// AdamW is one AdamW step (Loshchilov & Hutter, as torch.optim.AdamW):
//
//	param -= LR·WeightDecay·param
//	m = Beta1·m + (1-Beta1)·g;  v = Beta2·v + (1-Beta2)·g²
//	param -= LR · (m/(1-Beta1^Step)) / (sqrt(v/(1-Beta2^Step)) + Eps)
//
// Step counts from 1. LR and WeightDecay are per call, so each parameter
// buffer may have its own.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	Step                               int
}

// MatMul runs one contiguous GEMM with leading dimensions implied by the
// shapes: C [m,n] = op(A)·op(B) (+ beta·C), where A is stored [m,k] or,
// with transA, [k,m]; B is stored [k,n] or, with transB, [n,k].
// NN: y = x·W; NT: y = x·Wᵀ (a linear layer with W [out,in]); TN: dW = dyᵀ·x.
func MatMul(be Backend, c, a, b Buffer, m, n, k int, transA, transB bool, beta float32) {
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	be.Gemm(Gemm{TransA: transA, TransB: transB, M: m, N: n, K: k, Alpha: 1, Beta: beta,
		A: a, B: b, C: c, LDA: lda, LDB: ldb, LDC: n, Batch: 1})
}
