package cpu

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// TestBF16Activations: every kernel that takes bfloat16 activations
// (RMSNorm's output, SwiGLU/GeGLU, RoPE, attention forward, backward and
// decode) computes exactly what it computes in float32 on the widened
// values, and a bfloat16 output holds that result rounded to nearest even,
// under every thread count.
func TestBF16Activations(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 3))
	const B, T, Hq, Hkv, D = 2, 9, 4, 2, 8
	n, dim, nq, nk, ni := B*T, Hq*D, B*T*Hq*D, B*T*Hkv*D, 3*B*T*Hq*D
	be := New()
	// act is an input activation: bfloat16-representable values in an F32
	// and a BF16 buffer.
	type act struct{ f, h tensor.Buffer }
	newAct := func(k int, scale float32) act {
		v := randF32(r, k, scale)
		for i := range v {
			v[i] = tensor.F32FromBF16(tensor.BF16FromF32(v[i]))
		}
		a := act{f: upload(t, be, v)}
		a.h, _ = be.Alloc(tensor.BF16, k)
		be.Convert(a.h, a.f, k)
		return a
	}
	pick := func(a act, bf16 bool) tensor.Buffer {
		if bf16 {
			return a.h
		}
		return a.f
	}
	x, w := upload(t, be, randF32(r, n*dim, 1)), upload(t, be, randF32(r, dim, 1))
	gate, up, dout := newAct(ni, 2), newAct(ni, 1), upload(t, be, randF32(r, ni, 1))
	q, k, v, dq := newAct(nq, 1), newAct(nk, 1), newAct(nk, 1), upload(t, be, randF32(r, nq, 1))
	inv, _ := tensor.RoPE{HeadDim: D, Theta: 10000}.InvFreq()
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(i % T)
	}
	posB, invB := uploadI32(t, be, pos), upload(t, be, inv)
	attn := tensor.Attn{B: B, T: T, Hq: Hq, Hkv: Hkv, D: D, Scale: 0.3}
	lens := uploadI32(t, be, []int32{T, 4})
	dec := tensor.AttnDecode{B: B, MaxT: T, Hq: Hq, Hkv: Hkv, D: D, Scale: 0.3}
	rstd, lse := upload(t, be, make([]float32, n)), upload(t, be, make([]float32, B*Hq*T))

	// Each case runs once on F32 buffers and once with its activations
	// BF16: out is its activation output (F32 or BF16, nil for none),
	// grads its F32 outputs.
	for _, c := range []struct {
		name string
		outN int
		run  func(bf16 bool, out tensor.Buffer) (grads []tensor.Buffer)
	}{
		{"RMSNormForward", n * dim, func(_ bool, out tensor.Buffer) []tensor.Buffer {
			be.RMSNormForward(out, rstd, x, w, n, dim, 1e-5)
			return nil
		}},
		{"SwiGLUForward", ni, func(h bool, out tensor.Buffer) []tensor.Buffer {
			be.SwiGLUForward(out, pick(gate, h), pick(up, h), ni)
			return nil
		}},
		{"GeGLUForward", ni, func(h bool, out tensor.Buffer) []tensor.Buffer {
			be.GeGLUForward(out, pick(gate, h), pick(up, h), ni)
			return nil
		}},
		{"SwiGLUBackward", 0, func(h bool, _ tensor.Buffer) []tensor.Buffer {
			dg, du := upload(t, be, make([]float32, ni)), upload(t, be, make([]float32, ni))
			be.SwiGLUBackward(dg, du, dout, pick(gate, h), pick(up, h), ni)
			return []tensor.Buffer{dg, du}
		}},
		{"GeGLUBackward", 0, func(h bool, _ tensor.Buffer) []tensor.Buffer {
			dg, du := upload(t, be, make([]float32, ni)), upload(t, be, make([]float32, ni))
			be.GeGLUBackward(dg, du, dout, pick(gate, h), pick(up, h), ni)
			return []tensor.Buffer{dg, du}
		}},
		{"RoPEForward in place", nq, func(h bool, out tensor.Buffer) []tensor.Buffer {
			be.Convert(out, pick(q, h), nq) // out holds q, rotated in place
			be.RoPEForward(out, out, posB, invB, n, Hq, D, D)
			return nil
		}},
		{"Attention", nq, func(h bool, out tensor.Buffer) []tensor.Buffer {
			be.AttentionForward(out, lse, pick(q, h), pick(k, h), pick(v, h), tensor.Buffer{}, attn)
			// The backward reads the output as the forward wrote it:
			// compare it with the F32 backward reading the same values.
			o := out
			if !h {
				o = upload(t, be, make([]float32, nq))
				rounded, _ := be.Alloc(tensor.BF16, nq)
				be.Convert(rounded, out, nq)
				be.Convert(o, rounded, nq)
			}
			gq, gk, gv := upload(t, be, make([]float32, nq)), upload(t, be, make([]float32, nk)), upload(t, be, make([]float32, nk))
			be.AttentionBackward(gq, gk, gv, dq, pick(q, h), pick(k, h), pick(v, h), o, lse, tensor.Buffer{}, attn)
			return []tensor.Buffer{gq, gk, gv}
		}},
		{"AttentionDecode", B * Hq * D, func(h bool, out tensor.Buffer) []tensor.Buffer {
			be.AttentionDecode(out, pick(q, h).View(0, B*Hq*D), k.f.View(0, B*T*Hkv*D), v.f.View(0, B*T*Hkv*D), lens, dec)
			return nil
		}},
	} {
		var wantOut []float32
		var wantGrads []byte
		if c.outN > 0 {
			out := upload(t, be, make([]float32, c.outN))
			wantGrads = gradBytes(t, be, c.run(false, out))
			wantOut = download(t, be, out)
		} else {
			wantGrads = gradBytes(t, be, c.run(false, tensor.Buffer{}))
		}
		sameUnderProcs(t, c.name, func() []byte {
			var out tensor.Buffer
			if c.outN > 0 {
				out, _ = be.Alloc(tensor.BF16, c.outN)
			}
			grads := gradBytes(t, be, c.run(true, out))
			if !bytes.Equal(grads, wantGrads) {
				t.Fatalf("%s: gradients from bfloat16 activations differ from the float32 ones on the same values", c.name)
			}
			if c.outN == 0 {
				return grads
			}
			got := make([]uint16, c.outN)
			if err := tensor.DownloadU16(be, got, out); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if got[i] != tensor.BF16FromF32(wantOut[i]) {
					t.Fatalf("%s[%d]: bfloat16 output %#x, rounded float32 output %#x", c.name, i, got[i], tensor.BF16FromF32(wantOut[i]))
				}
			}
			return append(grads, u16Bytes(got)...)
		})
	}
}

func gradBytes(t *testing.T, be *Backend, grads []tensor.Buffer) []byte {
	var out []byte
	for _, g := range grads {
		out = append(out, f32Bytes(download(t, be, g))...)
	}
	return out
}

func u16Bytes(x []uint16) []byte {
	b := make([]byte, 0, 2*len(x))
	for _, v := range x {
		b = append(b, byte(v), byte(v>>8))
	}
	return b
}
