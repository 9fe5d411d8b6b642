package data

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func benchJSONL(rows int) []byte {
	var b bytes.Buffer
	pad := strings.Repeat("lorem ipsum dolor ", 20)
	for i := range rows {
		fmt.Fprintf(&b, "{\"instruction\": \"question %d %s\", \"input\": \"\", \"output\": \"answer %d %s\"}\n", i, pad, i, pad)
	}
	return b.Bytes()
}

// BenchmarkReadJSONL measures streaming alpaca JSONL decoding (MB/s).
func BenchmarkReadJSONL(b *testing.B) {
	data := benchJSONL(2000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := NewReader(Spec{Format: FormatAlpaca}, "bench.jsonl", bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkBuild measures render + tokenize (byte encoder) + shuffle + pack +
// shard writing, reported per input byte.
func BenchmarkBuild(b *testing.B) {
	data := benchJSONL(2000)
	tm, _ := LookupTemplate("qwen")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := NewReader(Spec{Format: FormatAlpaca}, "bench.jsonl", bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Build(r, b.TempDir(), BuildOptions{Template: tm, Encoder: byteEncoder{}, CutoffLen: 1024, Packing: true, ValSize: 0.05, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenShard measures opening and fully validating a shard (MB/s).
func BenchmarkOpenShard(b *testing.B) {
	w := NewShardWriter(FlagPacked)
	for i := range 1000 {
		n := 500
		s := Sample{Tokens: make([]uint32, n), Mask: make([]bool, n), SegmentIDs: make([]uint32, n)}
		for j := range n {
			s.Tokens[j] = uint32(i * j)
			s.Mask[j] = j%3 == 0
		}
		if err := w.Add(s); err != nil {
			b.Fatal(err)
		}
	}
	p := filepath.Join(b.TempDir(), "x.shard")
	info, err := w.WriteFile(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.Bytes)
	for b.Loop() {
		s, err := OpenShard(p)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
