package infer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/serve"
	"github.com/lathe-ml/lathe/internal/tokenizer"
)

// tinyModel writes a random model with the test tokenizer and an EOS.
func tinyModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 320, Hidden: 32, Intermediate: 64,
		Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, RopeTheta: 10000, RMSNormEps: 1e-5, MaxPositions: 128, BOSTokenID: -1}
	m, err := llama.New(cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	m.InitRandom(5, 0.3)
	if err := m.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join("testdata", "tokenizer.json"))
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"eos_token": "<|endoftext|>", "bos_token": null}`), 0o644)
	return dir
}

// TestStreamingEqualsWhole: the pieces streamed concatenate to the text
// returned, greedy generation is the model's, and a stop string cuts it.
func TestStreamingEqualsWhole(t *testing.T) {
	e, err := Open(Config{Model: tinyModel(t), Template: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	turns := []Message{{Role: "user", Content: "hello there"}}
	var pieces []string
	res, err := e.Chat(context.Background(), "", turns, Options{MaxNewTokens: 24}, func(s string) error {
		pieces = append(pieces, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pieces, "") != res.Text || res.CompletionTokens == 0 {
		t.Fatalf("streamed %q, result %q (%d tokens)", strings.Join(pieces, ""), res.Text, res.CompletionTokens)
	}
	// The same ids through the model directly decode to the same text.
	ids, _ := e.PromptIDs("", turns)
	out, _, err := e.Model.Generate([][]int32{ids}, llama.GenerateOptions{MaxNewTokens: 24, StopTokens: e.stopIDs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var whole []int
	for _, id := range out[0] {
		whole = append(whole, int(id))
	}
	if want := e.Tok.Decode(whole, true); !strings.HasPrefix(want, res.Text) {
		t.Fatalf("engine text %q is not the model's %q", res.Text, want)
	}
	// A stop string taken from the middle of the text ends it there.
	if len(res.Text) > 6 {
		stop := res.Text[3:6]
		cut, err := e.Chat(context.Background(), "", turns, Options{MaxNewTokens: 24, Stop: []string{stop}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := res.Text[:strings.Index(res.Text, stop)]; cut.Text != want || cut.FinishReason != "stop" {
			t.Fatalf("stop %q: %q (%s), want %q", stop, cut.Text, cut.FinishReason, want)
		}
	}
}

// TestServeWithEngine: the OpenAI-compatible server over the real engine
// gives the same reply streamed and not.
func TestServeWithEngine(t *testing.T) {
	e, err := Open(Config{Model: tinyModel(t), Template: "default", ID: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	srv := httptest.NewServer(serve.New(e.Backend(), serve.Options{}))
	defer srv.Close()
	body := `{"model":"tiny","messages":[{"role":"user","content":"hello there"}],"max_tokens":16,"temperature":0%s}`
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(strings.Replace(body, "%s", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var whole struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	json.NewDecoder(resp.Body).Decode(&whole)
	resp.Body.Close()
	resp, err = http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(strings.Replace(body, "%s", `,"stream":true`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var streamed strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(line), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", line, err)
		}
		for _, c := range chunk.Choices {
			streamed.WriteString(c.Delta.Content)
		}
	}
	if len(whole.Choices) != 1 || whole.Choices[0].Message.Content == "" || streamed.String() != whole.Choices[0].Message.Content {
		t.Fatalf("streamed %q, whole %+v", streamed.String(), whole)
	}
	// A conversation that does not end with the user is a 400.
	resp2, _ := http.Post(srv.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"tiny","messages":[{"role":"assistant","content":"hi"}]}`))
	if resp2.StatusCode != 400 {
		t.Errorf("assistant-only conversation: status %d", resp2.StatusCode)
	}
	resp2.Body.Close()
}

// spmModel writes a random model whose only tokenizer file is a
// SentencePiece tokenizer.model (internal/tokenizer/sentencepiece's
// fixture, 400 pieces), with the given tokenizer_config.json ("" for none).
func spmModel(t *testing.T, tokCfg string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 416, Hidden: 32, Intermediate: 64,
		Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, RopeTheta: 10000, RMSNormEps: 1e-5, MaxPositions: 128, BOSTokenID: -1}
	m, err := llama.New(cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	m.InitRandom(7, 0.3)
	if err := m.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("..", "tokenizer", "sentencepiece", "testdata", "bpe_identity_user.model"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.model"), b, 0o644)
	if tokCfg != "" {
		os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(tokCfg), 0o644)
	}
	return dir
}

// TestSentencePieceChat: chat over a model directory that ships
// tokenizer.model and no tokenizer.json. With ChatGLM's tokenizer class and
// template chatglm3 the prompt is LLaMA Factory's chatglm3 encoding, the
// role tokens stop generation, and the streamed text is the decode.
func TestSentencePieceChat(t *testing.T) {
	dir := spmModel(t, `{"tokenizer_class": "ChatGLMTokenizer"}`)
	e, err := Open(Config{Model: dir, Template: "chatglm3"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	sp, ok := e.Tok.(*tokenizer.SentencePiece)
	if !ok {
		t.Fatalf("tokenizer %T", e.Tok)
	}
	m := sp.Model()
	n := m.VocabSize()
	turns := []Message{{Role: "user", Content: "hello there"}}
	ids, err := e.PromptIDs("", turns)
	if err != nil {
		t.Fatal(err)
	}
	var want []int32
	for _, id := range append(append(append([]int{n + 1, n + 3, n + 6}, m.Encode("\n")...), m.Encode("hello there")...), n+7) {
		want = append(want, int32(id))
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("prompt ids\n got %v\nwant %v", ids, want)
	}
	for _, stop := range []int32{int32(n + 6), int32(n + 8), int32(m.EOSID())} {
		if !slices.Contains(e.stopIDs, stop) {
			t.Errorf("stop ids %v lack %d", e.stopIDs, stop)
		}
	}
	var pieces []string
	res, err := e.Chat(context.Background(), "", turns, Options{MaxNewTokens: 12}, func(s string) error {
		pieces = append(pieces, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pieces, "") != res.Text || res.CompletionTokens == 0 {
		t.Fatalf("streamed %q, result %q (%d tokens)", strings.Join(pieces, ""), res.Text, res.CompletionTokens)
	}
	out, _, err := e.Model.Generate([][]int32{ids}, llama.GenerateOptions{MaxNewTokens: 12, StopTokens: e.stopIDs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var whole []int
	for _, id := range out[0] {
		whole = append(whole, int(id))
	}
	if d := e.Tok.Decode(whole, true); !strings.HasPrefix(d, res.Text) {
		t.Fatalf("engine text %q is not the model's %q", res.Text, d)
	}
}

// TestSentencePieceOpen: a bare tokenizer.model works with a built-in
// template; a corrupt one, or none, fails Open naming the file.
func TestSentencePieceOpen(t *testing.T) {
	dir := spmModel(t, "")
	e, err := Open(Config{Model: dir})
	if err != nil {
		t.Fatal(err)
	}
	if e.Template.Name != "default" {
		t.Errorf("template %q, want default", e.Template.Name)
	}
	ids, err := e.PromptIDs("", []Message{{Role: "user", Content: "hi"}})
	if err != nil || len(ids) == 0 {
		t.Fatalf("PromptIDs: %v %v", ids, err)
	}
	e.Close()
	if _, err := Open(Config{Model: dir, Template: "auto"}); err == nil || !strings.Contains(err.Error(), "chat_template") {
		t.Errorf("auto without a chat template: %v", err)
	}
	p := filepath.Join(dir, "tokenizer.model")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, b[:100], 0o644)
	if _, err := Open(Config{Model: dir}); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("corrupt tokenizer.model: %v", err)
	}
	os.Remove(p)
	if _, err := Open(Config{Model: dir}); err == nil || !strings.Contains(err.Error(), "no tokenizer.json or tokenizer.model") {
		t.Errorf("no tokenizer: %v", err)
	}
}
