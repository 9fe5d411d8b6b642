package tokenizer

import (
	"strings"
	"testing"
)

// BenchmarkEncode measures single-threaded encode of the corpus lines with
// each real tokenizer (warm cache). The lathe-vs-js comparison is bench/bench.sh.
func BenchmarkEncode(b *testing.B) {
	texts := corpusTexts(b)
	texts = texts[:len(texts)-1]
	size := 0
	for _, s := range texts {
		size += len(s)
	}
	for _, name := range realTokenizers {
		b.Run(name, func(b *testing.B) {
			tk := loadReal(b, name)
			b.SetBytes(int64(size))
			for b.Loop() {
				for _, s := range texts {
					tk.Encode(s, false)
				}
			}
		})
	}
	b.Run("train-700", func(b *testing.B) {
		lines := trainCorpus(b)
		b.SetBytes(int64(len(strings.Join(lines, "\n"))))
		for b.Loop() {
			trainSmall(b)
		}
	})
}
