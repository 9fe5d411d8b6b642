package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// TestBF16ActivationOutputs: a kernel that may write a bfloat16 activation
// (RMSNorm, SwiGLU, GeGLU, attention forward and decode) writes exactly
// its float32 result rounded to nearest even, under every thread count;
// attention's backward reading that BF16 output equals the backward
// reading an F32 output holding the same (rounded) values.
func TestBF16ActivationOutputs(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 3))
	const B, T, Hq, Hkv, D = 2, 9, 4, 2, 8
	n, dim := B*T, Hq*D
	be := New()
	x, w := upload(t, be, randF32(r, n*dim, 1)), upload(t, be, randF32(r, dim, 1))
	gate, up := upload(t, be, randF32(r, 3*n*dim, 2)), upload(t, be, randF32(r, 3*n*dim, 1))
	q, k, v := upload(t, be, randF32(r, n*Hq*D, 1)), upload(t, be, randF32(r, n*Hkv*D, 1)), upload(t, be, randF32(r, n*Hkv*D, 1))
	attn := tensor.Attn{B: B, T: T, Hq: Hq, Hkv: Hkv, D: D, Scale: 0.3}
	lens := uploadI32(t, be, []int32{T, 4})
	dec := tensor.AttnDecode{B: B, MaxT: T, Hq: Hq, Hkv: Hkv, D: D, Scale: 0.3}
	rstd, lse := upload(t, be, make([]float32, n)), upload(t, be, make([]float32, B*Hq*T))
	for _, c := range []struct {
		name string
		n    int
		run  func(out tensor.Buffer)
	}{
		{"RMSNormForward", n * dim, func(out tensor.Buffer) { be.RMSNormForward(out, rstd, x, w, n, dim, 1e-5) }},
		{"SwiGLUForward", 3 * n * dim, func(out tensor.Buffer) { be.SwiGLUForward(out, gate, up, 3*n*dim) }},
		{"GeGLUForward", 3 * n * dim, func(out tensor.Buffer) { be.GeGLUForward(out, gate, up, 3*n*dim) }},
		{"AttentionForward", n * Hq * D, func(out tensor.Buffer) { be.AttentionForward(out, lse, q, k, v, tensor.Buffer{}, attn) }},
		{"AttentionDecode", B * Hq * D, func(out tensor.Buffer) {
			be.AttentionDecode(out, q.View(0, B*Hq*D), k.View(0, B*T*Hkv*D), v.View(0, B*T*Hkv*D), lens, dec)
		}},
	} {
		f32Out := upload(t, be, make([]float32, c.n))
		c.run(f32Out)
		want := make([]float32, c.n)
		_ = tensor.DownloadF32(be, want, f32Out)
		sameUnderProcs(t, c.name, func() []byte {
			h, _ := be.Alloc(tensor.BF16, c.n)
			c.run(h)
			got := make([]uint16, c.n)
			if err := tensor.DownloadU16(be, got, h); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if got[i] != tensor.BF16FromF32(want[i]) {
					t.Fatalf("%s[%d]: BF16 output %#x, rounded F32 output %#x", c.name, i, got[i], tensor.BF16FromF32(want[i]))
				}
			}
			return u16Bytes(got)
		})
	}

	// The backward reading a BF16 out.
	outH, _ := be.Alloc(tensor.BF16, n*Hq*D)
	be.AttentionForward(outH, lse, q, k, v, tensor.Buffer{}, attn)
	outR := upload(t, be, make([]float32, n*Hq*D))
	be.Convert(outR, outH, n*Hq*D)
	dout := upload(t, be, randF32(r, n*Hq*D, 1))
	grads := func(out tensor.Buffer) []byte {
		dq, dk, dv := upload(t, be, make([]float32, n*Hq*D)), upload(t, be, make([]float32, n*Hkv*D)), upload(t, be, make([]float32, n*Hkv*D))
		be.AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, tensor.Buffer{}, attn)
		return f32Bytes(download(t, be, dq), download(t, be, dk), download(t, be, dv))
	}
	if string(grads(outH)) != string(grads(outR)) {
		t.Error("AttentionBackward with a BF16 out differs from the F32 out of the same values")
	}
}

func u16Bytes(x []uint16) []byte {
	b := make([]byte, 0, 2*len(x))
	for _, v := range x {
		b = append(b, byte(v), byte(v>>8))
	}
	return b
}
