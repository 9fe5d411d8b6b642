package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// Each benchmark times the backend kernel and, in the same run, the
// straightforward serial loop it replaces, and reports the ratio as
// "x-serial" (higher is better). Sizes are one Llama-1B-ish layer's worth
// of a 512-token micro-batch.
const benchN, benchDim = 512, 2048

func benchRatio(b *testing.B, kernel, serial func()) {
	kernel()
	serial()
	const reps = 3
	start := time.Now()
	for range reps {
		serial()
	}
	ref := time.Since(start) / reps
	b.ResetTimer()
	for b.Loop() {
		kernel()
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(ref)/float64(per), "x-serial")
}

func BenchmarkRMSNormForwardBackward(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	be := New()
	xs, ws, gs := randF32(r, benchN*benchDim, 1), randF32(r, benchDim, 1), randF32(r, benchN*benchDim, 1)
	x, w, g := upload(b, be, xs), upload(b, be, ws), upload(b, be, gs)
	o, rs, dx, dw := upload(b, be, make([]float32, len(xs))), upload(b, be, make([]float32, benchN)), upload(b, be, make([]float32, len(xs))), upload(b, be, make([]float32, benchDim))
	out, rstd, dxs, dws := make([]float32, len(xs)), make([]float32, benchN), make([]float32, len(xs)), make([]float32, benchDim)
	benchRatio(b, func() {
		be.RMSNormForward(o, rs, x, w, benchN, benchDim, 1e-5)
		be.RMSNormBackward(dx, dw, g, x, w, rs, benchN, benchDim)
	}, func() {
		for i := 0; i < benchN; i++ {
			row := xs[i*benchDim : (i+1)*benchDim]
			var ss float64
			for _, v := range row {
				ss += float64(v) * float64(v)
			}
			r := float32(1 / math.Sqrt(ss/benchDim+1e-5))
			rstd[i] = r
			for j, v := range row {
				out[i*benchDim+j] = v * r * ws[j]
			}
		}
		// llm.c-style backward: one pass per row for dx, accumulating dw.
		for i := 0; i < benchN; i++ {
			row, r := xs[i*benchDim:(i+1)*benchDim], rstd[i]
			var dot float64
			for j, v := range row {
				dot += float64(gs[i*benchDim+j]) * float64(ws[j]) * float64(v)
			}
			c := float32(dot*float64(r)/benchDim) * r
			for j, v := range row {
				gj := gs[i*benchDim+j]
				dxs[i*benchDim+j] = r * (gj*ws[j] - v*c)
				dws[j] += gj * v * r
			}
		}
	})
}

func BenchmarkSwiGLUForwardBackward(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 1))
	be := New()
	n := benchN * benchDim * 4
	gs, us, ds := randF32(r, n, 1), randF32(r, n, 1), randF32(r, n, 1)
	gt, up, dout := upload(b, be, gs), upload(b, be, us), upload(b, be, ds)
	o, dg, du := upload(b, be, make([]float32, n)), upload(b, be, make([]float32, n)), upload(b, be, make([]float32, n))
	os, dgs, dus := make([]float32, n), make([]float32, n), make([]float32, n)
	benchRatio(b, func() {
		be.SwiGLUForward(o, gt, up, n)
		be.SwiGLUBackward(dg, du, dout, gt, up, n)
	}, func() {
		for i, g := range gs {
			os[i] = g / float32(1+math.Exp(-float64(g))) * us[i]
		}
		for i, g := range gs {
			s := float32(1 / (1 + math.Exp(-float64(g))))
			dgs[i] = ds[i] * us[i] * s * (1 + g*(1-s))
			dus[i] = ds[i] * g * s
		}
	})
}

func BenchmarkAdamW(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 1))
	be := New()
	n := benchDim * benchDim * 4
	ps, gs := randF32(r, n, 1), randF32(r, n, 0.01)
	p, g, m, v := upload(b, be, ps), upload(b, be, gs), upload(b, be, make([]float32, n)), upload(b, be, make([]float32, n))
	ms, vs := make([]float32, n), make([]float32, n)
	h := tensor.AdamW{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 10}
	benchRatio(b, func() { be.AdamW(p, g, m, v, n, h) }, func() {
		for i, gi := range gs {
			ms[i] = 0.9*ms[i] + 0.1*gi
			vs[i] = 0.999*vs[i] + 0.001*gi*gi
			ps[i] = ps[i]*(1-1e-6) - 1e-4*ms[i]/(float32(math.Sqrt(float64(vs[i])))+1e-8)
		}
	})
}

func BenchmarkRoPEForward(b *testing.B) {
	r := rand.New(rand.NewPCG(4, 1))
	be := New()
	const heads, hd = 32, 64
	xs := randF32(r, benchN*heads*hd, 1)
	pos := make([]int32, benchN)
	for i := range pos {
		pos[i] = int32(i)
	}
	inv, _ := tensor.RoPE{HeadDim: hd, Theta: 500000}.InvFreq()
	x, pb, fb, o := upload(b, be, xs), uploadI32(b, be, pos), upload(b, be, inv), upload(b, be, make([]float32, len(xs)))
	os := make([]float32, len(xs))
	benchRatio(b, func() { be.RoPEForward(o, x, pb, fb, benchN, heads, hd, hd) }, func() {
		for t := 0; t < benchN; t++ {
			for h := 0; h < heads; h++ {
				base := (t*heads + h) * hd
				for i := 0; i < hd/2; i++ {
					a := float64(float32(pos[t]) * inv[i])
					c, s := float32(math.Cos(a)), float32(math.Sin(a))
					x1, x2 := xs[base+i], xs[base+i+hd/2]
					os[base+i] = x1*c - x2*s
					os[base+i+hd/2] = x2*c + x1*s
				}
			}
		}
	})
}

// BenchmarkSmallRowKernels times the row kernels at the tiny training shape
// of `make bench-train` (1024 tokens, dim 64, 4 heads of 16), where rows are
// short and per-row overheads show.
func BenchmarkSmallRowKernels(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 1))
	be := New()
	const n, dim, heads, hd = 1024, 64, 4, 16
	x, w, g := upload(b, be, randF32(r, n*dim, 1)), upload(b, be, randF32(r, dim, 1)), upload(b, be, randF32(r, n*dim, 1))
	out, rstd := upload(b, be, make([]float32, n*dim)), upload(b, be, make([]float32, n))
	dx, dw := upload(b, be, make([]float32, n*dim)), upload(b, be, make([]float32, dim))
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(i % 128)
	}
	inv, _ := tensor.RoPE{HeadDim: hd, Theta: 10000}.InvFreq()
	pb, fb := uploadI32(b, be, pos), upload(b, be, inv)
	b.Run("rmsnorm-forward", func(b *testing.B) {
		for b.Loop() {
			be.RMSNormForward(out, rstd, x, w, n, dim, 1e-5)
		}
	})
	b.Run("rmsnorm-backward", func(b *testing.B) {
		for b.Loop() {
			be.RMSNormBackward(dx, dw, g, x, w, rstd, n, dim)
		}
	})
	b.Run("rope-forward", func(b *testing.B) {
		for b.Loop() {
			be.RoPEForward(out, x, pb, fb, n, heads, hd, hd)
		}
	})
}
