package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

func TestAdamW(t *testing.T) {
	cases := []struct {
		n int
		h tensor.AdamW
	}{
		{1, tensor.AdamW{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}},
		{37, tensor.AdamW{LR: 5e-2, Beta1: 0.8, Beta2: 0.95, Eps: 1e-6, WeightDecay: 0}},
		{20000, tensor.AdamW{LR: 3e-4, Beta1: 0.9, Beta2: 0.98, Eps: 1e-8, WeightDecay: 0.1}},
	}
	for _, c := range cases {
		r := rand.New(rand.NewPCG(9, uint64(c.n)))
		p := randF32(r, c.n, 1)
		be := New()
		pb, gb := upload(t, be, p), upload(t, be, make([]float32, c.n))
		mb, vb := upload(t, be, make([]float32, c.n)), upload(t, be, make([]float32, c.n))
		wp, wm, wv := to64(p), make([]float64, c.n), make([]float64, c.n)
		h := c.h
		for step := 1; step <= 5; step++ {
			g := randF32(r, c.n, 0.1)
			if err := tensor.UploadF32(be, gb, g); err != nil {
				t.Fatal(err)
			}
			h.Step = step
			be.AdamW(pb, gb, mb, vb, c.n, h)
			b1, b2 := float64(h.Beta1), float64(h.Beta2)
			bc1, bc2 := 1-math.Pow(b1, float64(step)), 1-math.Pow(b2, float64(step))
			for i := range wp {
				gi := float64(g[i])
				wp[i] *= 1 - float64(h.LR)*float64(h.WeightDecay)
				wm[i] = b1*wm[i] + (1-b1)*gi
				wv[i] = b2*wv[i] + (1-b2)*gi*gi
				wp[i] -= float64(h.LR) * (wm[i] / bc1) / (math.Sqrt(wv[i]/bc2) + float64(h.Eps))
			}
		}
		if err := closeTo(download(t, be, pb), wp, 1e-6, 1e-5); err != nil {
			t.Errorf("AdamW n=%d param: %v", c.n, err)
		}
		if err := closeTo(download(t, be, mb), wm, 1e-7, 1e-5); err != nil {
			t.Errorf("AdamW n=%d m: %v", c.n, err)
		}
		if err := closeTo(download(t, be, vb), wv, 1e-9, 1e-5); err != nil {
			t.Errorf("AdamW n=%d v: %v", c.n, err)
		}
	}
}

func TestGlobalNormAndClip(t *testing.T) {
	sizes := []int{1, 100, normChunkSize + 3, 3*normChunkSize + 17, 0, 5}
	r := rand.New(rand.NewPCG(10, 1))
	be := New()
	var host [][]float32
	var bufs []tensor.Buffer
	var ss float64
	for _, n := range sizes {
		g := randF32(r, n, 0.3)
		host = append(host, g)
		bufs = append(bufs, upload(t, be, g))
		for _, v := range g {
			ss += float64(v) * float64(v)
		}
	}
	norm := math.Sqrt(ss)
	out := upload(t, be, []float32{0})
	be.GlobalNorm(out, bufs)
	if err := closeTo(download(t, be, out), []float64{norm}, 0, 1e-6); err != nil {
		t.Errorf("GlobalNorm: %v", err)
	}
	sameUnderProcs(t, "GlobalNorm", func() []byte {
		o := upload(t, be, []float32{0})
		be.GlobalNorm(o, bufs)
		return f32Bytes(download(t, be, o))
	})

	for _, maxNorm := range []float64{norm * 2, norm / 4} {
		clipped := make([]tensor.Buffer, len(host))
		for i, g := range host {
			clipped[i] = upload(t, be, g)
		}
		be.ClipByNorm(clipped, out, float32(maxNorm))
		coef := math.Min(1, maxNorm/(norm+1e-6))
		for i, g := range host {
			want := to64(g)
			for j := range want {
				want[j] *= coef
			}
			if err := closeTo(download(t, be, clipped[i]), want, 0, 1e-6); err != nil {
				t.Errorf("ClipByNorm max=%v buffer %d: %v", maxNorm, i, err)
			}
		}
		o := upload(t, be, []float32{0})
		be.GlobalNorm(o, clipped)
		if got := float64(download(t, be, o)[0]); math.Abs(got-math.Min(norm, maxNorm)) > 1e-5*norm {
			t.Errorf("norm after clip to %v = %v", maxNorm, got)
		}
	}
}

func TestDeterminismAcrossProcs(t *testing.T) {
	// Larger shapes than the reference tests, so every kernel splits over
	// several workers; each result must not depend on GOMAXPROCS.
	r := rand.New(rand.NewPCG(11, 1))
	const n, dim, vocab = 257, 320, 97
	x, w, dout := randF32(r, n*dim, 1), randF32(r, dim, 1), randF32(r, n*dim, 1)
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(r.IntN(vocab))
	}
	be := New()
	xb, wb, gb, ib := upload(t, be, x), upload(t, be, w), upload(t, be, dout), uploadI32(t, be, ids)
	cases := map[string]func() []byte{
		"Gemm NT": func() []byte {
			c := upload(t, be, make([]float32, n*n))
			be.Gemm(tensor.Gemm{TransB: true, M: n, N: n, K: dim, Alpha: 1, A: xb, B: gb, C: c, LDA: dim, LDB: dim, LDC: n})
			return f32Bytes(download(t, be, c))
		},
		"BiasGrad": func() []byte {
			d := upload(t, be, make([]float32, dim))
			be.BiasGrad(d, gb, n, dim)
			return f32Bytes(download(t, be, d))
		},
		"SwiGLU": func() []byte {
			o, dg, du := upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, n*dim))
			be.SwiGLUForward(o, xb, gb, n*dim)
			be.SwiGLUBackward(dg, du, gb, xb, gb, n*dim)
			return f32Bytes(download(t, be, o), download(t, be, dg), download(t, be, du))
		},
		"EmbeddingBackward": func() []byte {
			d := upload(t, be, make([]float32, vocab*dim))
			be.EmbeddingBackward(d, gb, ib, n, dim)
			return f32Bytes(download(t, be, d))
		},
		"AdamW": func() []byte {
			p, m, v := upload(t, be, x), upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, n*dim))
			be.AdamW(p, gb, m, v, n*dim, tensor.AdamW{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, Step: 1})
			return f32Bytes(download(t, be, p), download(t, be, m), download(t, be, v))
		},
		"RMSNormBackward": func() []byte {
			o, rs := upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, n))
			be.RMSNormForward(o, rs, xb, wb, n, dim, 1e-5)
			dx, dw := upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, dim))
			be.RMSNormBackward(dx, dw, gb, xb, wb, rs, n, dim)
			return f32Bytes(download(t, be, dx), download(t, be, dw))
		},
	}
	elementwise := func(name string, fn func(o tensor.Buffer)) {
		cases[name] = func() []byte {
			o := upload(t, be, make([]float32, n*dim))
			fn(o)
			return f32Bytes(download(t, be, o))
		}
	}
	elementwise("Add", func(o tensor.Buffer) { be.Add(o, xb, gb, n*dim) })
	elementwise("Axpy", func(o tensor.Buffer) { be.Copy(o, xb); be.Axpy(o, gb, 0.3, n*dim) })
	elementwise("Scale", func(o tensor.Buffer) { be.Copy(o, xb); be.Scale(o, 0.3, n*dim) })
	elementwise("AddBias", func(o tensor.Buffer) { be.Copy(o, xb); be.AddBias(o, wb, n, dim) })
	elementwise("EmbeddingForward", func(o tensor.Buffer) {
		be.EmbeddingForward(o.View(0, n*dim), xb.View(0, vocab*dim), ib, n, dim)
	})
	elementwise("Convert bf16/f16", func(o tensor.Buffer) {
		h, _ := be.Alloc(tensor.BF16, n*dim)
		be.Convert(h, xb, n*dim)
		be.Convert(o, h, n*dim)
		f, _ := be.Alloc(tensor.F16, n*dim)
		be.Convert(f, o, n*dim)
		be.Convert(o, f, n*dim)
	})
	elementwise("DequantNF4", func(o tensor.Buffer) {
		q, _ := tensor.AllocNF4(be, n*dim)
		be.QuantizeNF4(q, xb)
		be.DequantNF4(o, q, 0, q.N)
	})
	for name, fn := range cases {
		sameUnderProcs(t, name, fn)
	}
}
