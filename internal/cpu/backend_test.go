package cpu

import (
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

var _ tensor.Memory = (*memory)(nil)

func TestAllocZeroedAndViews(t *testing.T) {
	be := New()
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.F16, tensor.I32, tensor.U8, tensor.NF4} {
		b, err := be.Alloc(dt, 10)
		if err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		raw := make([]byte, b.Bytes())
		if err := be.Download(raw, b); err != nil {
			t.Fatal(err)
		}
		for i, v := range raw {
			if v != 0 {
				t.Fatalf("%v: byte %d = %d, want zeroed", dt, i, v)
			}
		}
		if want := dt.Bytes(10); b.Bytes() != want {
			t.Errorf("%v: %d bytes, want %d", dt, b.Bytes(), want)
		}
	}
	if _, err := be.Alloc(tensor.NF4, 3); err == nil {
		t.Error("odd NF4 alloc succeeded")
	}
	if _, err := be.Alloc(tensor.DType(0), 3); err == nil {
		t.Error("invalid dtype alloc succeeded")
	}

	// One allocation holds two tensors; kernels work on the views.
	all, _ := be.Alloc(tensor.F32, 8)
	a, b := all.View(0, 4), all.View(4, 4)
	if err := tensor.UploadF32(be, a, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	be.Fill(b, 10)
	be.Axpy(b, a, 2, 4)
	got := download(t, be, all)
	want := []float32{1, 2, 3, 4, 12, 14, 16, 18}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("after Fill+Axpy on views: %v, want %v", got, want)
		}
	}
	// Reinterpreting bytes: the F32 1.0 is 0x3f800000 little-endian.
	u := all.View(0, 1).As(tensor.U8)
	raw := make([]byte, 4)
	if err := be.Download(raw, u); err != nil {
		t.Fatal(err)
	}
	if raw[3] != 0x3f || raw[2] != 0x80 {
		t.Errorf("bytes of 1.0 = % x", raw)
	}
}

func TestTransferErrors(t *testing.T) {
	be := New()
	f, _ := be.Alloc(tensor.F32, 4)
	if err := tensor.UploadF32(be, f, make([]float32, 3)); err == nil {
		t.Error("short upload succeeded")
	}
	if err := tensor.UploadI32(be, f, make([]int32, 4)); err == nil {
		t.Error("I32 upload into F32 succeeded")
	}
	if err := be.Upload(tensor.Buffer{}, nil); err == nil {
		t.Error("upload into nil buffer succeeded")
	}
	be.Free(f)
	if err := tensor.DownloadF32(be, make([]float32, 4), f); err == nil {
		t.Error("download from freed buffer succeeded")
	}
	h, _ := be.Alloc(tensor.BF16, 3)
	if err := tensor.UploadU16(be, h, []uint16{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	got := make([]uint16, 3)
	if err := tensor.DownloadU16(be, got, h); err != nil || got[2] != 3 {
		t.Errorf("u16 round trip: %v %v", got, err)
	}
}

func TestKernelPanicsOnBadArgs(t *testing.T) {
	be := New()
	f, _ := be.Alloc(tensor.F32, 4)
	i, _ := be.Alloc(tensor.I32, 4)
	for name, fn := range map[string]func(){
		"short":      func() { be.Add(f, f, f, 5) },
		"dtype":      func() { be.Add(f, i, f, 4) },
		"nil":        func() { be.Scale(tensor.Buffer{}, 1, 1) },
		"bad id":     func() { be.EmbeddingForward(f, f, i, 1, 2) }, // ids are zero: fine...
		"rope dim":   func() { be.RoPEForward(f, f, i, f, 1, 1, 4, 3) },
		"convert":    func() { be.Convert(i, f, 4) },
		"adamw step": func() { be.AdamW(f, f, f, f, 4, tensor.AdamW{}) },
	} {
		if name == "bad id" {
			_ = tensor.UploadI32(be, i, []int32{7, 0, 0, 0})
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}
