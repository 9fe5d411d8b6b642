package cache

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// benchTreeMB is the size of the tree hashed by the benchmarks
// (LATHE_BENCH_TREE_MB, default 256).
func benchTreeMB() int {
	if n, err := strconv.Atoi(os.Getenv("LATHE_BENCH_TREE_MB")); err == nil && n > 0 {
		return n
	}
	return 256
}

// makeBenchTree writes a tree of about mb MiB: a few large "weight" files
// and many small ones, like a model directory plus a tokenized data set.
func makeBenchTree(b *testing.B, dir string, mb int) int64 {
	b.Helper()
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	var total int64
	write := func(p string, size int) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		for size > 0 {
			n := min(size, len(buf))
			rng.Read(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				b.Fatal(err)
			}
			size -= n
			total += int64(n)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	small := 256 // 256 files of 16 KiB = 4 MiB
	for i := range small {
		write(filepath.Join(dir, "shards", fmt.Sprintf("%02d", i%16), fmt.Sprintf("part-%04d.bin", i)), 16<<10)
	}
	big := max(mb-4, 1)
	for i := 0; big > 0; i++ {
		n := min(big, 32)
		write(filepath.Join(dir, fmt.Sprintf("model-%02d.safetensors", i)), n<<20)
		big -= n
	}
	return total
}

func BenchmarkHashTree(b *testing.B) {
	dir := b.TempDir()
	size := makeBenchTree(b, dir, benchTreeMB())
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, err := HashTree(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHashPath compares a cold HashPath (content read) with a warm one
// (stat cache hit) on the same tree and reports the ratio.
func BenchmarkHashPath(b *testing.B) {
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	size := makeBenchTree(b, tree, benchTreeMB())
	old := time.Now().Add(-time.Hour)
	filepath.Walk(tree, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	s := openStore(b)
	start := time.Now()
	if _, err := s.HashPath(tree); err != nil {
		b.Fatal(err)
	}
	cold := time.Since(start)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.HashPath(tree); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	warm := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(cold)/1e6, "cold-ms")
	b.ReportMetric(float64(cold)/float64(warm), "cold/warm")
}

// benchStore fills a store with n records of one small artifact each.
func benchStore(b *testing.B, n int) (*Store, []string) {
	b.Helper()
	s := openStore(b)
	keys := make([]string, n)
	for i := range keys {
		k := NewKey([]string{"bench", strconv.Itoa(i)})
		st, err := s.NewStaging()
		if err != nil {
			b.Fatal(err)
		}
		os.MkdirAll(filepath.Join(st.Dir, "out"), 0o755)
		os.WriteFile(filepath.Join(st.Dir, "out", "f"), []byte(k.Sum), 0o644)
		if _, err := s.Commit(st, []string{"out"}, Record{Key: k.Sum, KeyText: k.Text}); err != nil {
			b.Fatal(err)
		}
		keys[i] = k.Sum
	}
	return s, keys
}

// BenchmarkLookup is one cache hit.
func BenchmarkLookup(b *testing.B) {
	s, keys := benchStore(b, 200)
	i := 0
	for b.Loop() {
		rec, err := s.Lookup(keys[i%len(keys)])
		if err != nil || rec == nil {
			b.Fatal(rec, err)
		}
		i++
	}
}

// BenchmarkNoopRerun200 is the store side of a no-op rerun of a 200-stage
// pipeline: 200 lock+lookup+unlock cycles, all hits.
func BenchmarkNoopRerun200(b *testing.B) {
	s, keys := benchStore(b, 200)
	for b.Loop() {
		for _, k := range keys {
			unlock, err := s.Lock(b.Context(), k)
			if err != nil {
				b.Fatal(err)
			}
			if rec, err := s.Lookup(k); err != nil || rec == nil {
				b.Fatal(rec, err)
			}
			unlock()
		}
	}
}

// BenchmarkCommit commits a fresh artifact per iteration (staging writes
// excluded): small = 20 files of 4 KiB, large = 64 MiB in 2 files.
func BenchmarkCommit(b *testing.B) {
	for _, bc := range []struct {
		name        string
		files, size int
	}{{"small", 20, 4 << 10}, {"large", 2, 32 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			s := openStore(b)
			data := make([]byte, bc.size)
			rand.NewChaCha8([32]byte{2}).Read(data)
			b.SetBytes(int64(bc.files * bc.size))
			i := 0
			for b.Loop() {
				b.StopTimer()
				st, err := s.NewStaging()
				if err != nil {
					b.Fatal(err)
				}
				binary.LittleEndian.PutUint64(data, uint64(i)) // distinct content: no dedup
				for f := range bc.files {
					p := filepath.Join(st.Dir, "out", fmt.Sprintf("f%03d", f))
					os.MkdirAll(filepath.Dir(p), 0o755)
					if err := os.WriteFile(p, data, 0o644); err != nil {
						b.Fatal(err)
					}
				}
				k := NewKey([]string{"commit", strconv.Itoa(i)})
				i++
				b.StartTimer()
				if _, err := s.Commit(st, []string{"out"}, Record{Key: k.Sum, KeyText: k.Text}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
