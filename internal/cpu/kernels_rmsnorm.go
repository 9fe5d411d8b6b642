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
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(d)+float64(k.eps)))
		k.rstd[i] = r
		if k.outH != nil {
			out := k.outH[i*d : (i+1)*d]
			for j, v := range x {
				out[j] = tensor.BF16FromF32(v * r * k.w[j])
			}
			continue
		}
		out := k.out[i*d : (i+1)*d]
		for j, v := range x {
			out[j] = v * r * k.w[j]
		}
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
		var dot float64
		for j, v := range x {
			dot += float64(g[j]) * float64(k.w[j]) * float64(v)
		}
		c := float32(dot*float64(r)/float64(d)) * r
		for j, v := range x {
			dx[j] = r * (g[j]*k.w[j] - v*c)
		}
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
	be.par(colChunks(dim), 1, &be.k.rmsDW)
	be.k.rmsDW = colSumK{}
	be.k.rmsBwd = rmsBwdK{f32("cpu.RMSNormBackward dx", dx, n*dim), g, xs,
		f32("cpu.RMSNormBackward w", w, dim), rs, dim}
	be.par(n, max(1, grainElems/max(dim, 1)), &be.k.rmsBwd)
	be.k.rmsBwd = rmsBwdK{}
}
