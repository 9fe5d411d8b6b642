package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Type
		ok   bool
	}{
		{"f32", F32, true}, {"F16", F16, true}, {"bf16", BF16, true}, {"Q8_0", Q8_0, true},
		{"q4_0", Q4_0, true}, {" q4_0 ", Q4_0, true}, {"q4_k", 0, false}, {"", 0, false}, {"int8", 0, false},
	} {
		got, err := ParseType(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseType(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if Q4_0.String() != "Q4_0" || BF16.String() != "BF16" || Type(99).String() != "type(99)" {
		t.Errorf("String: %v %v %v", Q4_0, BF16, Type(99))
	}
}

// quantInputs returns blocks of 32 values with various scales and shapes:
// random normals, a zero block, a single spike, all-equal values, a block
// whose largest magnitude is positive and one where it is negative.
func quantInputs() [][]float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	var blocks [][]float32
	for _, scale := range []float64{1e-4, 0.02, 1, 300} {
		for range 20 {
			b := make([]float32, 32)
			for i := range b {
				b[i] = float32(rng.NormFloat64() * scale)
			}
			blocks = append(blocks, b)
		}
	}
	zero := make([]float32, 32)
	spike := make([]float32, 32)
	spike[7] = -3.5
	same := make([]float32, 32)
	for i := range same {
		same[i] = 0.75
	}
	pos := make([]float32, 32)
	neg := make([]float32, 32)
	for i := range pos {
		pos[i] = float32(i) - 10 // max magnitude +21
		neg[i] = 10 - float32(i) // max magnitude -21
	}
	return append(blocks, zero, spike, same, pos, neg)
}

func TestQ8_0Bounds(t *testing.T) {
	for bi, x := range quantInputs() {
		raw, err := EncodeFloat32(Q8_0, x)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 34 {
			t.Fatalf("block is %d bytes, want 34", len(raw))
		}
		got, err := DecodeFloat32(Q8_0, raw)
		if err != nil {
			t.Fatal(err)
		}
		var amax float64
		for _, v := range x {
			amax = max(amax, math.Abs(float64(v)))
		}
		d := amax / 127
		d16 := float64(tensor.F32FromF16(binary.LittleEndian.Uint16(raw)))
		// q = round(x/d) is within 1/2 of x/d; the f16 scale adds at most
		// 127·|d - d16|.
		bound := d/2 + 127*math.Abs(d-d16) + 1e-6*amax
		for i := range x {
			if e := math.Abs(float64(x[i]) - float64(got[i])); e > bound {
				t.Fatalf("block %d elem %d: %v -> %v, error %g > %g", bi, i, x[i], got[i], e, bound)
			}
		}
		// Re-encoding the dequantised block is stable.
		raw2, _ := EncodeFloat32(Q8_0, got)
		got2, _ := DecodeFloat32(Q8_0, raw2)
		for i := range got {
			if math.Abs(float64(got2[i]-got[i])) > d16/2+1e-6*amax {
				t.Fatalf("block %d: re-quantising moved elem %d from %v to %v", bi, i, got[i], got2[i])
			}
		}
	}
}

func TestQ4_0Bounds(t *testing.T) {
	for bi, x := range quantInputs() {
		raw, err := EncodeFloat32(Q4_0, x)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 18 {
			t.Fatalf("block is %d bytes, want 18", len(raw))
		}
		got, err := DecodeFloat32(Q4_0, raw)
		if err != nil {
			t.Fatal(err)
		}
		var m float64
		for _, v := range x {
			if math.Abs(float64(v)) > math.Abs(m) {
				m = float64(v)
			}
		}
		d := m / -8
		d16 := float64(tensor.F32FromF16(binary.LittleEndian.Uint16(raw)))
		ad := math.Abs(d)
		for i := range x {
			// Values up to 7.5 steps from zero on the side opposite the
			// extreme round to the nearest step (error ≤ |d|/2); beyond,
			// the top code 15 clamps them (error ≤ |d|). The f16 scale adds
			// at most 8·|d - d16|.
			bound := ad/2 + 8*math.Abs(d-d16) + 1e-6*math.Abs(m)
			if d != 0 && float64(x[i])/d > 7.5 {
				bound += ad / 2
			}
			if e := math.Abs(float64(x[i]) - float64(got[i])); e > bound {
				t.Fatalf("block %d elem %d: %v -> %v, error %g > %g (d %g)", bi, i, x[i], got[i], e, bound, d)
			}
		}
		// The extreme value is represented exactly up to the f16 scale.
		for i := range x {
			if float64(x[i]) == m && math.Abs(float64(got[i])-m) > 8*math.Abs(d-d16)+1e-6*math.Abs(m) {
				t.Fatalf("block %d: extreme %v came back as %v", bi, m, got[i])
			}
		}
	}
}

// TestQuantKnownBlocks checks hand-computed bytes of ggml's block layouts.
func TestQuantKnownBlocks(t *testing.T) {
	// Q4_0: x[j] = j-16. The extreme is -16, so d = -16/-8 = 2 (f16 0x4000)
	// and q[j] = min(15, trunc((j-16)/2 + 8.5)); byte j holds q[j] in the
	// low nibble and q[j+16] in the high one.
	x := make([]float32, 32)
	for j := range x {
		x[j] = float32(j - 16)
	}
	want4 := []byte{0x00, 0x40, 0x80, 0x91, 0x91, 0xA2, 0xA2, 0xB3, 0xB3, 0xC4, 0xC4, 0xD5, 0xD5, 0xE6, 0xE6, 0xF7, 0xF7, 0xF8}
	got4, err := EncodeFloat32(Q4_0, x)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got4, want4) {
		t.Errorf("Q4_0 bytes\n got % x\nwant % x", got4, want4)
	}
	deq4, _ := DecodeFloat32(Q4_0, want4)
	for j := range deq4 {
		// (q-8)·2: even j-16 exact, odd rounds up by one, 15 clamps to 14.
		want := float32(2 * ((j + 1) / 2))
		want -= 16
		if j == 31 {
			want = 14
		}
		if deq4[j] != want {
			t.Errorf("Q4_0 dequant[%d] = %v, want %v", j, deq4[j], want)
		}
	}

	// Q8_0: max |x| = 127, so d = 1 (f16 0x3C00) and q = round(x), half
	// away from zero.
	x8 := make([]float32, 32)
	copy(x8, []float32{127, -127, 0, 1, -1, 2.4, 2.5, -2.5, 0.49, -0.5, 100.6})
	want8 := make([]byte, 34)
	copy(want8, []byte{0x00, 0x3C, 127, 0x81, 0, 1, 0xFF, 2, 3, 0xFD, 0, 0xFF, 101})
	got8, err := EncodeFloat32(Q8_0, x8)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got8, want8) {
		t.Errorf("Q8_0 bytes\n got % x\nwant % x", got8, want8)
	}
	deq8, _ := DecodeFloat32(Q8_0, want8)
	if want := []float32{127, -127, 0, 1, -1, 2, 3, -3, 0, -1, 101}; !slices.Equal(deq8[:11], want) {
		t.Errorf("Q8_0 dequant %v, want %v", deq8[:11], want)
	}
}

func TestFloatTypesRoundTrip(t *testing.T) {
	x := []float32{0, -0.0, 1, -2.5, 65504, 1e-8, 3.14159, float32(math.Inf(1)), 1.00048828125}
	for _, tc := range []struct {
		typ  Type
		conv func(float32) float32
	}{
		{F32, func(v float32) float32 { return v }},
		{F16, func(v float32) float32 { return tensor.F32FromF16(tensor.F16FromF32(v)) }},
		{BF16, func(v float32) float32 { return tensor.F32FromBF16(tensor.BF16FromF32(v)) }},
	} {
		raw, err := EncodeFloat32(tc.typ, x)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != len(x)*tc.typ.TypeSize() {
			t.Fatalf("%v: %d bytes", tc.typ, len(raw))
		}
		got, err := DecodeFloat32(tc.typ, raw)
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if got[i] != tc.conv(x[i]) {
				t.Errorf("%v: %v -> %v, want %v", tc.typ, x[i], got[i], tc.conv(x[i]))
			}
		}
	}
}

func TestQuantErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  func() error
	}{
		{"q8_0 not blocks", func() error { _, err := EncodeFloat32(Q8_0, make([]float32, 31)); return err }},
		{"q4_0 not blocks", func() error { _, err := EncodeFloat32(Q4_0, make([]float32, 33)); return err }},
		{"encode q4_k", func() error { _, err := EncodeFloat32(Q4_K, make([]float32, 256)); return err }},
		{"decode q4_k", func() error { _, err := DecodeFloat32(Q4_K, make([]byte, 144)); return err }},
		{"decode q8_0 partial", func() error { _, err := DecodeFloat32(Q8_0, make([]byte, 35)); return err }},
		{"decode f32 partial", func() error { _, err := DecodeFloat32(F32, make([]byte, 6)); return err }},
	} {
		if err := tc.err(); err == nil {
			t.Errorf("%s: no error", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

func TestPermuteRowsKnown(t *testing.T) {
	// Two heads of size 4, one column: llama.cpp interleaves each head's
	// two halves, [0 1 | 2 3] -> [0 2 1 3].
	in := []float32{0, 1, 2, 3, 4, 5, 6, 7}
	got, err := permuteRows(in, 8, 1, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 2, 1, 3, 4, 6, 5, 7}; !slices.Equal(got, want) {
		t.Errorf("permute = %v, want %v", got, want)
	}
	back, _ := permuteRows(got, 8, 1, 2, true)
	if !slices.Equal(back, in) {
		t.Errorf("inverse = %v, want %v", back, in)
	}
	if _, err := permuteRows(in, 8, 1, 3, false); err == nil {
		t.Error("3 heads over 8 rows: no error")
	}
}
