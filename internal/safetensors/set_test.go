package safetensors

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func shardTensors(rng *rand.Rand) []Tensor {
	// Sizes in bytes: a 16, b 24, c 8, d 40 (over the limit), e 16, f 4.
	mk := func(name string, dt DType, n int) Tensor {
		size, _ := byteSize(dt, uint64(n))
		return Tensor{Name: name, DType: dt, Shape: []int{n}, Data: randomBytes(rng, int(size))}
	}
	return []Tensor{mk("f", U8, 4), mk("e", BF16, 8), mk("d", F32, 10), mk("c", F64, 1), mk("b", I16, 12), mk("a", F32, 4)}
}

func TestShardedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	tensors := shardTensors(rng)
	dir := t.TempDir()
	meta := map[string]string{"format": "pt"}
	names, err := WriteSharded(dir, tensors, meta, 32)
	if err != nil {
		t.Fatal(err)
	}
	// In name order: a(16) opens a shard; b(24) would make 40 > 32, so the
	// shard {a} is closed and b opens the next; c(8) joins b (32); d(40) > 32
	// gets a shard of its own, appended at once (before {b, c}, which is
	// still open); e(16) would make 48, so {b, c} is closed; f(4) joins e.
	wantShards := map[string][]string{
		"model-00001-of-00004.safetensors": {"a"},
		"model-00002-of-00004.safetensors": {"d"},
		"model-00003-of-00004.safetensors": {"b", "c"},
		"model-00004-of-00004.safetensors": {"e", "f"},
	}
	wantNames := []string{"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
		"model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors", IndexFileName}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("files %v, want %v", names, wantNames)
	}
	idx, err := os.ReadFile(filepath.Join(dir, IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	wantIdx := `{
  "metadata": {
    "total_size": 108
  },
  "weight_map": {
    "a": "model-00001-of-00004.safetensors",
    "b": "model-00003-of-00004.safetensors",
    "c": "model-00003-of-00004.safetensors",
    "d": "model-00002-of-00004.safetensors",
    "e": "model-00004-of-00004.safetensors",
    "f": "model-00004-of-00004.safetensors"
  }
}
`
	if string(idx) != wantIdx {
		t.Errorf("index:\n%s\nwant:\n%s", idx, wantIdx)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Sharded() || len(s.Files()) != 4 || !reflect.DeepEqual(s.Metadata(), meta) {
		t.Errorf("sharded=%v files=%v metadata=%v", s.Sharded(), s.Files(), s.Metadata())
	}
	infos := s.Tensors()
	if len(infos) != len(tensors) {
		t.Fatalf("%d tensors, want %d", len(infos), len(tensors))
	}
	for i, info := range infos {
		if i > 0 && infos[i-1].Name >= info.Name {
			t.Errorf("not sorted at %q", info.Name)
		}
		found := false
		for _, n := range wantShards[info.File] {
			found = found || n == info.Name
		}
		if !found {
			t.Errorf("tensor %q reported in %s", info.Name, info.File)
		}
	}
	for _, want := range tensors {
		got, err := s.Bytes(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Data) {
			t.Errorf("%q differs", want.Name)
		}
	}
	if _, err := s.Float32("a"); err != nil {
		t.Error(err)
	}
	if _, err := s.View("zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestShardedSingle(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	tensors := shardTensors(rng)
	dir := t.TempDir()
	names, err := WriteSharded(dir, tensors, nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, []string{SingleFileName}) {
		t.Fatalf("files %v", names)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Sharded() || s.Index() != nil || len(s.Tensors()) != len(tensors) {
		t.Errorf("sharded=%v tensors=%d", s.Sharded(), len(s.Tensors()))
	}
	// A directory whose only weights file has another name.
	other := t.TempDir()
	if err := WriteFile(filepath.Join(other, "adapter_model.safetensors"), tensors[:1], nil); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenDir(other)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if err := WriteFile(filepath.Join(other, "second.safetensors"), tensors[:1], nil); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(other); err == nil || !strings.Contains(err.Error(), "2 *.safetensors") {
		t.Errorf("two unindexed files: %v", err)
	}
	if _, err := OpenDir(t.TempDir()); err == nil {
		t.Error("empty directory opened")
	}
}

func TestBadIndex(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	base := t.TempDir()
	if _, err := WriteSharded(base, shardTensors(rng), nil, 32); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, index, want string
	}{
		{"not json", `{`, "invalid index"},
		{"no weight map", `{"metadata":{}}`, "weight_map"},
		{"escape", `{"weight_map":{"a":"../model-00001-of-00004.safetensors"}}`, "not a file name"},
		{"missing shard", `{"weight_map":{"a":"nope.safetensors"}}`, "nope.safetensors"},
		{"wrong shard", `{"weight_map":{"a":"model-00003-of-00004.safetensors","b":"model-00001-of-00004.safetensors","c":"model-00003-of-00004.safetensors"}}`, `tensor "a" is in shard model-00001-of-00004.safetensors but the weight_map says model-00003`},
		{"not in named shard", `{"weight_map":{"a":"model-00003-of-00004.safetensors","b":"model-00003-of-00004.safetensors","c":"model-00003-of-00004.safetensors"}}`, `tensor "a": weight_map names shard model-00003-of-00004.safetensors, which does not hold it`},
		{"unlisted tensor", `{"weight_map":{"b":"model-00003-of-00004.safetensors"}}`, `"c" that the weight_map does not list`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(base, "case.index.json")
			if err := os.WriteFile(p, []byte(c.index), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := OpenIndex(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}
