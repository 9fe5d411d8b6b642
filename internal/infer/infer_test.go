package infer

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/serve"
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
