package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// File names used by transformers for a model's weights.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// Index is the content of a model.safetensors.index.json file.
type Index struct {
	// Metadata holds "total_size" (the sum of the tensors' byte sizes) and
	// whatever else the writer put there.
	Metadata map[string]any `json:"metadata"`
	// WeightMap maps each tensor name to the shard file holding it.
	WeightMap map[string]string `json:"weight_map"`
}

// Set is one logical checkpoint over one or more safetensors files (a
// single file, or the shards of an index). Tensor names are unique across
// the set. Its methods are safe for concurrent use until Close.
type Set struct {
	dir     string
	files   []*File // sorted by base name
	owner   map[string]*File
	tensors []TensorInfo // sorted by name
	index   *Index       // nil for a single file
}

// OpenDir opens the weights in dir: model.safetensors.index.json if present,
// else model.safetensors, else the only *.safetensors file in dir.
func OpenDir(dir string) (*Set, error) {
	idx := filepath.Join(dir, IndexFileName)
	if _, err := os.Stat(idx); err == nil {
		return OpenIndex(idx)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	single := filepath.Join(dir, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		return OpenSingle(single)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", dir, err)
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("safetensors: %s: no %s, %s or other *.safetensors file", dir, IndexFileName, SingleFileName)
	case 1:
		return OpenSingle(matches[0])
	}
	return nil, fmt.Errorf("safetensors: %s: %d *.safetensors files and no %s to say how they fit together", dir, len(matches), IndexFileName)
}

// OpenSingle opens one safetensors file as a Set.
func OpenSingle(path string) (*Set, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	s := &Set{dir: filepath.Dir(path), files: []*File{f}, owner: map[string]*File{}}
	s.tensors = f.Tensors()
	for _, t := range s.tensors {
		s.owner[t.Name] = f
	}
	return s, nil
}

// OpenIndex opens a sharded checkpoint from its index JSON. Every shard the
// weight map names is opened and validated; each tensor must be in the shard
// the map names, and each shard may hold only tensors the map assigns to it.
func OpenIndex(indexPath string) (*Set, error) {
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var idx Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w: %v", indexPath, ErrIndex, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: %w: empty or missing weight_map", indexPath, ErrIndex)
	}
	dir := filepath.Dir(indexPath)
	shardNames := map[string]bool{}
	for tensor, file := range idx.WeightMap {
		if file == "" || file != filepath.Base(file) || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			return nil, fmt.Errorf("safetensors: %s: %w: tensor %q maps to %q, which is not a file name in the index's directory", indexPath, ErrIndex, tensor, file)
		}
		shardNames[file] = true
	}
	names := make([]string, 0, len(shardNames))
	for n := range shardNames {
		names = append(names, n)
	}
	sort.Strings(names)
	s := &Set{dir: dir, owner: map[string]*File{}, index: &idx}
	byFile := map[string]*File{}
	for _, n := range names {
		f, err := Open(filepath.Join(dir, n))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("safetensors: %s: shard: %w", indexPath, err)
		}
		s.files = append(s.files, f)
		byFile[n] = f
	}
	for _, f := range s.files {
		base := filepath.Base(f.Path())
		for _, t := range f.tensors {
			want, ok := idx.WeightMap[t.Name]
			if !ok {
				s.Close()
				return nil, fmt.Errorf("safetensors: %s: %w: shard %s holds tensor %q that the weight_map does not list", indexPath, ErrIndex, base, t.Name)
			}
			if want != base {
				s.Close()
				return nil, fmt.Errorf("safetensors: %s: %w: tensor %q is in shard %s but the weight_map says %s", indexPath, ErrIndex, t.Name, base, want)
			}
			s.owner[t.Name] = f
			ti := t
			ti.Shape = slices.Clone(t.Shape)
			s.tensors = append(s.tensors, ti)
		}
	}
	for tensor, file := range idx.WeightMap {
		if _, ok := s.owner[tensor]; !ok {
			s.Close()
			return nil, fmt.Errorf("safetensors: %s: %w: tensor %q: weight_map names shard %s, which does not hold it", indexPath, ErrIndex, tensor, file)
		}
	}
	sort.Slice(s.tensors, func(a, b int) bool { return s.tensors[a].Name < s.tensors[b].Name })
	return s, nil
}

// Dir is the directory holding the set's files.
func (s *Set) Dir() string { return s.dir }

// Files returns the paths of the set's files, sorted.
func (s *Set) Files() []string {
	out := make([]string, len(s.files))
	for i, f := range s.files {
		out[i] = f.Path()
	}
	return out
}

// Sharded reports whether the set was opened from an index.
func (s *Set) Sharded() bool { return s.index != nil }

// Index returns the parsed index, or nil for a single file.
func (s *Set) Index() *Index { return s.index }

// Metadata returns the __metadata__ of a single file, or the string values of
// the first shard's __metadata__ for a sharded set (transformers writes the
// same metadata into every shard).
func (s *Set) Metadata() map[string]string {
	if len(s.files) == 0 {
		return nil
	}
	return s.files[0].Metadata()
}

// Tensors returns every tensor of the set sorted by name; TensorInfo.File
// says which file holds it.
func (s *Set) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(s.tensors))
	for i, t := range s.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Tensor returns the named tensor's description.
func (s *Set) Tensor(name string) (TensorInfo, bool) {
	f, ok := s.owner[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensor(name)
}

// Bytes returns a copy of the named tensor's raw data.
func (s *Set) Bytes(name string) ([]byte, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Bytes(name)
}

// View returns the named tensor's raw data, zero-copy where mapped (see
// File.View).
func (s *Set) View(name string) ([]byte, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.View(name)
}

// Float32 reads the named tensor converted to float32.
func (s *Set) Float32(name string) ([]float32, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Float32(name)
}

// Close closes every file of the set.
func (s *Set) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (s *Set) file(name string) (*File, error) {
	f, ok := s.owner[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", s.dir, name, ErrNotFound)
	}
	return f, nil
}
