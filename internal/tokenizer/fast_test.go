package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// randomTexts builds n deterministic strings of up to maxParts pieces from
// an alphabet of characters that stress the split patterns.
func randomTexts(n, maxParts int) []string {
	alphabet := []string{"a", "Z", "é", "한", "中", "1", "٣", "²", " ", "  ", "\t", "\n", "\r", "\r\n", "'", "'s", "'S", "'ll", "'LL", "'ſ", "'re", "!", "?", "😀", ".", "\u00a0", "\u3000", "\u200b", "\u0085", "\ufeff", "x", "\u0301", "Hello", " world", "<|im_end|>", "<s>", "<|begin_of_text|>", "123456"}
	r := rand.New(rand.NewPCG(7, 11))
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for k := r.IntN(maxParts); k >= 0; k-- {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		out[i] = b.String()
	}
	return out
}

// TestFastMatchers checks the hand-written matchers against the
// backtracking engine on the same patterns.
func TestFastMatchers(t *testing.T) {
	inputs := append(corpusTexts(t), randomTexts(3000, 16)...)
	for _, src := range []string{gpt2Pattern, llama3Pattern, qwen2Pattern} {
		re, err := compileRegex(src)
		if err != nil {
			t.Fatal(err)
		}
		slow := &splitPattern{re: re, src: src}
		fast := &splitPattern{re: re, src: src}
		attachFastMatcher(fast)
		if fast.fast == nil {
			t.Fatalf("no fast matcher for %q", src)
		}
		for _, in := range inputs {
			want := slow.find(in, nil)
			got := fast.find(in, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("pattern %q on %q:\n fast %v\n slow %v", src[:20], in, got, want)
			}
		}
	}
}

// TestRealTokenizersUseFastMatchers: the shipped Llama 3 and Qwen 3 files
// carry exactly the patterns the fast matchers implement.
func TestRealTokenizersUseFastMatchers(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3"} {
		tk := loadReal(t, name)
		seq, ok := tk.pre.(seqPre)
		if !ok {
			t.Fatalf("%s: pre-tokenizer is %T", name, tk.pre)
		}
		sp, ok := seq[0].(*splitPre)
		if !ok || sp.pat.fast == nil {
			t.Errorf("%s: Split has no fast matcher", name)
		}
	}
}
