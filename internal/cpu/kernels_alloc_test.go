package cpu

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// The hot kernels allocate nothing per call, on the parallel path too.
func TestKernelsDoNotAllocate(t *testing.T) {
	old := runtime.GOMAXPROCS(4)
	defer runtime.GOMAXPROCS(old)
	r := rand.New(rand.NewPCG(15, 1))
	const n, dim, vocab, heads, hd = 128, 256, 50, 4, 64
	be := New()
	x, w, g := upload(t, be, randF32(r, n*dim, 1)), upload(t, be, randF32(r, dim, 1)), upload(t, be, randF32(r, n*dim, 1))
	o, o2, rs := upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, n))
	dw := upload(t, be, make([]float32, dim))
	table, dtable := upload(t, be, randF32(r, vocab*dim, 1)), upload(t, be, make([]float32, vocab*dim))
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(r.IntN(vocab))
	}
	ib, pos := uploadI32(t, be, ids), uploadI32(t, be, ids)
	inv, _ := tensor.RoPE{HeadDim: hd, Theta: 10000}.InvFreq()
	fb := upload(t, be, inv)
	m, v := upload(t, be, make([]float32, n*dim)), upload(t, be, make([]float32, n*dim))
	norm := upload(t, be, []float32{0})
	grads := []tensor.Buffer{g, dw, dtable}
	h16, _ := be.Alloc(tensor.BF16, n*dim)
	q, _ := tensor.AllocNF4(be, n*dim)
	be.QuantizeNF4(q, x)

	for name, fn := range map[string]func(){
		"Add":                 func() { be.Add(o, x, g, n*dim) },
		"Axpy":                func() { be.Axpy(o, x, 0.5, n*dim) },
		"Scale":               func() { be.Scale(o, 0.5, n*dim) },
		"Copy":                func() { be.Copy(o, x) },
		"Zero":                func() { be.Zero(o) },
		"AddBias":             func() { be.AddBias(o, w, n, dim) },
		"BiasGrad":            func() { be.BiasGrad(dw, g, n, dim) },
		"SwiGLUForward":       func() { be.SwiGLUForward(o, x, g, n*dim) },
		"SwiGLUBackward":      func() { be.SwiGLUBackward(o, o2, g, x, g, n*dim) },
		"GeGLUForward":        func() { be.GeGLUForward(o, x, g, n*dim) },
		"GeGLUBackward":       func() { be.GeGLUBackward(o, o2, g, x, g, n*dim) },
		"EmbeddingForward":    func() { be.EmbeddingForward(o, table, ib, n, dim) },
		"EmbeddingBackward":   func() { be.EmbeddingBackward(dtable, g, ib, n, dim) },
		"RMSNormForward":      func() { be.RMSNormForward(o, rs, x, w, n, dim, 1e-5) },
		"RMSNormForward bf16": func() { be.RMSNormForward(h16, rs, x, w, n, dim, 1e-5) },
		"SwiGLUForward bf16":  func() { be.SwiGLUForward(h16, x, g, n*dim) },
		"RMSNormBackward":     func() { be.RMSNormBackward(o2, dw, g, x, w, rs, n, dim) },
		"RoPEForward":         func() { be.RoPEForward(o, x, pos, fb, n, heads, hd, hd) },
		"RoPEBackward":        func() { be.RoPEBackward(o, g, pos, fb, n, heads, hd, hd) },
		"AdamW": func() {
			be.AdamW(o, g, m, v, n*dim, tensor.AdamW{LR: 1e-3, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, Step: 3})
		},
		"GlobalNorm": func() { be.GlobalNorm(norm, grads) },
		"ClipByNorm": func() { be.ClipByNorm(grads, norm, 1e-3) },
		"Convert":    func() { be.Convert(h16, x, n*dim) },
		"DequantNF4": func() { be.DequantNF4(o, q, 0, q.N) },
	} {
		fn() // warm up: starts workers, grows scratch
		if a := testing.AllocsPerRun(20, fn); a != 0 {
			t.Errorf("%s: %v allocations per call", name, a)
		}
	}
}
