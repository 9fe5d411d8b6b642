package cpu

import (
	"fmt"

	"github.com/lathe-ml/lathe/internal/tensor"
)

type convK struct {
	f  []float32
	h  []uint16
	to bool // true: f32 -> 16-bit
	bf bool // bfloat16 (else IEEE half)
}

func (k *convK) run(lo, hi int) {
	f, h := k.f[lo:hi], k.h[lo:hi]
	switch {
	case k.to && k.bf:
		for i, v := range f {
			h[i] = tensor.BF16FromF32(v)
		}
	case k.to:
		for i, v := range f {
			h[i] = tensor.F16FromF32(v)
		}
	case k.bf:
		for i, v := range h {
			f[i] = tensor.F32FromBF16(v)
		}
	default:
		for i, v := range h {
			f[i] = tensor.F32FromF16(v)
		}
	}
}

// Convert copies n elements from src to dst converting F32 <-> BF16 and
// F32 <-> F16; equal dtypes copy.
func (be *Backend) Convert(dst, src tensor.Buffer, n int) {
	sd, dd := src.DType(), dst.DType()
	if sd == dd {
		be.Copy(dst.View(0, n), src.View(0, n))
		return
	}
	switch {
	case sd == tensor.F32 && (dd == tensor.BF16 || dd == tensor.F16):
		be.k.conv = convK{f: f32("cpu.Convert src", src, n), h: view[uint16]("cpu.Convert dst", dst, dd, n), to: true, bf: dd == tensor.BF16}
	case dd == tensor.F32 && (sd == tensor.BF16 || sd == tensor.F16):
		be.k.conv = convK{f: f32("cpu.Convert dst", dst, n), h: view[uint16]("cpu.Convert src", src, sd, n), bf: sd == tensor.BF16}
	default:
		panic(fmt.Sprintf("cpu.Convert: no conversion from %v to %v", sd, dd))
	}
	be.par(n, grainElems, &be.k.conv)
	be.k.conv = convK{}
}
