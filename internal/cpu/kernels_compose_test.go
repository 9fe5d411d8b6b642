package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// tinyLM is a model written only against tensor.Backend: embedding ->
// RMSNorm -> tied LM head with cross-entropy. Its gradients must match
// finite differences of the float64 reference, which checks that the
// kernels compose (accumulating parameter gradients, overwritten activation
// gradients) the way the interface documents.
type tinyLM struct {
	be                           tensor.Backend
	n, c, v                      int
	table, gain, ids, targets    tensor.Buffer
	h, h2, rstd, losses, ws, dh2 tensor.Buffer
	dtable, dgain, mTab, vTab    tensor.Buffer
	mGain, vGain                 tensor.Buffer
	chunk                        int
}

func (m *tinyLM) alloc(t *testing.T, dt tensor.DType, n int) tensor.Buffer {
	b, err := m.be.Alloc(dt, n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// step runs forward and backward and returns the per-row losses.
func (m *tinyLM) step(t *testing.T, scale float32) []float32 {
	be := m.be
	be.Zero(m.dtable)
	be.Zero(m.dgain)
	be.EmbeddingForward(m.h, m.table, m.ids, m.n, m.c)
	be.RMSNormForward(m.h2, m.rstd, m.h, m.gain, m.n, m.c, 1e-6)
	be.CrossEntropy(m.losses, m.dh2, m.dtable, m.h2, m.table, m.targets, m.ws,
		tensor.CrossEntropy{N: m.n, C: m.c, V: m.v, GradScale: scale, ChunkRows: m.chunk})
	be.RMSNormBackward(m.dh2, m.dgain, m.dh2, m.h, m.gain, m.rstd, m.n, m.c) // in place
	be.EmbeddingBackward(m.dtable, m.dh2, m.ids, m.n, m.c)
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, m.n)
	if err := tensor.DownloadF32(be, out, m.losses); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKernelsComposeIntoAModel(t *testing.T) {
	const n, c, v = 6, 8, 11
	r := rand.New(rand.NewPCG(18, 1))
	table, gain := randF32(r, v*c, 1), randF32(r, c, 1)
	ids, targets := make([]int32, n), make([]int32, n)
	for i := range ids {
		ids[i], targets[i] = int32(r.IntN(v)), int32(r.IntN(v))
	}
	targets[2] = -1
	scale := float32(1.0 / (n - 1))

	var be tensor.Backend = New()
	m := &tinyLM{be: be, n: n, c: c, v: v, chunk: 4}
	m.table, m.gain = m.alloc(t, tensor.F32, v*c), m.alloc(t, tensor.F32, c)
	m.ids, m.targets = m.alloc(t, tensor.I32, n), m.alloc(t, tensor.I32, n)
	for _, p := range []*tensor.Buffer{&m.h, &m.h2, &m.dh2} {
		*p = m.alloc(t, tensor.F32, n*c)
	}
	m.rstd, m.losses, m.ws = m.alloc(t, tensor.F32, n), m.alloc(t, tensor.F32, n), m.alloc(t, tensor.F32, m.chunk*v)
	m.dtable, m.mTab, m.vTab = m.alloc(t, tensor.F32, v*c), m.alloc(t, tensor.F32, v*c), m.alloc(t, tensor.F32, v*c)
	m.dgain, m.mGain, m.vGain = m.alloc(t, tensor.F32, c), m.alloc(t, tensor.F32, c), m.alloc(t, tensor.F32, c)
	for _, e := range []error{tensor.UploadF32(be, m.table, table), tensor.UploadF32(be, m.gain, gain),
		tensor.UploadI32(be, m.ids, ids), tensor.UploadI32(be, m.targets, targets)} {
		if e != nil {
			t.Fatal(e)
		}
	}

	ref := func(tab, g []float64) float64 {
		h := make([]float64, n*c)
		for i, id := range ids {
			copy(h[i*c:(i+1)*c], tab[int(id)*c:(int(id)+1)*c])
		}
		var l float64
		for _, x := range xentRef(rmsRef(h, g, n, c, 1e-6), tab, targets, n, c, v) {
			l += x
		}
		return float64(scale) * l
	}
	losses := m.step(t, scale)
	var total float64
	for _, l := range losses {
		total += float64(l)
	}
	if want := ref(to64(table), to64(gain)); abs(float64(scale)*total-want) > 1e-5*want {
		t.Errorf("loss %v, reference %v", float64(scale)*total, want)
	}
	dtab := make([]float32, v*c)
	dg := make([]float32, c)
	_ = tensor.DownloadF32(be, dtab, m.dtable)
	_ = tensor.DownloadF32(be, dg, m.dgain)
	tab64, g64 := to64(table), to64(gain)
	if err := closeTo(dtab, fdGrad(func(x []float64) float64 { return ref(x, g64) }, tab64, 1e-5), 1e-5, 1e-3); err != nil {
		t.Errorf("d table: %v", err)
	}
	if err := closeTo(dg, fdGrad(func(x []float64) float64 { return ref(tab64, x) }, g64, 1e-5), 1e-5, 1e-3); err != nil {
		t.Errorf("d gain: %v", err)
	}

	// A few AdamW steps with clipping lower the loss.
	first := float64(scale) * total
	norm := m.alloc(t, tensor.F32, 1)
	var last float64
	for step := 1; step <= 20; step++ {
		be.GlobalNorm(norm, []tensor.Buffer{m.dtable, m.dgain})
		be.ClipByNorm([]tensor.Buffer{m.dtable, m.dgain}, norm, 1)
		h := tensor.AdamW{LR: 0.05, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: step}
		be.AdamW(m.table, m.dtable, m.mTab, m.vTab, v*c, h)
		h.WeightDecay = 0 // per-buffer decay: none on the norm gain
		be.AdamW(m.gain, m.dgain, m.mGain, m.vGain, c, h)
		last = 0
		for _, l := range m.step(t, scale) {
			last += float64(scale) * float64(l)
		}
	}
	if !(last < first*0.8) {
		t.Errorf("loss %v -> %v after 20 AdamW steps, want a clear decrease", first, last)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
