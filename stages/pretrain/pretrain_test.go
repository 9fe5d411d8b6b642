package pretrain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/stagetest"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

type recorder = stagetest.Recorder

func decode(t *testing.T, spec hcldec.Spec, src string, vars map[string]cty.Value) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	return stagetest.Decode(t, spec, src, vars)
}

func newReq(t *testing.T, args cty.Value, base, ckpt string, rep stage.Reporter) *stage.Request {
	t.Helper()
	return stagetest.NewRequest(t, args, base, ckpt, rep)
}

// tokenized runs the tokenize stage on testdata/text.jsonl and returns its
// artifacts as HCL variables.
func tokenized(t *testing.T) map[string]cty.Value {
	t.Helper()
	base, _ := filepath.Abs("testdata")
	args, diags := decode(t, tokenize.Kind().Schema, `
train {
  vocab_size     = 300
  special_tokens = ["<|endoftext|>"]
}
dataset {
  path   = "text.jsonl"
  format = "text"
}
cutoff_len = 48
packing    = true
val_size   = 0.2
`, nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	req := newReq(t, args, base, t.TempDir(), &recorder{})
	if _, err := tokenize.Kind().Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	art := func(kind, name string) cty.Value {
		return stage.ArtifactVal(stage.Artifact{Kind: kind, Digest: "sha256:" + name, Path: req.OutputDir(name)})
	}
	return map[string]cty.Value{"tok": cty.ObjectVal(map[string]cty.Value{
		"dataset":    art(stage.DatasetArtifact, "dataset"),
		"validation": art(stage.DatasetArtifact, "validation"),
		"tokenizer":  art(stage.TokenizerArtifact, "tokenizer"),
	})}
}

const tinyStage = `
config {
  hidden_size = 32
  num_hidden_layers = 2
  num_attention_heads = 4
  num_key_value_heads = 2
  intermediate_size = 64
  max_position_embeddings = 64
}
data          = tok.dataset
validation    = tok.validation
tokenizer     = tok.tokenizer
learning_rate = 1e-2
lr_scheduler  = "cosine"
warmup_ratio  = 0.1
max_steps     = 12
batch_size    = 4
weight_decay  = 0.1
eval_steps    = 4
save_steps    = 3
logging_steps = 2
`

func TestRunEndToEnd(t *testing.T) {
	vars := tokenized(t)
	args, diags := decode(t, Kind().Schema, tinyStage, vars)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if _, d := Kind().Outputs(args); d.HasErrors() {
		t.Fatal(d)
	}
	rec := &recorder{}
	req := newReq(t, args, ".", t.TempDir(), rec)
	if _, err := Kind().Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	model := req.OutputDir("model")
	for _, f := range []string{"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(model, f)); err != nil {
			t.Errorf("model artifact: %v", err)
		}
	}
	m, err := llama.Load(model, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if m.Cfg.VocabSize != 300 || len(m.Cfg.EOSTokenIDs) != 1 || m.Cfg.EOSTokenIDs[0] != 0 {
		t.Errorf("trained config: vocab %d, eos %v; want 300 and [0] (<|endoftext|>)", m.Cfg.VocabSize, m.Cfg.EOSTokenIDs)
	}
	b, err := os.ReadFile(filepath.Join(req.OutputDir("report"), "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var met trainstage.Report
	if err := json.Unmarshal(b, &met); err != nil {
		t.Fatal(err)
	}
	if met.Steps != 12 || len(met.History.Train) != 12 || len(met.History.Eval) != 3 || met.FinalEvalLoss == nil {
		t.Errorf("metrics.json: %d steps, %d points, %d evals", met.Steps, len(met.History.Train), len(met.History.Eval))
	}
	if !(met.FinalLoss < met.FirstLoss-0.5) {
		t.Errorf("loss %v -> %v: want it to fall", met.FirstLoss, met.FinalLoss)
	}
	if _, err := os.Stat(filepath.Join(req.OutputDir("report"), "loss.png")); err != nil {
		t.Error(err)
	}
	if n := len(rec.Values["loss"]); n != 6 || len(rec.Values["eval_loss"]) != 3 || len(rec.Values["tokens_per_second"]) != 6 {
		t.Errorf("reported %d loss, %d eval_loss metrics; want 6 and 3", n, len(rec.Values["eval_loss"]))
	}

	// Interrupted at step 7, then rerun with the same checkpoint directory:
	// the model's bytes equal the uninterrupted run's.
	ckpt := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	req2 := newReq(t, args, ".", ckpt, &recorder{OnStep: func(s int64) {
		if s == 7 {
			cancel()
		}
	}})
	if _, err := Kind().Run(ctx, req2); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	rec3 := &recorder{}
	req3 := newReq(t, args, ".", ckpt, rec3)
	if _, err := Kind().Run(context.Background(), req3); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model/model.safetensors", "model/config.json", "report/metrics.json", "report/loss.png"} {
		a, _ := os.ReadFile(filepath.Join(req.StagingDir, f))
		b, _ := os.ReadFile(filepath.Join(req3.StagingDir, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the uninterrupted and the resumed run", f)
		}
	}
	if !strings.Contains(strings.Join(rec3.Logs, "\n"), "resumed from") {
		t.Error("the rerun did not log a resume")
	}

	// Continue training the result: model = <artifact>, the tokenizer and
	// generation config carried from the model directory.
	vars["base"] = stage.ArtifactVal(stage.Artifact{Kind: stage.ModelArtifact, Digest: "sha256:m", Path: model})
	args4, diags := decode(t, Kind().Schema, "model = base\ndata = tok.dataset\nmax_steps = 2\nlearning_rate = 1e-3\n", vars)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	req4 := newReq(t, args4, ".", t.TempDir(), &recorder{})
	if _, err := Kind().Run(context.Background(), req4); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "generation_config.json", "config.json"} {
		a, _ := os.ReadFile(filepath.Join(model, f))
		b, _ := os.ReadFile(filepath.Join(req4.OutputDir("model"), f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("continued model: %s not carried through", f)
		}
	}
	a, _ := os.ReadFile(filepath.Join(model, "model.safetensors"))
	b, _ = os.ReadFile(filepath.Join(req4.OutputDir("model"), "model.safetensors"))
	if bytes.Equal(a, b) {
		t.Error("continued training left the weights unchanged")
	}
}

func TestArgumentDiagnostics(t *testing.T) {
	vars := map[string]cty.Value{
		"tok": cty.ObjectVal(map[string]cty.Value{
			"dataset":   stage.ArtifactVal(stage.Artifact{Kind: stage.DatasetArtifact, Digest: "sha256:1"}),
			"tokenizer": stage.ArtifactVal(stage.Artifact{Kind: stage.TokenizerArtifact, Digest: "sha256:2"}),
			"model":     stage.ArtifactVal(stage.Artifact{Kind: stage.ModelArtifact, Digest: "sha256:3"}),
		}),
	}
	cfg := "config {\n hidden_size = 8\n num_hidden_layers = 1\n num_attention_heads = 2\n intermediate_size = 8\n}\n"
	for _, tc := range []struct{ src, want string }{
		{"data = tok.dataset\ntokenizer = tok.tokenizer\n", "Missing model"},
		{cfg + "model = tok.model\ndata = tok.dataset\ntokenizer = tok.tokenizer\n", "Conflicting arguments"},
		{cfg + "data = tok.dataset\n", "Missing tokenizer"},
		{cfg + "data = tok.dataset\ntokenizer = tok.tokenizer\nepochs = 1\nmax_steps = 3\n", "epochs or max_steps"},
		{cfg + "data = tok.tokenizer\ntokenizer = tok.tokenizer\n", "data must be a dataset artifact"},
		{cfg + "data = tok.dataset\ntokenizer = tok.tokenizer\nlr_scheduler = \"step\"\n", "lr_scheduler must be one of"},
		{cfg + "data = tok.dataset\ntokenizer = tok.tokenizer\nwarmup_ratio = 2\n", "between 0 and 1"},
		{cfg + "data = tok.dataset\ntokenizer = tok.tokenizer\nbatch_size = 0\n", "batch_size must be >= 1"},
		{cfg + "data = tok.dataset\ntokenizer = tok.tokenizer\ncompute_type = \"fp16\"\n", `compute_type must be one of ["fp32" "bf16"], got "fp16"`},
	} {
		args, diags := decode(t, Kind().Schema, tc.src, vars)
		if !diags.HasErrors() {
			_, diags = Kind().Outputs(args)
		}
		if !strings.Contains(diags.Error(), tc.want) {
			t.Errorf("%q: diagnostics %v, want %q", tc.src, diags, tc.want)
		}
	}
}
