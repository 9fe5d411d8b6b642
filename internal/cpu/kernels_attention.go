package cpu

import (
	"fmt"

	"github.com/lathe-ml/lathe/internal/tensor"
)

var _ tensor.Backend = (*Backend)(nil)

func checkAttn(what string, a tensor.Attn) {
	if a.B <= 0 || a.T <= 0 || a.Hq <= 0 || a.Hkv <= 0 || a.D <= 0 || a.Hq%a.Hkv != 0 {
		panic(fmt.Sprintf("%s: bad shape %+v (need positive sizes, Hq %% Hkv == 0)", what, a))
	}
}

// attnOptsOf views a's score options on host memory.
func attnOptsOf(what string, a tensor.Attn) attnOpts {
	o := attnOpts{softCap: a.SoftCap, window: a.Window}
	if !a.ALiBi.IsNil() {
		o.alibi = f32(what+" ALiBi", a.ALiBi, a.Hq)
	}
	return o
}

func segView(b tensor.Buffer, n int) []int32 {
	if b.IsNil() {
		return nil
	}
	return i32("cpu.Attention segIDs", b, n)
}

// AttentionForward runs causal grouped-query attention with a's score
// options (attentionForward on the buffers' host memory; bfloat16 q, k, v
// widened into scratch, a bfloat16 out rounded from it).
func (be *Backend) AttentionForward(out, lse, q, k, v, segIDs tensor.Buffer, a tensor.Attn) {
	checkAttn("cpu.AttentionForward", a)
	nq, nk := a.B*a.T*a.Hq*a.D, a.B*a.T*a.Hkv*a.D
	o, oh := be.actOut("cpu.AttentionForward out", out, nq)
	attentionForward(o, f32("cpu.AttentionForward lse", lse, a.B*a.Hq*a.T),
		be.actIn(slotQ, "cpu.AttentionForward q", q, nq), be.actIn(slotK, "cpu.AttentionForward k", k, nk),
		be.actIn(slotV, "cpu.AttentionForward v", v, nk),
		segView(segIDs, a.B*a.T), a.B, a.T, a.Hq, a.Hkv, a.D, a.Scale, attnOptsOf("cpu.AttentionForward", a))
	be.round(oh, o)
}

// AttentionBackward overwrites dq, dk and dv (AttentionBackward on the
// buffers' host memory).
func (be *Backend) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, segIDs tensor.Buffer, a tensor.Attn) {
	checkAttn("cpu.AttentionBackward", a)
	nq, nk := a.B*a.T*a.Hq*a.D, a.B*a.T*a.Hkv*a.D
	attentionBackward(f32("cpu.AttentionBackward dq", dq, nq), f32("cpu.AttentionBackward dk", dk, nk),
		f32("cpu.AttentionBackward dv", dv, nk), f32("cpu.AttentionBackward dout", dout, nq),
		be.actIn(slotQ, "cpu.AttentionBackward q", q, nq), be.actIn(slotK, "cpu.AttentionBackward k", k, nk),
		be.actIn(slotV, "cpu.AttentionBackward v", v, nk), be.actIn(slotA, "cpu.AttentionBackward out", out, nq), f32("cpu.AttentionBackward lse", lse, a.B*a.Hq*a.T),
		segView(segIDs, a.B*a.T), a.B, a.T, a.Hq, a.Hkv, a.D, a.Scale, attnOptsOf("cpu.AttentionBackward", a))
}
