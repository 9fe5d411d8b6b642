package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

func TestBF16KnownBits(t *testing.T) {
	for _, c := range []struct {
		f32  uint32
		bf16 uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0xbf800000, 0xbf80}, // -1
		{0x3f808000, 0x3f80}, // tie, even below
		{0x3f818000, 0x3f82}, // tie, odd below: up
		{0x3f808001, 0x3f81}, // just above the tie
		{0x3f80ffff, 0x3f81},
		{0x7f7fffff, 0x7f80}, // max float32 rounds to Inf
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // -Inf
		{0x7fc00000, 0x7fc0}, // quiet NaN
		{0x7f800001, 0x7fc0}, // signalling NaN, payload only in dropped bits: stays NaN
		{0xffc00001, 0xffc0}, // negative NaN
		{0x00000000, 0x0000},
		{0x80000000, 0x8000}, // -0
		{0x00000001, 0x0000}, // tiny subnormal rounds to 0
		{0x00008000, 0x0000}, // subnormal tie to even
		{0x00018000, 0x0002}, // subnormal tie, odd below
		{0x00010000, 0x0001}, // bf16 subnormal, exact
	} {
		if got := tensor.BF16FromF32(math.Float32frombits(c.f32)); got != c.bf16 {
			t.Errorf("tensor.BF16FromF32(%#08x) = %#04x, want %#04x", c.f32, got, c.bf16)
		}
	}
	for _, c := range []struct {
		bf16 uint16
		f32  uint32
	}{{0x3f80, 0x3f800000}, {0x0001, 0x00010000}, {0xff80, 0xff800000}, {0x7fc1, 0x7fc10000}} {
		if got := math.Float32bits(tensor.F32FromBF16(c.bf16)); got != c.f32 {
			t.Errorf("tensor.F32FromBF16(%#04x) = %#08x, want %#08x", c.bf16, got, c.f32)
		}
	}
}

func TestF16KnownBits(t *testing.T) {
	for _, c := range []struct {
		f32 uint32
		f16 uint16
	}{
		{0x3f800000, 0x3c00},               // 1
		{0xc0000000, 0xc000},               // -2
		{math.Float32bits(65504), 0x7bff},  // max half
		{math.Float32bits(65519), 0x7bff},  // below the tie
		{math.Float32bits(65520), 0x7c00},  // tie between 65504 (odd) and 65536: Inf
		{math.Float32bits(1e6), 0x7c00},    // overflow
		{math.Float32bits(-1e6), 0xfc00},   // negative overflow
		{0x7f800000, 0x7c00},               // +Inf
		{0xff800000, 0xfc00},               // -Inf
		{0x7fc00000, 0x7e00},               // quiet NaN
		{0x7f800001, 0x7e00},               // NaN with payload only in dropped bits
		{0x80000000, 0x8000},               // -0
		{0x38800000, 0x0400},               // 2^-14, smallest normal
		{0x33800000, 0x0001},               // 2^-24, smallest subnormal
		{0x33000000, 0x0000},               // 2^-25: tie to even zero
		{0x33000001, 0x0001},               // just above: up
		{0x33c00000, 0x0002},               // 1.5·2^-24: tie to even 2
		{0x387fc000, 0x03ff},               // largest subnormal
		{0x387fe000, 0x0400},               // rounds up into the normals
		{0x3f801000, 0x3c00},               // 1+2^-11: tie to even
		{0x3f803000, 0x3c02},               // 1+3·2^-11: tie to even (up)
		{0x3f801001, 0x3c01},               // above the tie
		{math.Float32bits(-1e-10), 0x8000}, // underflow keeps the sign
	} {
		if got := tensor.F16FromF32(math.Float32frombits(c.f32)); got != c.f16 {
			t.Errorf("tensor.F16FromF32(%#08x = %g) = %#04x, want %#04x", c.f32, math.Float32frombits(c.f32), got, c.f16)
		}
	}
	for _, c := range []struct {
		f16 uint16
		f32 uint32
	}{{0x0001, 0x33800000}, {0x03ff, 0x387fc000}, {0x7bff, math.Float32bits(65504)}, {0xfc00, 0xff800000}, {0x8000, 0x80000000}, {0x3555, math.Float32bits(0.333251953125)}} {
		if got := math.Float32bits(tensor.F32FromF16(c.f16)); got != c.f32 {
			t.Errorf("tensor.F32FromF16(%#04x) = %#08x, want %#08x", c.f16, got, c.f32)
		}
	}
	if !math.IsNaN(float64(tensor.F32FromF16(0x7e00))) || !math.IsNaN(float64(tensor.F32FromF16(0xfc01))) {
		t.Error("F32FromF16 NaN did not widen to NaN")
	}
}

// Every 16-bit pattern widens and narrows back to itself (NaNs to a NaN).
func TestHalfRoundTripExhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		u := uint16(h)
		isNaN16 := u&0x7c00 == 0x7c00 && u&0x03ff != 0
		if got := tensor.F16FromF32(tensor.F32FromF16(u)); got != u && !(isNaN16 && got&0x7e00 == 0x7e00) {
			t.Fatalf("f16 %#04x -> %g -> %#04x", u, tensor.F32FromF16(u), got)
		}
		isNaNbf := u&0x7f80 == 0x7f80 && u&0x007f != 0
		if got := tensor.BF16FromF32(tensor.F32FromBF16(u)); got != u && !(isNaNbf && got&0x7fc0 == 0x7fc0) {
			t.Fatalf("bf16 %#04x -> %#04x", u, got)
		}
	}
}

// Narrowing picks the nearer of the two neighbouring representable values.
func TestHalfRoundingNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	for i := 0; i < 20000; i++ {
		f := math.Float32frombits(r.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		for _, c := range []struct {
			name    string
			narrow  func(float32) uint16
			widen   func(uint16) float32
			maxBits uint16
		}{{"f16", tensor.F16FromF32, tensor.F32FromF16, 0x7c00}, {"bf16", tensor.BF16FromF32, tensor.F32FromBF16, 0x7f80}} {
			h := c.narrow(f)
			if h&0x7fff >= c.maxBits { // rounded to Inf: only beyond the max
				continue
			}
			got := float64(c.widen(h))
			for _, nb := range []uint16{h + 1, h - 1} {
				if nb&0x7fff >= c.maxBits || (h&0x7fff == 0 && nb == h-1) {
					continue
				}
				if alt := float64(c.widen(nb)); math.Abs(alt-float64(f)) < math.Abs(got-float64(f)) {
					t.Fatalf("%s(%g) = %g, but %g is nearer", c.name, f, got, alt)
				}
			}
		}
	}
}

func TestConvertKernel(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 1))
	n := 30000
	x := randF32(r, n, 100)
	be := New()
	xb := upload(t, be, x)
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16} {
		h, _ := be.Alloc(dt, n)
		be.Convert(h, xb, n)
		bits := make([]uint16, n)
		if err := tensor.DownloadU16(be, bits, h); err != nil {
			t.Fatal(err)
		}
		back := upload(t, be, make([]float32, n))
		be.Convert(back, h, n)
		got := download(t, be, back)
		for i := range x {
			want, wide := tensor.BF16FromF32(x[i]), tensor.F32FromBF16
			if dt == tensor.F16 {
				want, wide = tensor.F16FromF32(x[i]), tensor.F32FromF16
			}
			if bits[i] != want || got[i] != wide(want) {
				t.Fatalf("%v [%d]: %g -> %#04x -> %g, want %#04x", dt, i, x[i], bits[i], got[i], want)
			}
		}
	}
}
