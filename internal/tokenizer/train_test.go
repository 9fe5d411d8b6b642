package tokenizer

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// trainCorpus repeats the mixed corpus with small variations.
func trainCorpus(t testing.TB) []string {
	t.Helper()
	lines := corpusTexts(t)
	lines = lines[:len(lines)-1]
	var out []string
	for i := 0; i < 4; i++ {
		for j, l := range lines {
			switch (i + j) % 3 {
			case 0:
				out = append(out, l)
			case 1:
				out = append(out, strings.ToLower(l))
			default:
				out = append(out, l+" "+l)
			}
		}
	}
	return out
}

func trainSmall(t testing.TB) *Tokenizer {
	t.Helper()
	tk, err := Train(slices.Values(trainCorpus(t)), 700, []string{"<|endoftext|>", "<|pad|>"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestTrain(t *testing.T) {
	tk := trainSmall(t)
	if tk.VocabSize() != 700 {
		t.Errorf("VocabSize = %d, want 700", tk.VocabSize())
	}
	if id, ok := tk.TokenToID("<|pad|>"); !ok || id != 1 || !tk.IsSpecial(1) {
		t.Errorf("special token ids wrong: %d %v", id, ok)
	}
	// Deterministic: a second run writes identical bytes.
	var a, b bytes.Buffer
	if err := tk.WriteJSON(&a); err != nil {
		t.Fatal(err)
	}
	if err := trainSmall(t).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("training is not deterministic")
	}
	// Frequent words compress: "the" must be one token.
	if ids := tk.Encode("the", false); len(ids) != 1 {
		t.Errorf("Encode(the) = %v, want a single token", ids)
	}
	// The written file loads back and encodes the same; round trip holds.
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tk.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, text := range corpusTexts(t) {
		x := text + "<|endoftext|>"
		ids := tk.Encode(x, true)
		if !slices.Equal(ids, back.Encode(x, true)) {
			t.Fatalf("reloaded tokenizer encodes %q differently", truncate(x, 40))
		}
		if got := tk.Decode(ids, false); got != x {
			t.Fatalf("round trip: %q != %q", truncate(got, 60), truncate(x, 60))
		}
		if got := tk.Decode(ids, true); got != strings.ReplaceAll(x, "<|endoftext|>", "") {
			t.Fatalf("skip special: %q != %q", truncate(got, 60), truncate(text, 60))
		}
	}
	if _, err := Train(slices.Values([]string{"a"}), 10, nil, 1); err == nil {
		t.Error("vocabSize below 256 accepted")
	}
	if _, err := Train(slices.Values([]string{"a"}), 300, []string{"x", "x"}, 1); err == nil {
		t.Error("repeated special token accepted")
	}
}

// TestTrainedLoadsInJS: a tokenizer trained by lathe loads in tokenizers.js
// and encodes the corpus to the same ids.
func TestTrainedLoadsInJS(t *testing.T) {
	needNode(t)
	tk := trainSmall(t)
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tk.Save(path); err != nil {
		t.Fatal(err)
	}
	texts := append(corpusTexts(t), "<|endoftext|>hello<|pad|>")
	ref := jsEncode(t, path, "", texts, true)
	for i, text := range texts {
		got := tk.Encode(text, true)
		if !equalIDs(got, ref.IDs[i]) {
			d := firstDiff(got, ref.IDs[i])
			t.Errorf("text %d %q differs at %d: lathe %v js %v", i, truncate(text, 60), d, got[d:min(d+5, len(got))], ref.IDs[i][d:min(d+5, len(ref.IDs[i]))])
		}
		if ref.Decoded[i] != text {
			t.Errorf("js decode of text %d = %q", i, truncate(ref.Decoded[i], 60))
		}
	}
}

// TestPreTokenizerVariantsInJS swaps other pre-tokenizer set-ups into a
// trained tokenizer and cross-checks each with tokenizers.js: ByteLevel
// with add_prefix_space, and Split regexes that run on the backtracking
// engine (not the hand-written matchers).
func TestPreTokenizerVariantsInJS(t *testing.T) {
	needNode(t)
	var buf bytes.Buffer
	if err := trainSmall(t).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	orig := `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`
	if !strings.Contains(buf.String(), orig) {
		t.Fatal("unexpected pre_tokenizer in the written file")
	}
	variants := map[string]string{
		"prefix-space": `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}`,
		"split-generic": `"pre_tokenizer": {"type": "Sequence", "pretokenizers": [` +
			`{"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,2}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},` +
			`{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]}`,
		// (tokenizers.js does not implement the Merged*/Contiguous split
		// behaviors and its Removed keeps String delimiters, so Isolated and
		// Removed with a Regex are what can be cross-checked.)
		"digits-removed": `"pre_tokenizer": {"type": "Sequence", "pretokenizers": [` +
			`{"type": "Digits", "individual_digits": true},` +
			`{"type": "Split", "pattern": {"Regex": "o+|[xX]"}, "behavior": "Removed", "invert": false},` +
			`{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true}]}`,
	}
	texts := append(corpusTexts(t), randomTexts(200, 16)...)
	for name, repl := range variants {
		t.Run(name, func(t *testing.T) {
			data := strings.Replace(buf.String(), orig, repl, 1)
			tk, err := Parse([]byte(data))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "tokenizer.json")
			if err := tk.Save(path); err != nil {
				t.Fatal(err)
			}
			ref := jsEncode(t, path, "", texts, true)
			bad := 0
			for i, text := range texts {
				// Known tokenizers.js divergence: its \s includes U+FEFF
				// and excludes U+0085; Oniguruma (HF) and lathe use the
				// Unicode White_Space set (U+0085 in, U+FEFF out).
				if strings.ContainsAny(text, "\u0085\ufeff") {
					continue
				}
				if got := tk.Encode(text, true); !equalIDs(got, ref.IDs[i]) {
					if bad++; bad <= 3 {
						t.Errorf("text %d %q:\n lathe %v\n js    %v", i, truncate(text, 60), got, ref.IDs[i])
					}
				}
			}
		})
	}
}
