package safetensors

import (
	"bytes"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the reader: it must return a File or an
// error, never panic, and a File's tensors must all be readable.
func FuzzOpen(f *testing.F) {
	var good bytes.Buffer
	Encode(&good, []Tensor{
		{Name: "a", DType: F16, Shape: []int{2}, Data: []byte{0, 0x3c, 0, 0xc0}},
		{Name: "b", DType: BF16, Shape: []int{1, 1}, Data: []byte{0x80, 0x3f}},
		{Name: "c", DType: F64, Shape: []int{}, Data: make([]byte, 8)},
	}, map[string]string{"format": "pt"})
	f.Add(good.Bytes())
	f.Add(build(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)))
	f.Add([]byte{})
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := OpenReaderAt("fuzz", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, info := range file.Tensors() {
			raw, err := file.Bytes(info.Name)
			if err != nil {
				t.Fatalf("valid file, unreadable tensor %q: %v", info.Name, err)
			}
			if int64(len(raw)) != info.Size() {
				t.Fatalf("tensor %q: %d bytes, want %d", info.Name, len(raw), info.Size())
			}
			switch info.DType {
			case F32, F16, BF16, F64:
				v, err := file.Float32(info.Name)
				if err != nil || int64(len(v)) != info.NumElements() {
					t.Fatalf("tensor %q: Float32: %d values, %v", info.Name, len(v), err)
				}
			}
		}
	})
}
