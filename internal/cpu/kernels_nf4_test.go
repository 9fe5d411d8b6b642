package cpu

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// The NF4 table as published with QLoRA (bitsandbytes csrc/kernels.cu).
var publishedNF4 = [16]float64{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

func TestNF4CodesArePublished(t *testing.T) {
	for i, c := range tensor.NF4Codes {
		if c != float32(publishedNF4[i]) {
			t.Errorf("code %d = %v, want %v", i, c, publishedNF4[i])
		}
	}
	// And they are the QLoRA construction: normal quantiles at evenly
	// spaced probabilities from 0.5 to 0.9677083 (8 positive, 7 negative,
	// plus an exact zero), normalised to [-1, 1].
	ppf := func(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }
	const offset = 0.9677083
	var vals []float64
	for i := 0; i < 8; i++ {
		vals = append(vals, ppf(offset+(0.5-offset)*float64(i)/8))
	}
	for i := 0; i < 7; i++ {
		vals = append(vals, -ppf(offset+(0.5-offset)*float64(i)/7))
	}
	vals = append(vals, 0)
	sort.Float64s(vals)
	for i, v := range vals {
		if d := v / vals[15]; math.Abs(d-publishedNF4[i]) > 1e-6 {
			t.Errorf("derived code %d = %v, published %v", i, d, publishedNF4[i])
		}
	}
}

func TestNF4DecodeFixture(t *testing.T) {
	// 64 values: codes 0..15 four times, high nibble first; absmax decodes
	// to q/127·scale2 + offset = 127/127·2 + 1 = 3.
	be := New()
	q, err := tensor.AllocNF4(be, 64)
	if err != nil {
		t.Fatal(err)
	}
	codes := make([]byte, 32)
	for i := range codes {
		codes[i] = byte((2*i)%16<<4 | (2*i+1)%16)
	}
	if err := be.Upload(q.Codes, codes); err != nil {
		t.Fatal(err)
	}
	if err := be.Upload(q.Absmax, []byte{127}); err != nil {
		t.Fatal(err)
	}
	if err := tensor.UploadF32(be, q.Scale2, []float32{2}); err != nil {
		t.Fatal(err)
	}
	if err := tensor.UploadF32(be, q.Offset, []float32{1}); err != nil {
		t.Fatal(err)
	}
	out := upload(t, be, make([]float32, 64))
	be.DequantNF4(out, q, 0, q.N)
	want := make([]float64, 64)
	for i := range want {
		want[i] = float64(float32(publishedNF4[i%16]) * 3)
	}
	if err := closeTo(download(t, be, out), want, 0, 0); err != nil {
		t.Errorf("decode: %v", err)
	}
	// A negative int8 absmax code: -127 → -2 + 1 = -1... use 0xC1 = -63.
	if err := be.Upload(q.Absmax, []byte{0xC1}); err != nil {
		t.Fatal(err)
	}
	be.DequantNF4(out, q, 0, q.N)
	a := float32(-63)*(float32(2)/127) + 1
	if got := download(t, be, out)[15]; got != a {
		t.Errorf("value with code 15 and absmax code -63 = %v, want %v", got, a)
	}
}

func TestNF4RoundTrip(t *testing.T) {
	for _, n := range []int{64, 64 * 3, 64 * 300} { // 300 blocks: two absmax groups
		r := rand.New(rand.NewPCG(14, uint64(n)))
		x := randF32(r, n, 0.02)
		for i := range x[:64] { // one block of much larger values
			x[i] *= 50
		}
		be := New()
		q, err := tensor.AllocNF4(be, n)
		if err != nil {
			t.Fatal(err)
		}
		xb, out := upload(t, be, x), upload(t, be, make([]float32, n))
		be.QuantizeNF4(q, xb)
		be.DequantNF4(out, q, 0, q.N)
		got := download(t, be, out)

		blocks, groups := tensor.NF4Sizes(n)
		absQ := make([]byte, blocks)
		if err := be.Download(absQ, q.Absmax); err != nil {
			t.Fatal(err)
		}
		scale2, offset := download(t, be, q.Scale2), download(t, be, q.Offset)[0]
		if len(scale2) != groups {
			t.Fatalf("%d groups, want %d", len(scale2), groups)
		}
		var errSq, sumSq float64
		for b := 0; b < blocks; b++ {
			var absmax float64
			for _, v := range x[b*64 : (b+1)*64] {
				absmax = math.Max(absmax, math.Abs(float64(v)))
			}
			dq := float64(nf4Absmax(absQ[b], scale2[b/256], offset))
			// Double quantisation moves the absmax by at most half a step.
			if math.Abs(dq-absmax) > float64(scale2[b/256])/254*1.0001+1e-9 {
				t.Errorf("n=%d block %d: absmax %v decoded as %v", n, b, absmax, dq)
			}
			for i := b * 64; i < (b+1)*64; i++ {
				e := math.Abs(float64(got[i]) - float64(x[i]))
				// Nearest code: no other code reconstructs x better.
				for _, c := range tensor.NF4Codes {
					if alt := math.Abs(float64(c*float32(dq)) - float64(x[i])); alt < e-1e-7*absmax {
						t.Fatalf("n=%d [%d]: %v -> %v, but code %v gives %v", n, i, x[i], got[i], c, c*float32(dq))
					}
				}
				// Half the widest gap between codes (-1 to -0.696), plus the absmax error.
				if bound := 0.5*(1-0.6961928009986877)*dq + math.Abs(dq-absmax) + 1e-6*absmax; e > bound {
					t.Errorf("n=%d [%d]: error %v above bound %v", n, i, e, bound)
				}
				errSq += e * e
				sumSq += float64(x[i]) * float64(x[i])
			}
		}
		// On normal data NF4 keeps about 10% relative RMS error.
		if rel := math.Sqrt(errSq / sumSq); rel > 0.12 {
			t.Errorf("n=%d: relative RMS error %.3f", n, rel)
		}
		sameUnderProcs(t, "QuantizeNF4", func() []byte {
			q2, _ := tensor.AllocNF4(be, n)
			be.QuantizeNF4(q2, xb)
			raw := make([]byte, q2.Codes.Bytes()+q2.Absmax.Bytes())
			_ = be.Download(raw[:q2.Codes.Bytes()], q2.Codes)
			_ = be.Download(raw[q2.Codes.Bytes():], q2.Absmax)
			return append(raw, f32Bytes(download(t, be, q2.Scale2), download(t, be, q2.Offset))...)
		})
	}
	if _, err := tensor.AllocNF4(New(), 100); err == nil {
		t.Error("AllocNF4(100) succeeded")
	}
}
