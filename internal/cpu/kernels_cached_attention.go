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
	o              attnOpts
}

func (k *decodeK) run(lo, hi int) {
	a := k.a
	D, rep := a.D, a.Hq/a.Hkv
	s := make([]float32, a.MaxT)
	for bh := lo; bh < hi; bh++ {
		b, h := bh/a.Hq, bh%a.Hq
		kvh := h / rep
		n := int(k.lens[b])
		// The query is at position n−1; the window keeps keys t > n−1−window.
		t0 := 0
		if k.o.window > 0 {
			t0 = max(0, n-k.o.window)
		}
		var slope float32
		if k.o.alibi != nil {
			slope = k.o.alibi[h]
		}
		q := k.q[(b*a.Hq+h)*D : (b*a.Hq+h+1)*D]
		mx := float32(math.Inf(-1))
		for t := t0; t < n; t++ {
			kv := k.kc[((b*a.MaxT+t)*a.Hkv+kvh)*D:][:D]
			var dot float32
			for i, x := range q {
				dot += x * kv[i]
			}
			st := dot * a.Scale
			if k.o.softCap > 0 {
				st = k.o.softCap * tanhf(st*(1/k.o.softCap)) // as softCapRow
			}
			if k.o.alibi != nil {
				st += slope * float32(t-(n-1))
			}
			s[t] = st
			mx = max(mx, st)
		}
		var sum float64
		for t := t0; t < n; t++ {
			e := math.Exp(float64(s[t] - mx))
			s[t] = float32(e)
			sum += e
		}
		out := k.out[(b*a.Hq+h)*D : (b*a.Hq+h+1)*D]
		clear(out)
		inv := float32(1 / sum)
		for t := t0; t < n; t++ {
			p := s[t] * inv
			vv := k.vc[((b*a.MaxT+t)*a.Hkv+kvh)*D:][:D]
			for i := range out {
				out[i] += p * vv[i]
			}
		}
	}
}

// AttentionDecode runs one query per row against the KV cache with a's
// score options (see tensor.Backend and tensor.Attn). Each (row, head) is computed by one goroutine in
// position order, so results do not depend on the thread count.
func (be *Backend) AttentionDecode(out, q, kCache, vCache, lens tensor.Buffer, a tensor.AttnDecode) {
	if a.B <= 0 || a.MaxT <= 0 || a.Hq <= 0 || a.Hkv <= 0 || a.D <= 0 || a.Hq%a.Hkv != 0 {
		panic(fmt.Sprintf("cpu.AttentionDecode: bad shape %+v", a))
	}
	nq, nc := a.B*a.Hq*a.D, a.B*a.MaxT*a.Hkv*a.D
	o, oh := be.actOut("cpu.AttentionDecode out", out, nq)
	k := &decodeK{out: o, q: be.actIn(slotQ, "cpu.AttentionDecode q", q, nq),
		kc: f32("cpu.AttentionDecode kCache", kCache, nc), vc: f32("cpu.AttentionDecode vCache", vCache, nc),
		lens: i32("cpu.AttentionDecode lens", lens, a.B), a: a,
		o: attnOpts{softCap: a.SoftCap, window: a.Window}}
	if !a.ALiBi.IsNil() {
		k.o.alibi = f32("cpu.AttentionDecode ALiBi", a.ALiBi, a.Hq)
	}
	checkAttnOpts("AttentionDecode", k.o, a.Hq)
	for b, n := range k.lens {
		if n <= 0 || int(n) > a.MaxT {
			panic(fmt.Sprintf("cpu.AttentionDecode: row %d attends to %d positions, cache holds %d", b, n, a.MaxT))
		}
	}
	be.par(a.B*a.Hq, 1, k)
	be.round(oh, o)
}
