package tensor

import "fmt"

// Memory is one allocation made by a Backend. Its concrete type belongs to
// the backend (a Go slice for the CPU, a device pointer for CUDA); code
// outside the backend treats it as opaque.
type Memory interface {
	// Size returns the allocation's size in bytes.
	Size() int
}

// Buffer is a typed range of device memory: n elements of one DType starting
// at a byte offset into a Memory. Buffers are small values; copying one does
// not copy the data. The zero Buffer is "no buffer" (see IsNil), used for
// optional kernel arguments.
type Buffer struct {
	mem   Memory
	off   int // bytes
	n     int // elements
	dtype DType
}

// NewBuffer wraps a whole allocation as n elements of dtype. It is meant for
// Backend implementations; everyone else gets Buffers from Backend.Alloc.
func NewBuffer(mem Memory, dtype DType, n int) Buffer {
	if mem == nil || !dtype.Valid() || n < 0 || dtype.Bytes(n) > mem.Size() {
		panic(fmt.Sprintf("tensor: NewBuffer(%v, %d) does not fit its memory", dtype, n))
	}
	return Buffer{mem: mem, n: n, dtype: dtype}
}

// Mem returns the underlying allocation (nil for the zero Buffer).
func (b Buffer) Mem() Memory { return b.mem }

// Offset returns the byte offset of the first element within Mem.
func (b Buffer) Offset() int { return b.off }

// Len returns the number of elements.
func (b Buffer) Len() int { return b.n }

// DType returns the element type.
func (b Buffer) DType() DType { return b.dtype }

// Bytes returns the size of the range in bytes.
func (b Buffer) Bytes() int {
	if b.mem == nil {
		return 0
	}
	return b.dtype.Bytes(b.n)
}

// IsNil reports whether b is the zero Buffer.
func (b Buffer) IsNil() bool { return b.mem == nil }

// View returns the n elements of b starting at element off. The view shares
// memory with b.
func (b Buffer) View(off, n int) Buffer {
	if off < 0 || n < 0 || off+n > b.n {
		panic(fmt.Sprintf("tensor: view [%d:%d] of %d-element buffer", off, off+n, b.n))
	}
	return Buffer{mem: b.mem, off: b.off + b.dtype.Bytes(off), n: n, dtype: b.dtype}
}

// As reinterprets the same bytes as another element type; the byte size must
// divide evenly. It is how a U8 allocation becomes F32 views, for example.
func (b Buffer) As(dt DType) Buffer {
	bytes := b.Bytes()
	n := bytes * 8 / dt.Bits()
	if dt.Bytes(n) != bytes {
		panic(fmt.Sprintf("tensor: %d bytes are not a whole number of %v", bytes, dt))
	}
	return Buffer{mem: b.mem, off: b.off, n: n, dtype: dt}
}

// String describes the buffer for error messages.
func (b Buffer) String() string {
	if b.mem == nil {
		return "Buffer(nil)"
	}
	return fmt.Sprintf("Buffer(%v[%d] @%d)", b.dtype, b.n, b.off)
}

// Need panics unless b has dtype dt and at least n elements. Kernels use it
// to validate their arguments; what names the kernel and argument.
func Need(what string, b Buffer, dt DType, n int) {
	if b.mem == nil {
		panic(fmt.Sprintf("%s: nil buffer", what))
	}
	if b.dtype != dt {
		panic(fmt.Sprintf("%s: dtype %v, want %v", what, b.dtype, dt))
	}
	if b.n < n {
		panic(fmt.Sprintf("%s: %d elements, need %d", what, b.n, n))
	}
}

// Shape is a list of dimension sizes, outermost first.
type Shape []int

// Numel returns the product of the dimensions (1 for a scalar shape).
func (s Shape) Numel() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Equal reports whether s and t have the same dimensions.
func (s Shape) Equal(t Shape) bool {
	if len(s) != len(t) {
		return false
	}
	for i := range s {
		if s[i] != t[i] {
			return false
		}
	}
	return true
}

// String formats the shape as [a b c].
func (s Shape) String() string { return fmt.Sprint([]int(s)) }

// Join returns the buffer spanning a then b when b starts where a ends in
// the same memory with the same element type; ok is false otherwise.
func Join(a, b Buffer) (joined Buffer, ok bool) {
	if a.mem == nil || a.mem != b.mem || a.dtype != b.dtype || b.off != a.off+a.dtype.Bytes(a.n) {
		return Buffer{}, false
	}
	return Buffer{mem: a.mem, off: a.off, n: a.n + b.n, dtype: a.dtype}, true
}
