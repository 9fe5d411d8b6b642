package cpu

import "github.com/lathe-ml/lathe/internal/tensor"

// GeGLUForward sets out = gelu(gate)·up over n elements, gelu with the tanh
// approximation (see tensor.Backend); gate, up and out may be BF16.
func (be *Backend) GeGLUForward(out, gate, up tensor.Buffer, n int) {
	k := gatedK{gelu: true}
	k.gate, k.gateH = gatedOperand("cpu.GeGLUForward gate", gate, n)
	k.up, k.upH = gatedOperand("cpu.GeGLUForward up", up, n)
	k.out, k.outH = gatedOperand("cpu.GeGLUForward out", out, n)
	be.runGated(k, n, grainElems/16)
}

// GeGLUBackward overwrites dgate and dup (either may alias gate or up
// when they are F32).
func (be *Backend) GeGLUBackward(dgate, dup, dout, gate, up tensor.Buffer, n int) {
	k := gatedK{gelu: true, backward: true, dgate: f32("cpu.GeGLUBackward dgate", dgate, n),
		dup: f32("cpu.GeGLUBackward dup", dup, n), dout: f32("cpu.GeGLUBackward dout", dout, n)}
	k.gate, k.gateH = gatedOperand("cpu.GeGLUBackward gate", gate, n)
	k.up, k.upH = gatedOperand("cpu.GeGLUBackward up", up, n)
	be.runGated(k, n, grainElems/16)
}
