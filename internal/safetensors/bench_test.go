package safetensors

import (
	"path/filepath"
	"testing"
)

// BenchmarkReadFloat32 measures opening a 32 MiB file (one BF16 tensor of
// 16 Mi elements) and converting the tensor to float32; bytes/s is of the
// file read.
func BenchmarkReadFloat32(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "big.safetensors")
	const n = 16 << 20
	if err := WriteFile(path, []Tensor{{Name: "w", DType: BF16, Shape: []int{n}, Data: make([]byte, 2*n)}}, nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(2 * n)
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Float32("w"); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkWriteFile measures writing the same 32 MiB tensor atomically.
func BenchmarkWriteFile(b *testing.B) {
	dir := b.TempDir()
	const n = 16 << 20
	ts := []Tensor{{Name: "w", DType: BF16, Shape: []int{n}, Data: make([]byte, 2*n)}}
	b.SetBytes(2 * n)
	for b.Loop() {
		if err := WriteFile(filepath.Join(dir, "big.safetensors"), ts, nil); err != nil {
			b.Fatal(err)
		}
	}
}
