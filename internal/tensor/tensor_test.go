package tensor

import (
	"math"
	"testing"
)

type fakeMem int

func (m fakeMem) Size() int { return int(m) }

func TestDTypeSizes(t *testing.T) {
	for _, c := range []struct {
		dt    DType
		name  string
		bytes int // for 10 elements
	}{{F32, "f32", 40}, {BF16, "bf16", 20}, {F16, "f16", 20}, {I32, "i32", 40}, {U8, "u8", 10}, {NF4, "nf4", 5}} {
		if c.dt.String() != c.name || c.dt.Bytes(10) != c.bytes || !c.dt.Valid() {
			t.Errorf("%v: name %q bytes %d valid %v", c.dt, c.dt.String(), c.dt.Bytes(10), c.dt.Valid())
		}
	}
	if DType(0).Valid() || DType(99).Valid() {
		t.Error("invalid dtypes reported valid")
	}
	mustPanic(t, "odd nf4", func() { NF4.Bytes(3) })
}

func mustPanic(t *testing.T, name string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	fn()
}

func TestBufferViews(t *testing.T) {
	b := NewBuffer(fakeMem(64), F32, 16)
	v := b.View(4, 8)
	if v.Offset() != 16 || v.Len() != 8 || v.Bytes() != 32 || v.DType() != F32 || v.Mem() != b.Mem() {
		t.Errorf("view: %v offset %d", v, v.Offset())
	}
	w := v.View(2, 2)
	if w.Offset() != 24 || w.Len() != 2 {
		t.Errorf("view of view: offset %d len %d", w.Offset(), w.Len())
	}
	u := v.As(U8)
	if u.Len() != 32 || u.Offset() != 16 || u.DType() != U8 {
		t.Errorf("As(U8): %v", u)
	}
	if n := NewBuffer(fakeMem(8), NF4, 16).View(2, 4); n.Offset() != 1 || n.Bytes() != 2 {
		t.Errorf("nf4 view: offset %d bytes %d", n.Offset(), n.Bytes())
	}
	if !(Buffer{}).IsNil() || b.IsNil() || (Buffer{}).Bytes() != 0 {
		t.Error("IsNil")
	}
	mustPanic(t, "view past end", func() { b.View(10, 7) })
	mustPanic(t, "negative view", func() { b.View(-1, 2) })
	mustPanic(t, "too big", func() { NewBuffer(fakeMem(8), F32, 3) })
	mustPanic(t, "As uneven", func() { NewBuffer(fakeMem(8), U8, 3).As(F32) })
	mustPanic(t, "Need dtype", func() { Need("k", b, I32, 1) })
	mustPanic(t, "Need size", func() { Need("k", b, F32, 17) })
	mustPanic(t, "Need nil", func() { Need("k", Buffer{}, F32, 0) })
	Need("k", b, F32, 16)
}

func TestShape(t *testing.T) {
	s := Shape{2, 3, 4}
	if s.Numel() != 24 || (Shape{}).Numel() != 1 || !s.Equal(Shape{2, 3, 4}) || s.Equal(Shape{2, 3}) || s.String() != "[2 3 4]" {
		t.Errorf("shape %v numel %d", s, s.Numel())
	}
}

func TestRoPEInvFreqDefault(t *testing.T) {
	f, err := RoPE{HeadDim: 8, Theta: 10000}.InvFreq()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range f {
		want := math.Pow(10000, -float64(2*i)/8)
		if v != float32(want) {
			t.Errorf("inv_freq[%d] = %v, want %v", i, v, want)
		}
	}
	// Partial rotary: frequencies over the rotated dims only.
	p, err := RoPE{HeadDim: 8, RotaryDim: 4, Theta: 10000}.InvFreq()
	if err != nil || len(p) != 2 || p[1] != float32(math.Pow(10000, -0.5)) {
		t.Errorf("partial: %v %v", p, err)
	}
	if _, err := (RoPE{HeadDim: 8, Theta: 1, Llama3: &Llama3Scaling{Factor: 8, LowFreqFactor: 4, HighFreqFactor: 1, OriginalMaxPositions: 10}}).InvFreq(); err == nil {
		t.Error("llama3 scaling with high <= low factor accepted")
	}
}

func TestNF4Sizes(t *testing.T) {
	for _, c := range []struct{ n, blocks, groups int }{{64, 1, 1}, {64 * 256, 256, 1}, {64 * 257, 257, 2}} {
		if b, g := NF4Sizes(c.n); b != c.blocks || g != c.groups {
			t.Errorf("NF4Sizes(%d) = %d, %d", c.n, b, g)
		}
	}
}

func TestJoin(t *testing.T) {
	mem, other := new(fakeMem), new(fakeMem)
	*mem, *other = 64, 64
	whole := NewBuffer(mem, F32, 16)
	a, b, c := whole.View(0, 4), whole.View(4, 3), whole.View(8, 2)
	if j, ok := Join(a, b); !ok || j.Offset() != 0 || j.Len() != 7 || j.DType() != F32 {
		t.Errorf("Join(adjacent) = %v, %v; want the 7 elements from 0", j, ok)
	}
	for _, tc := range []struct {
		name string
		a, b Buffer
	}{
		{"gap", a, c},
		{"reversed", b, a},
		{"other memory", a, NewBuffer(other, F32, 16).View(4, 3)},
		{"other dtype", a, whole.View(4, 2).As(BF16)},
		{"nil", Buffer{}, a},
	} {
		if _, ok := Join(tc.a, tc.b); ok {
			t.Errorf("Join(%s) joined", tc.name)
		}
	}
}
