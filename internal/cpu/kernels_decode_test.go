package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// TestAttentionDecodeMatchesForward checks that decoding against a KV cache
// gives what the full causal forward gives at the same position: row b's
// query at position lens[b]−1 attends to cache positions [0, lens[b]). Rows
// are at different lengths in one call, and every cache slot at or past a
// row's length holds NaN, so a kernel that read one would fail.
func TestAttentionDecodeMatchesForward(t *testing.T) {
	for _, tc := range []struct {
		name       string
		B, T, MaxT int
		Hq, Hkv, D int
	}{
		{"mha", 2, 6, 8, 2, 2, 3},
		{"gqa", 3, 9, 12, 4, 2, 4},
		{"mqa odd D", 2, 7, 7, 3, 1, 5},
		{"long", 2, 70, 80, 4, 2, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tensor.Attn{B: tc.B, T: tc.T, Hq: tc.Hq, Hkv: tc.Hkv, D: tc.D, Scale: float32(1 / math.Sqrt(float64(tc.D)))}
			d := tensor.AttnDecode{B: tc.B, MaxT: tc.MaxT, Hq: tc.Hq, Hkv: tc.Hkv, D: tc.D, Scale: a.Scale}
			r := rand.New(rand.NewPCG(21, uint64(tc.T)))
			nq, nk := a.B*a.T*a.Hq*a.D, a.B*a.T*a.Hkv*a.D
			q, k, v := randF32(r, nq, 1), randF32(r, nk, 1), randF32(r, nk, 1)
			be := New()
			full := upload(t, be, make([]float32, nq))
			be.AttentionForward(full, upload(t, be, make([]float32, a.B*a.Hq*a.T)), upload(t, be, q), upload(t, be, k), upload(t, be, v), tensor.Buffer{}, a)
			fwd := download(t, be, full)
			ref, _ := attnRef(to64(q), to64(k), to64(v), nil, a)

			kvd, qd := a.Hkv*a.D, a.Hq*a.D
			for step := range a.T {
				lens := make([]int32, a.B)
				kc := make([]float32, a.B*d.MaxT*kvd)
				vc := make([]float32, a.B*d.MaxT*kvd)
				for i := range kc {
					kc[i], vc[i] = float32(math.NaN()), float32(math.NaN())
				}
				qs := make([]float32, a.B*qd)
				var wantF []float32
				var wantR []float64
				for b := range a.B {
					n := 1 + (step+2*b)%a.T // rows at different lengths
					lens[b] = int32(n)
					copy(kc[b*d.MaxT*kvd:], k[b*a.T*kvd:(b*a.T+n)*kvd])
					copy(vc[b*d.MaxT*kvd:], v[b*a.T*kvd:(b*a.T+n)*kvd])
					at := (b*a.T + n - 1) * qd
					copy(qs[b*qd:], q[at:at+qd])
					wantF = append(wantF, fwd[at:at+qd]...)
					wantR = append(wantR, ref[at:at+qd]...)
				}
				out := upload(t, be, make([]float32, a.B*qd))
				qb, kb, vb, lb := upload(t, be, qs), upload(t, be, kc), upload(t, be, vc), uploadI32(t, be, lens)
				be.AttentionDecode(out, qb, kb, vb, lb, d)
				got := download(t, be, out)
				if err := closeTo(got, to64(wantF), 1e-5, 1e-4); err != nil {
					t.Fatalf("step %d lens %v: against AttentionForward: %v", step, lens, err)
				}
				if err := closeTo(got, wantR, 1e-5, 1e-4); err != nil {
					t.Fatalf("step %d lens %v: against float64 reference: %v", step, lens, err)
				}
				if step == a.T-1 {
					sameUnderProcs(t, "AttentionDecode "+tc.name, func() []byte {
						o := upload(t, be, make([]float32, a.B*qd))
						be.AttentionDecode(o, qb, kb, vb, lb, d)
						return f32Bytes(download(t, be, o))
					})
				}
			}
		})
	}
}

func TestAttentionDecodeBadArgs(t *testing.T) {
	be := New()
	d := tensor.AttnDecode{B: 2, MaxT: 4, Hq: 2, Hkv: 1, D: 3, Scale: 1}
	q := upload(t, be, make([]float32, 2*2*3))
	c := upload(t, be, make([]float32, 2*4*1*3))
	short := upload(t, be, make([]float32, 5))
	ok := uploadI32(t, be, []int32{1, 4})
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Hq not multiple of Hkv", func() {
			bad := d
			bad.Hq, bad.Hkv = 3, 2
			be.AttentionDecode(q, q, c, c, ok, bad)
		}},
		{"zero MaxT", func() { bad := d; bad.MaxT = 0; be.AttentionDecode(q, q, c, c, ok, bad) }},
		{"empty row", func() { be.AttentionDecode(q, q, c, c, uploadI32(t, be, []int32{0, 2}), d) }},
		{"row past the cache", func() { be.AttentionDecode(q, q, c, c, uploadI32(t, be, []int32{2, 5}), d) }},
		{"short lens", func() { be.AttentionDecode(q, q, c, c, uploadI32(t, be, []int32{2}), d) }},
		{"short q", func() { be.AttentionDecode(q, short, c, c, ok, d) }},
		{"short cache", func() { be.AttentionDecode(q, q, c, short, ok, d) }},
		{"F32 lens", func() { be.AttentionDecode(q, q, c, c, upload(t, be, []float32{1, 1}), d) }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			tc.fn()
		}()
	}
}
