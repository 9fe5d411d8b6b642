package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// allValueKVs has one key per metadata value type, arrays of each, nested
// and empty arrays.
func allValueKVs() []KV {
	return []KV{
		{"general.architecture", "llama"},
		{"general.alignment", uint32(32)},
		{"t.u8", uint8(200)}, {"t.i8", int8(-100)}, {"t.u16", uint16(60000)}, {"t.i16", int16(-30000)},
		{"t.u32", uint32(4000000000)}, {"t.i32", int32(-2000000000)}, {"t.f32", float32(1.5e-5)},
		{"t.bool", true}, {"t.false", false}, {"t.str", "héllo\x00wörld"}, {"t.empty", ""},
		{"t.u64", uint64(1) << 60}, {"t.i64", int64(-1) << 60}, {"t.f64", math.Pi},
		{"a.u8", []uint8{1, 2, 255}}, {"a.i8", []int8{-1, 2}}, {"a.u16", []uint16{7}}, {"a.i16", []int16{-7, 7}},
		{"a.u32", []uint32{1, 1 << 31}}, {"a.i32", []int32{-5, 5}}, {"a.f32", []float32{0.5, -0.25}},
		{"a.bool", []bool{true, false, true}}, {"a.str", []string{"a", "", "b c"}},
		{"a.u64", []uint64{1 << 63}}, {"a.i64", []int64{-1}}, {"a.f64", []float64{math.E}},
		{"a.empty", []string{}},
		{"a.nested", []any{[]int32{1, 2}, []string{"x"}, []any{[]float64{1.5}}, []uint8{}}},
	}
}

// testTensors is one tensor of each writable type.
func testTensors(t *testing.T) []Tensor {
	var out []Tensor
	for i, typ := range []Type{F32, F16, BF16, Q8_0, Q4_0} {
		ne := []uint64{64, uint64(i + 1)}
		v := make([]float32, ne[0]*ne[1])
		for j := range v {
			v[j] = float32(math.Sin(float64(j*(i+3)))) * float32(i+1)
		}
		data, err := EncodeFloat32(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Tensor{Name: "t." + strings.ToLower(typ.String()), Shape: ne, Type: typ,
			Data: func() ([]byte, error) { return data, nil }})
	}
	// A 1-D F32 tensor whose size is not a multiple of the alignment.
	out = append(out, Tensor{Name: "odd", Shape: []uint64{3}, Type: F32,
		Data: func() ([]byte, error) { return EncodeFloat32(F32, []float32{1, 2, 3}) }})
	return out
}

func encodeBytes(t *testing.T, kvs []KV, tensors []Tensor) []byte {
	t.Helper()
	var b bytes.Buffer
	n, err := Encode(&b, kvs, tensors)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(b.Len()) {
		t.Fatalf("Encode returned %d, wrote %d", n, b.Len())
	}
	return b.Bytes()
}

func TestRoundTripLowLevel(t *testing.T) {
	kvs := allValueKVs()
	tensors := testTensors(t)
	path := filepath.Join(t.TempDir(), "x.gguf")
	if err := WriteFile(path, kvs, tensors); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 {
		t.Errorf("version %d alignment %d data offset %d", f.Version, f.Alignment, f.DataOffset)
	}
	if !reflect.DeepEqual(f.KV, kvs) {
		for i := range kvs {
			if i < len(f.KV) && !reflect.DeepEqual(f.KV[i], kvs[i]) {
				t.Errorf("kv %d: got %#v, want %#v", i, f.KV[i], kvs[i])
			}
		}
		t.Fatalf("metadata differs (%d vs %d entries)", len(f.KV), len(kvs))
	}
	if len(f.Tensors) != len(tensors) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(tensors))
	}
	for i, want := range tensors {
		got := f.Tensors[i]
		if got.Name != want.Name || got.Type != want.Type || !reflect.DeepEqual(got.Shape, want.Shape) || got.Offset%32 != 0 {
			t.Errorf("tensor %d: %+v, want %s %v %v", i, got, want.Name, want.Type, want.Shape)
		}
		raw, _ := want.Data()
		b, err := f.Bytes(want.Name)
		if err != nil || !bytes.Equal(b, raw) {
			t.Errorf("tensor %s: data differs (%v)", want.Name, err)
		}
		v, err := f.Float32(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		dec, _ := DecodeFloat32(want.Type, raw)
		if !reflect.DeepEqual(v, dec) {
			t.Errorf("tensor %s: Float32 differs", want.Name)
		}
	}
	if _, err := f.Float32("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tensor: %v", err)
	}

	// The peer parser reads the same file.
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	if gf.Header.Version != parser.GGUFVersionV3 || gf.Header.MetadataKVCount != uint64(len(kvs)) || gf.Header.TensorCount != uint64(len(tensors)) {
		t.Errorf("gguf-parser-go header %+v", gf.Header)
	}
	for _, want := range tensors {
		ti, ok := gf.TensorInfos.Get(want.Name)
		if !ok || uint32(ti.Type) != uint32(want.Type) || !reflect.DeepEqual(ti.Dimensions, want.Shape) {
			t.Errorf("gguf-parser-go tensor %s: %+v", want.Name, ti)
		}
	}
	if gf.TensorDataStartOffset != f.DataOffset {
		t.Errorf("data offset: gguf-parser-go %d, ours %d", gf.TensorDataStartOffset, f.DataOffset)
	}
	for _, k := range []struct {
		key  string
		want any
	}{{"t.u32", uint32(4000000000)}, {"t.f64", math.Pi}, {"t.str", "héllo\x00wörld"}, {"t.i16", int16(-30000)}} {
		kv, ok := gf.Header.MetadataKV.Get(k.key)
		if !ok || !reflect.DeepEqual(kv.Value, k.want) {
			t.Errorf("gguf-parser-go %s = %#v, want %#v", k.key, kv.Value, k.want)
		}
	}
	if kv, ok := gf.Header.MetadataKV.Get("a.str"); !ok || kv.ValueArray().Len != 3 {
		t.Errorf("gguf-parser-go a.str: %+v", kv)
	}
}

func TestWriterAlignment(t *testing.T) {
	kvs := []KV{{"general.alignment", uint32(64)}}
	raw := encodeBytes(t, kvs, testTensors(t))
	f, err := OpenReaderAt("mem", bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data offset %d", f.Alignment, f.DataOffset)
	}
	for _, ti := range f.Tensors {
		if ti.Offset%64 != 0 {
			t.Errorf("%s at %d", ti.Name, ti.Offset)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	data := func() ([]byte, error) { return make([]byte, 4), nil }
	for _, tc := range []struct {
		name    string
		kvs     []KV
		tensors []Tensor
	}{
		{"int value", []KV{{"k", 3}}, nil},
		{"map value", []KV{{"k", map[string]int{}}}, nil},
		{"duplicate key", []KV{{"k", "a"}, {"k", "b"}}, nil},
		{"bad alignment", []KV{{"general.alignment", uint32(24)}}, nil},
		{"alignment type", []KV{{"general.alignment", uint64(32)}}, nil},
		{"nested scalar", []KV{{"k", []any{int32(1)}}}, nil},
		{"long name", nil, []Tensor{{Name: strings.Repeat("n", 65), Shape: []uint64{1}, Type: F32, Data: data}}},
		{"duplicate tensor", nil, []Tensor{{Name: "a", Shape: []uint64{1}, Type: F32, Data: data}, {Name: "a", Shape: []uint64{1}, Type: F32, Data: data}}},
		{"five dims", nil, []Tensor{{Name: "a", Shape: []uint64{1, 1, 1, 1, 1}, Type: F32, Data: data}}},
		{"row not blocks", nil, []Tensor{{Name: "a", Shape: []uint64{16}, Type: Q8_0, Data: data}}},
		{"wrong data size", nil, []Tensor{{Name: "a", Shape: []uint64{2}, Type: F32, Data: data}}},
		{"unknown type", nil, []Tensor{{Name: "a", Shape: []uint64{1}, Type: 99, Data: data}}},
		{"no data", nil, []Tensor{{Name: "a", Shape: []uint64{1}, Type: F32}}},
	} {
		var b bytes.Buffer
		if _, err := Encode(&b, tc.kvs, tc.tensors); err == nil {
			t.Errorf("%s: no error", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	// A failed WriteFile leaves nothing behind.
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "x.gguf"), []KV{{"k", 1}}, nil); err == nil {
		t.Fatal("no error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %v behind", ents)
	}
}

// validFile is a small file for corruption tests: a header, one string KV
// and one F32 tensor of 8 values.
func validFile(t *testing.T) []byte {
	return encodeBytes(t, []KV{{"general.name", "x"}}, []Tensor{{Name: "w", Shape: []uint64{8}, Type: F32,
		Data: func() ([]byte, error) { return make([]byte, 32), nil }}})
}

func TestOpenErrors(t *testing.T) {
	le := binary.LittleEndian
	good := validFile(t)
	// Offsets in good: magic 0, version 4, n_tensors 8, n_kv 16, key len 24,
	// key "general.name" 32..44, value type 44, string len 48, "x" 56,
	// tensor name len 57, "w" 65, n_dims 66, ne[0] 70, type 78, offset 82,
	// then padding to 96 and 32 bytes of data.
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short magic", []byte("GG"), ErrTruncated},
		{"bad magic", mod(func(b []byte) []byte { copy(b, "GGML"); return b }), ErrMagic},
		{"version 1", mod(func(b []byte) []byte { le.PutUint32(b[4:], 1); return b }), ErrVersion},
		{"version 4", mod(func(b []byte) []byte { le.PutUint32(b[4:], 4); return b }), ErrVersion},
		{"big endian", mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 3); return b }), ErrVersion},
		{"header cut", good[:20], ErrTruncated},
		{"kv cut", good[:50], ErrTruncated},
		{"tensor info cut", good[:75], ErrTruncated},
		{"data cut", good[:len(good)-1], ErrBounds},
		{"huge kv count", mod(func(b []byte) []byte { le.PutUint64(b[16:], 1<<40); return b }), ErrTruncated},
		{"huge tensor count", mod(func(b []byte) []byte { le.PutUint64(b[8:], 1<<40); return b }), ErrTruncated},
		{"huge string", mod(func(b []byte) []byte { le.PutUint64(b[48:], 1<<62); return b }), ErrTruncated},
		{"unknown value type", mod(func(b []byte) []byte { le.PutUint32(b[44:], 13); return b }), ErrType},
		{"unknown tensor type", mod(func(b []byte) []byte { le.PutUint32(b[78:], 5); return b }), ErrType},
		{"five dims", mod(func(b []byte) []byte { le.PutUint32(b[66:], 5); return b }), ErrHeader},
		{"zero dims", mod(func(b []byte) []byte { le.PutUint32(b[66:], 0); return b }), ErrHeader},
		{"offset out of bounds", mod(func(b []byte) []byte { le.PutUint64(b[82:], 64); return b }), ErrBounds},
		{"misaligned offset", mod(func(b []byte) []byte { le.PutUint64(b[82:], 4); return b }), ErrHeader},
		{"huge shape", mod(func(b []byte) []byte { le.PutUint64(b[70:], 1<<62); return b }), ErrHeader},
		{"q8_0 row not blocks", mod(func(b []byte) []byte { le.PutUint32(b[78:], uint32(Q8_0)); return b }), ErrHeader},
		{"duplicate key", encodeRaw(func(b []byte) []byte {
			b = append(b, "GGUF"...)
			b = le.AppendUint32(b, 3)
			b = le.AppendUint64(b, 0)
			b = le.AppendUint64(b, 2)
			for range 2 {
				b = appendString(b, "k")
				b = le.AppendUint32(b, uint32(typeUint8))
				b = append(b, 1)
			}
			return b
		}), ErrHeader},
		{"bad bool", encodeRaw(func(b []byte) []byte {
			b = append(b, "GGUF"...)
			b = le.AppendUint32(b, 3)
			b = le.AppendUint64(b, 0)
			b = le.AppendUint64(b, 1)
			b = appendString(b, "k")
			b = le.AppendUint32(b, uint32(typeBool))
			return append(b, 2)
		}), ErrHeader},
		{"bad alignment", encodeRaw(func(b []byte) []byte {
			b = append(b, "GGUF"...)
			b = le.AppendUint32(b, 3)
			b = le.AppendUint64(b, 0)
			b = le.AppendUint64(b, 1)
			b = appendString(b, "general.alignment")
			b = le.AppendUint32(b, uint32(typeUint32))
			return le.AppendUint32(b, 48)
		}), ErrHeader},
		{"deep arrays", encodeRaw(func(b []byte) []byte {
			b = append(b, "GGUF"...)
			b = le.AppendUint32(b, 3)
			b = le.AppendUint64(b, 0)
			b = le.AppendUint64(b, 1)
			b = appendString(b, "k")
			b = le.AppendUint32(b, uint32(typeArray))
			for range 40 {
				b = arrayHeader(b, typeArray, 1)
			}
			return b
		}), ErrHeader},
		{"huge array", encodeRaw(func(b []byte) []byte {
			b = append(b, "GGUF"...)
			b = le.AppendUint32(b, 3)
			b = le.AppendUint64(b, 0)
			b = le.AppendUint64(b, 1)
			b = appendString(b, "k")
			b = le.AppendUint32(b, uint32(typeArray))
			return arrayHeader(b, typeUint64, 1<<61)
		}), ErrTruncated},
	} {
		_, err := OpenReaderAt("bad.gguf", bytes.NewReader(tc.data), int64(len(tc.data)))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), "bad.gguf") {
			t.Errorf("%s: error does not name the file: %v", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Error("missing file: no error")
	}
	// The unmodified file opens.
	if _, err := OpenReaderAt("good", bytes.NewReader(good), int64(len(good))); err != nil {
		t.Fatal(err)
	}
}

func encodeRaw(f func([]byte) []byte) []byte { return f(nil) }

func FuzzOpen(f *testing.F) {
	var b bytes.Buffer
	tensors := []Tensor{
		{Name: "a", Shape: []uint64{32, 2}, Type: Q8_0, Data: func() ([]byte, error) { return make([]byte, 68), nil }},
		{Name: "b", Shape: []uint64{32}, Type: Q4_0, Data: func() ([]byte, error) { return make([]byte, 18), nil }},
		{Name: "c", Shape: []uint64{3}, Type: F16, Data: func() ([]byte, error) { return make([]byte, 6), nil }},
	}
	if _, err := Encode(&b, allValueKVs(), tensors); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	b.Reset()
	if _, err := Encode(&b, []KV{{"general.name", "x"}}, tensors[:1]); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := OpenReaderAt("fuzz", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, ti := range g.Tensors {
			if ti.Offset+ti.Size > uint64(len(data)) {
				t.Fatalf("tensor %s [%d,+%d) outside %d bytes", ti.Name, ti.Offset, ti.Size, len(data))
			}
			if ti.Type.writable() {
				v, err := g.Float32(ti.Name)
				if err != nil {
					t.Fatalf("Float32(%s): %v", ti.Name, err)
				}
				if uint64(len(v)) != ti.NumElements() {
					t.Fatalf("%s: %d values, want %d", ti.Name, len(v), ti.NumElements())
				}
			}
		}
		// What was read writes back to a file that reads back the same:
		// re-encoding that file gives identical bytes.
		reencode := func(g *File) ([]byte, error) {
			var out bytes.Buffer
			var ts []Tensor
			for _, ti := range g.Tensors {
				ts = append(ts, Tensor{Name: ti.Name, Shape: ti.Shape, Type: ti.Type, Data: func() ([]byte, error) { return g.Bytes(ti.Name) }})
			}
			_, err := Encode(&out, g.KV, ts)
			return out.Bytes(), err
		}
		out1, err := reencode(g)
		if err != nil {
			return // e.g. an empty tensor name, which the writer refuses
		}
		h, err := OpenReaderAt("again", bytes.NewReader(out1), int64(len(out1)))
		if err != nil {
			t.Fatalf("re-encoded file does not open: %v", err)
		}
		out2, err := reencode(h)
		if err != nil || !bytes.Equal(out1, out2) {
			t.Fatalf("re-encoding is not stable (%v)", err)
		}
	})
}
