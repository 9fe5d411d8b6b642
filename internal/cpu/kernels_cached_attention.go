package cpu

import (
	"fmt"
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// decodeK is AttentionDecode's task over (row, query head) pairs.
type decodeK struct {
	out, q, kc, vc []float32
	lens           []int32
	a              tensor.AttnDecode
}

func (k *decodeK) run(lo, hi int) {
	a := k.a
	D, rep := a.D, a.Hq/a.Hkv
	s := make([]float32, a.MaxT)
	for bh := lo; bh < hi; bh++ {
		b, h := bh/a.Hq, bh%a.Hq
		kvh := h / rep
		n := int(k.lens[b])
		q := k.q[(b*a.Hq+h)*D : (b*a.Hq+h+1)*D]
		mx := float32(math.Inf(-1))
		for t := range n {
			kv := k.kc[((b*a.MaxT+t)*a.Hkv+kvh)*D:][:D]
			var dot float32
			for i, x := range q {
				dot += x * kv[i]
			}
			s[t] = dot * a.Scale
			mx = max(mx, s[t])
		}
		var sum float64
		for t := range n {
			e := math.Exp(float64(s[t] - mx))
			s[t] = float32(e)
			sum += e
		}
		out := k.out[(b*a.Hq+h)*D : (b*a.Hq+h+1)*D]
		clear(out)
		inv := float32(1 / sum)
		for t := range n {
			p := s[t] * inv
			vv := k.vc[((b*a.MaxT+t)*a.Hkv+kvh)*D:][:D]
			for i := range out {
				out[i] += p * vv[i]
			}
		}
	}
}

// AttentionDecode runs one query per row against the KV cache (see
// tensor.Backend). Each (row, head) is computed by one goroutine in
// position order, so results do not depend on the thread count.
func (be *Backend) AttentionDecode(out, q, kCache, vCache, lens tensor.Buffer, a tensor.AttnDecode) {
	if a.B <= 0 || a.MaxT <= 0 || a.Hq <= 0 || a.Hkv <= 0 || a.D <= 0 || a.Hq%a.Hkv != 0 {
		panic(fmt.Sprintf("cpu.AttentionDecode: bad shape %+v", a))
	}
	nq, nc := a.B*a.Hq*a.D, a.B*a.MaxT*a.Hkv*a.D
	k := &decodeK{out: f32("cpu.AttentionDecode out", out, nq), q: f32("cpu.AttentionDecode q", q, nq),
		kc: f32("cpu.AttentionDecode kCache", kCache, nc), vc: f32("cpu.AttentionDecode vCache", vCache, nc),
		lens: i32("cpu.AttentionDecode lens", lens, a.B), a: a}
	for b, n := range k.lens {
		if n <= 0 || int(n) > a.MaxT {
			panic(fmt.Sprintf("cpu.AttentionDecode: row %d attends to %d positions, cache holds %d", b, n, a.MaxT))
		}
	}
	be.par(a.B*a.Hq, 1, k)
}
