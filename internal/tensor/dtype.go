package tensor

import "fmt"

// DType is the element type of a Buffer.
type DType uint8

// Element types. NF4 is packed 4-bit NormalFloat codes, two per byte, the
// first element of each pair in the high nibble (bitsandbytes' order).
const (
	F32 DType = iota + 1
	BF16
	F16
	I32
	U8
	NF4
)

// String returns the lower-case name of the type ("f32", "bf16", ...).
func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case F16:
		return "f16"
	case I32:
		return "i32"
	case U8:
		return "u8"
	case NF4:
		return "nf4"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Valid reports whether d is one of the defined types.
func (d DType) Valid() bool { return d >= F32 && d <= NF4 }

// Bits returns the size of one element in bits.
func (d DType) Bits() int {
	switch d {
	case F32, I32:
		return 32
	case BF16, F16:
		return 16
	case U8:
		return 8
	case NF4:
		return 4
	}
	panic(fmt.Sprintf("tensor: bits of invalid %v", d))
}

// Bytes returns the number of bytes n elements occupy. For NF4, n must be
// even so that a range never splits a byte.
func (d DType) Bytes(n int) int {
	if d == NF4 {
		if n%2 != 0 {
			panic(fmt.Sprintf("tensor: odd nf4 element count %d", n))
		}
		return n / 2
	}
	return n * d.Bits() / 8
}
