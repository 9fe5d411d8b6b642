package tokenizer

import (
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLoad feeds arbitrary bytes to Parse: it must return a tokenizer or an
// error, never panic; a tokenizer that loads must encode and decode.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"testdata/tiny_spm.json", "testdata/tiny_metaspace.json"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
		"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)|\\s+|(?i:ab)+"}, "behavior": "Contiguous", "invert": true},
		"decoder": {"type": "Strip", "content": "a", "start": 2, "stop": 1}}`))
	f.Add([]byte(`{"model": {"vocab": {"a": 0}, "merges": [["a", "a"]]}}`))
	f.Add([]byte(`{"added_tokens": [{"id": 0, "content": "x", "single_word": true, "lstrip": true, "rstrip": true}], "model": {"vocab": {"x": 0}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range []string{"", "hello world", "  a\n\nb 123 한국어 😀 x", "\xff"} {
			ids := tk.Encode(s, true)
			_ = tk.Decode(ids, false)
			_ = tk.Decode(ids, true)
		}
	})
}

// FuzzEncode runs text through every real tokenizer (and the fixtures):
// no panic, and decode(encode(x)) == x for the byte-level ones.
func FuzzEncode(f *testing.F) {
	for _, l := range corpusTexts(f) {
		f.Add(l)
	}
	f.Add("a\u0301\u200d\ufeff\x85 \t\t\r\n")
	type entry struct {
		tk       *Tokenizer
		lossless bool // decode(encode(x)) == normalize(x)
	}
	var tks []entry
	for _, name := range realTokenizers {
		if _, err := os.Stat(modelDir(name) + "/tokenizer.json"); err != nil {
			continue
		}
		tk := loadReal(f, name)
		tks = append(tks, entry{tk, name != "llama2"}) // the byte-level ones
	}
	for _, name := range []string{"tiny_spm.json", "tiny_metaspace.json"} {
		tks = append(tks, entry{loadFixture(f, name), false})
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		for _, e := range tks {
			ids := e.tk.Encode(s, false)
			got := e.tk.Decode(ids, false)
			want := s
			if e.tk.norm != nil {
				want = e.tk.norm.normalize(s) // Qwen: NFC
			}
			if e.lossless && got != want {
				t.Fatalf("round trip: %q -> %v -> %q", s, ids, got)
			}
			_ = e.tk.Decode(ids, true)
		}
	})
}
