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

// roundChunk is how many float32 values an elementwise kernel with a
// bfloat16 output computes on the stack before rounding them.
const roundChunk = 256

// roundBF16 rounds f into h (to nearest even).
func roundBF16(h []uint16, f []float32) {
	h = h[:len(f)]
	for i, v := range f {
		h[i] = tensor.BF16FromF32(v)
	}
}

// The scratch slots of Backend.widened: float32 values of bfloat16
// operands (widened exactly) and outputs (rounded at the end), one slot per
// role so that no two operands of one kernel share one.
const (
	slotA    = iota // Gemm's A; a kernel's bfloat16 output (actOut); attention's out
	slotB           // Gemm's B
	slotQ           // attention's and RoPE's q (or x)
	slotK           // attention's k
	slotV           // attention's v
	numSlots        // the number of slots
)

// slot returns scratch slot i holding at least n values.
func (be *Backend) slot(i, n int) []float32 {
	if cap(be.widened[i]) < n {
		be.widened[i] = make([]float32, n)
	}
	return be.widened[i][:n]
}

// actOut returns where a kernel writes its first n outputs: for an F32
// buffer its own memory (h nil); for a BF16 buffer (a bfloat16 activation)
// slotA, which the caller rounds into h with be.round.
func (be *Backend) actOut(what string, b tensor.Buffer, n int) (f []float32, h []uint16) {
	if b.DType() != tensor.BF16 {
		return f32(what, b, n), nil
	}
	return be.slot(slotA, n), view[uint16](what, b, tensor.BF16, n)
}

// round rounds f into h in parallel (the end of a kernel whose output
// actOut placed in scratch); nothing when h is nil.
func (be *Backend) round(h []uint16, f []float32) {
	if h == nil {
		return
	}
	be.k.conv = convK{f: f, h: h, to: true, bf: true}
	be.par(len(f), grainElems, &be.k.conv)
	be.k.conv = convK{}
}

// actIn returns the first n elements of a kernel input as float32: an F32
// buffer's own memory, or a BF16 buffer (a bfloat16 weight or activation)
// widened exactly into scratch slot i.
func (be *Backend) actIn(i int, what string, b tensor.Buffer, n int) []float32 {
	if b.DType() != tensor.BF16 {
		return f32(what, b, n)
	}
	h := view[uint16](what, b, tensor.BF16, n)
	w := be.slot(i, n)
	be.k.conv = convK{f: w, h: h, bf: true}
	be.par(n, grainElems, &be.k.conv)
	be.k.conv = convK{}
	return w
}
