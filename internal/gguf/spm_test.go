package gguf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/tokenizer/sentencepiece"
)

// spmModelDir is the mistral spec's model with a SentencePiece
// tokenizer.model (internal/tokenizer/sentencepiece's fixture) instead of
// tokenizer.json, an added special token and vocab_size 420.
func spmModelDir(t *testing.T, fixture string, tokConfig map[string]any) string {
	t.Helper()
	var s modelSpec
	for _, sp := range specs() {
		if sp.name == "mistral" {
			s = sp
		}
	}
	s.config["vocab_size"] = 420 // specs() builds fresh maps
	s.tokConfig = tokConfig
	dir, _ := makeModelDir(t, s)
	if err := os.Remove(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("..", "tokenizer", "sentencepiece", "testdata", fixture+".model"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.model"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWriteFromHFSentencePiece: a model directory with only tokenizer.model
// gets llama.cpp's SentencePiece vocabulary: the pieces with their scores
// and types, [PADn] up to vocab_size, added tokens from
// tokenizer_config.json, the special ids and add_space_prefix.
func TestWriteFromHFSentencePiece(t *testing.T) {
	dir := spmModelDir(t, "bpe_identity_user", map[string]any{"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>",
		"added_tokens_decoder": map[string]any{"405": map[string]any{"content": "<tool>", "special": true}, "406": map[string]any{"content": "<plain>"}}})
	dst := filepath.Join(t.TempDir(), "m.gguf")
	if _, err := WriteFromHF(dst, dir, WriteOptions{Type: F32}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := sentencepiece.Load(filepath.Join(dir, "tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	md := f.Metadata
	if md["tokenizer.ggml.model"] != "llama" || md["tokenizer.ggml.pre"] != "default" || md["tokenizer.ggml.add_space_prefix"] != true {
		t.Errorf("model %v pre %v add_space_prefix %v", md["tokenizer.ggml.model"], md["tokenizer.ggml.pre"], md["tokenizer.ggml.add_space_prefix"])
	}
	tokens, _ := md["tokenizer.ggml.tokens"].([]string)
	scores, _ := md["tokenizer.ggml.scores"].([]float32)
	types, _ := md["tokenizer.ggml.token_type"].([]int32)
	if len(tokens) != 420 || len(scores) != 420 || len(types) != 420 {
		t.Fatalf("%d tokens, %d scores, %d types; want 420", len(tokens), len(scores), len(types))
	}
	for id := 0; id < m.VocabSize(); id++ {
		if tokens[id] != m.IDToPiece(id) || scores[id] != m.Score(id) || types[id] != int32(m.Type(id)) {
			t.Fatalf("token %d: %q %v %d, piece %q %v %v", id, tokens[id], scores[id], types[id], m.IDToPiece(id), m.Score(id), m.Type(id))
		}
	}
	for _, c := range []struct {
		id   int
		tok  string
		typ  int32
		scor float32
	}{{400, "[PAD400]", tokUnused, -1000}, {405, "<tool>", tokControl, -1000}, {406, "<plain>", tokUserDefined, -1000}, {419, "[PAD419]", tokUnused, -1000}} {
		if tokens[c.id] != c.tok || types[c.id] != c.typ || scores[c.id] != c.scor {
			t.Errorf("token %d: %q type %d score %v, want %q %d %v", c.id, tokens[c.id], types[c.id], scores[c.id], c.tok, c.typ, c.scor)
		}
	}
	for key, want := range map[string]uint32{"bos_token_id": 1, "eos_token_id": 2, "unknown_token_id": 0} {
		if got, _ := md["tokenizer.ggml."+key].(uint32); got != want {
			t.Errorf("%s = %v, want %d", key, md["tokenizer.ggml."+key], want)
		}
	}
	if md["tokenizer.ggml.add_bos_token"] != true || md["tokenizer.ggml.add_eos_token"] != false {
		t.Errorf("add_bos %v add_eos %v", md["tokenizer.ggml.add_bos_token"], md["tokenizer.ggml.add_eos_token"])
	}
	if _, ok := md["tokenizer.ggml.merges"]; ok {
		t.Error("a SentencePiece vocabulary has no merges")
	}
}

// TestWriteFromHFSentencePieceErrors: a unigram model (llama.cpp's
// SentencePiece vocabulary would segment it differently), a corrupt
// tokenizer.model and a vocabulary larger than vocab_size are refused.
func TestWriteFromHFSentencePieceErrors(t *testing.T) {
	for _, tc := range []struct {
		name, fixture string
		edit          func(dir string)
		want          string
	}{
		{"unigram", "unigram_nmt_bytes", nil, "a UNIGRAM SentencePiece model"},
		{"corrupt", "bpe_identity_user", func(dir string) {
			os.WriteFile(filepath.Join(dir, "tokenizer.model"), []byte("\x0a\x05<unk>"), 0o644)
		}, "tokenizer.model"},
		{"vocab", "bpe_identity_user", func(dir string) {
			writeJSONFile(t, filepath.Join(dir, "tokenizer_config.json"), map[string]any{"added_tokens_decoder": map[string]any{"500": map[string]any{"content": "<x>"}}})
		}, "ids up to 500 but config.json vocab_size is 420"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := spmModelDir(t, tc.fixture, nil)
			if tc.edit != nil {
				tc.edit(dir)
			}
			_, err := WriteFromHF(filepath.Join(t.TempDir(), "m.gguf"), dir, WriteOptions{Type: F32})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
