package cpu

import "github.com/lathe-ml/lathe/internal/tensor"

// gegluK is GeGLU's task: forward out = gelu(gate)·up, or its backward.
type gegluK struct {
	out, gate, up, dout, dgate, dup []float32
	outH                            []uint16 // the output when it is BF16
	backward                        bool
}

func (k *gegluK) run(lo, hi int) {
	switch {
	case k.backward:
	case k.outH != nil:
		var buf [roundChunk]float32
		for j := lo; j < hi; j += roundChunk {
			e := min(j+roundChunk, hi)
			gegluFwd(buf[:e-j], k.gate[j:e], k.up[j:e])
			roundBF16(k.outH[j:e], buf[:e-j])
		}
		return
	default:
		gegluFwd(k.out[lo:hi], k.gate[lo:hi], k.up[lo:hi])
		return
	}
	gegluBwd(k.dgate[lo:hi], k.dup[lo:hi], k.dout[lo:hi], k.gate[lo:hi], k.up[lo:hi])
}

// GeGLUForward sets out = gelu(gate)·up over n elements, gelu with the tanh
// approximation (see tensor.Backend).
func (be *Backend) GeGLUForward(out, gate, up tensor.Buffer, n int) {
	be.k.geglu = gegluK{gate: f32("cpu.GeGLUForward gate", gate, n), up: f32("cpu.GeGLUForward up", up, n)}
	if out.DType() == tensor.BF16 {
		be.k.geglu.outH = view[uint16]("cpu.GeGLUForward out", out, tensor.BF16, n)
	} else {
		be.k.geglu.out = f32("cpu.GeGLUForward out", out, n)
	}
	be.par(n, grainElems/16, &be.k.geglu)
	be.k.geglu = gegluK{}
}

// GeGLUBackward overwrites dgate and dup (either may alias gate or up).
func (be *Backend) GeGLUBackward(dgate, dup, dout, gate, up tensor.Buffer, n int) {
	be.k.geglu = gegluK{backward: true,
		dgate: f32("cpu.GeGLUBackward dgate", dgate, n), dup: f32("cpu.GeGLUBackward dup", dup, n),
		dout: f32("cpu.GeGLUBackward dout", dout, n), gate: f32("cpu.GeGLUBackward gate", gate, n),
		up: f32("cpu.GeGLUBackward up", up, n)}
	be.par(n, grainElems/16, &be.k.geglu)
	be.k.geglu = gegluK{}
}
