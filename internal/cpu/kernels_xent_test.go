package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// xentRef returns the per-row losses of softmax(x·wᵀ) in float64.
func xentRef(x, w []float64, targets []int32, n, c, v int) []float64 {
	losses := make([]float64, n)
	logits := make([]float64, v)
	for i := 0; i < n; i++ {
		if targets[i] < 0 {
			continue
		}
		m := math.Inf(-1)
		for j := 0; j < v; j++ {
			var d float64
			for p := 0; p < c; p++ {
				d += x[i*c+p] * w[j*c+p]
			}
			logits[j] = d
			m = math.Max(m, d)
		}
		var z float64
		for j := 0; j < v; j++ {
			z += math.Exp(logits[j] - m)
		}
		losses[i] = m + math.Log(z) - logits[targets[i]]
	}
	return losses
}

func TestCrossEntropy(t *testing.T) {
	for _, s := range []struct{ n, c, v, chunk int }{{1, 3, 5, 1}, {6, 4, 7, 4}, {70, 32, 300, 16}} {
		r := rand.New(rand.NewPCG(17, uint64(s.n)))
		x, w := randF32(r, s.n*s.c, 1), randF32(r, s.v*s.c, 0.5)
		targets := make([]int32, s.n)
		valid := 0
		for i := range targets {
			targets[i] = int32(r.IntN(s.v))
			if i%3 == 2 {
				targets[i] = -100 // ignored
			} else {
				valid++
			}
		}
		scale := float32(1 / float64(max(valid, 1)))
		cfg := tensor.CrossEntropy{N: s.n, C: s.c, V: s.v, GradScale: scale, ChunkRows: s.chunk}
		be := New()
		xb, wb, tb := upload(t, be, x), upload(t, be, w), uploadI32(t, be, targets)
		lb, ws := upload(t, be, make([]float32, s.n)), upload(t, be, make([]float32, s.chunk*s.v))
		be.CrossEntropy(lb, tensor.Buffer{}, tensor.Buffer{}, xb, wb, tb, ws, cfg)
		want := xentRef(to64(x), to64(w), targets, s.n, s.c, s.v)
		if err := closeTo(download(t, be, lb), want, 1e-5, 1e-5); err != nil {
			t.Errorf("%v losses: %v", s, err)
		}
		initW := randF32(r, s.v*s.c, 1)
		dx, dw := upload(t, be, make([]float32, s.n*s.c)), upload(t, be, initW)
		be.CrossEntropy(lb, dx, dw, xb, wb, tb, ws, cfg)
		if err := closeTo(download(t, be, lb), want, 1e-5, 1e-5); err != nil {
			t.Errorf("%v losses with grad: %v", s, err)
		}
		if s.n*s.c*s.v <= 200 {
			sum := func(l []float64) float64 {
				var t float64
				for _, v := range l {
					t += v
				}
				return float64(scale) * t
			}
			fdx := fdGrad(func(xv []float64) float64 { return sum(xentRef(xv, to64(w), targets, s.n, s.c, s.v)) }, to64(x), 1e-5)
			if err := closeTo(download(t, be, dx), fdx, 1e-5, 1e-3); err != nil {
				t.Errorf("%v dx: %v", s, err)
			}
			fdw := fdGrad(func(wv []float64) float64 { return sum(xentRef(to64(x), wv, targets, s.n, s.c, s.v)) }, to64(w), 1e-5)
			for i := range fdw {
				fdw[i] += float64(initW[i])
			}
			if err := closeTo(download(t, be, dw), fdw, 1e-5, 1e-3); err != nil {
				t.Errorf("%v dw: %v", s, err)
			}
		}
		sameUnderProcs(t, "CrossEntropy", func() []byte {
			dx, dw := upload(t, be, make([]float32, s.n*s.c)), upload(t, be, initW)
			be.CrossEntropy(lb, dx, dw, xb, wb, tb, ws, cfg)
			return f32Bytes(download(t, be, lb), download(t, be, dx), download(t, be, dw))
		})
	}
}
