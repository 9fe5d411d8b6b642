package cpu

import (
	"fmt"
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// maxRoPEHalf bounds rotDim/2 so the per-token cos/sin tables fit on the
// stack (head dims up to 1024).
const maxRoPEHalf = 512

type ropeK struct {
	out, x, invFreq   []float32
	pos               []int32
	heads, hd, rotDim int
	sign              float32 // +1 forward, -1 backward (rotate by -angle)
}

func (k *ropeK) run(lo, hi int) {
	var cosT, sinT [maxRoPEHalf]float32
	half := k.rotDim / 2
	for t := lo; t < hi; t++ {
		p := float32(k.pos[t])
		for i, f := range k.invFreq[:half] {
			// The angle is rounded to float32 as transformers computes it.
			a := float64(p * f)
			cosT[i] = float32(math.Cos(a))
			sinT[i] = k.sign * float32(math.Sin(a))
		}
		for h := 0; h < k.heads; h++ {
			base := (t*k.heads + h) * k.hd
			x := k.x[base : base+k.hd]
			out := k.out[base : base+k.hd]
			for i := 0; i < half; i++ {
				x1, x2 := x[i], x[i+half]
				c, s := cosT[i], sinT[i]
				out[i] = x1*c - x2*s
				out[i+half] = x2*c + x1*s
			}
			if &out[0] != &x[0] {
				copy(out[k.rotDim:], x[k.rotDim:])
			}
		}
	}
}

func (be *Backend) rope(name string, out, x, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int, sign float32) {
	if rotDim <= 0 || rotDim%2 != 0 || rotDim > headDim || rotDim/2 > maxRoPEHalf {
		panic(fmt.Sprintf("%s: rotary dim %d of head dim %d must be even, positive and at most %d", name, rotDim, headDim, 2*maxRoPEHalf))
	}
	size := n * heads * headDim
	be.k.rope = ropeK{f32("cpu.RoPE out", out, size), f32("cpu.RoPE x", x, size),
		f32("cpu.RoPE invFreq", invFreq, rotDim/2), i32("cpu.RoPE pos", pos, n), heads, headDim, rotDim, sign}
	be.par(n, max(1, grainElems/max(heads*headDim, 1)), &be.k.rope)
	be.k.rope = ropeK{}
}

// RoPEForward applies rotate-half rotary embeddings (see tensor.Backend).
func (be *Backend) RoPEForward(out, x, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int) {
	be.rope("cpu.RoPEForward", out, x, pos, invFreq, n, heads, headDim, rotDim, 1)
}

// RoPEBackward applies the inverse (transposed) rotation to dout.
func (be *Backend) RoPEBackward(dx, dout, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int) {
	be.rope("cpu.RoPEBackward", dx, dout, pos, invFreq, n, heads, headDim, rotDim, -1)
}
