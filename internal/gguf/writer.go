package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Tensor is a tensor to write.
type Tensor struct {
	Name string
	// Shape is in GGUF order: Shape[0] is the innermost dimension.
	Shape []uint64
	Type  Type
	// Data returns the tensor's encoded bytes (see EncodeFloat32). It is
	// called once, in order, while the file is written, so a large model
	// need not be held in memory all at once.
	Data func() ([]byte, error)
}

// appendValue appends v's encoding and returns its GGUF value type.
func appendValue(b []byte, v any, depth int) ([]byte, valueType, error) {
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		return append(b, x), typeUint8, nil
	case int8:
		return append(b, byte(x)), typeInt8, nil
	case uint16:
		return le.AppendUint16(b, x), typeUint16, nil
	case int16:
		return le.AppendUint16(b, uint16(x)), typeInt16, nil
	case uint32:
		return le.AppendUint32(b, x), typeUint32, nil
	case int32:
		return le.AppendUint32(b, uint32(x)), typeInt32, nil
	case float32:
		return le.AppendUint32(b, math.Float32bits(x)), typeFloat32, nil
	case bool:
		if x {
			return append(b, 1), typeBool, nil
		}
		return append(b, 0), typeBool, nil
	case string:
		return appendString(b, x), typeString, nil
	case uint64:
		return le.AppendUint64(b, x), typeUint64, nil
	case int64:
		return le.AppendUint64(b, uint64(x)), typeInt64, nil
	case float64:
		return le.AppendUint64(b, math.Float64bits(x)), typeFloat64, nil
	}
	if depth >= maxArrayDepth {
		return nil, 0, fmt.Errorf("arrays nested more than %d deep", maxArrayDepth)
	}
	var err error
	switch x := v.(type) {
	case []uint8:
		b = arrayHeader(b, typeUint8, len(x))
		return append(b, x...), typeArray, nil
	case []int8:
		return appendArray(b, typeInt8, x, depth)
	case []uint16:
		return appendArray(b, typeUint16, x, depth)
	case []int16:
		return appendArray(b, typeInt16, x, depth)
	case []uint32:
		return appendArray(b, typeUint32, x, depth)
	case []int32:
		return appendArray(b, typeInt32, x, depth)
	case []float32:
		return appendArray(b, typeFloat32, x, depth)
	case []bool:
		return appendArray(b, typeBool, x, depth)
	case []string:
		return appendArray(b, typeString, x, depth)
	case []uint64:
		return appendArray(b, typeUint64, x, depth)
	case []int64:
		return appendArray(b, typeInt64, x, depth)
	case []float64:
		return appendArray(b, typeFloat64, x, depth)
	case []any:
		b = arrayHeader(b, typeArray, len(x))
		for i, e := range x {
			var t valueType
			if b, t, err = appendValue(b, e, depth+1); err != nil {
				return nil, 0, err
			}
			if t != typeArray {
				return nil, 0, fmt.Errorf("element %d of an array of arrays is a %T, not an array", i, e)
			}
			// appendValue wrote the element's own array header: an array
			// of arrays holds (type, count, values) per element.
		}
		return b, typeArray, nil
	}
	return nil, 0, fmt.Errorf("unsupported metadata value type %T (use a sized integer, float32/64, bool, string or a slice of those)", v)
}

func arrayHeader(b []byte, t valueType, n int) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(t))
	return binary.LittleEndian.AppendUint64(b, uint64(n))
}

func appendArray[T any](b []byte, t valueType, x []T, depth int) ([]byte, valueType, error) {
	b = arrayHeader(b, t, len(x))
	for _, e := range x {
		var err error
		if b, _, err = appendValue(b, e, depth+1); err != nil {
			return nil, 0, err
		}
	}
	return b, typeArray, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func alignUp(n, a uint64) uint64 {
	if r := n % a; r != 0 {
		return n + a - r
	}
	return n
}

// header encodes everything before the data section (padding included)
// and returns it with each tensor's size.
func header(kvs []KV, tensors []Tensor) (hdr []byte, sizes []uint64, align uint64, err error) {
	align = DefaultAlignment
	b := []byte(Magic)
	b = binary.LittleEndian.AppendUint32(b, Version)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(tensors)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(kvs)))
	seen := map[string]bool{}
	for _, kv := range kvs {
		if seen[kv.Key] {
			return nil, nil, 0, fmt.Errorf("duplicate metadata key %q", kv.Key)
		}
		seen[kv.Key] = true
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return nil, nil, 0, fmt.Errorf("general.alignment must be a uint32 power of two, got %T %v", kv.Value, kv.Value)
			}
			align = uint64(a)
		}
		b = appendString(b, kv.Key)
		at := len(b)
		b = append(b, 0, 0, 0, 0) // value type, patched below
		var t valueType
		if b, t, err = appendValue(b, kv.Value, 0); err != nil {
			return nil, nil, 0, fmt.Errorf("metadata %q: %w", kv.Key, err)
		}
		binary.LittleEndian.PutUint32(b[at:], uint32(t))
	}
	names := map[string]bool{}
	off := uint64(0)
	sizes = make([]uint64, len(tensors))
	for i, t := range tensors {
		if t.Name == "" || len(t.Name) > MaxNameLen {
			return nil, nil, 0, fmt.Errorf("tensor name %q: want 1 to %d bytes", t.Name, MaxNameLen)
		}
		if names[t.Name] {
			return nil, nil, 0, fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		if len(t.Shape) == 0 || len(t.Shape) > MaxDims {
			return nil, nil, 0, fmt.Errorf("tensor %q: %d dimensions (want 1 to %d)", t.Name, len(t.Shape), MaxDims)
		}
		if sizes[i], err = tensorBytes(t.Type, t.Shape); err != nil {
			return nil, nil, 0, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if t.Data == nil {
			return nil, nil, 0, fmt.Errorf("tensor %q: no data", t.Name)
		}
		b = appendString(b, t.Name)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Shape)))
		for _, d := range t.Shape {
			b = binary.LittleEndian.AppendUint64(b, d)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(t.Type))
		b = binary.LittleEndian.AppendUint64(b, off)
		off = alignUp(off+sizes[i], align)
	}
	for uint64(len(b))%align != 0 {
		b = append(b, 0)
	}
	return b, sizes, align, nil
}

// Encode writes a GGUF v3 file: the metadata in the given order, then the
// tensor infos and data in the given order, each tensor's data padded to
// the alignment (general.alignment if kvs sets it, else 32). It returns
// the number of bytes written.
func Encode(w io.Writer, kvs []KV, tensors []Tensor) (int64, error) {
	hdr, sizes, align, err := header(kvs, tensors)
	if err != nil {
		return 0, fmt.Errorf("gguf: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	n := int64(0)
	m, err := bw.Write(hdr)
	n += int64(m)
	if err != nil {
		return n, fmt.Errorf("gguf: %w", err)
	}
	var zeros [64]byte
	for i, t := range tensors {
		data, err := t.Data()
		if err != nil {
			return n, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
		}
		if uint64(len(data)) != sizes[i] {
			return n, fmt.Errorf("gguf: tensor %q: %s %v needs %d bytes, Data returned %d", t.Name, t.Type, t.Shape, sizes[i], len(data))
		}
		m, err := bw.Write(data)
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("gguf: %w", err)
		}
		for pad := alignUp(sizes[i], align) - sizes[i]; pad > 0; {
			k := min(pad, uint64(len(zeros)))
			m, err := bw.Write(zeros[:k])
			n += int64(m)
			if err != nil {
				return n, fmt.Errorf("gguf: %w", err)
			}
			pad -= k
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("gguf: %w", err)
	}
	return n, nil
}

// WriteFile encodes the file to a temporary name in path's directory and
// renames it into place, so path holds either the old file or the complete
// new one.
func WriteFile(path string, kvs []KV, tensors []Tensor) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = Encode(tmp, kvs, tensors); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}
