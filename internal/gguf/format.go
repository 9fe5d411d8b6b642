package gguf

import (
	"errors"
	"fmt"
)

// Format constants.
const (
	// Magic is the first four bytes of every GGUF file.
	Magic = "GGUF"
	// Version is the format version this package writes (it reads 2 and 3,
	// which share a layout).
	Version = 3
	// DefaultAlignment is the data alignment when general.alignment is
	// absent, and the one this package writes.
	DefaultAlignment = 32
	// MaxNameLen is the longest tensor name the spec allows, in bytes.
	MaxNameLen = 64
	// MaxDims is ggml's GGML_MAX_DIMS.
	MaxDims = 4
	// maxArrayDepth bounds nested metadata arrays.
	maxArrayDepth = 16
)

// Error categories. Every error about a file's contents wraps one of these
// and names the file.
var (
	ErrMagic     = errors.New("not a GGUF file (bad magic)")
	ErrVersion   = errors.New("unsupported GGUF version")
	ErrTruncated = errors.New("file truncated")
	ErrHeader    = errors.New("invalid header")
	ErrType      = errors.New("unknown type")
	ErrBounds    = errors.New("tensor data out of bounds")
	ErrNotFound  = errors.New("not found")
)

// Metadata value types, as numbered by the GGUF spec.
type valueType uint32

const (
	typeUint8   valueType = 0
	typeInt8    valueType = 1
	typeUint16  valueType = 2
	typeInt16   valueType = 3
	typeUint32  valueType = 4
	typeInt32   valueType = 5
	typeFloat32 valueType = 6
	typeBool    valueType = 7
	typeString  valueType = 8
	typeArray   valueType = 9
	typeUint64  valueType = 10
	typeInt64   valueType = 11
	typeFloat64 valueType = 12
)

// fixedSize is the encoded size of a scalar of type t (0 for string and
// array, whose size varies).
func (t valueType) fixedSize() int {
	switch t {
	case typeUint8, typeInt8, typeBool:
		return 1
	case typeUint16, typeInt16:
		return 2
	case typeUint32, typeInt32, typeFloat32:
		return 4
	case typeUint64, typeInt64, typeFloat64:
		return 8
	}
	return 0
}

func (t valueType) String() string {
	names := [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

// KV is one metadata key/value pair. Value is one of uint8, int8, uint16,
// int16, uint32, int32, uint64, int64, float32, float64, bool, string, a
// slice of one of those ([]string, []int32, ...), or []any whose elements
// are themselves such slices (an array of arrays).
type KV struct {
	Key   string
	Value any
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name string
	// Shape is in GGUF (ggml) order: Shape[0] is the innermost, contiguous
	// dimension (ne[0]), the reverse of the PyTorch/safetensors order.
	Shape []uint64
	Type  Type
	// Offset is the data's position relative to the start of the data
	// section; Size is its length in bytes.
	Offset, Size uint64
}

// NumElements is the product of the shape.
func (t TensorInfo) NumElements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}
