package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted, as in the reference
// implementation.
const MaxHeaderSize = 100_000_000

// Error categories; every error returned by this package that concerns file
// contents wraps one of these and names the file (and the tensor, if any).
var (
	ErrHeader    = errors.New("invalid header")
	ErrTruncated = errors.New("file truncated")
	ErrDType     = errors.New("unsupported dtype")
	ErrShape     = errors.New("invalid shape")
	ErrOffsets   = errors.New("invalid data offsets")
	ErrSize      = errors.New("size mismatch")
	ErrNotFound  = errors.New("tensor not found")
	ErrIndex     = errors.New("invalid index")
)

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are the tensor's byte range relative to the start of the
	// data section, as in the header's data_offsets.
	Begin, End int64
	// File is the base name of the file that holds the tensor.
	File string
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Size is the tensor's size in bytes.
func (t TensorInfo) Size() int64 { return t.End - t.Begin }

// File is an open safetensors file. Its methods are safe for concurrent use
// until Close.
type File struct {
	path      string
	r         io.ReaderAt
	closer    io.Closer
	mapped    []byte // the whole file when memory-mapped, else nil
	unmap     func() error
	dataStart int64
	metadata  map[string]string
	tensors   []TensorInfo // sorted by name
	byName    map[string]int
}

// Open opens and validates a safetensors file. The file is memory-mapped
// read-only when possible, else read with ReadAt.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var r io.ReaderAt = fh
	var mapped []byte
	var unmap func() error
	if m, err := mmapFile(fh, st.Size()); err == nil && m != nil {
		mapped = m
		r = bytes.NewReader(m)
		unmap = func() error { return munmapFile(m) }
	}
	f, err := newFile(path, r, st.Size())
	if err != nil {
		if unmap != nil {
			unmap()
		}
		fh.Close()
		return nil, err
	}
	f.closer, f.mapped, f.unmap = fh, mapped, unmap
	return f, nil
}

// OpenReaderAt validates a safetensors image of the given size read through
// r; name is used in errors and as TensorInfo.File. Close does not close r.
func OpenReaderAt(name string, r io.ReaderAt, size int64) (*File, error) {
	return newFile(name, r, size)
}

// Path is the path or name the file was opened with.
func (f *File) Path() string { return f.path }

// Metadata returns a copy of the header's __metadata__ (nil if absent).
func (f *File) Metadata() map[string]string {
	if f.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Tensors returns the tensors sorted by name.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.tensors))
	for i, t := range f.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Tensor returns the named tensor's description.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// Bytes returns a copy of the named tensor's raw little-endian data.
func (f *File) Bytes(name string) ([]byte, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, t.Size())
	if _, err := f.r.ReadAt(buf, f.dataStart+t.Begin); err != nil {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, err)
	}
	return buf, nil
}

// View returns the named tensor's raw data without copying when the file is
// memory-mapped (the slice is read-only and valid until Close), else a copy.
func (f *File) View(name string) ([]byte, error) {
	if f.mapped == nil {
		return f.Bytes(name)
	}
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	s := f.dataStart + t.Begin
	return f.mapped[s : s+t.Size() : s+t.Size()], nil
}

// Float32 reads the named tensor converted to float32; its dtype must be
// F32, F16, BF16 or F64.
func (f *File) Float32(name string) ([]float32, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	raw, err := f.View(name)
	if err != nil {
		return nil, err
	}
	v, err := DecodeFloat32(t.DType, raw)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, err)
	}
	return v, nil
}

// Close releases the mapping and the file. Slices from View become invalid.
func (f *File) Close() error {
	var err error
	if f.unmap != nil {
		err = f.unmap()
		f.unmap, f.mapped = nil, nil
	}
	if f.closer != nil {
		if cerr := f.closer.Close(); err == nil {
			err = cerr
		}
		f.closer = nil
	}
	return err
}

func (f *File) lookup(name string) (TensorInfo, error) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, ErrNotFound)
	}
	return f.tensors[i], nil
}

func newFile(path string, r io.ReaderAt, size int64) (*File, error) {
	fail := func(kind error, format string, args ...any) error {
		return fmt.Errorf("safetensors: %s: %w: %s", path, kind, fmt.Sprintf(format, args...))
	}
	if size < 8 {
		return nil, fail(ErrTruncated, "%d bytes, shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("safetensors: %s: reading header length: %w", path, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, fail(ErrHeader, "header length %d exceeds the maximum %d", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fail(ErrTruncated, "header length %d but only %d bytes follow", n, size-8)
	}
	header := make([]byte, n)
	if _, err := r.ReadAt(header, 8); err != nil {
		return nil, fmt.Errorf("safetensors: %s: reading header: %w", path, err)
	}
	f := &File{path: path, r: r, dataStart: 8 + int64(n)}
	if err := f.parseHeader(header, size-f.dataStart); err != nil {
		return nil, err
	}
	return f, nil
}

// rawInfo is a tensor entry as decoded from JSON, before validation.
type rawInfo struct {
	name    string
	dtype   string
	shape   []uint64
	offsets []uint64
}

func (f *File) parseHeader(header []byte, dataLen int64) error {
	path := f.path
	fail := func(kind error, format string, args ...any) error {
		return fmt.Errorf("safetensors: %s: %w: %s", path, kind, fmt.Sprintf(format, args...))
	}
	if !utf8.Valid(header) {
		return fail(ErrHeader, "header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fail(ErrHeader, "malformed JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fail(ErrHeader, "header is not a JSON object")
	}
	seen := map[string]bool{}
	var raws []rawInfo
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(ErrHeader, "malformed JSON: %v", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return fail(ErrHeader, "duplicate key %q", key)
		}
		seen[key] = true
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return fail(ErrHeader, "malformed JSON at key %q: %v", key, err)
		}
		if key == "__metadata__" {
			if string(bytes.TrimSpace(val)) == "null" {
				continue
			}
			var m map[string]string
			if err := json.Unmarshal(val, &m); err != nil {
				return fail(ErrHeader, "__metadata__ must map strings to strings: %v", err)
			}
			f.metadata = m
			continue
		}
		ri, err := decodeInfo(key, val)
		if err != nil {
			return fmt.Errorf("safetensors: %s: tensor %q: %w", path, key, err)
		}
		raws = append(raws, ri)
	}
	if _, err := dec.Token(); err != nil {
		return fail(ErrHeader, "malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(ErrHeader, "trailing data after the JSON object")
	}

	// Validate each entry, then the tiling of the data section.
	infos := make([]TensorInfo, len(raws))
	for i, ri := range raws {
		t, err := validateInfo(ri)
		if err != nil {
			return fmt.Errorf("safetensors: %s: tensor %q: %w", path, ri.name, err)
		}
		t.File = filepath.Base(path)
		infos[i] = t
	}
	byOffset := make([]int, len(infos))
	for i := range byOffset {
		byOffset[i] = i
	}
	sort.SliceStable(byOffset, func(a, b int) bool {
		ta, tb := infos[byOffset[a]], infos[byOffset[b]]
		if ta.Begin != tb.Begin {
			return ta.Begin < tb.Begin
		}
		return ta.End < tb.End
	})
	var pos int64
	for _, i := range byOffset {
		t := infos[i]
		if t.Begin < pos {
			return fmt.Errorf("safetensors: %s: tensor %q: %w: [%d, %d] overlaps the previous tensor ending at %d", path, t.Name, ErrOffsets, t.Begin, t.End, pos)
		}
		if t.Begin > pos {
			return fmt.Errorf("safetensors: %s: tensor %q: %w: [%d, %d] leaves a hole after offset %d", path, t.Name, ErrOffsets, t.Begin, t.End, pos)
		}
		if t.End > dataLen {
			return fmt.Errorf("safetensors: %s: tensor %q: %w: data [%d, %d] past the end of the %d-byte data section", path, t.Name, ErrTruncated, t.Begin, t.End, dataLen)
		}
		pos = t.End
	}
	if pos != dataLen {
		return fail(ErrSize, "tensors cover %d bytes but the data section has %d", pos, dataLen)
	}
	sort.Slice(infos, func(a, b int) bool { return infos[a].Name < infos[b].Name })
	f.tensors = infos
	f.byName = make(map[string]int, len(infos))
	for i, t := range infos {
		f.byName[t.Name] = i
	}
	return nil
}

func decodeInfo(name string, val json.RawMessage) (rawInfo, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(val, &fields); err != nil || fields == nil {
		return rawInfo{}, fmt.Errorf("%w: entry is not a JSON object", ErrHeader)
	}
	ri := rawInfo{name: name}
	dt, ok := fields["dtype"]
	if !ok {
		return ri, fmt.Errorf("%w: missing dtype", ErrHeader)
	}
	if err := json.Unmarshal(dt, &ri.dtype); err != nil {
		return ri, fmt.Errorf("%w: dtype is not a string", ErrHeader)
	}
	sh, ok := fields["shape"]
	if !ok {
		return ri, fmt.Errorf("%w: missing shape", ErrHeader)
	}
	if err := json.Unmarshal(sh, &ri.shape); err != nil || ri.shape == nil {
		return ri, fmt.Errorf("%w: shape %s is not a list of non-negative integers", ErrShape, truncate(sh))
	}
	off, ok := fields["data_offsets"]
	if !ok {
		return ri, fmt.Errorf("%w: missing data_offsets", ErrHeader)
	}
	if err := json.Unmarshal(off, &ri.offsets); err != nil || len(ri.offsets) != 2 {
		return ri, fmt.Errorf("%w: data_offsets %s is not a pair of non-negative integers", ErrOffsets, truncate(off))
	}
	return ri, nil
}

func validateInfo(ri rawInfo) (TensorInfo, error) {
	dt, err := ParseDType(ri.dtype)
	if err != nil {
		return TensorInfo{}, err
	}
	shape := make([]int, len(ri.shape))
	n := uint64(1)
	for i, d := range ri.shape {
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > math.MaxInt64 || d > uint64(math.MaxInt) {
			return TensorInfo{}, fmt.Errorf("%w: %v overflows", ErrShape, ri.shape)
		}
		n = lo
		shape[i] = int(d)
	}
	want, ok := byteSize(dt, n)
	if !ok || want > math.MaxInt64 {
		return TensorInfo{}, fmt.Errorf("%w: %d elements of %s is not a whole number of bytes", ErrShape, n, dt)
	}
	b, e := ri.offsets[0], ri.offsets[1]
	if e < b || e > math.MaxInt64 {
		return TensorInfo{}, fmt.Errorf("%w: [%d, %d]", ErrOffsets, b, e)
	}
	if e-b != want {
		return TensorInfo{}, fmt.Errorf("%w: shape %v of %s needs %d bytes but data_offsets [%d, %d] hold %d", ErrSize, ri.shape, dt, want, b, e, e-b)
	}
	return TensorInfo{Name: ri.name, DType: dt, Shape: shape, Begin: int64(b), End: int64(e)}, nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}
