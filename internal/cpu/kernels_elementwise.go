package cpu

import (
	"fmt"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// kargs holds one argument block per parallel kernel. A kernel fills its
// block, hands a pointer to par (an interface holding a pointer into the
// Backend, so nothing escapes to the heap), and clears it afterwards so no
// buffer is kept alive by a finished kernel.
type kargs struct {
	copy     copyK
	fill     fillK
	add      addK
	axpy     axpyK
	scale    axpyK
	bias     biasK
	biasGrad colSumK
	gated    gatedK
	embed    embedK
	embedBwd embedBwdK
	rms      rmsK
	rmsBwd   rmsBwdK
	rmsDW    colSumK
	rope     ropeK
	adamw    adamwK
	norm     normK
	conv     convK
	nf4      nf4K
}

const (
	grainElems = 1 << 14 // elementwise kernels: items per worker at least
	colChunk   = 64      // column-chunked reductions: columns per item
)

type copyK struct{ dst, src []byte }

func (k *copyK) run(lo, hi int) { copy(k.dst[lo:hi], k.src[lo:hi]) }

// Copy sets dst = src (same dtype and length).
func (be *Backend) Copy(dst, src tensor.Buffer) {
	if dst.DType() != src.DType() || dst.Len() != src.Len() {
		panic(fmt.Sprintf("cpu.Copy: %v from %v", dst, src))
	}
	d, err := hostBytes(dst)
	if err != nil {
		panic("cpu.Copy: dst: " + err.Error())
	}
	s, err := hostBytes(src)
	if err != nil {
		panic("cpu.Copy: src: " + err.Error())
	}
	be.k.copy = copyK{d, s}
	be.par(len(d), 4*grainElems, &be.k.copy)
	be.k.copy = copyK{}
}

type fillK struct {
	x []float32
	v float32
	b []byte // non-nil: zero these bytes instead
}

func (k *fillK) run(lo, hi int) {
	if k.b != nil {
		clear(k.b[lo:hi])
		return
	}
	x := k.x[lo:hi]
	for i := range x {
		x[i] = k.v
	}
}

// Zero sets every element of b to zero (any dtype).
func (be *Backend) Zero(b tensor.Buffer) {
	d, err := hostBytes(b)
	if err != nil {
		panic("cpu.Zero: " + err.Error())
	}
	if len(d) == 0 {
		return
	}
	be.k.fill = fillK{b: d}
	be.par(len(d), 4*grainElems, &be.k.fill)
	be.k.fill = fillK{}
}

// Fill sets every element of an F32 buffer to v.
func (be *Backend) Fill(b tensor.Buffer, v float32) {
	be.k.fill = fillK{x: f32("cpu.Fill", b, b.Len()), v: v}
	be.par(b.Len(), grainElems, &be.k.fill)
	be.k.fill = fillK{}
}

type addK struct {
	out, a, b []float32
	mul       bool
}

func (k *addK) run(lo, hi int) {
	out, a, b := k.out[lo:hi], k.a[lo:hi], k.b[lo:hi]
	if k.mul {
		mulRow(out, a, b)
		return
	}
	addRow(out, a, b)
}

// Mul sets out = a·b elementwise over n elements.
func (be *Backend) Mul(out, a, b tensor.Buffer, n int) {
	be.k.add = addK{f32("cpu.Mul out", out, n), f32("cpu.Mul a", a, n), f32("cpu.Mul b", b, n), true}
	be.par(n, grainElems, &be.k.add)
	be.k.add = addK{}
}

// Add sets out = a + b over n elements.
func (be *Backend) Add(out, a, b tensor.Buffer, n int) {
	be.k.add = addK{f32("cpu.Add out", out, n), f32("cpu.Add a", a, n), f32("cpu.Add b", b, n), false}
	be.par(n, grainElems, &be.k.add)
	be.k.add = addK{}
}

// axpyK computes y += alpha·x, or y *= alpha when x is nil.
type axpyK struct {
	y, x  []float32
	alpha float32
}

func (k *axpyK) run(lo, hi int) {
	y, a := k.y[lo:hi], k.alpha
	if k.x == nil {
		for i := range y {
			y[i] *= a
		}
		return
	}
	x := k.x[lo:hi]
	for i := range y {
		y[i] += a * x[i]
	}
}

// Axpy sets y += alpha·x over n elements.
func (be *Backend) Axpy(y, x tensor.Buffer, alpha float32, n int) {
	be.k.axpy = axpyK{f32("cpu.Axpy y", y, n), f32("cpu.Axpy x", x, n), alpha}
	be.par(n, grainElems, &be.k.axpy)
	be.k.axpy = axpyK{}
}

// Scale sets x *= alpha over n elements.
func (be *Backend) Scale(x tensor.Buffer, alpha float32, n int) {
	be.k.scale = axpyK{y: f32("cpu.Scale x", x, n), alpha: alpha}
	be.par(n, grainElems, &be.k.scale)
	be.k.scale = axpyK{}
}

type biasK struct {
	x, bias []float32
	cols    int
}

func (k *biasK) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		row := k.x[i*k.cols : (i+1)*k.cols]
		for j, b := range k.bias {
			row[j] += b
		}
	}
}

// AddBias adds bias [cols] to every row of x [rows,cols].
func (be *Backend) AddBias(x, bias tensor.Buffer, rows, cols int) {
	be.k.bias = biasK{f32("cpu.AddBias x", x, rows*cols), f32("cpu.AddBias bias", bias, cols), cols}
	be.par(rows, max(1, grainElems/max(cols, 1)), &be.k.bias)
	be.k.bias = biasK{}
}

// colSumK accumulates dst[j] += Σ_i a[i,j]·b[i,j]·s[i] over all rows i in
// order (b nil: factor 1; s nil: factor 1), one chunk of colSumChunk
// columns per item, summing in float64 (colSum). Each column is reduced by one goroutine in
// row order, so the result does not depend on the split.
type colSumK struct {
	dst, a, b, s []float32
	rows, cols   int
}

func (k *colSumK) run(lo, hi int) {
	var acc [colSumChunk]float64
	for c := lo; c < hi; c++ {
		j0 := c * colSumChunk
		j1 := min(j0+colSumChunk, k.cols)
		a := acc[:j1-j0]
		clear(a)
		var b []float32
		if k.b != nil {
			b = k.b[j0:]
		}
		colSum(a, k.a[j0:], b, k.s, k.rows, k.cols)
		d := k.dst[j0:j1]
		for j := range d {
			d[j] += float32(a[j])
		}
	}
}

// colSumChunk is the width of colSumK's items: a column's sum does not
// depend on it, and narrow items let short rows (dim 64) use every worker.
const colSumChunk = 16

func colSumChunks(cols int) int { return (cols + colSumChunk - 1) / colSumChunk }

func colChunks(cols int) int { return (cols + colChunk - 1) / colChunk }

// BiasGrad accumulates dbias[j] += Σ_i dout[i,j] for dout [rows,cols].
func (be *Backend) BiasGrad(dbias, dout tensor.Buffer, rows, cols int) {
	be.k.biasGrad = colSumK{dst: f32("cpu.BiasGrad dbias", dbias, cols),
		a: f32("cpu.BiasGrad dout", dout, rows*cols), rows: rows, cols: cols}
	be.par(colSumChunks(cols), 1, &be.k.biasGrad)
	be.k.biasGrad = colSumK{}
}

// gatedK is a gated MLP activation's task (SwiGLU or GeGLU): forward out =
// act(gate)·up, or its backward. Bfloat16 gate and up (activations under
// mixed precision) are widened and a bfloat16 out is rounded a chunk at a
// time through stack buffers, so the float32 math is the same either way.
type gatedK struct {
	gelu                            bool // GeGLU, else SwiGLU
	out, gate, up, dout, dgate, dup []float32
	outH, gateH, upH                []uint16 // the BF16 ones (the float32 slice nil)
	backward                        bool
}

// The activations are called directly (not through func values) so that
// the stack buffers of run do not escape.
func (k *gatedK) fwd(out, gate, up []float32) {
	if k.gelu {
		gegluFwd(out, gate, up)
	} else {
		swigluFwd(out, gate, up)
	}
}

func (k *gatedK) bwd(dgate, dup, dout, gate, up []float32) {
	if k.gelu {
		gegluBwd(dgate, dup, dout, gate, up)
	} else {
		swigluBwd(dgate, dup, dout, gate, up)
	}
}

func (k *gatedK) run(lo, hi int) {
	if k.outH == nil && k.gateH == nil {
		if k.backward {
			k.bwd(k.dgate[lo:hi], k.dup[lo:hi], k.dout[lo:hi], k.gate[lo:hi], k.up[lo:hi])
		} else {
			k.fwd(k.out[lo:hi], k.gate[lo:hi], k.up[lo:hi])
		}
		return
	}
	var gb, ub, ob [roundChunk]float32
	for j := lo; j < hi; j += roundChunk {
		e := min(j+roundChunk, hi)
		w := e - j
		g, u := widenChunk(gb[:w], k.gate, k.gateH, j), widenChunk(ub[:w], k.up, k.upH, j)
		switch {
		case k.backward:
			k.bwd(k.dgate[j:e], k.dup[j:e], k.dout[j:e], g, u)
		case k.outH != nil:
			k.fwd(ob[:w], g, u)
			roundBF16(k.outH[j:e], ob[:w])
		default:
			k.fwd(k.out[j:e], g, u)
		}
	}
}

// widenChunk returns len(buf) values of an operand from index j: f's own
// memory, or h's bfloat16 values widened into buf.
func widenChunk(buf, f []float32, h []uint16, j int) []float32 {
	if h == nil {
		return f[j : j+len(buf)]
	}
	for i, v := range h[j : j+len(buf)] {
		buf[i] = tensor.F32FromBF16(v)
	}
	return buf
}

// gatedOperand views a gated activation's operand: F32, or BF16.
func gatedOperand(what string, b tensor.Buffer, n int) ([]float32, []uint16) {
	if b.DType() == tensor.BF16 {
		return nil, view[uint16](what, b, tensor.BF16, n)
	}
	return f32(what, b, n), nil
}

// runGated runs k over n elements with the given grain.
func (be *Backend) runGated(k gatedK, n, grain int) {
	if (k.gateH == nil) != (k.upH == nil) {
		panic("cpu: gated activation: gate and up must have the same dtype")
	}
	be.k.gated = k
	be.par(n, grain, &be.k.gated)
	be.k.gated = gatedK{}
}

// SwiGLUForward sets out = silu(gate)·up over n elements; gate, up and
// out may be BF16 (widened exactly, rounded).
func (be *Backend) SwiGLUForward(out, gate, up tensor.Buffer, n int) {
	var k gatedK
	k.gate, k.gateH = gatedOperand("cpu.SwiGLUForward gate", gate, n)
	k.up, k.upH = gatedOperand("cpu.SwiGLUForward up", up, n)
	k.out, k.outH = gatedOperand("cpu.SwiGLUForward out", out, n)
	be.runGated(k, n, grainElems/8)
}

// SwiGLUBackward overwrites dgate and dup (either may alias gate or up
// when they are F32).
func (be *Backend) SwiGLUBackward(dgate, dup, dout, gate, up tensor.Buffer, n int) {
	k := gatedK{backward: true, dgate: f32("cpu.SwiGLUBackward dgate", dgate, n),
		dup: f32("cpu.SwiGLUBackward dup", dup, n), dout: f32("cpu.SwiGLUBackward dout", dout, n)}
	k.gate, k.gateH = gatedOperand("cpu.SwiGLUBackward gate", gate, n)
	k.up, k.upH = gatedOperand("cpu.SwiGLUBackward up", up, n)
	be.runGated(k, n, grainElems/8)
}
