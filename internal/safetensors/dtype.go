package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// DType is a safetensors element type, spelled as in the file header.
type DType string

// The element types of the safetensors format.
const (
	BOOL        DType = "BOOL"
	U8          DType = "U8"
	I8          DType = "I8"
	U16         DType = "U16"
	I16         DType = "I16"
	U32         DType = "U32"
	I32         DType = "I32"
	U64         DType = "U64"
	I64         DType = "I64"
	F16         DType = "F16"
	BF16        DType = "BF16"
	F32         DType = "F32"
	F64         DType = "F64"
	C64         DType = "C64"
	F8E4M3      DType = "F8_E4M3"
	F8E5M2      DType = "F8_E5M2"
	F8E8M0      DType = "F8_E8M0"
	F8E4M3FNUZ  DType = "F8_E4M3FNUZ"
	F8E5M2FNUZ  DType = "F8_E5M2FNUZ"
	F6E2M3      DType = "F6_E2M3"
	F6E3M2      DType = "F6_E3M2"
	F4          DType = "F4"
	invalidDTyp DType = ""
)

var dtypeBits = map[DType]int{
	BOOL: 8, U8: 8, I8: 8, U16: 16, I16: 16, U32: 32, I32: 32, U64: 64, I64: 64,
	F16: 16, BF16: 16, F32: 32, F64: 64, C64: 64,
	F8E4M3: 8, F8E5M2: 8, F8E8M0: 8, F8E4M3FNUZ: 8, F8E5M2FNUZ: 8,
	F6E2M3: 6, F6E3M2: 6, F4: 4,
}

// Bits is the size of one element in bits, or 0 for an unknown dtype.
func (d DType) Bits() int { return dtypeBits[d] }

// Valid reports whether d is a dtype of the safetensors format.
func (d DType) Valid() bool { return dtypeBits[d] != 0 }

// ParseDType checks that s names a safetensors dtype.
func ParseDType(s string) (DType, error) {
	d := DType(s)
	if !d.Valid() {
		return invalidDTyp, fmt.Errorf("%w %q", ErrDType, s)
	}
	return d, nil
}

// byteSize is the byte size of n elements of d, or ok=false on overflow or a
// size that is not a whole number of bytes.
func byteSize(d DType, n uint64) (size uint64, ok bool) {
	b := uint64(d.Bits())
	if b == 0 {
		return 0, false
	}
	if n != 0 && n > math.MaxUint64/b {
		return 0, false
	}
	bits := n * b
	if bits%8 != 0 {
		return 0, false
	}
	return bits / 8, true
}

// DecodeFloat32 converts little-endian raw data of dtype d (F32, F16, BF16 or
// F64) to float32. F64 values are rounded to the nearest float32.
func DecodeFloat32(d DType, raw []byte) ([]float32, error) {
	size := d.Bits() / 8
	switch d {
	case F32, F16, BF16, F64:
	default:
		return nil, fmt.Errorf("%w: cannot convert %s to float32", ErrDType, d)
	}
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of %s elements", ErrSize, len(raw), d)
	}
	out := make([]float32, len(raw)/size)
	le := binary.LittleEndian
	switch d {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = tensor.F32FromF16(le.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = tensor.F32FromBF16(le.Uint16(raw[2*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	}
	return out, nil
}

// EncodeFloat32 converts float32 values to little-endian raw data of dtype d
// (F32, F16, BF16 or F64), rounding to nearest even where d is narrower.
func EncodeFloat32(d DType, v []float32) ([]byte, error) {
	le := binary.LittleEndian
	switch d {
	case F32:
		out := make([]byte, 4*len(v))
		for i, x := range v {
			le.PutUint32(out[4*i:], math.Float32bits(x))
		}
		return out, nil
	case F16:
		out := make([]byte, 2*len(v))
		for i, x := range v {
			le.PutUint16(out[2*i:], tensor.F16FromF32(x))
		}
		return out, nil
	case BF16:
		out := make([]byte, 2*len(v))
		for i, x := range v {
			le.PutUint16(out[2*i:], tensor.BF16FromF32(x))
		}
		return out, nil
	case F64:
		out := make([]byte, 8*len(v))
		for i, x := range v {
			le.PutUint64(out[8*i:], math.Float64bits(float64(x)))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: cannot encode float32 as %s", ErrDType, d)
}
