package gguf

import (
	"fmt"
	"math/bits"
	"strings"
)

// Type is a ggml tensor element type, numbered as in ggml.h.
type Type uint32

// The ggml tensor types. This package writes and dequantises F32, F16,
// BF16, Q8_0 and Q4_0; the reader knows the block sizes of the others, so
// it can open any llama.cpp file and list its tensors.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
)

type typeTrait struct {
	name      string
	blockSize uint64 // elements per block
	typeSize  uint64 // bytes per block
}

var typeTraits = map[Type]typeTrait{
	F32: {"F32", 1, 4}, F16: {"F16", 1, 2}, Q4_0: {"Q4_0", 32, 18}, Q4_1: {"Q4_1", 32, 20},
	Q5_0: {"Q5_0", 32, 22}, Q5_1: {"Q5_1", 32, 24}, Q8_0: {"Q8_0", 32, 34}, Q8_1: {"Q8_1", 32, 36},
	Q2_K: {"Q2_K", 256, 84}, Q3_K: {"Q3_K", 256, 110}, Q4_K: {"Q4_K", 256, 144}, Q5_K: {"Q5_K", 256, 176},
	Q6_K: {"Q6_K", 256, 210}, Q8_K: {"Q8_K", 256, 292}, IQ2_XXS: {"IQ2_XXS", 256, 66}, IQ2_XS: {"IQ2_XS", 256, 74},
	IQ3_XXS: {"IQ3_XXS", 256, 98}, IQ1_S: {"IQ1_S", 256, 50}, IQ4_NL: {"IQ4_NL", 32, 18}, IQ3_S: {"IQ3_S", 256, 110},
	IQ2_S: {"IQ2_S", 256, 82}, IQ4_XS: {"IQ4_XS", 256, 136}, I8: {"I8", 1, 1}, I16: {"I16", 1, 2},
	I32: {"I32", 1, 4}, I64: {"I64", 1, 8}, F64: {"F64", 1, 8}, IQ1_M: {"IQ1_M", 256, 56},
	BF16: {"BF16", 1, 2}, TQ1_0: {"TQ1_0", 256, 54}, TQ2_0: {"TQ2_0", 256, 66}, MXFP4: {"MXFP4", 32, 17},
}

// String is the ggml name of the type ("Q8_0"), or "type(N)".
func (t Type) String() string {
	if tr, ok := typeTraits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Known reports whether the reader knows the type's block layout.
func (t Type) Known() bool { _, ok := typeTraits[t]; return ok }

// BlockSize is the number of elements in one block (1 for plain types, 0
// for an unknown type).
func (t Type) BlockSize() int { return int(typeTraits[t].blockSize) }

// TypeSize is the number of bytes of one block (0 for an unknown type).
func (t Type) TypeSize() int { return int(typeTraits[t].typeSize) }

// writable reports whether this package can encode (and decode) t.
func (t Type) writable() bool {
	switch t {
	case F32, F16, BF16, Q8_0, Q4_0:
		return true
	}
	return false
}

// Quantized reports whether t is a block-quantised type.
func (t Type) Quantized() bool { return typeTraits[t].blockSize > 1 }

// ParseType parses "f32", "f16", "bf16", "q8_0" or "q4_0" (any case): the
// types this package writes.
func ParseType(s string) (Type, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "f32":
		return F32, nil
	case "f16":
		return F16, nil
	case "bf16":
		return BF16, nil
	case "q8_0":
		return Q8_0, nil
	case "q4_0":
		return Q4_0, nil
	}
	return 0, fmt.Errorf("gguf: unknown type %q (want f32, f16, bf16, q8_0 or q4_0)", s)
}

// fileType is the general.file_type value (llama.cpp's llama_ftype) of a
// file whose matrices are of type t.
func fileType(t Type) uint32 {
	switch t {
	case F32:
		return 0 // ALL_F32
	case F16:
		return 1 // MOSTLY_F16
	case Q4_0:
		return 2 // MOSTLY_Q4_0
	case Q8_0:
		return 7 // MOSTLY_Q8_0
	case BF16:
		return 32 // MOSTLY_BF16
	}
	panic("gguf: no file type for " + t.String())
}

// tensorBytes is the byte size of a tensor of type t and GGUF shape ne
// (ne[0] innermost). It fails for an unknown type, a row length that is not
// a whole number of blocks, or a size that overflows.
func tensorBytes(t Type, ne []uint64) (uint64, error) {
	tr, ok := typeTraits[t]
	if !ok {
		return 0, fmt.Errorf("unknown tensor type %d", uint32(t))
	}
	if len(ne) == 0 {
		return 0, fmt.Errorf("no dimensions")
	}
	if ne[0]%tr.blockSize != 0 {
		return 0, fmt.Errorf("row length %d of %s is not a multiple of the block size %d", ne[0], tr.name, tr.blockSize)
	}
	n := ne[0] / tr.blockSize
	for _, d := range ne[1:] {
		hi, lo := bits.Mul64(n, d)
		if hi != 0 {
			return 0, fmt.Errorf("shape %v overflows", ne)
		}
		n = lo
	}
	hi, lo := bits.Mul64(n, tr.typeSize)
	if hi != 0 || lo > 1<<62 {
		return 0, fmt.Errorf("shape %v of %s is too large", ne, tr.name)
	}
	return lo, nil
}
