package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func loadFixture(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tk, err := Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return tk
}

func TestFixtureEncodeDecode(t *testing.T) {
	tests := []struct {
		file      string
		text      string
		add       bool
		want      []int
		decoded   string // Decode(want, skipSpecial=true)
		decodeAll string // Decode(want, false); "" means same as decoded
	}{
		// SentencePiece style: Prepend/Replace normalizer, whole-text BPE.
		{"tiny_spm.json", "hello world", true, []int{1, 279, 284}, "hello world", "<s> hello world"},
		{"tiny_spm.json", "hello world", false, []int{279, 284}, "hello world", ""},
		// 'i' is not in the vocab: byte fallback <0x69>.
		{"tiny_spm.json", "hi", true, []int{1, 274, 108}, "hi", "<s> hi"},
		{"tiny_spm.json", "ab ab", false, []int{259, 285, 259, 285}, "ab ab", ""},
		// Korean: three UTF-8 bytes per syllable, all byte-fallback.
		{"tiny_spm.json", "한", false, []int{259, 3 + 0xED, 3 + 0x95, 3 + 0x9C}, "한", ""},
		// Special token in text splits it; each side is normalized alone.
		{"tiny_spm.json", "ab</s>ab", false, []int{259, 285, 2, 259, 285}, "ab ab", "ab</s> ab"},
		{"tiny_spm.json", "", true, []int{1}, "", "<s>"},
		// Metaspace(first) + Digits + NFKC/Lowercase + BOS/EOS template.
		{"tiny_metaspace.json", "Hello World", true, []int{1, 21, 26, 2}, "hello world", "<s> hello world</s>"},
		{"tiny_metaspace.json", "hello 123", false, []int{21, 4, 12, 13, 14}, "hello 123", ""},
		// lstrip on <mask> swallows the space before it.
		{"tiny_metaspace.json", "hello <mask>!", false, []int{21, 3, 15}, "hello!", "hello<mask>!"},
		// Unknown characters fuse into one <unk>.
		{"tiny_metaspace.json", "xyz", false, []int{4, 0}, "", "<unk>"},
		// Fullwidth digits become ASCII under NFKC; the first digit piece
		// starts the input, so Metaspace("first") prepends to it only.
		{"tiny_metaspace.json", "１２", false, []int{4, 12, 13}, "12", ""},
	}
	for _, tc := range tests {
		tk := loadFixture(t, tc.file)
		got := tk.Encode(tc.text, tc.add)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s Encode(%q, %v) = %v, want %v", tc.file, tc.text, tc.add, got, tc.want)
			continue
		}
		if d := tk.Decode(got, true); d != tc.decoded {
			t.Errorf("%s Decode(%v, skip) = %q, want %q", tc.file, got, d, tc.decoded)
		}
		all := tc.decodeAll
		if all == "" {
			all = tc.decoded
		}
		if d := tk.Decode(got, false); d != all {
			t.Errorf("%s Decode(%v) = %q, want %q", tc.file, got, d, all)
		}
	}
}

func TestEncodePair(t *testing.T) {
	tk := loadFixture(t, "tiny_metaspace.json")
	got := tk.EncodePair("hello", "world", true)
	want := []int{1, 21, 2, 26, 2}
	if !slices.Equal(got, want) {
		t.Fatalf("EncodePair = %v, want %v", got, want)
	}
}

func TestEncodeBatchDeterministic(t *testing.T) {
	tk := loadFixture(t, "tiny_spm.json")
	texts := corpusTexts(t)
	a := tk.EncodeBatch(texts, true)
	for i, s := range texts {
		if !slices.Equal(a[i], tk.Encode(s, true)) {
			t.Fatalf("EncodeBatch[%d] differs from Encode", i)
		}
	}
	b := tk.EncodeBatch(texts, true)
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			t.Fatalf("EncodeBatch not deterministic at %d", i)
		}
	}
}

func TestVocabLookups(t *testing.T) {
	tk := loadFixture(t, "tiny_metaspace.json")
	if id, ok := tk.TokenToID("<mask>"); !ok || id != 3 {
		t.Errorf("TokenToID(<mask>) = %d, %v", id, ok)
	}
	if s, ok := tk.IDToToken(26); !ok || s != "▁world" {
		t.Errorf("IDToToken(26) = %q, %v", s, ok)
	}
	if _, ok := tk.IDToToken(9999); ok {
		t.Error("IDToToken(9999) should fail")
	}
	if !tk.IsSpecial(1) || tk.IsSpecial(21) {
		t.Error("IsSpecial wrong")
	}
	if tk.VocabSize() != 27 {
		t.Errorf("VocabSize = %d, want 27", tk.VocabSize())
	}
}

// TestLoadErrors checks that malformed files give errors naming the path.
func TestLoadErrors(t *testing.T) {
	base, err := os.ReadFile("testdata/tiny_metaspace.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to, wantPath string
	}{
		{"merge not in vocab", `["o", "r"]`, `["o", "zz"]`, "model.merges[7]:"},
		{"merge bad shape", `["o", "r"]`, `["o"]`, "model.merges[7]:"},
		{"merge number", `["o", "r"]`, `17`, "model.merges[7]:"},
		{"vocab bad id", `"hello": 20`, `"hello": "x"`, `model.vocab["hello"]:`},
		{"unknown normalizer", `"type": "Lowercase"`, `"type": "Shout"`, "normalizer.normalizers[1].type:"},
		{"bad prepend scheme", `"prepend_scheme": "first"`, `"prepend_scheme": "sometimes"`, "pre_tokenizer.pretokenizers[1].prepend_scheme:"},
		{"bad added id", `"id": 3,`, `"id": "three",`, "added_tokens[3].id:"},
		{"template unknown special", `{"id": "</s>", "type_id": 1}`, `{"id": "<eos>", "type_id": 1}`, "post_processor.pair[4].SpecialToken.id:"},
		{"unk not in vocab", `"unk_token": "<unk>"`, `"unk_token": "<nope>"`, "model.unk_token:"},
		{"unsupported model", `"type": "BPE"`, `"type": "Unigram"`, "model.type:"},
	}
	for _, tc := range tests {
		if !strings.Contains(string(base), tc.from) {
			t.Fatalf("%s: fixture lacks %q", tc.name, tc.from)
		}
		data := strings.Replace(string(base), tc.from, tc.to, 1)
		_, err := Parse([]byte(data))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.wantPath) {
			t.Errorf("%s: error %q does not start with %q", tc.name, err, tc.wantPath)
		}
		var pe *pathError
		if !errors.As(err, &pe) {
			t.Errorf("%s: error is not a path error", tc.name)
		}
	}
	for _, bad := range []string{``, `[]`, `{"model": 3}`, `{"model": {"type": "BPE"}}`, `{"model": {"vocab": {}, "merges": "x"}}`,
		`{"model": {"vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(?<=a)b"}, "behavior": "Isolated"}}`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
	if _, err := Load("testdata/does-not-exist.json"); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestRegexAgainstRE2(t *testing.T) {
	// Patterns without lookahead must agree with Go's regexp (leftmost-first).
	patterns := []string{
		`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+`,
		`[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+`,
		`(?i:ab|c)+x?`, `a{2,3}?b|\d+`, `[a-c-]+|\.`, `(ab)*c`, `x*`,
	}
	inputs := []string{"", "Hello world's 123 4567 ... \n\n  x", "abABcCx aab aaab 12 a-c.b", "ababcx c", "안녕 123 !!\r\n", "xxx", "\xffab\xfe c\xff"}
	for _, p := range patterns {
		re, err := compileRegex(p)
		if err != nil {
			t.Fatalf("compile %q: %v", p, err)
		}
		std := regexp.MustCompile(p)
		for _, in := range inputs {
			want := std.FindAllStringIndex(in, -1)
			var wantNE [][2]int
			for _, m := range want {
				if m[1] > m[0] {
					wantNE = append(wantNE, [2]int{m[0], m[1]})
				}
			}
			got := (&splitPattern{re: re}).find(in, nil)
			if !slices.Equal(got, wantNE) {
				t.Errorf("pattern %q on %q: got %v, want %v", p, in, got, wantNE)
			}
		}
	}
}

func TestRegexLookahead(t *testing.T) {
	tests := []struct {
		pat, in string
		want    []string
	}{
		{`\s+(?!\S)|\s+`, "a   b", []string{"  ", " "}},
		{`\s+(?!\S)|\s+`, "a   ", []string{"   "}},
		{`a(?=b)`, "ab ac ab", []string{"a", "a"}},
		{`(?i:'s|'t)`, "IT'S it's 'T", []string{"'S", "'s", "'T"}},
		{`\p{N}{1,3}`, "1234567", []string{"123", "456", "7"}},
		{`^a|b$`, "aab", []string{"a", "b"}},
	}
	for _, tc := range tests {
		re, err := compileRegex(tc.pat)
		if err != nil {
			t.Fatalf("compile %q: %v", tc.pat, err)
		}
		var got []string
		for _, m := range (&splitPattern{re: re}).find(tc.in, nil) {
			got = append(got, tc.in[m[0]:m[1]])
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q on %q = %q, want %q", tc.pat, tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{`(?<=a)b`, `a**`, `(a`, `[a`, `\p{Nope}`, `(a*)*`, `a{3,2}`, `\k`} {
		if _, err := compileRegex(bad); err == nil {
			t.Errorf("compile %q succeeded", bad)
		}
	}
}

func TestConfig(t *testing.T) {
	c, err := LoadConfig("testdata/config/object_form.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.BOSToken == nil || *c.BOSToken != "<s>" || c.EOSToken == nil || *c.EOSToken != "</s>" || c.PadToken != nil || c.UnkToken == nil || *c.UnkToken != "<unk>" {
		t.Errorf("special tokens wrong: %+v", c)
	}
	if c.AddBOSToken == nil || !*c.AddBOSToken || c.AddEOSToken == nil || *c.AddEOSToken {
		t.Error("add_bos/add_eos wrong")
	}
	if len(c.ChatTemplates) != 2 || c.ChatTemplates["tool_use"] != "{{ tools }}" || !strings.HasPrefix(c.ChatTemplate, "{% for m") {
		t.Errorf("chat templates wrong: %q", c.ChatTemplates)
	}
	if c.ModelMaxLength != 1<<63-1 || c.TokenizerClass != "LlamaTokenizer" {
		t.Errorf("max length %d class %q", c.ModelMaxLength, c.TokenizerClass)
	}
	if at := c.AddedTokensDecoder[0]; at.Content != "<unk>" || !at.Special {
		t.Errorf("added_tokens_decoder wrong: %+v", c.AddedTokensDecoder)
	}
	c, err = LoadConfig("testdata/config/string_form.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.BOSToken != nil || *c.EOSToken != "<|im_end|>" || *c.PadToken != "<|endoftext|>" || c.ModelMaxLength != 131072 || c.AddBOSToken != nil {
		t.Errorf("string form wrong: %+v", c)
	}
	if !strings.Contains(c.ChatTemplate, "<|im_start|>") || c.ChatTemplates["default"] != c.ChatTemplate {
		t.Errorf("chat template wrong: %q", c.ChatTemplate)
	}
	for file, wantPath := range map[string]string{
		"bad_chat_template.json": "chat_template[0].template:",
		"bad_added_decoder.json": "added_tokens_decoder.7.content:",
		"../does-not-exist.json": "",
		"../tiny_metaspace.json": "",
	} {
		_, err := LoadConfig(filepath.Join("testdata/config", file))
		if wantPath == "" {
			if file == "../tiny_metaspace.json" {
				if err != nil {
					t.Errorf("%s: unexpected error %v", file, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s: no error", file)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), wantPath) {
			t.Errorf("%s: error %v, want path %q", file, err, wantPath)
		}
	}
}
