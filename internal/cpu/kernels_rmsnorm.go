package cpu

import (
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

type rmsK struct {
	out, rstd, x, w []float32
	outH            []uint16 // the output when it is BF16 (out nil)
	dim             int
	eps             float32
}

func (k *rmsK) run(lo, hi int) {
	d := k.dim
	for i := lo; i < hi; i++ {
		x := k.x[i*d : (i+1)*d]
		r := float32(1 / math.Sqrt(sumSquares(x)/float64(d)+float64(k.eps)))
		k.rstd[i] = r
		if k.outH != nil {
			out := k.outH[i*d : (i+1)*d]
			for j, v := range x {
				out[j] = tensor.BF16FromF32(float32(v*r) * k.w[j])
			}
			continue
		}
		rmsScale(k.out[i*d:(i+1)*d], x, k.w, r)
	}
}

// RMSNormForward normalises each row of x [n,dim] and scales it by w; a
// BF16 out receives the float32 results rounded.
func (be *Backend) RMSNormForward(out, rstd, x, w tensor.Buffer, n, dim int, eps float32) {
	be.k.rms = rmsK{rstd: f32("cpu.RMSNormForward rstd", rstd, n),
		x: f32("cpu.RMSNormForward x", x, n*dim), w: f32("cpu.RMSNormForward w", w, dim), dim: dim, eps: eps}
	if out.DType() == tensor.BF16 {
		be.k.rms.outH = view[uint16]("cpu.RMSNormForward out", out, tensor.BF16, n*dim)
	} else {
		be.k.rms.out = f32("cpu.RMSNormForward out", out, n*dim)
	}
	be.par(n, max(1, grainElems/max(dim, 1)), &be.k.rms)
	be.k.rms = rmsK{}
}

// rmsBwdK computes dx row by row:
// dx = rstd·(dout·w − xhat·mean_j(dout·w·xhat)), xhat = x·rstd.
type rmsBwdK struct {
	dx, dout, x, w, rstd []float32
	dim                  int
}

func (k *rmsBwdK) run(lo, hi int) {
	d := k.dim
	for i := lo; i < hi; i++ {
		x, g, dx := k.x[i*d:(i+1)*d], k.dout[i*d:(i+1)*d], k.dx[i*d:(i+1)*d]
		r := k.rstd[i]
		c := float32(dot3(g, k.w, x)*float64(r)/float64(d)) * r
		rmsDx(dx, g, k.w, x, r, c)
	}
}

// RMSNormBackward overwrites dx (which may alias dout) and accumulates
// dw[j] += Σ_i dout[i,j]·x[i,j]·rstd[i], summed over rows in order.
func (be *Backend) RMSNormBackward(dx, dw, dout, x, w, rstd tensor.Buffer, n, dim int) {
	g := f32("cpu.RMSNormBackward dout", dout, n*dim)
	xs := f32("cpu.RMSNormBackward x", x, n*dim)
	rs := f32("cpu.RMSNormBackward rstd", rstd, n)
	// dw first: dx may overwrite dout.
	be.k.rmsDW = colSumK{dst: f32("cpu.RMSNormBackward dw", dw, dim), a: g, b: xs, s: rs, rows: n, cols: dim}
	be.par(colSumChunks(dim), 1, &be.k.rmsDW)
	be.k.rmsDW = colSumK{}
	be.k.rmsBwd = rmsBwdK{f32("cpu.RMSNormBackward dx", dx, n*dim), g, xs,
		f32("cpu.RMSNormBackward w", w, dim), rs, dim}
	be.par(n, max(1, grainElems/max(dim, 1)), &be.k.rmsBwd)
	be.k.rmsBwd = rmsBwdK{}
}
