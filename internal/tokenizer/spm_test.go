package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// spmFixture is a model from sentencepiece/testdata (trained by Debian's
// spm_train, encoded by spm_encode; see its golden_test.go).
func spmFixture(name string) string {
	return filepath.Join("sentencepiece", "testdata", name+".model")
}

// spmDir makes a model directory holding only tokenizer.model (a copy of
// fixture) and the given extra files.
func spmDir(t *testing.T, fixture string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(spmFixture(fixture))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ModelFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func goldenIDs(t *testing.T, fixture string) (lines []string, ids [][]int, decoded []string) {
	t.Helper()
	corpus, err := os.ReadFile(filepath.Join("testdata", "corpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	extra, err := os.ReadFile(filepath.Join("sentencepiece", "testdata", "extra.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines = splitLines(string(corpus) + string(extra))
	idf, err := os.ReadFile(filepath.Join("sentencepiece", "testdata", fixture+".ids"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range splitLines(string(idf)) {
		var row []int
		for _, f := range strings.Fields(l) {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			row = append(row, v)
		}
		ids = append(ids, row)
	}
	df, err := os.ReadFile(filepath.Join("sentencepiece", "testdata", fixture+".decoded"))
	if err != nil {
		t.Fatal(err)
	}
	decoded = splitLines(string(df))
	if len(ids) != len(lines) || len(decoded) != len(lines) {
		t.Fatalf("%s: %d id lines and %d decoded lines for %d inputs", fixture, len(ids), len(decoded), len(lines))
	}
	return lines, ids, decoded
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestSentencePieceGolden: a directory with only tokenizer.model loads
// through LoadDir and encodes every corpus line to spm_encode's ids (the
// line holding literal <s>, </s> and <unk> is split at them first, as the
// slow transformers tokenizers do) and decodes spm_encode's ids to
// spm_decode's text.
func TestSentencePieceGolden(t *testing.T) {
	for _, fixture := range []string{"bpe_identity_user", "unigram_nmt_bytes"} {
		t.Run(fixture, func(t *testing.T) {
			dir := spmDir(t, fixture, nil)
			codec, cfg, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			sp, ok := codec.(*SentencePiece)
			if !ok {
				t.Fatalf("LoadDir gave %T", codec)
			}
			if cfg == nil || cfg.BOSToken == nil || *cfg.BOSToken != "<s>" || cfg.EOSToken == nil || *cfg.EOSToken != "</s>" || cfg.UnkToken == nil || *cfg.UnkToken != "<unk>" || cfg.PadToken != nil {
				t.Fatalf("effective config: %+v", cfg)
			}
			m := sp.Model()
			lines, want, decoded := goldenIDs(t, fixture)
			batch := codec.EncodeBatch(lines, false)
			specials := 0
			for i, line := range lines {
				w := want[i]
				if strings.Contains(line, "<s>") {
					// "Llama2 <s>[INST] Hello [/INST] world</s> <unk> done"
					specials++
					w = nil
					for _, part := range strings.Split(strings.NewReplacer("<s>", "\x00<s>\x00", "</s>", "\x00</s>\x00", "<unk>", "\x00<unk>\x00").Replace(line), "\x00") {
						switch part {
						case "<s>", "</s>", "<unk>":
							w = append(w, m.PieceToID(part))
						default:
							w = append(w, m.Encode(part)...)
						}
					}
				}
				if got := codec.Encode(line, false); !reflect.DeepEqual(got, w) && !(len(got) == 0 && len(w) == 0) {
					t.Errorf("line %d %q:\n got %v\nwant %v", i+1, line, got, w)
				}
				if !reflect.DeepEqual(batch[i], codec.Encode(line, false)) {
					t.Errorf("line %d: EncodeBatch differs from Encode", i+1)
				}
				// <unk> is a special token (LlamaTokenizer's unk_token):
				// skipped, the rest decoded as SentencePiece does.
				var known []int
				for _, id := range want[i] {
					if id != m.UnkID() {
						known = append(known, id)
					}
				}
				got := codec.Decode(want[i], true)
				if len(known) == len(want[i]) && got != decoded[i] {
					t.Errorf("line %d: Decode = %q, spm_decode %q", i+1, got, decoded[i])
				}
				if got != m.Decode(known) {
					t.Errorf("line %d: Decode = %q, want %q", i+1, got, m.Decode(known))
				}
			}
			if specials != 1 {
				t.Fatalf("%d corpus lines hold <s>", specials)
			}
			// BOS first by default (LlamaTokenizer's add_bos_token).
			if got := codec.Encode("hi", true); len(got) == 0 || got[0] != m.BOSID() {
				t.Errorf("Encode(hi, true) = %v, want BOS %d first", got, m.BOSID())
			}
			if got := codec.Decode([]int{m.BOSID(), m.Encode("hi")[0], m.EOSID()}, false); !strings.HasPrefix(got, "<s>") || !strings.HasSuffix(got, "</s>") {
				t.Errorf("Decode with specials = %q", got)
			}
			if !codec.IsSpecial(m.EOSID()) || codec.IsSpecial(m.Encode("hi")[0]) {
				t.Error("IsSpecial")
			}
			if id, ok := codec.TokenToID("</s>"); !ok || id != m.EOSID() {
				t.Errorf("TokenToID(</s>) = %d, %v", id, ok)
			}
			if _, ok := codec.TokenToID("no such piece"); ok {
				t.Error("TokenToID of an unknown piece")
			}
			if codec.VocabSize() != m.VocabSize() {
				t.Errorf("VocabSize %d, model %d", codec.VocabSize(), m.VocabSize())
			}
		})
	}
}

// TestSentencePieceConfig: tokenizer_config.json, special_tokens_map.json
// and added_tokens.json around a tokenizer.model.
func TestSentencePieceConfig(t *testing.T) {
	dir := spmDir(t, "bpe_identity_user", map[string]string{
		ConfigFile: `{"add_bos_token": false, "add_eos_token": true, "bos_token": {"content": "<s>", "lstrip": false},
			"eos_token": "</s>", "pad_token": null,
			"added_tokens_decoder": {"400": {"content": "<tool>", "special": true}, "401": {"content": "<plain>", "special": false}}}`,
		SpecialTokensFile: `{"pad_token": "<unk>", "additional_special_tokens": ["<|im_start|>"]}`,
		AddedTokensFile:   `{"<extra>": 402}`,
	})
	codec, cfg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := codec.(*SentencePiece).Model()
	if cfg.PadToken != nil {
		t.Errorf("pad_token: null in tokenizer_config.json wins over special_tokens_map.json, got %q", *cfg.PadToken)
	}
	if !reflect.DeepEqual(cfg.AdditionalSpecialTokens, []string{"<|im_start|>"}) {
		t.Errorf("additional special tokens %q", cfg.AdditionalSpecialTokens)
	}
	if codec.VocabSize() != 403 {
		t.Errorf("VocabSize %d, want 403", codec.VocabSize())
	}
	hi := m.Encode("hi")
	text := "<tool>hi<plain>hi<extra>"
	want := append(append(append(append([]int{400}, hi...), 401), hi...), 402, m.EOSID())
	if got := codec.Encode(text, true); !reflect.DeepEqual(got, want) {
		t.Errorf("Encode(%q, true) = %v, want %v (no BOS, EOS last)", text, got, want)
	}
	if got := codec.Decode(want, true); got != "hi<plain>hi<extra>" {
		t.Errorf("Decode skipping specials = %q", got)
	}
	if got := codec.Decode(want, false); got != "<tool>hi<plain>hi<extra></s>" {
		t.Errorf("Decode = %q", got)
	}
	if !codec.IsSpecial(400) || codec.IsSpecial(401) {
		t.Error("IsSpecial of added tokens")
	}
	// A user-defined piece is matched in text by the model itself and is a
	// special-token segment's id.
	imStart, _ := codec.TokenToID("<|im_start|>")
	if got := codec.Encode("<|im_start|>", false); !reflect.DeepEqual(got, []int{imStart}) {
		t.Errorf("Encode(<|im_start|>) = %v", got)
	}
	for text, want := range map[string]int{"<tool>": 400, "<|im_end|>": m.PieceToID("<|im_end|>"), "</s>": m.EOSID()} {
		if id, ok := codec.SpecialTokenID(text); !ok || id != want {
			t.Errorf("SpecialTokenID(%q) = %d, %v; want %d", text, id, ok, want)
		}
	}
	if _, ok := codec.SpecialTokenID("hi"); ok {
		t.Error("SpecialTokenID of a normal piece")
	}
}

// TestSentencePieceChatGLM: ChatGLMTokenizer numbers its nine tokens after
// the pieces, puts [gMASK] sop first, and (encode_special_tokens=False)
// does not recognise them in text.
func TestSentencePieceChatGLM(t *testing.T) {
	dir := spmDir(t, "bpe_identity_user", map[string]string{ConfigFile: `{"tokenizer_class": "ChatGLMTokenizer", "padding_side": "left"}`})
	codec, cfg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sp := codec.(*SentencePiece)
	m := sp.Model()
	n := m.VocabSize()
	if !sp.IsChatGLM() || codec.VocabSize() != n+9 {
		t.Fatalf("chatglm %v, vocab %d (pieces %d)", sp.IsChatGLM(), codec.VocabSize(), n)
	}
	for i, tok := range chatGLMTokens {
		if id, ok := codec.TokenToID(tok); !ok || id != n+i {
			t.Errorf("TokenToID(%q) = %d, %v; want %d", tok, id, ok, n+i)
		}
		if id, ok := codec.SpecialTokenID(tok); !ok || id != n+i {
			t.Errorf("SpecialTokenID(%q) = %d, %v", tok, id, ok)
		}
		if !codec.IsSpecial(n + i) {
			t.Errorf("%q not special", tok)
		}
		if got := codec.Encode(tok, false); !reflect.DeepEqual(got, m.Encode(tok)) {
			t.Errorf("Encode(%q) = %v, want the model's text pieces %v", tok, got, m.Encode(tok))
		}
	}
	if cfg.BOSToken != nil || cfg.EOSToken == nil || *cfg.EOSToken != "</s>" || cfg.PadToken == nil || *cfg.PadToken != "<unk>" {
		t.Errorf("ChatGLM effective config: bos %v eos %v pad %v", cfg.BOSToken, cfg.EOSToken, cfg.PadToken)
	}
	want := append([]int{n + 1, n + 3}, m.Encode("isopropyl")...)
	if got := codec.Encode("isopropyl", true); !reflect.DeepEqual(got, want) {
		t.Errorf("Encode(isopropyl, true) = %v, want %v", got, want)
	}
	ids := append([]int{n + 1, n + 3, n + 6}, m.Encode("hi")...)
	if got := codec.Decode(ids, false); got != "[gMASK]sop<|user|>hi" {
		t.Errorf("Decode = %q", got)
	}
	if got := codec.Decode(ids, true); got != "hi" {
		t.Errorf("Decode skipping specials = %q", got)
	}
	if tok, ok := codec.IDToToken(n + 8); !ok || tok != "<|observation|>" {
		t.Errorf("IDToToken = %q, %v", tok, ok)
	}
}

// TestLoadPathFiles: a tokenizer given as a file is read by content.
func TestLoadPathFiles(t *testing.T) {
	dir := spmDir(t, "unigram_nmt_bytes", map[string]string{ConfigFile: `{"add_bos_token": false}`})
	codec, _, err := LoadPath(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := codec.(*SentencePiece); !ok || len(codec.Encode("x", true)) != len(codec.Encode("x", false)) {
		t.Fatalf("%T: add_bos_token false from the file's directory not applied", codec)
	}
	tj, err := os.ReadFile(filepath.Join("testdata", "tiny_spm.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "renamed.json")
	os.WriteFile(p, tj, 0o644)
	codec, _, err = LoadPath(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := codec.(*Tokenizer); !ok {
		t.Fatalf("a JSON file loaded as %T", codec)
	}
	// tokenizer.json wins over tokenizer.model in a directory.
	os.WriteFile(filepath.Join(dir, JSONFile), tj, 0o644)
	if codec, _, err = LoadDir(dir); err != nil {
		t.Fatal(err)
	} else if _, ok := codec.(*Tokenizer); !ok {
		t.Fatalf("LoadDir with both files gave %T", codec)
	}
}

// TestLoadDirErrors: bad inputs name the file and what is wrong.
func TestLoadDirErrors(t *testing.T) {
	model, err := os.ReadFile(spmFixture("bpe_identity_user"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"empty directory", nil, []string{"no tokenizer.json or tokenizer.model"}},
		{"truncated model", map[string]string{ModelFile: string(model[:len(model)/2])}, []string{ModelFile, "sentencepiece"}},
		{"model cut between pieces", map[string]string{ModelFile: string(model[:cutAfterPieces(t, model, 50)])}, []string{ModelFile, "no trainer_spec after 50 pieces"}},
		{"garbage model", map[string]string{ModelFile: "\xff\xff\xff\xff"}, []string{ModelFile}},
		{"tiktoken", map[string]string{ModelFile: "IQ== 0\nIg== 1\n"}, []string{ModelFile, "tiktoken", "tokenizer.json"}},
		{"bad config", map[string]string{ModelFile: string(model), ConfigFile: `{"bos_token": 3}`}, []string{ConfigFile, "bos_token"}},
		{"bad special tokens map", map[string]string{ModelFile: string(model), SpecialTokensFile: `[1]`}, []string{SpecialTokensFile}},
		{"bad added tokens", map[string]string{ModelFile: string(model), AddedTokensFile: `{"<x>": "7"}`}, []string{AddedTokensFile}},
		{"added token over a piece", map[string]string{ModelFile: string(model), AddedTokensFile: `{"<x>": 7}`}, []string{"added_tokens.json", `"<x>"`, "piece 7"}},
		{"conflicting ids", map[string]string{ModelFile: string(model), ConfigFile: `{"added_tokens_decoder": {"400": {"content": "<a>"}}}`, AddedTokensFile: `{"<a>": 401}`}, []string{`"<a>" has id 400 and id 401`}},
		{"bad json tokenizer", map[string]string{JSONFile: `{"model": {"type": "WordPiece"}}`}, []string{JSONFile, "model.type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := LoadDir(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.files == nil && !errors.Is(err, ErrNoTokenizer) {
				t.Errorf("error %v is not ErrNoTokenizer", err)
			}
		})
	}
	if _, _, err := LoadPath(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing path: %v", err)
	}
}

// TestTokenizerSpecialTokenID: for tokenizer.json the added tokens only.
func TestTokenizerSpecialTokenID(t *testing.T) {
	tok, err := Load(filepath.Join("testdata", "tiny_spm.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range tok.AddedTokens() {
		if id, ok := tok.SpecialTokenID(a.Content); !ok || id != a.ID {
			t.Errorf("SpecialTokenID(%q) = %d, %v", a.Content, id, ok)
		}
	}
	if _, ok := tok.SpecialTokenID("not a token"); ok {
		t.Error("SpecialTokenID of text")
	}
}

// cutAfterPieces returns the length of the first n pieces (field 1 records)
// of a serialized ModelProto.
func cutAfterPieces(t *testing.T, b []byte, n int) int {
	t.Helper()
	pos := 0
	for i := 0; i < n; i++ {
		if b[pos] != 0x0a {
			t.Fatalf("byte %d is not a pieces key", pos)
		}
		pos++
		l, shift := 0, 0
		for {
			c := b[pos]
			pos++
			l |= int(c&0x7f) << shift
			shift += 7
			if c < 0x80 {
				break
			}
		}
		pos += l
	}
	return pos
}
