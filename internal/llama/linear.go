package llama

import (
	"math/rand/v2"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// This file holds the linear layers: the base product (F32 weights, or NF4
// weights dequantised tile by tile), the bias, and the LoRA path with its
// optional dropout, forward and backward.

// weight is what a product reads: the bfloat16 working copy when there is
// one (Options.BF16), else the float32 weight.
func (p *Param) weight() tensor.Buffer {
	if !p.H.IsNil() {
		return p.H
	}
	return p.W
}

// adapted reports whether any layer carries a LoRA pair on linear i.
func (m *Model) adapted(i int) bool {
	for l := range m.layers {
		if m.layers[l].lin[i].a != nil {
			return true
		}
	}
	return false
}

// linear computes y [n,out] = x [n,in]·Wᵀ (+ bias) (+ Scale·(drop(x)·Aᵀ)·Bᵀ)
// for linear i of layer l, keeping x·Aᵀ for the backward pass.
func (m *Model) linear(st *fwdState, l, i int, y, x tensor.Buffer) {
	L := &m.layers[l].lin[i]
	n := st.n
	if y.DType() == tensor.BF16 {
		// A bfloat16 activation: the product, bias and adapter are summed
		// in float32 and rounded once.
		dst := y
		y = m.act.lin32.View(0, n*L.out)
		defer m.be.Convert(dst, y, n*L.out)
	}
	m.baseProduct(y, x, L, n)
	if L.b != nil {
		m.be.AddBias(y, L.b.W, n, L.out)
	}
	if L.a == nil || m.adaptersOff {
		return
	}
	r := m.opts.LoRA.Rank
	u := m.act.layers[l].lu[i]
	xin := x
	if st.dropSeed != 0 {
		xin = m.dropped(st, l, m.lead[i], x, L.in)
	}
	tensor.MatMul(m.be, u, xin, L.a.W, n, r, L.in, false, true, 0) // u = x·Aᵀ
	m.be.Gemm(tensor.Gemm{TransB: true, M: n, N: L.out, K: r, Alpha: m.opts.LoRA.Scale, Beta: 1,
		A: u, B: L.bl.W, C: y, LDA: r, LDB: r, LDC: L.out, Batch: 1}) // y += s·u·Bᵀ
}

// baseProduct sets y = x·Wᵀ, dequantising an NF4 weight a tile of rows at
// a time so that only one tile is ever held in F32.
func (m *Model) baseProduct(y, x tensor.Buffer, L *linear, n int) {
	if L.w.Q == nil {
		tensor.MatMul(m.be, y, x, L.w.weight(), n, L.out, L.in, false, true, 0)
		return
	}
	tr := nf4TileRows(L.out, L.in)
	for r0 := 0; r0 < L.out; r0 += tr {
		rows := min(tr, L.out-r0)
		tile := m.nf4Tile.View(0, rows*L.in)
		m.be.DequantNF4(tile, *L.w.Q, r0*L.in, rows*L.in)
		m.be.Gemm(tensor.Gemm{TransB: true, M: n, N: rows, K: L.in, Alpha: 1,
			A: x, B: tile, C: y.View(r0, (n-1)*L.out+rows), LDA: L.in, LDB: L.in, LDC: L.out, Batch: 1})
	}
}

// baseInputGrad sets (or with accumulate adds) dx = dy·W.
func (m *Model) baseInputGrad(dx, dy tensor.Buffer, L *linear, n int, accumulate bool) {
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	if L.w.Q == nil {
		tensor.MatMul(m.be, dx, dy, L.w.weight(), n, L.in, L.out, false, false, beta)
		return
	}
	tr := nf4TileRows(L.out, L.in)
	for r0 := 0; r0 < L.out; r0 += tr {
		rows := min(tr, L.out-r0)
		tile := m.nf4Tile.View(0, rows*L.in)
		m.be.DequantNF4(tile, *L.w.Q, r0*L.in, rows*L.in)
		m.be.Gemm(tensor.Gemm{M: n, N: L.in, K: rows, Alpha: 1, Beta: beta,
			A: dy.View(r0, (n-1)*L.out+rows), B: tile, C: dx, LDA: L.out, LDB: L.in, LDC: L.in, Batch: 1})
		beta = 1
	}
}

// linearBackward, for linear i of layer l with forward input x and output
// gradient dy: dx (= or += with accumulate) dL/dx; the gradients of the
// trainable weight, bias and LoRA pair accumulate. dx may be the zero
// Buffer when the input gradient is not needed.
func (m *Model) linearBackward(st *fwdState, l, i int, dx, dy, x tensor.Buffer, accumulate bool) {
	L := &m.layers[l].lin[i]
	n, be := st.n, m.be
	if !dx.IsNil() {
		m.baseInputGrad(dx, dy, L, n, accumulate)
	}
	if L.w.Trainable() {
		tensor.MatMul(be, L.w.Grad, dy, x, L.out, L.in, n, true, false, 1)
	}
	if L.b != nil && L.b.Trainable() {
		be.BiasGrad(L.b.Grad, dy, n, L.out)
	}
	if L.a == nil || m.adaptersOff {
		return
	}
	lo := m.opts.LoRA
	r, a := lo.Rank, m.act
	u := a.layers[l].lu[i]
	// dB += s·dyᵀ·u
	be.Gemm(tensor.Gemm{TransA: true, M: L.out, N: r, K: n, Alpha: lo.Scale, Beta: 1,
		A: dy, B: u, C: L.bl.Grad, LDA: L.out, LDB: r, LDC: r, Batch: 1})
	// du = s·dy·B
	du := a.du.View(0, n*r)
	be.Gemm(tensor.Gemm{M: n, N: r, K: L.out, Alpha: lo.Scale,
		A: dy, B: L.bl.W, C: du, LDA: L.out, LDB: r, LDC: r, Batch: 1})
	xin := x
	if st.dropSeed != 0 {
		xin = m.dropped(st, l, m.lead[i], x, L.in) // the same mask as forward
	}
	// dA += duᵀ·drop(x)
	tensor.MatMul(be, L.a.Grad, du, xin, r, L.in, n, true, false, 1)
	if dx.IsNil() {
		return
	}
	if st.dropSeed == 0 {
		tensor.MatMul(be, dx, du, L.a.W, n, L.in, r, false, false, 1) // dx += du·A
		return
	}
	tmp := a.xd.View(0, n*L.in) // drop(x) is consumed
	tensor.MatMul(be, tmp, du, L.a.W, n, L.in, r, false, false, 0)
	be.Mul(tmp, tmp, a.mask.View(0, n*L.in), n*L.in)
	be.Add(dx, dx, tmp, n*L.in)
}

// dropped returns drop(x) for linear i of layer l: x times a mask of 0 and
// 1/(1−p) drawn from the batch's dropout seed, the layer and the module
// (the lead linear of a fused module, whose parts share the input mask),
// so the backward pass redraws the forward's mask exactly.
func (m *Model) dropped(st *fwdState, l, i int, x tensor.Buffer, in int) tensor.Buffer {
	a, p := m.act, float64(m.opts.LoRA.Dropout)
	k := st.n * in
	if cap(a.maskHost) < k {
		a.maskHost = make([]float32, k)
	}
	mask := a.maskHost[:k]
	rng := rand.New(rand.NewPCG(st.dropSeed, uint64(l*numLinear+i)))
	keep := float32(1 / (1 - p))
	for j := range mask {
		if rng.Float64() < p {
			mask[j] = 0
		} else {
			mask[j] = keep
		}
	}
	mb, xd := a.mask.View(0, k), a.xd.View(0, k)
	if err := tensor.UploadF32(m.be, mb, mask); err != nil {
		panic(err) // a host-memory upload of a reserved buffer cannot fail short of a bug
	}
	if x.DType() != tensor.F32 {
		m.be.Convert(xd, x, k) // a bfloat16 activation, widened exactly
		x = xd
	}
	m.be.Mul(xd, x, mb, k)
	return xd
}
