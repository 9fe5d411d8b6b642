package timeest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/data"
)

// writeDataset writes a dataset directory of one split ("train") with a
// shard per group of samples, and its manifest.
func writeDataset(t *testing.T, flags uint32, packing bool, examples int64, shards ...[]data.Sample) string {
	t.Helper()
	dir := t.TempDir()
	m := data.Manifest{ShardVersion: data.ShardVersion, Kind: "text", Packing: packing, Examples: examples, Splits: map[string]*data.Split{"train": {}}}
	for i, samples := range shards {
		w := data.NewShardWriter(flags)
		for _, s := range samples {
			if err := w.Add(s); err != nil {
				t.Fatal(err)
			}
		}
		name := filepath.Join("train", "shard-"+string(rune('0'+i))+".bin")
		if err := os.MkdirAll(filepath.Join(dir, "train"), 0o755); err != nil {
			t.Fatal(err)
		}
		info, err := w.WriteFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		info.File = name
		sp := m.Splits["train"]
		sp.Shards = append(sp.Shards, info)
		sp.Samples += info.Samples
		m.SamplesWritten += info.Samples
		m.Tokens += info.Tokens
		m.TrainableTokens += info.TrainableTokens
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, data.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sample is a row of n tokens whose first prompt are not trained.
func sample(n, prompt int) data.Sample {
	s := data.Sample{Tokens: make([]uint32, n), Mask: make([]bool, n)}
	for i := range s.Mask {
		s.Mask[i] = i >= prompt
	}
	return s
}

func TestReadData(t *testing.T) {
	// Plain text: every token trained but each row's first.
	dir := writeDataset(t, 0, false, 0, []data.Sample{sample(5, 0), sample(9, 0)}, []data.Sample{sample(3, 0)})
	d, err := ReadData(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Lengths, []int{5, 9, 3}) || d.Trained != 14.0/17 {
		t.Errorf("text: %+v, want lengths 5 9 3 and 14/17 trained", d)
	}
	// SFT: the trainable tokens.
	dir = writeDataset(t, 0, false, 0, []data.Sample{sample(10, 4), sample(6, 2)})
	if d, err = ReadData(dir, false); err != nil || d.Trained != 10.0/16 || d.Units() != 2 {
		t.Errorf("sft: %+v, %v", d, err)
	}
	// Pairs.
	dir = writeDataset(t, data.FlagPairs, false, 0, []data.Sample{sample(6, 2), sample(8, 2), sample(4, 1), sample(5, 1)})
	if d, err = ReadData(dir, true); err != nil || d.Units() != 2 || !d.Pairs {
		t.Errorf("pairs: %+v, %v", d, err)
	}
	if _, err := ReadData(dir, false); err == nil || !strings.Contains(err.Error(), "holds pairs") {
		t.Errorf("pairs read as rows: %v", err)
	}
	// Prompts: the longest untrained prefix of a sample that has both;
	// of pairs, the chosen sides.
	long, n, err := LongestPrompt(dir)
	if err != nil || long != 2 || n != 2 {
		t.Errorf("LongestPrompt(pairs) = %d, %d, %v; want 2, 2", long, n, err)
	}
	dir = writeDataset(t, 0, false, 0, []data.Sample{sample(10, 4), sample(6, 0), sample(3, 3), sample(9, 7)})
	if long, n, err = LongestPrompt(dir); err != nil || long != 7 || n != 2 {
		t.Errorf("LongestPrompt = %d, %d, %v; want 7, 2", long, n, err)
	}
}

// TestReadDataBad checks the errors for datasets and shards that cannot be
// read: they name the file and what is wrong.
func TestReadDataBad(t *testing.T) {
	good := func() (string, string) {
		dir := writeDataset(t, 0, false, 0, []data.Sample{sample(5, 0), sample(9, 0)})
		return dir, filepath.Join(dir, "train", "shard-0.bin")
	}
	cases := []struct {
		name, want string
		spoil      func(dir, shard string) error
	}{
		{"no manifest", "manifest", func(dir, _ string) error { return os.Remove(filepath.Join(dir, data.ManifestName)) }},
		{"missing shard", "shard-0.bin", func(_, shard string) error { return os.Remove(shard) }},
		{"short header", "header", func(_, shard string) error { return os.Truncate(shard, 10) }},
		{"bad magic", "not a lathe shard", func(_, shard string) error { return patch(shard, 0, []byte("NOTSHARD")) }},
		{"bad version", "version 9", func(_, shard string) error { return patch(shard, 8, []byte{9, 0, 0, 0}) }},
		{"too many samples", "do not fit", func(_, shard string) error { return patch(shard, 16, []byte{0, 0, 0, 1, 0, 0, 0, 0}) }},
		{"offsets out of order", "out of order", func(_, shard string) error {
			return patch(shard, data.ShardHeaderSize+8, []byte{99, 0, 0, 0, 0, 0, 0, 0})
		}},
	}
	for _, c := range cases {
		dir, shard := good()
		if err := c.spoil(dir, shard); err != nil {
			t.Fatal(err)
		}
		_, err := ReadData(dir, false)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", c.name, err, c.want)
		}
	}
}

func patch(path string, at int64, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(b, at)
	return err
}
