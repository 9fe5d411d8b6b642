package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Tensor is a tensor to write: raw little-endian data of the given dtype and
// shape (len(Data) must be product(Shape) * dtype size).
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Float32Tensor encodes v as dtype dt (F32, F16, BF16 or F64, rounding to
// nearest even where narrower) into a Tensor.
func Float32Tensor(name string, dt DType, shape []int, v []float32) (Tensor, error) {
	data, err := EncodeFloat32(dt, v)
	if err != nil {
		return Tensor{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	t := Tensor{Name: name, DType: dt, Shape: slices.Clone(shape), Data: data}
	if err := t.check(); err != nil {
		return Tensor{}, err
	}
	return t, nil
}

func (t Tensor) check() error {
	if t.Name == "" || t.Name == "__metadata__" || !utf8.ValidString(t.Name) {
		return fmt.Errorf("safetensors: %w: invalid tensor name %q", ErrHeader, t.Name)
	}
	if !t.DType.Valid() {
		return fmt.Errorf("safetensors: tensor %q: %w %q", t.Name, ErrDType, t.DType)
	}
	n := uint64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("safetensors: tensor %q: %w: negative dimension in %v", t.Name, ErrShape, t.Shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 {
			return fmt.Errorf("safetensors: tensor %q: %w: %v overflows", t.Name, ErrShape, t.Shape)
		}
		n = lo
	}
	want, ok := byteSize(t.DType, n)
	if !ok {
		return fmt.Errorf("safetensors: tensor %q: %w: %v of %s is not a whole number of bytes", t.Name, ErrShape, t.Shape, t.DType)
	}
	if uint64(len(t.Data)) != want {
		return fmt.Errorf("safetensors: tensor %q: %w: shape %v of %s needs %d bytes, got %d", t.Name, ErrSize, t.Shape, t.DType, want, len(t.Data))
	}
	return nil
}

// sortedTensors validates the tensors and returns them sorted by name.
func sortedTensors(tensors []Tensor) ([]Tensor, error) {
	out := append([]Tensor(nil), tensors...)
	sort.SliceStable(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	for i, t := range out {
		if err := t.check(); err != nil {
			return nil, err
		}
		if i > 0 && out[i-1].Name == t.Name {
			return nil, fmt.Errorf("safetensors: %w: duplicate tensor name %q", ErrHeader, t.Name)
		}
	}
	return out, nil
}

// Header returns the padded JSON header for tensors already sorted and
// checked: compact JSON, "__metadata__" first (keys sorted), then the tensors
// in order with consecutive data_offsets, padded with spaces to a multiple
// of 8 bytes.
func header(sorted []Tensor, metadata map[string]string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if metadata != nil {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
		first = false
	}
	var off int64
	for _, t := range sorted {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSONString(&b, t.Name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, string(t.DType))
		b.WriteString(`,"shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		end := off + int64(len(t.Data))
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes()
}

// writeJSONString writes s as serde_json does: only '"', '\\' and control
// characters are escaped; other characters are written as UTF-8.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// Encode writes a safetensors image of the tensors (in name order) with the
// given __metadata__ (omitted when nil) to w.
func Encode(w io.Writer, tensors []Tensor, metadata map[string]string) (int64, error) {
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return 0, fmt.Errorf("safetensors: %w: metadata %q is not valid UTF-8", ErrHeader, k)
		}
	}
	sorted, err := sortedTensors(tensors)
	if err != nil {
		return 0, err
	}
	h := header(sorted, metadata)
	if len(h) > MaxHeaderSize {
		return 0, fmt.Errorf("safetensors: %w: header of %d bytes exceeds the maximum %d", ErrHeader, len(h), MaxHeaderSize)
	}
	var n int64
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(h)))
	for _, chunk := range [][]byte{lenBuf[:], h} {
		m, err := w.Write(chunk)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	for _, t := range sorted {
		m, err := w.Write(t.Data)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// WriteFile writes the tensors to path atomically: to a temporary file in the
// same directory, synced, then renamed over path.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	return writeAtomic(path, func(w io.Writer) error {
		_, err := Encode(w, tensors, metadata)
		return err
	})
}

func writeAtomic(path string, fill func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := fill(bw); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// Writer collects tensors and writes them as one file on Close. The data
// slices are referenced, not copied: they must not change before Close.
type Writer struct {
	path     string
	tensors  []Tensor
	names    map[string]bool
	metadata map[string]string
	done     bool
}

// Create starts a Writer for path. Nothing appears at path until Close
// succeeds; the directory must exist.
func Create(path string) (*Writer, error) {
	st, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("safetensors: %s: %s is not a directory", path, filepath.Dir(path))
	}
	return &Writer{path: path, names: map[string]bool{}}, nil
}

// SetMetadata sets the __metadata__ map (e.g. {"format": "pt"}); nil omits it.
func (w *Writer) SetMetadata(m map[string]string) {
	w.metadata = make(map[string]string, len(m))
	for k, v := range m {
		w.metadata[k] = v
	}
	if m == nil {
		w.metadata = nil
	}
}

// Add adds a tensor after checking its name, dtype and size.
func (w *Writer) Add(t Tensor) error {
	if w.done {
		return fmt.Errorf("safetensors: %s: writer already closed", w.path)
	}
	if err := t.check(); err != nil {
		return fmt.Errorf("%w (writing %s)", err, w.path)
	}
	if w.names[t.Name] {
		return fmt.Errorf("safetensors: %s: %w: duplicate tensor name %q", w.path, ErrHeader, t.Name)
	}
	w.names[t.Name] = true
	t.Shape = slices.Clone(t.Shape)
	w.tensors = append(w.tensors, t)
	return nil
}

// AddFloat32 encodes v as dtype dt and adds it.
func (w *Writer) AddFloat32(name string, dt DType, shape []int, v []float32) error {
	t, err := Float32Tensor(name, dt, shape, v)
	if err != nil {
		return fmt.Errorf("%w (writing %s)", err, w.path)
	}
	return w.Add(t)
}

// Close writes the file atomically. After Close the Writer is unusable.
func (w *Writer) Close() error {
	if w.done {
		return fmt.Errorf("safetensors: %s: writer already closed", w.path)
	}
	w.done = true
	return WriteFile(w.path, w.tensors, w.metadata)
}

// Abort drops the collected tensors without writing anything.
func (w *Writer) Abort() {
	w.done = true
	w.tensors = nil
}

// ShardFileName is transformers' name for shard i (1-based) of n.
func ShardFileName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
}

// planShards assigns tensors (sorted) to shards as huggingface_hub's
// split_state_dict_into_shards does: in order, a new shard starts when the
// next tensor would push the current one over maxSize, and a tensor larger
// than maxSize gets a shard of its own (appended when met).
func planShards(sorted []Tensor, maxSize int64) [][]Tensor {
	var shards [][]Tensor
	var cur []Tensor
	var curSize int64
	for _, t := range sorted {
		size := int64(len(t.Data))
		if size > maxSize {
			shards = append(shards, []Tensor{t})
			continue
		}
		if curSize+size > maxSize {
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, t)
		curSize += size
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	return shards
}

// WriteSharded writes the tensors into dir as transformers' save_pretrained
// does with max_shard_size: a single model.safetensors when everything fits
// in one shard, else model-0000i-of-0000n.safetensors files and
// model.safetensors.index.json ({"metadata": {"total_size": N},
// "weight_map": {...}}, indented by 2, keys sorted, trailing newline). Each
// shard carries the same __metadata__. Every file is written atomically and
// the index last. It returns the base names written, index last.
func WriteSharded(dir string, tensors []Tensor, metadata map[string]string, maxShardSize int64) ([]string, error) {
	if maxShardSize <= 0 {
		return nil, fmt.Errorf("safetensors: max shard size must be positive, got %d", maxShardSize)
	}
	sorted, err := sortedTensors(tensors)
	if err != nil {
		return nil, err
	}
	shards := planShards(sorted, maxShardSize)
	if len(shards) <= 1 {
		if err := WriteFile(filepath.Join(dir, SingleFileName), sorted, metadata); err != nil {
			return nil, err
		}
		return []string{SingleFileName}, nil
	}
	var names []string
	weightMap := map[string]string{}
	var total int64
	for i, shard := range shards {
		name := ShardFileName(i+1, len(shards))
		if err := WriteFile(filepath.Join(dir, name), shard, metadata); err != nil {
			return nil, err
		}
		for _, t := range shard {
			weightMap[t.Name] = name
			total += int64(len(t.Data))
		}
		names = append(names, name)
	}
	idx, err := marshalIndex(Index{Metadata: map[string]any{"total_size": total}, WeightMap: weightMap})
	if err != nil {
		return nil, err
	}
	err = writeAtomic(filepath.Join(dir, IndexFileName), func(w io.Writer) error {
		_, err := w.Write(idx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return append(names, IndexFileName), nil
}

// marshalIndex renders the index as Python's json.dumps(index, indent=2,
// sort_keys=True) + "\n" does (ensure_ascii included).
func marshalIndex(idx Index) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(idx); err != nil {
		return nil, fmt.Errorf("safetensors: encoding index: %w", err)
	}
	// ensure_ascii: escape every non-ASCII character as \uXXXX (surrogate
	// pairs above the BMP). Non-ASCII bytes only occur inside strings.
	out := make([]byte, 0, b.Len())
	for s := b.Bytes(); len(s) > 0; {
		r, size := utf8.DecodeRune(s)
		switch {
		case r < 0x80:
			out = append(out, s[0])
		case r == 0x2028 || r == 0x2029 || r <= 0xffff:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			r -= 0x10000
			out = fmt.Appendf(out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		}
		s = s[size:]
	}
	return out, nil
}
