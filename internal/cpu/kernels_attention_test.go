package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// attnRef is causal grouped-query attention in float64: out [B,T,Hq,D] and
// lse [B,Hq,T].
func attnRef(q, k, v []float64, seg []int32, a tensor.Attn) (out, lse []float64) {
	out = make([]float64, a.B*a.T*a.Hq*a.D)
	lse = make([]float64, a.B*a.Hq*a.T)
	group := a.Hq / a.Hkv
	s := make([]float64, a.T)
	for b := 0; b < a.B; b++ {
		for h := 0; h < a.Hq; h++ {
			kh := h / group
			for t := 0; t < a.T; t++ {
				qi := ((b*a.T+t)*a.Hq + h) * a.D
				m := math.Inf(-1)
				for j := 0; j <= t; j++ {
					s[j] = math.Inf(-1)
					if seg != nil && seg[b*a.T+j] != seg[b*a.T+t] {
						continue
					}
					ki := ((b*a.T+j)*a.Hkv + kh) * a.D
					var d float64
					for x := 0; x < a.D; x++ {
						d += q[qi+x] * k[ki+x]
					}
					s[j] = d * float64(a.Scale)
					m = math.Max(m, s[j])
				}
				var z float64
				for j := 0; j <= t; j++ {
					z += math.Exp(s[j] - m)
				}
				lse[(b*a.Hq+h)*a.T+t] = m + math.Log(z)
				for j := 0; j <= t; j++ {
					p := math.Exp(s[j]-m) / z
					vi := ((b*a.T+j)*a.Hkv + kh) * a.D
					for x := 0; x < a.D; x++ {
						out[qi+x] += p * v[vi+x]
					}
				}
			}
		}
	}
	return out, lse
}

func TestAttention(t *testing.T) {
	cases := []struct {
		name string
		a    tensor.Attn
		seg  bool
	}{
		{"mha", tensor.Attn{B: 1, T: 5, Hq: 2, Hkv: 2, D: 3}, false},
		{"gqa+segments", tensor.Attn{B: 2, T: 6, Hq: 4, Hkv: 2, D: 4}, true},
		{"mqa long", tensor.Attn{B: 1, T: 150, Hq: 4, Hkv: 1, D: 16}, true},
	}
	for _, c := range cases {
		a := c.a
		a.Scale = float32(1 / math.Sqrt(float64(a.D)))
		r := rand.New(rand.NewPCG(16, uint64(a.T)))
		nq, nk := a.B*a.T*a.Hq*a.D, a.B*a.T*a.Hkv*a.D
		q, k, v, dout := randF32(r, nq, 1), randF32(r, nk, 1), randF32(r, nk, 1), randF32(r, nq, 1)
		var seg []int32
		if c.seg { // packed samples: a new segment every few tokens
			seg = make([]int32, a.B*a.T)
			for i := range seg {
				seg[i] = int32(i % a.T / 4)
			}
		}
		be := New()
		qb, kb, vb, gb := upload(t, be, q), upload(t, be, k), upload(t, be, v), upload(t, be, dout)
		var sb tensor.Buffer
		if seg != nil {
			sb = uploadI32(t, be, seg)
		}
		ob, lb := upload(t, be, make([]float32, nq)), upload(t, be, make([]float32, a.B*a.Hq*a.T))
		be.AttentionForward(ob, lb, qb, kb, vb, sb, a)
		wantO, wantL := attnRef(to64(q), to64(k), to64(v), seg, a)
		if err := closeTo(download(t, be, ob), wantO, 1e-5, 1e-4); err != nil {
			t.Errorf("%s out: %v", c.name, err)
		}
		if err := closeTo(download(t, be, lb), wantL, 1e-5, 1e-5); err != nil {
			t.Errorf("%s lse: %v", c.name, err)
		}
		dq, dk, dv := upload(t, be, make([]float32, nq)), upload(t, be, make([]float32, nk)), upload(t, be, make([]float32, nk))
		be.AttentionBackward(dq, dk, dv, gb, qb, kb, vb, ob, lb, sb, a)
		if nq <= 200 {
			q64, k64, v64 := to64(q), to64(k), to64(v)
			loss := func() float64 { o, _ := attnRef(q64, k64, v64, seg, a); return dot64(o, dout) }
			for _, g := range []struct {
				name string
				x    []float64
				got  tensor.Buffer
			}{{"dq", q64, dq}, {"dk", k64, dk}, {"dv", v64, dv}} {
				fd := fdGrad(func([]float64) float64 { return loss() }, g.x, 1e-5)
				if err := closeTo(download(t, be, g.got), fd, 1e-4, 1e-3); err != nil {
					t.Errorf("%s %s: %v", c.name, g.name, err)
				}
			}
		}
		sameUnderProcs(t, "Attention "+c.name, func() []byte {
			ob, lb := upload(t, be, make([]float32, nq)), upload(t, be, make([]float32, a.B*a.Hq*a.T))
			be.AttentionForward(ob, lb, qb, kb, vb, sb, a)
			be.AttentionBackward(dq, dk, dv, gb, qb, kb, vb, ob, lb, sb, a)
			return f32Bytes(download(t, be, ob), download(t, be, lb), download(t, be, dq), download(t, be, dk), download(t, be, dv))
		})
	}
}
