package tensor

import "fmt"

// NF4 format constants (QLoRA): 64 values share one absmax; the absmaxes
// are themselves quantised to signed 8 bits in groups of 256, each group with
// an F32 scale, after subtracting one F32 offset (their mean).
const (
	NF4BlockSize  = 64
	NF4GroupSize  = 256 // absmax values per second-level scale
	nf4CodeValues = 16
)

// NF4Codes are the 16 NormalFloat-4 code values published with QLoRA
// (Dettmers et al. 2023; bitsandbytes' table), indexed by the 4-bit code.
var NF4Codes = [nf4CodeValues]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// NF4Tensor is an NF4-quantised tensor of N values (N a multiple of 64):
//
//	Codes    NF4 [N]          two codes per byte, first in the high nibble
//	Absmax   U8  [N/64]       int8 (two's complement) q: absmax = q/127·Scale2[g] + Offset[0]
//	Scale2   F32 [ceil(N/64/256)]  per group g of 256 absmax values
//	Offset   F32 [1]          the mean of all absmax values
//
// A value decodes as NF4Codes[code]·absmax of its block.
type NF4Tensor struct {
	N                             int
	Codes, Absmax, Scale2, Offset Buffer
}

// NF4Sizes returns the number of 64-value blocks and of 256-block groups for
// n values.
func NF4Sizes(n int) (blocks, groups int) {
	blocks = n / NF4BlockSize
	return blocks, (blocks + NF4GroupSize - 1) / NF4GroupSize
}

// AllocNF4 allocates the four buffers of an n-value NF4 tensor.
func AllocNF4(be Allocator, n int) (NF4Tensor, error) {
	if n <= 0 || n%NF4BlockSize != 0 {
		return NF4Tensor{}, fmt.Errorf("tensor: nf4 size %d is not a positive multiple of %d", n, NF4BlockSize)
	}
	blocks, groups := NF4Sizes(n)
	q := NF4Tensor{N: n}
	var err error
	alloc := func(dt DType, k int) Buffer {
		if err != nil {
			return Buffer{}
		}
		var b Buffer
		b, err = be.Alloc(dt, k)
		return b
	}
	q.Codes = alloc(NF4, n)
	q.Absmax = alloc(U8, blocks)
	q.Scale2 = alloc(F32, groups)
	q.Offset = alloc(F32, 1)
	if err != nil {
		q.Free(be)
		return NF4Tensor{}, fmt.Errorf("tensor: alloc nf4 [%d]: %w", n, err)
	}
	return q, nil
}

// Free releases the buffers of a tensor made by AllocNF4.
func (q NF4Tensor) Free(be Allocator) {
	for _, b := range []Buffer{q.Codes, q.Absmax, q.Scale2, q.Offset} {
		if !b.IsNil() {
			be.Free(b)
		}
	}
}

// Check panics unless q's buffers have the dtypes and sizes its N implies.
func (q NF4Tensor) Check(what string) {
	if q.N <= 0 || q.N%NF4BlockSize != 0 {
		panic(fmt.Sprintf("%s: nf4 size %d is not a positive multiple of %d", what, q.N, NF4BlockSize))
	}
	blocks, groups := NF4Sizes(q.N)
	Need("nf4 codes", q.Codes, NF4, q.N)
	Need("nf4 absmax", q.Absmax, U8, blocks)
	Need("nf4 scale2", q.Scale2, F32, groups)
	Need("nf4 offset", q.Offset, F32, 1)
}
