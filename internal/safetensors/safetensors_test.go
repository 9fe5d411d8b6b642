package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// allDTypes lists every dtype with a shape whose size is a whole number of
// bytes for it.
var allDTypes = []DType{BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64, C64,
	F8E4M3, F8E5M2, F8E8M0, F8E4M3FNUZ, F8E5M2FNUZ, F6E2M3, F6E3M2, F4}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

func TestRoundTripEveryDType(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	dir := t.TempDir()
	path := filepath.Join(dir, "all.safetensors")
	var tensors []Tensor
	for i, dt := range allDTypes {
		shape := []int{4, 2 + 4*(i%2)} // 8 or 24 elements: whole bytes for 4- and 6-bit dtypes
		size, _ := byteSize(dt, uint64(shape[0]*shape[1]))
		tensors = append(tensors, Tensor{Name: "t." + string(dt), DType: dt, Shape: shape, Data: randomBytes(rng, int(size))})
	}
	// A scalar and an empty tensor are legal too.
	tensors = append(tensors,
		Tensor{Name: "scalar", DType: F32, Shape: []int{}, Data: randomBytes(rng, 4)},
		Tensor{Name: "empty", DType: BF16, Shape: []int{0, 5}, Data: []byte{}},
	)
	meta := map[string]string{"format": "pt", "note": "line\nbreak \"quoted\" \\ é"}
	if err := WriteFile(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"mmap", "readerat"} {
		t.Run(mode, func(t *testing.T) {
			var f *File
			var err error
			if mode == "mmap" {
				f, err = Open(path)
				if err == nil && f.mapped == nil {
					t.Log("file not memory-mapped on this platform")
				}
			} else {
				raw, rerr := os.ReadFile(path)
				if rerr != nil {
					t.Fatal(rerr)
				}
				f, err = OpenReaderAt(path, bytes.NewReader(raw), int64(len(raw)))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.Metadata(); !reflect.DeepEqual(got, meta) {
				t.Errorf("metadata = %q, want %q", got, meta)
			}
			infos := f.Tensors()
			if len(infos) != len(tensors) {
				t.Fatalf("%d tensors, want %d", len(infos), len(tensors))
			}
			for i := 1; i < len(infos); i++ {
				if infos[i-1].Name >= infos[i].Name {
					t.Errorf("tensors not sorted: %q before %q", infos[i-1].Name, infos[i].Name)
				}
			}
			for _, want := range tensors {
				info, ok := f.Tensor(want.Name)
				if !ok {
					t.Fatalf("tensor %q missing", want.Name)
				}
				if info.DType != want.DType || !reflect.DeepEqual(info.Shape, want.Shape) || info.Size() != int64(len(want.Data)) || info.File != "all.safetensors" {
					t.Errorf("%q: info %+v does not match %s %v (%d bytes)", want.Name, info, want.DType, want.Shape, len(want.Data))
				}
				got, err := f.Bytes(want.Name)
				if err != nil {
					t.Fatal(err)
				}
				view, err := f.View(want.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want.Data) || !bytes.Equal(view, want.Data) {
					t.Errorf("%q: data differs", want.Name)
				}
			}
			if _, err := f.Bytes("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
				t.Errorf("missing tensor error = %v", err)
			}
			if _, err := f.Float32("t.I32"); !errors.Is(err, ErrDType) {
				t.Errorf("Float32 of I32: err = %v, want ErrDType", err)
			}
		})
	}
}

func TestFloat32ReadWrite(t *testing.T) {
	vals := []float32{0, 1, -2.5, 3.1415927, 65504, 1e-7, -1e-30, 1e30, float32(math.Inf(-1))}
	cases := []struct {
		dt   DType
		want func(float32) float32
	}{
		{F32, func(x float32) float32 { return x }},
		{F64, func(x float32) float32 { return x }},
		{F16, func(x float32) float32 { return tensor.F32FromF16(tensor.F16FromF32(x)) }},
		{BF16, func(x float32) float32 { return tensor.F32FromBF16(tensor.BF16FromF32(x)) }},
	}
	dir := t.TempDir()
	w, err := Create(filepath.Join(dir, "f.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if err := w.AddFloat32("x."+string(c.dt), c.dt, []int{3, 3}, vals); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(filepath.Join(dir, "f.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata() != nil {
		t.Errorf("metadata = %v, want none", f.Metadata())
	}
	for _, c := range cases {
		got, err := f.Float32("x." + string(c.dt))
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if w := c.want(v); math.Float32bits(got[i]) != math.Float32bits(w) {
				t.Errorf("%s: %g read back as %g, want %g", c.dt, v, got[i], w)
			}
		}
	}
	// Spot values: F16 max, overflow, smallest subnormal; BF16 rounding.
	spot := []struct {
		got, want float32
	}{
		{tensor.F32FromF16(tensor.F16FromF32(65504)), 65504},
		{tensor.F32FromF16(tensor.F16FromF32(65520)), float32(math.Inf(1))},
		{tensor.F32FromF16(tensor.F16FromF32(5.960464477539063e-08)), 5.960464477539063e-08},
		{tensor.F32FromF16(tensor.F16FromF32(2.9802322387695312e-08)), 0}, // 2^-25 ties to even (0)
		{tensor.F32FromBF16(tensor.BF16FromF32(1.00390625)), 1},           // 1 + 2^-8: tie, to even
		{tensor.F32FromBF16(tensor.BF16FromF32(1.01171875)), 1.015625},    // 1 + 3*2^-8: tie, to even (up)
		{tensor.F32FromBF16(tensor.BF16FromF32(0.1)), 0.10009765625},
	}
	for i, s := range spot {
		if s.got != s.want {
			t.Errorf("spot %d: got %g, want %g", i, s.got, s.want)
		}
	}
}

// nearestF16 is a slow reference: the binary16 value nearest to x (ties to
// even) by binary search over the ordered positive bit patterns.
func nearestF16(x float32) uint16 {
	sign := uint16(0)
	if math.Signbit(float64(x)) {
		sign, x = 0x8000, -x
	}
	lo, hi := uint16(0), uint16(0x7c00) // 0 .. +inf
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if tensor.F32FromF16(mid) <= x {
			lo = mid
		} else {
			hi = mid
		}
	}
	if tensor.F32FromF16(lo) == x {
		return sign | lo
	}
	// Halfway point between lo and hi; above the largest finite value the
	// next step (hi = inf) is taken as 65520's rounding boundary.
	dl := float64(x) - float64(tensor.F32FromF16(lo))
	var dh float64
	if hi == 0x7c00 {
		dh = 65520 - float64(x) + 16
	} else {
		dh = float64(tensor.F32FromF16(hi)) - float64(x)
	}
	switch {
	case dl < dh:
		return sign | lo
	case dh < dl:
		return sign | hi
	case lo&1 == 0:
		return sign | lo
	}
	return sign | hi
}

func TestFloat16Conversions(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := tensor.F32FromF16(uint16(h))
		if math.IsNaN(float64(f)) {
			if back := tensor.F16FromF32(f); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x -> %#04x is not NaN", h, back)
			}
			continue
		}
		if back := tensor.F16FromF32(f); back != uint16(h) {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, back)
		}
		b := tensor.F32FromBF16(uint16(h))
		if !math.IsNaN(float64(b)) && tensor.BF16FromF32(b) != uint16(h) {
			t.Fatalf("bf16 %#04x -> %g -> %#04x", h, b, tensor.BF16FromF32(b))
		}
	}
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 200000; i++ {
		var x float32
		if i%2 == 0 {
			x = math.Float32frombits(rng.Uint32())
		} else {
			x = float32(rng.NormFloat64() * math.Pow(2, float64(rng.Intn(50)-30)))
		}
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			continue
		}
		if got, want := tensor.F16FromF32(x), nearestF16(x); got != want {
			t.Fatalf("tensor.F16FromF32(%g) = %#04x, want %#04x", x, got, want)
		}
		// bf16 reference: nearest of truncation and truncation+1 ulp.
		u := math.Float32bits(x)
		lo := uint16(u >> 16)
		dl := math.Abs(float64(x) - float64(tensor.F32FromBF16(lo)))
		next := math.Abs(float64(tensor.F32FromBF16(lo + 1)))
		if math.IsInf(next, 0) {
			next = math.Ldexp(1, 128) // the overflow threshold rounds as if to 2^128
		}
		dh := next - math.Abs(float64(x))
		want := lo
		if dh < dl || (dh == dl && lo&1 == 1) {
			want = lo + 1
		}
		if got := tensor.BF16FromF32(x); got != want {
			t.Fatalf("tensor.BF16FromF32(%g) = %#04x, want %#04x", x, got, want)
		}
	}
}

// TestGoldenBytes checks the exact bytes of a tiny file built by hand.
func TestGoldenBytes(t *testing.T) {
	var want bytes.Buffer
	hdr := `{"__metadata__":{"format":"pt"},` +
		`"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},` +
		`"b":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}}` + "      " // 138 + 6 spaces = 144
	want.Write([]byte{144, 0, 0, 0, 0, 0, 0, 0})
	want.WriteString(hdr)
	want.Write([]byte{1, 2, 3})                // a
	want.Write([]byte{0x00, 0x00, 0x80, 0x3f}) // 1.0
	want.Write([]byte{0x00, 0x00, 0x00, 0xc0}) // -2.0
	b, err := Float32Tensor("b", F32, []int{2}, []float32{1, -2})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	// Given out of order: the writer sorts by name.
	n, err := Encode(&got, []Tensor{b, {Name: "a", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}}}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(got.Len()) || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("encoded bytes:\n%q\nwant:\n%q", got.Bytes(), want.Bytes())
	}
	// And the hand-built bytes read back.
	f, err := OpenReaderAt("golden", bytes.NewReader(want.Bytes()), int64(want.Len()))
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.Float32("b")
	if err != nil || !reflect.DeepEqual(v, []float32{1, -2}) {
		t.Fatalf("b = %v, %v", v, err)
	}
	// No metadata: the key is omitted.
	got.Reset()
	if _, err := Encode(&got, []Tensor{{Name: "x", DType: I8, Shape: []int{1}, Data: []byte{0xff}}}, nil); err != nil {
		t.Fatal(err)
	}
	wantX := "\x38\x00\x00\x00\x00\x00\x00\x00" + `{"x":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}` + "   " + "\xff"
	if got.String() != wantX {
		t.Fatalf("got %q, want %q", got.String(), wantX)
	}
}

// build assembles a file image from a header string and data bytes.
func build(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestMalformed(t *testing.T) {
	ok := `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	tooLarge := make([]byte, 16)
	binary.LittleEndian.PutUint64(tooLarge, MaxHeaderSize+1)
	cases := []struct {
		name   string
		file   []byte
		kind   error
		tensor string // named in the message when set
	}{
		{"empty", nil, ErrTruncated, ""},
		{"short length", []byte{1, 2, 3}, ErrTruncated, ""},
		{"header past end", build(ok, make([]byte, 8))[:40], ErrTruncated, ""},
		{"header too large", tooLarge, ErrHeader, ""},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'}, ErrHeader, ""},
		{"not json", build("{nope", nil), ErrHeader, ""},
		{"not object", build("[1,2]", nil), ErrHeader, ""},
		{"trailing garbage", build(`{}x`, nil), ErrHeader, ""},
		{"bad utf8", build("{\"\xff\":1}", nil), ErrHeader, ""},
		{"duplicate key", build(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, []byte{1, 2}), ErrHeader, ""},
		{"metadata not strings", build(`{"__metadata__":{"a":1}}`, nil), ErrHeader, ""},
		{"entry not object", build(`{"w":3}`, nil), ErrHeader, "w"},
		{"missing dtype", build(`{"w":{"shape":[1],"data_offsets":[0,1]}}`, []byte{1}), ErrHeader, "w"},
		{"bad dtype", build(`{"w":{"dtype":"F17","shape":[1],"data_offsets":[0,1]}}`, []byte{1}), ErrDType, "w"},
		{"negative dim", build(`{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, []byte{1}), ErrShape, "w"},
		{"fractional dim", build(`{"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, []byte{1}), ErrShape, "w"},
		{"shape overflow", build(`{"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}`, []byte{1}), ErrShape, "w"},
		{"sub-byte size", build(`{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}`, []byte{1}), ErrShape, "w"},
		{"size mismatch", build(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrSize, "w"},
		{"offsets reversed", build(`{"w":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}}`, make([]byte, 8)), ErrOffsets, "w"},
		{"offsets not pair", build(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}}`, []byte{1}), ErrOffsets, "w"},
		{"overlap", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), ErrOffsets, "b"},
		{"hole", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, make([]byte, 12)), ErrOffsets, "b"},
		{"data truncated", build(ok, make([]byte, 5)), ErrTruncated, "w"},
		{"extra data", build(ok, make([]byte, 9)), ErrSize, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := OpenReaderAt("bad.safetensors", bytes.NewReader(c.file), int64(len(c.file)))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("error %q is not %v", err, c.kind)
			}
			if !strings.Contains(err.Error(), "bad.safetensors") {
				t.Errorf("error %q does not name the file", err)
			}
			if c.tensor != "" && !strings.Contains(err.Error(), `"`+c.tensor+`"`) {
				t.Errorf("error %q does not name tensor %q", err, c.tensor)
			}
		})
	}
	// Through Open (a real file, memory-mapped) as well.
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(path, build(ok, make([]byte, 4)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open truncated: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil {
		t.Error("Open of a missing file succeeded")
	}
}

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		t    Tensor
		kind error
	}{
		{"size", Tensor{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 7)}, ErrSize},
		{"dtype", Tensor{Name: "a", DType: "F12", Shape: []int{1}, Data: make([]byte, 1)}, ErrDType},
		{"negative", Tensor{Name: "a", DType: U8, Shape: []int{-1}, Data: nil}, ErrShape},
		{"reserved name", Tensor{Name: "__metadata__", DType: U8, Shape: []int{1}, Data: []byte{1}}, ErrHeader},
		{"empty name", Tensor{Name: "", DType: U8, Shape: []int{1}, Data: []byte{1}}, ErrHeader},
	}
	for _, b := range bad {
		if err := w.Add(b.t); !errors.Is(err, b.kind) {
			t.Errorf("%s: err = %v, want %v", b.name, err, b.kind)
		}
	}
	if err := w.Add(Tensor{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(Tensor{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{2}}); !errors.Is(err, ErrHeader) {
		t.Errorf("duplicate: err = %v", err)
	}
	w.Abort()
	if err := w.Close(); err == nil {
		t.Error("Close after Abort succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("directory not empty after Abort: %v", entries)
	}
	if _, err := Create(filepath.Join(dir, "nodir", "x.safetensors")); err == nil {
		t.Error("Create in a missing directory succeeded")
	}
	// A failed WriteFile leaves neither the target nor a temporary file.
	if err := WriteFile(path, []Tensor{{Name: "a", DType: F32, Shape: []int{1}, Data: nil}}, nil); !errors.Is(err, ErrSize) {
		t.Errorf("WriteFile: err = %v", err)
	}
	entries, _ = os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("directory not empty after failed write: %v", entries)
	}
}
