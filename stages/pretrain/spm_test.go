package pretrain

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

// TestRunSentencePieceTokenizer trains from scratch with a tokenizer
// directory that holds only a SentencePiece tokenizer.model (and
// tokenizer_config.json): the model takes its vocabulary size and BOS/EOS
// ids from it and its artifact carries tokenizer.model, so that it loads
// with the same tokenizer.
func TestRunSentencePieceTokenizer(t *testing.T) {
	tokDir := t.TempDir()
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "tokenizer", "sentencepiece", "testdata", "bpe_identity_user.model"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tokDir, tokenizer.ModelFile), b, 0o644)
	os.WriteFile(filepath.Join(tokDir, tokenizer.ConfigFile), []byte(`{"add_bos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}`), 0o644)

	base, _ := filepath.Abs("testdata")
	targs, diags := decode(t, tokenize.Kind().Schema, `
tokenizer = tok
dataset {
  path   = "text.jsonl"
  format = "text"
}
cutoff_len = 48
packing    = true
`, map[string]cty.Value{"tok": cty.StringVal(tokDir)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	treq := newReq(t, targs, base, t.TempDir(), &recorder{})
	if _, err := tokenize.Kind().Run(context.Background(), treq); err != nil {
		t.Fatal(err)
	}
	art := func(kind, name string) cty.Value {
		return stage.ArtifactVal(stage.Artifact{Kind: kind, Digest: "sha256:" + name, Path: treq.OutputDir(name)})
	}
	vars := map[string]cty.Value{"tok": cty.ObjectVal(map[string]cty.Value{
		"dataset":    art(stage.DatasetArtifact, "dataset"),
		"validation": art(stage.DatasetArtifact, "validation"),
		"tokenizer":  art(stage.TokenizerArtifact, "tokenizer"),
	})}
	args, diags := decode(t, Kind().Schema, `
config {
  hidden_size = 32
  num_hidden_layers = 1
  num_attention_heads = 4
  intermediate_size = 64
  max_position_embeddings = 64
}
data          = tok.dataset
tokenizer     = tok.tokenizer
learning_rate = 1e-2
max_steps     = 2
batch_size    = 2
`, vars)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	req := newReq(t, args, ".", t.TempDir(), &recorder{})
	if _, err := Kind().Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	model := req.OutputDir("model")
	if _, err := os.Stat(filepath.Join(model, tokenizer.JSONFile)); err == nil {
		t.Error("the model artifact gained a tokenizer.json")
	}
	got, err := os.ReadFile(filepath.Join(model, tokenizer.ModelFile))
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("tokenizer.model not carried into the model: %v", err)
	}
	m, err := llama.Load(model, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if m.Cfg.VocabSize != 400 || m.Cfg.BOSTokenID != 1 || len(m.Cfg.EOSTokenIDs) != 1 || m.Cfg.EOSTokenIDs[0] != 2 {
		t.Errorf("config: vocab %d bos %d eos %v; want 400, 1, [2]", m.Cfg.VocabSize, m.Cfg.BOSTokenID, m.Cfg.EOSTokenIDs)
	}
	tok, _, err := tokenizer.LoadDir(model)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tok.(*tokenizer.SentencePiece); !ok {
		t.Errorf("the model's tokenizer loads as %T", tok)
	}
}
