package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/tokenizer/sentencepiece"
)

// TestTokenizerCmdsSentencePiece: lathe tokenizer encode/decode on a
// directory whose only tokenizer file is a SentencePiece tokenizer.model.
func TestTokenizerCmdsSentencePiece(t *testing.T) {
	src := filepath.Join("..", "..", "internal", "tokenizer", "sentencepiece", "testdata", "bpe_identity_user.model")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tokenizer.model"), b, 0o644)
	m, err := sentencepiece.LoadBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	text := "Hello, 세계! <|im_end|>"
	var out, errb bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &errb}
	if code := tokenizerEncode(env, strings.NewReader(text), []string{"--tokenizer", dir}); code != 0 {
		t.Fatalf("encode: exit %d: %s", code, errb.String())
	}
	var ids []int
	if err := json.Unmarshal(out.Bytes(), &ids); err != nil {
		t.Fatal(err)
	}
	want := append([]int{m.BOSID()}, m.Encode(text)...)
	if len(ids) != len(want) {
		t.Fatalf("encode gave %v, want BOS then spm's %v", ids, want)
	}
	for i := range ids {
		if ids[i] != want[i] {
			t.Fatalf("encode gave %v, want BOS then spm's %v", ids, want)
		}
	}
	out.Reset()
	if code := tokenizerDecode(env, bytes.NewReader(tokIDsJSON(t, ids)), []string{"--tokenizer", filepath.Join(dir, "tokenizer.model"), "--skip-special"}); code != 0 {
		t.Fatalf("decode: exit %d: %s", code, errb.String())
	}
	if out.String() != text {
		t.Errorf("decode gave %q, want %q", out.String(), text)
	}
	errb.Reset()
	if code := tokenizerEncode(env, strings.NewReader("x"), []string{"--tokenizer", t.TempDir()}); code == 0 || !strings.Contains(errb.String(), "no tokenizer.json or tokenizer.model") {
		t.Errorf("empty directory: exit %d, %q", code, errb.String())
	}
}

func tokIDsJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
