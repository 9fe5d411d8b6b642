package sentencepiece

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkEncode encodes the multilingual corpus line by line with each
// fixture model; compare with `spm_encode` on the same input (see the
// package report) for a ratio.
func BenchmarkEncode(b *testing.B) {
	corpus, err := os.ReadFile(filepath.Join("..", "testdata", "corpus.txt"))
	if err != nil {
		b.Fatal(err)
	}
	lines := splitLines(corpus)
	for _, name := range []string{"unigram_nmt_bytes", "bpe_identity_user"} {
		b.Run(name, func(b *testing.B) {
			m, err := Load(filepath.Join("testdata", name+".model"))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(corpus)))
			for b.Loop() {
				for _, l := range lines {
					m.Encode(l)
				}
			}
		})
	}
}
