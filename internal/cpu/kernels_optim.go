package cpu

import (
	"fmt"
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

type adamwK struct {
	p, g, m, v []float32
	args       adamwArgs
}

func (k *adamwK) run(lo, hi int) { adamw(k.p[lo:hi], k.g[lo:hi], k.m[lo:hi], k.v[lo:hi], &k.args) }

// AdamW applies one AdamW step in the order torch.optim.AdamW does:
// decoupled decay, moment updates, bias-corrected step.
func (be *Backend) AdamW(param, grad, m, v tensor.Buffer, n int, h tensor.AdamW) {
	if h.Step < 1 {
		panic(fmt.Sprintf("cpu.AdamW: step %d, want >= 1", h.Step))
	}
	bc1 := 1 - math.Pow(float64(h.Beta1), float64(h.Step))
	bc2 := 1 - math.Pow(float64(h.Beta2), float64(h.Step))
	be.k.adamw = adamwK{
		p: f32("cpu.AdamW param", param, n), g: f32("cpu.AdamW grad", grad, n),
		m: f32("cpu.AdamW m", m, n), v: f32("cpu.AdamW v", v, n),
		args: adamwArgs{
			decay: 1 - h.LR*h.WeightDecay, b1: h.Beta1, b1c: 1 - h.Beta1, b2: h.Beta2, b2c: 1 - h.Beta2,
			step: float32(float64(h.LR) / bc1), bc2s: float32(math.Sqrt(bc2)), eps: h.Eps,
		},
	}
	be.par(n, grainElems/4, &be.k.adamw)
	be.k.adamw = adamwK{}
}

// normChunkSize is the fixed reduction granule of GlobalNorm: each chunk's
// sum of squares is computed in order by one goroutine, and the chunk sums
// are added in chunk order, so the norm does not depend on the thread count.
const normChunkSize = 1 << 13

type normChunk struct {
	buf    int32
	lo, hi int
}

type normK struct {
	grads    []tensor.Buffer
	chunks   []normChunk
	partials []float64
}

func (k *normK) run(lo, hi int) {
	for c := lo; c < hi; c++ {
		ch := k.chunks[c]
		g := f32("cpu.GlobalNorm grad", k.grads[ch.buf], ch.hi)[ch.lo:ch.hi]
		var s float64
		for _, v := range g {
			s += float64(v) * float64(v)
		}
		k.partials[c] = s
	}
}

// GlobalNorm writes the L2 norm over all elements of grads to out[0].
func (be *Backend) GlobalNorm(out tensor.Buffer, grads []tensor.Buffer) {
	o := f32("cpu.GlobalNorm out", out, 1)
	chunks := be.normChunks[:0]
	for i, g := range grads {
		tensor.Need("cpu.GlobalNorm grads", g, tensor.F32, 0)
		for lo := 0; lo < g.Len(); lo += normChunkSize {
			chunks = append(chunks, normChunk{int32(i), lo, min(lo+normChunkSize, g.Len())})
		}
	}
	be.normChunks = chunks
	if cap(be.normPartials) < len(chunks) {
		be.normPartials = make([]float64, len(chunks))
	}
	partials := be.normPartials[:len(chunks)]
	be.k.norm = normK{grads: grads, chunks: chunks, partials: partials}
	be.par(len(chunks), 4, &be.k.norm)
	be.k.norm = normK{}
	var s float64
	for _, p := range partials {
		s += p
	}
	o[0] = float32(math.Sqrt(s))
}

// ClipByNorm scales every grad by min(1, maxNorm/(norm[0]+1e-6)).
func (be *Backend) ClipByNorm(grads []tensor.Buffer, norm tensor.Buffer, maxNorm float32) {
	total := f32("cpu.ClipByNorm norm", norm, 1)[0]
	coef := maxNorm / (total + 1e-6)
	if !(coef < 1) {
		return
	}
	for _, g := range grads {
		be.k.scale = axpyK{y: f32("cpu.ClipByNorm grads", g, g.Len()), alpha: coef}
		be.par(g.Len(), grainElems, &be.k.scale)
	}
	be.k.scale = axpyK{}
}
