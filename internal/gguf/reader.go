package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
)

// File is an open GGUF file: its header parsed and validated, its tensor
// data read on demand. Its methods are safe for concurrent use until Close.
type File struct {
	Version uint32
	// Alignment is general.alignment, or DefaultAlignment.
	Alignment uint64
	// KV is the metadata in file order; Metadata is the same by key.
	KV       []KV
	Metadata map[string]any
	// Tensors is in file order.
	Tensors []TensorInfo
	// DataOffset is the file offset of the data section.
	DataOffset int64

	path   string
	r      io.ReaderAt
	closer io.Closer
	size   int64
	byName map[string]int
}

// Open opens and validates the GGUF file at path.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := newFile(path, fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// OpenReaderAt reads a GGUF file of the given size from r; name is used in
// error messages. Close does not close r.
func OpenReaderAt(name string, r io.ReaderAt, size int64) (*File, error) {
	return newFile(name, r, size)
}

// Close closes the underlying file.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

// Tensor returns the named tensor's description.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.Tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// Bytes returns the named tensor's raw data.
func (f *File) Bytes(name string) ([]byte, error) {
	i, ok := f.byName[name]
	if !ok {
		return nil, fmt.Errorf("gguf: %s: tensor %q: %w", f.path, name, ErrNotFound)
	}
	t := f.Tensors[i]
	buf := make([]byte, t.Size)
	if t.Size == 0 {
		return buf, nil
	}
	// A ReaderAt may report io.EOF along with a full read of the last bytes.
	if n, err := f.r.ReadAt(buf, f.DataOffset+int64(t.Offset)); n != len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("gguf: %s: tensor %q: %w", f.path, name, err)
	}
	return buf, nil
}

// Float32 returns the named tensor dequantised to float32, in storage order
// (Shape[0] fastest). Its type must be F32, F16, BF16, Q8_0 or Q4_0.
func (f *File) Float32(name string) ([]float32, error) {
	raw, err := f.Bytes(name)
	if err != nil {
		return nil, err
	}
	t := f.Tensors[f.byName[name]]
	v, err := DecodeFloat32(t.Type, raw)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: tensor %q: %w", f.path, name, err)
	}
	return v, nil
}

// decoder reads the header sequentially, never past the end of the file.
type decoder struct {
	r    *bufio.Reader
	pos  int64
	size int64
}

func (d *decoder) remaining() uint64 { return uint64(d.size - d.pos) }

func (d *decoder) read(n uint64) ([]byte, error) {
	if n > d.remaining() {
		return nil, fmt.Errorf("%w: need %d bytes at offset %d, file has %d", ErrTruncated, n, d.pos, d.size)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(d.r, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w at offset %d", ErrTruncated, d.pos)
		}
		return nil, err
	}
	d.pos += int64(n)
	return buf, nil
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (d *decoder) str() (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n > d.remaining() {
		return "", fmt.Errorf("%w: string of %d bytes at offset %d, %d left", ErrTruncated, n, d.pos, d.remaining())
	}
	b, err := d.read(n)
	return string(b), err
}

// value reads a metadata value of type t.
func (d *decoder) value(t valueType, depth int) (any, error) {
	if t == typeArray {
		return d.array(depth)
	}
	if t == typeString {
		return d.str()
	}
	size := t.fixedSize()
	if size == 0 {
		return nil, fmt.Errorf("%w: metadata value type %d", ErrType, uint32(t))
	}
	b, err := d.read(uint64(size))
	if err != nil {
		return nil, err
	}
	v, err := scalar(t, b)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func scalar(t valueType, b []byte) (any, error) {
	le := binary.LittleEndian
	switch t {
	case typeUint8:
		return b[0], nil
	case typeInt8:
		return int8(b[0]), nil
	case typeUint16:
		return le.Uint16(b), nil
	case typeInt16:
		return int16(le.Uint16(b)), nil
	case typeUint32:
		return le.Uint32(b), nil
	case typeInt32:
		return int32(le.Uint32(b)), nil
	case typeFloat32:
		return math.Float32frombits(le.Uint32(b)), nil
	case typeBool:
		if b[0] > 1 {
			return nil, fmt.Errorf("%w: bool value %d (want 0 or 1)", ErrHeader, b[0])
		}
		return b[0] == 1, nil
	case typeUint64:
		return le.Uint64(b), nil
	case typeInt64:
		return int64(le.Uint64(b)), nil
	case typeFloat64:
		return math.Float64frombits(le.Uint64(b)), nil
	}
	return nil, fmt.Errorf("%w: metadata value type %d", ErrType, uint32(t))
}

// fill decodes n fixed-size elements into a typed slice.
func fill[T any](b []byte, size int, conv func([]byte) T) []T {
	out := make([]T, len(b)/size)
	for i := range out {
		out[i] = conv(b[i*size:])
	}
	return out
}

func (d *decoder) array(depth int) (any, error) {
	if depth >= maxArrayDepth {
		return nil, fmt.Errorf("%w: arrays nested more than %d deep", ErrHeader, maxArrayDepth)
	}
	et, err := d.u32()
	if err != nil {
		return nil, err
	}
	n, err := d.u64()
	if err != nil {
		return nil, err
	}
	t := valueType(et)
	le := binary.LittleEndian
	switch t {
	case typeString:
		if n > d.remaining()/8 {
			return nil, fmt.Errorf("%w: array of %d strings at offset %d, %d bytes left", ErrTruncated, n, d.pos, d.remaining())
		}
		out := make([]string, n)
		for i := range out {
			if out[i], err = d.str(); err != nil {
				return nil, err
			}
		}
		return out, nil
	case typeArray:
		if n > d.remaining()/12 {
			return nil, fmt.Errorf("%w: array of %d arrays at offset %d, %d bytes left", ErrTruncated, n, d.pos, d.remaining())
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = d.array(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	size := t.fixedSize()
	if size == 0 {
		return nil, fmt.Errorf("%w: array element type %d", ErrType, et)
	}
	if n > d.remaining()/uint64(size) {
		return nil, fmt.Errorf("%w: array of %d %s at offset %d, %d bytes left", ErrTruncated, n, t, d.pos, d.remaining())
	}
	b, err := d.read(n * uint64(size))
	if err != nil {
		return nil, err
	}
	switch t {
	case typeUint8:
		return b, nil
	case typeInt8:
		return fill(b, 1, func(p []byte) int8 { return int8(p[0]) }), nil
	case typeUint16:
		return fill(b, 2, le.Uint16), nil
	case typeInt16:
		return fill(b, 2, func(p []byte) int16 { return int16(le.Uint16(p)) }), nil
	case typeUint32:
		return fill(b, 4, le.Uint32), nil
	case typeInt32:
		return fill(b, 4, func(p []byte) int32 { return int32(le.Uint32(p)) }), nil
	case typeFloat32:
		return fill(b, 4, func(p []byte) float32 { return math.Float32frombits(le.Uint32(p)) }), nil
	case typeBool:
		for i, c := range b {
			if c > 1 {
				return nil, fmt.Errorf("%w: bool array element %d is %d (want 0 or 1)", ErrHeader, i, c)
			}
		}
		return fill(b, 1, func(p []byte) bool { return p[0] == 1 }), nil
	case typeUint64:
		return fill(b, 8, le.Uint64), nil
	case typeInt64:
		return fill(b, 8, func(p []byte) int64 { return int64(le.Uint64(p)) }), nil
	default: // typeFloat64
		return fill(b, 8, func(p []byte) float64 { return math.Float64frombits(le.Uint64(p)) }), nil
	}
}

func newFile(path string, r io.ReaderAt, size int64) (*File, error) {
	f, err := parse(path, r, size)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	return f, nil
}

func parse(path string, r io.ReaderAt, size int64) (*File, error) {
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16), size: size}
	magic, err := d.read(4)
	if err != nil {
		return nil, fmt.Errorf("magic: %w", err)
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("%w: %q", ErrMagic, magic)
	}
	version, err := d.u32()
	if err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	switch {
	case version == 2 || version == Version:
	case version&0xffff == 0 && bits.ReverseBytes32(version) >= 1 && bits.ReverseBytes32(version) <= Version:
		return nil, fmt.Errorf("%w: %d (a big-endian file: only little-endian GGUF is supported)", ErrVersion, bits.ReverseBytes32(version))
	default:
		return nil, fmt.Errorf("%w: %d (want 2 or 3)", ErrVersion, version)
	}
	nTensors, err := d.u64()
	if err != nil {
		return nil, fmt.Errorf("tensor count: %w", err)
	}
	nKV, err := d.u64()
	if err != nil {
		return nil, fmt.Errorf("metadata count: %w", err)
	}
	// Each KV takes at least 8 (key length) + 4 (type) + 1 bytes, each
	// tensor info at least 8 + 4 + 8 + 4 + 8.
	if nKV > d.remaining()/13 {
		return nil, fmt.Errorf("%w: %d metadata entries cannot fit in %d bytes", ErrTruncated, nKV, d.remaining())
	}
	f := &File{
		Version: version, Alignment: DefaultAlignment, path: path, r: r, size: size,
		Metadata: make(map[string]any, nKV), byName: map[string]int{},
	}
	for i := uint64(0); i < nKV; i++ {
		key, err := d.str()
		if err != nil {
			return nil, fmt.Errorf("metadata entry %d: key: %w", i, err)
		}
		if _, dup := f.Metadata[key]; dup {
			return nil, fmt.Errorf("%w: duplicate metadata key %q", ErrHeader, key)
		}
		t, err := d.u32()
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, err)
		}
		v, err := d.value(valueType(t), 0)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, err)
		}
		f.KV = append(f.KV, KV{Key: key, Value: v})
		f.Metadata[key] = v
	}
	if v, ok := f.Metadata["general.alignment"]; ok {
		a, ok := v.(uint32)
		if !ok {
			return nil, fmt.Errorf("%w: general.alignment is a %T, want uint32", ErrHeader, v)
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: general.alignment %d is not a power of two", ErrHeader, a)
		}
		f.Alignment = uint64(a)
	}
	if nTensors > d.remaining()/32 {
		return nil, fmt.Errorf("%w: %d tensor infos cannot fit in %d bytes", ErrTruncated, nTensors, d.remaining())
	}
	f.Tensors = make([]TensorInfo, 0, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		ti, err := d.tensorInfo()
		if err != nil {
			return nil, fmt.Errorf("tensor info %d: %w", i, err)
		}
		if _, dup := f.byName[ti.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor name %q", ErrHeader, ti.Name)
		}
		f.byName[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}
	// The data section starts at the next multiple of the alignment.
	start := uint64(d.pos)
	if rem := start % f.Alignment; rem != 0 {
		start += f.Alignment - rem
	}
	if len(f.Tensors) > 0 && start > uint64(size) {
		return nil, fmt.Errorf("%w: data section would start at %d, file has %d bytes", ErrTruncated, start, size)
	}
	f.DataOffset = int64(start)
	dataLen := uint64(0)
	if start < uint64(size) {
		dataLen = uint64(size) - start
	}
	for _, t := range f.Tensors {
		if t.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("%w: tensor %q offset %d is not a multiple of the alignment %d", ErrHeader, t.Name, t.Offset, f.Alignment)
		}
		if t.Offset > dataLen || t.Size > dataLen-t.Offset {
			return nil, fmt.Errorf("%w: tensor %q needs bytes [%d, %d) of a %d-byte data section", ErrBounds, t.Name, t.Offset, t.Offset+t.Size, dataLen)
		}
	}
	return f, nil
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	name, err := d.str()
	if err != nil {
		return TensorInfo{}, fmt.Errorf("name: %w", err)
	}
	if len(name) > MaxNameLen {
		return TensorInfo{}, fmt.Errorf("%w: tensor name %.20q... is %d bytes, the limit is %d", ErrHeader, name, len(name), MaxNameLen)
	}
	nd, err := d.u32()
	if err != nil {
		return TensorInfo{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	if nd == 0 || nd > MaxDims {
		return TensorInfo{}, fmt.Errorf("%w: tensor %q has %d dimensions (want 1 to %d)", ErrHeader, name, nd, MaxDims)
	}
	ti := TensorInfo{Name: name, Shape: make([]uint64, nd)}
	for i := range ti.Shape {
		if ti.Shape[i], err = d.u64(); err != nil {
			return TensorInfo{}, fmt.Errorf("tensor %q: %w", name, err)
		}
	}
	t, err := d.u32()
	if err != nil {
		return TensorInfo{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	ti.Type = Type(t)
	if !ti.Type.Known() {
		return TensorInfo{}, fmt.Errorf("%w: tensor %q has ggml type %d", ErrType, name, t)
	}
	if ti.Offset, err = d.u64(); err != nil {
		return TensorInfo{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	if ti.Size, err = tensorBytes(ti.Type, ti.Shape); err != nil {
		return TensorInfo{}, fmt.Errorf("%w: tensor %q: %v", ErrHeader, name, err)
	}
	return ti, nil
}
