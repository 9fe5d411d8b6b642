package timeest

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// Timing of one op: after a warm-up call, batches of calls (doubling until
// a batch takes measureBatch) until measureMin has passed and at least
// measureRuns batches ran; the per-call time is the fastest batch's among those
// that took measureBatch or longer: the machine's speed when nothing else
// competes for it, which a machine shared with other work reproduces far
// better than a mean or median would.
const (
	measureBatch = time.Millisecond
	measureMin   = 25 * time.Millisecond
	measureRuns  = 4
	measureMax   = 400 // batches

	// coldBytes is how much memory the copies of a small op's operands
	// span (beyond a core's L2 cache); maxCopies bounds the copies.
	coldBytes = 8 << 20
	maxCopies = 64
)

// measure times op on be and returns the seconds one call takes.
func measure(be tensor.Backend, op Op) (float64, error) {
	if err := op.check(); err != nil {
		return 0, err
	}
	r := &runner{be: be}
	defer r.free()
	// In a training step each kernel finds its operands out of cache,
	// touched last a layer or more ago: the calls rotate through enough
	// copies of the operands to overflow the caches.
	copies := int(min(maxCopies, max(1, coldBytes/(4*op.floats()))))
	calls := make([]func(), copies)
	for i := range calls {
		c, err := r.prepare(op)
		if err != nil {
			return 0, fmt.Errorf("timeest: measure %s: %w", op.Key(), err)
		}
		calls[i] = c
	}
	// No collection cycle (the previous op's buffers are garbage) runs
	// beside the timed calls.
	runtime.GC()
	next := 0
	call := func() {
		calls[next]()
		next = (next + 1) % len(calls)
	}
	call()
	if err := be.Sync(); err != nil {
		return 0, fmt.Errorf("timeest: measure %s: %w", op.Key(), err)
	}
	var long, all []float64
	k := 1
	start := time.Now()
	for len(all) < measureMax && (time.Since(start) < measureMin || len(all) < measureRuns) {
		t0 := time.Now()
		for range k {
			call()
		}
		if err := be.Sync(); err != nil {
			return 0, fmt.Errorf("timeest: measure %s: %w", op.Key(), err)
		}
		d := time.Since(t0)
		per := d.Seconds() / float64(k)
		all = append(all, per)
		if d >= measureBatch {
			long = append(long, per)
		} else if k < 1<<20 {
			k *= 2
		}
	}
	if len(long) == 0 {
		long = all
	}
	s := slices.Min(long)
	if !(s > 0) || math.IsInf(s, 0) {
		return 0, fmt.Errorf("timeest: measure %s: no usable time (%v)", op.Key(), s)
	}
	return s, nil
}

// runner holds the buffers of one measurement.
type runner struct {
	be   tensor.Backend
	bufs []tensor.Buffer
	nf4  []tensor.NF4Tensor
	err  error
}

func (r *runner) f32(n int) tensor.Buffer {
	return r.alloc(tensor.F32, n, true)
}

func (r *runner) alloc(dt tensor.DType, n int, fill bool) tensor.Buffer {
	if r.err != nil {
		return tensor.Buffer{}
	}
	b, err := r.be.Alloc(dt, max(n, 1))
	if err != nil {
		r.err = err
		return tensor.Buffer{}
	}
	r.bufs = append(r.bufs, b)
	if fill && dt == tensor.F32 {
		r.be.Fill(b, 0.01)
	} else {
		r.be.Zero(b)
	}
	return b
}

func (r *runner) free() {
	for _, b := range r.bufs {
		r.be.Free(b)
	}
	for _, q := range r.nf4 {
		q.Free(r.be)
	}
}

// prepare allocates op's operands and returns one call of it.
func (r *runner) prepare(op Op) (func(), error) {
	be := r.be
	var call func()
	switch op.Kind {
	case KindGemm:
		a, b, c := r.f32(op.M*op.K), r.f32(op.K*op.N), r.f32(op.M*op.N)
		call = func() { tensor.MatMul(be, c, a, b, op.M, op.N, op.K, op.TransA, op.TransB, 0) }
	case KindAttnFwd, KindAttnBwd:
		qn, kn := op.B*op.T*op.Hq*op.D, op.B*op.T*op.Hkv*op.D
		q, k, v, out, lse := r.f32(qn), r.f32(kn), r.f32(kn), r.f32(qn), r.f32(op.B*op.Hq*op.T)
		a := tensor.Attn{B: op.B, T: op.T, Hq: op.Hq, Hkv: op.Hkv, D: op.D, Scale: 1 / float32(math.Sqrt(float64(op.D)))}
		if r.err == nil {
			be.AttentionForward(out, lse, q, k, v, tensor.Buffer{}, a)
		}
		if op.Kind == KindAttnFwd {
			call = func() { be.AttentionForward(out, lse, q, k, v, tensor.Buffer{}, a) }
			break
		}
		dq, dk, dv, dout := r.f32(qn), r.f32(kn), r.f32(kn), r.f32(qn)
		call = func() { be.AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, tensor.Buffer{}, a) }
	case KindXent:
		x, w := r.f32(op.Rows*op.Hidden), r.f32(op.Vocab*op.Hidden)
		losses, tgt, ws := r.f32(op.Rows), r.alloc(tensor.I32, op.Rows, false), r.f32(xentChunk*op.Vocab)
		var dx, dw tensor.Buffer
		if op.Variant != XentLoss {
			dx = r.f32(op.Rows * op.Hidden)
		}
		if op.Variant == XentDxDw {
			dw = r.f32(op.Vocab * op.Hidden)
		}
		c := tensor.CrossEntropy{N: op.Rows, C: op.Hidden, V: op.Vocab, GradScale: 1 / float32(op.Rows), ChunkRows: xentChunk}
		call = func() { be.CrossEntropy(losses, dx, dw, x, w, tgt, ws, c) }
	case KindNF4:
		x, out := r.f32(op.Values), r.f32(op.Values)
		if r.err != nil {
			break
		}
		q, err := tensor.AllocNF4(be, op.Values)
		if err != nil {
			return nil, err
		}
		r.nf4 = append(r.nf4, q)
		be.QuantizeNF4(q, x)
		call = func() { be.DequantNF4(out, q, 0, op.Values) }
	case KindAdamW:
		p, g, m, v := r.f32(op.Values), r.f32(op.Values), r.f32(op.Values), r.f32(op.Values)
		h := tensor.AdamW{LR: 1e-9, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1}
		call = func() { be.AdamW(p, g, m, v, op.Values, h) }
	case KindGrads:
		g, norm := r.f32(op.Values), r.f32(1)
		call = func() {
			be.GlobalNorm(norm, []tensor.Buffer{g})
			be.ClipByNorm([]tensor.Buffer{g}, norm, 1e30)
			be.Zero(g)
		}
	case KindElemFwd, KindElemBwd:
		call = r.elementwise(op)
	}
	if r.err != nil {
		return nil, r.err
	}
	if call == nil {
		return nil, errors.New("no kernel for this op")
	}
	return call, nil
}

// xentChunk is llama's fused cross-entropy chunk (rows of logits at a
// time).
const xentChunk = 64

// elementwise is one decoder layer's elementwise kernels: forward the two
// RMS norms, RoPE on queries and keys, the gated activation and the two
// residual adds; backward their gradients.
func (r *runner) elementwise(op Op) func() {
	be := r.be
	n, H, I, D := op.Rows, op.Hidden, op.Inter, op.D
	qd, kd := op.Hq*D, op.Hkv*D
	x, y, w, rstd := r.f32(n*H), r.f32(n*H), r.f32(H), r.f32(n)
	q, k, qr, kr := r.f32(n*qd), r.f32(n*kd), r.f32(n*qd), r.f32(n*kd)
	gate, up, sw := r.f32(n*I), r.f32(n*I), r.f32(n*I)
	pos, inv := r.alloc(tensor.I32, n, false), r.f32(D/2)
	if r.err != nil {
		return nil
	}
	if op.Kind == KindElemFwd {
		return func() {
			be.RMSNormForward(y, rstd, x, w, n, H, 1e-6)
			be.RoPEForward(qr, q, pos, inv, n, op.Hq, D, D)
			be.RoPEForward(kr, k, pos, inv, n, op.Hkv, D, D)
			be.Add(y, y, x, n*H)
			be.RMSNormForward(y, rstd, x, w, n, H, 1e-6)
			be.SwiGLUForward(sw, gate, up, n*I)
			be.Add(y, y, x, n*H)
		}
	}
	dx, dw, dg, du := r.f32(n*H), r.f32(H), r.f32(n*I), r.f32(n*I)
	if r.err != nil {
		return nil
	}
	return func() {
		be.SwiGLUBackward(dg, du, sw, gate, up, n*I)
		be.RMSNormBackward(dx, dw, y, x, w, rstd, n, H)
		be.Add(y, y, dx, n*H)
		be.RoPEBackward(q, qr, pos, inv, n, op.Hq, D, D)
		be.RoPEBackward(k, kr, pos, inv, n, op.Hkv, D, D)
		be.RMSNormBackward(dx, dw, y, x, w, rstd, n, H)
		be.Add(y, y, dx, n*H)
	}
}
