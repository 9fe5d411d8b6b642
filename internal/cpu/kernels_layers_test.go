package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

func TestEmbedding(t *testing.T) {
	for _, s := range []struct{ vocab, n, dim int }{{1, 1, 1}, {5, 9, 3}, {50, 400, 150}} {
		r := rand.New(rand.NewPCG(5, uint64(s.n)))
		table, dout := randF32(r, s.vocab*s.dim, 1), randF32(r, s.n*s.dim, 1)
		ids := make([]int32, s.n)
		for i := range ids {
			ids[i] = int32(r.IntN(s.vocab)) // repeats: the scatter-add must sum them
		}
		be := New()
		tb, ib, ob := upload(t, be, table), uploadI32(t, be, ids), upload(t, be, make([]float32, s.n*s.dim))
		be.EmbeddingForward(ob, tb, ib, s.n, s.dim)
		want := make([]float64, s.n*s.dim)
		for i, id := range ids {
			for j := 0; j < s.dim; j++ {
				want[i*s.dim+j] = float64(table[int(id)*s.dim+j])
			}
		}
		if err := closeTo(download(t, be, ob), want, 0, 0); err != nil {
			t.Errorf("EmbeddingForward %v: %v", s, err)
		}
		// Backward against finite differences of L = Σ dout ⊙ table[ids],
		// accumulated onto an initial gradient.
		init := randF32(r, len(table), 1)
		db := upload(t, be, init)
		be.EmbeddingBackward(db, upload(t, be, dout), ib, s.n, s.dim)
		loss := func(tab []float64) float64 {
			var l float64
			for i, id := range ids {
				for j := 0; j < s.dim; j++ {
					l += float64(dout[i*s.dim+j]) * tab[int(id)*s.dim+j]
				}
			}
			return l
		}
		var fd []float64
		if len(table) <= 100 { // finite differences on small tables
			fd = fdGrad(loss, to64(table), 1e-2)
		} else { // the loss is linear: the gradient is the plain scatter-add
			fd = make([]float64, len(table))
			for i, id := range ids {
				for j := 0; j < s.dim; j++ {
					fd[int(id)*s.dim+j] += float64(dout[i*s.dim+j])
				}
			}
		}
		for i := range fd {
			fd[i] += float64(init[i])
		}
		if err := closeTo(download(t, be, db), fd, 1e-4, 1e-5); err != nil {
			t.Errorf("EmbeddingBackward %v: %v", s, err)
		}
		sameUnderProcs(t, "EmbeddingBackward", func() []byte {
			db := upload(t, be, init)
			be.EmbeddingBackward(db, upload(t, be, dout), ib, s.n, s.dim)
			return f32Bytes(download(t, be, db))
		})
	}
}

func rmsRef(x, w []float64, n, dim int, eps float64) []float64 {
	out := make([]float64, len(x))
	for i := 0; i < n; i++ {
		var ss float64
		for j := 0; j < dim; j++ {
			ss += x[i*dim+j] * x[i*dim+j]
		}
		r := 1 / math.Sqrt(ss/float64(dim)+eps)
		for j := 0; j < dim; j++ {
			out[i*dim+j] = x[i*dim+j] * r * w[j]
		}
	}
	return out
}

func TestRMSNorm(t *testing.T) {
	const eps = 1e-5
	for _, s := range []struct{ n, dim int }{{1, 1}, {3, 8}, {7, 33}, {300, 200}} {
		r := rand.New(rand.NewPCG(6, uint64(s.n*s.dim)))
		x, w, dout := randF32(r, s.n*s.dim, 2), randF32(r, s.dim, 1), randF32(r, s.n*s.dim, 1)
		be := New()
		xb, wb := upload(t, be, x), upload(t, be, w)
		ob, rb := upload(t, be, make([]float32, len(x))), upload(t, be, make([]float32, s.n))
		be.RMSNormForward(ob, rb, xb, wb, s.n, s.dim, eps)
		if err := closeTo(download(t, be, ob), rmsRef(to64(x), to64(w), s.n, s.dim, eps), 1e-6, 1e-5); err != nil {
			t.Errorf("RMSNormForward %v: %v", s, err)
		}
		initW := randF32(r, s.dim, 1)
		dxb, dwb := upload(t, be, make([]float32, len(x))), upload(t, be, initW)
		be.RMSNormBackward(dxb, dwb, upload(t, be, dout), xb, wb, rb, s.n, s.dim)

		if s.n*s.dim <= 300 { // finite differences are quadratic: small shapes only
			lossX := func(xv []float64) float64 { return dot64(rmsRef(xv, to64(w), s.n, s.dim, eps), dout) }
			if err := closeTo(download(t, be, dxb), fdGrad(lossX, to64(x), 1e-5), 1e-4, 1e-3); err != nil {
				t.Errorf("RMSNormBackward dx %v: %v", s, err)
			}
			lossW := func(wv []float64) float64 { return dot64(rmsRef(to64(x), wv, s.n, s.dim, eps), dout) }
			fd := fdGrad(lossW, to64(w), 1e-5)
			for j := range fd {
				fd[j] += float64(initW[j])
			}
			if err := closeTo(download(t, be, dwb), fd, 1e-4, 1e-4); err != nil {
				t.Errorf("RMSNormBackward dw %v: %v", s, err)
			}
		}
		sameUnderProcs(t, "RMSNorm", func() []byte {
			ob, rb := upload(t, be, make([]float32, len(x))), upload(t, be, make([]float32, s.n))
			be.RMSNormForward(ob, rb, xb, wb, s.n, s.dim, eps)
			dxb, dwb := upload(t, be, make([]float32, len(x))), upload(t, be, initW)
			be.RMSNormBackward(dxb, dwb, upload(t, be, dout), xb, wb, rb, s.n, s.dim)
			return f32Bytes(download(t, be, ob), download(t, be, rb), download(t, be, dxb), download(t, be, dwb))
		})
	}
}

func TestRMSNormBackwardInPlace(t *testing.T) {
	// dx may alias dout; the weight gradient must still see the original dout.
	r := rand.New(rand.NewPCG(7, 7))
	n, dim := 4, 16
	x, w, dout := randF32(r, n*dim, 1), randF32(r, dim, 1), randF32(r, n*dim, 1)
	be := New()
	xb, wb := upload(t, be, x), upload(t, be, w)
	ob, rb := upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, n))
	be.RMSNormForward(ob, rb, xb, wb, n, dim, 1e-6)
	dx1, dw1 := upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, dim))
	be.RMSNormBackward(dx1, dw1, upload(t, be, dout), xb, wb, rb, n, dim)
	g, dw2 := upload(t, be, dout), upload(t, be, make([]float32, dim))
	be.RMSNormBackward(g, dw2, g, xb, wb, rb, n, dim)
	if err := closeTo(download(t, be, g), to64(download(t, be, dx1)), 0, 0); err != nil {
		t.Errorf("in-place dx: %v", err)
	}
	if err := closeTo(download(t, be, dw2), to64(download(t, be, dw1)), 0, 0); err != nil {
		t.Errorf("in-place dw: %v", err)
	}
}

// ropeRef rotates x [n,heads,hd] in float64 with the kernel's angle rounding
// (pos·invFreq in float32, as transformers computes it).
func ropeRef(x []float64, pos []int32, inv []float32, n, heads, hd, rot int) []float64 {
	out := append([]float64(nil), x...)
	half := rot / 2
	for t := 0; t < n; t++ {
		for h := 0; h < heads; h++ {
			b := (t*heads + h) * hd
			for i := 0; i < half; i++ {
				a := float64(float32(pos[t]) * inv[i])
				c, s := math.Cos(a), math.Sin(a)
				x1, x2 := x[b+i], x[b+i+half]
				out[b+i] = x1*c - x2*s
				out[b+i+half] = x2*c + x1*s
			}
		}
	}
	return out
}

func TestRoPE(t *testing.T) {
	cases := []struct {
		name              string
		n, heads, hd, rot int
		cfg               tensor.RoPE
	}{
		{"full", 5, 2, 8, 8, tensor.RoPE{HeadDim: 8, Theta: 10000}},
		{"partial", 4, 3, 16, 8, tensor.RoPE{HeadDim: 16, RotaryDim: 8, Theta: 10000}},
		{"llama3", 6, 2, 32, 32, tensor.RoPE{HeadDim: 32, Theta: 500000, Llama3: &tensor.Llama3Scaling{
			Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 64}}},
		{"big", 200, 4, 64, 64, tensor.RoPE{HeadDim: 64, Theta: 1e6}},
	}
	for _, c := range cases {
		r := rand.New(rand.NewPCG(8, uint64(c.n)))
		inv, err := c.cfg.InvFreq()
		if err != nil {
			t.Fatal(err)
		}
		if len(inv) != c.rot/2 {
			t.Fatalf("%s: %d frequencies, want %d", c.name, len(inv), c.rot/2)
		}
		x, dout := randF32(r, c.n*c.heads*c.hd, 1), randF32(r, c.n*c.heads*c.hd, 1)
		// Packed samples: positions restart at 0.
		pos := make([]int32, c.n)
		for i := range pos {
			pos[i] = int32(i % 3 * 37)
		}
		be := New()
		xb, pb, fb := upload(t, be, x), uploadI32(t, be, pos), upload(t, be, inv)
		ob := upload(t, be, make([]float32, len(x)))
		be.RoPEForward(ob, xb, pb, fb, c.n, c.heads, c.hd, c.rot)
		if err := closeTo(download(t, be, ob), ropeRef(to64(x), pos, inv, c.n, c.heads, c.hd, c.rot), 1e-6, 1e-5); err != nil {
			t.Errorf("RoPEForward %s: %v", c.name, err)
		}
		// In place gives the same result.
		be.RoPEForward(xb, xb, pb, fb, c.n, c.heads, c.hd, c.rot)
		if err := closeTo(download(t, be, xb), to64(download(t, be, ob)), 0, 0); err != nil {
			t.Errorf("RoPEForward in place %s: %v", c.name, err)
		}
		dxb := upload(t, be, make([]float32, len(x)))
		be.RoPEBackward(dxb, upload(t, be, dout), pb, fb, c.n, c.heads, c.hd, c.rot)
		if len(x) <= 400 {
			loss := func(xv []float64) float64 { return dot64(ropeRef(xv, pos, inv, c.n, c.heads, c.hd, c.rot), dout) }
			if err := closeTo(download(t, be, dxb), fdGrad(loss, to64(x), 1e-3), 1e-5, 1e-4); err != nil {
				t.Errorf("RoPEBackward %s: %v", c.name, err)
			}
		}
		sameUnderProcs(t, "RoPE", func() []byte {
			ob := upload(t, be, make([]float32, len(x)))
			be.RoPEForward(ob, upload(t, be, x), pb, fb, c.n, c.heads, c.hd, c.rot)
			be.RoPEBackward(dxb, upload(t, be, dout), pb, fb, c.n, c.heads, c.hd, c.rot)
			return f32Bytes(download(t, be, ob), download(t, be, dxb))
		})
	}
}

func TestRoPEInvFreqLlama3(t *testing.T) {
	base := tensor.RoPE{HeadDim: 128, Theta: 500000}
	scaled := base
	scaled.Llama3 = &tensor.Llama3Scaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}
	f0, err := base.InvFreq()
	if err != nil {
		t.Fatal(err)
	}
	f1, err := scaled.InvFreq()
	if err != nil {
		t.Fatal(err)
	}
	if f0[0] != 1 || math.Abs(float64(f0[1])-math.Pow(500000, -2.0/128)) > 1e-7 {
		t.Errorf("inv_freq[0:2] = %v", f0[:2])
	}
	var kept, divided, smoothed int
	for i := range f0 {
		wave := 2 * math.Pi / float64(f0[i])
		switch {
		case wave < 8192/4.0: // high frequency: unchanged
			kept++
			if f1[i] != f0[i] {
				t.Errorf("[%d] high-frequency %v changed to %v", i, f0[i], f1[i])
			}
		case wave > 8192/1.0: // low frequency: divided by the factor
			divided++
			if math.Abs(float64(f1[i])-float64(f0[i])/8) > 1e-6*float64(f0[i]) {
				t.Errorf("[%d] low-frequency %v -> %v, want /8", i, f0[i], f1[i])
			}
		default: // in between: between f/8 and f
			smoothed++
			if !(f1[i] <= f0[i] && f1[i] >= f0[i]/8) {
				t.Errorf("[%d] medium %v -> %v not between f/8 and f", i, f0[i], f1[i])
			}
		}
	}
	if kept == 0 || divided == 0 || smoothed == 0 {
		t.Errorf("bands kept/divided/smoothed = %d/%d/%d, want all used", kept, divided, smoothed)
	}
	for _, bad := range []tensor.RoPE{{HeadDim: 8, RotaryDim: 3, Theta: 1}, {HeadDim: 8, Theta: 0}, {HeadDim: 8, RotaryDim: 16, Theta: 1}} {
		if _, err := bad.InvFreq(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
