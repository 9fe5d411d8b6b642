package stages_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/dpo"
	"github.com/lathe-ml/lathe/stages/internal/stagetest"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
	"github.com/lathe-ml/lathe/stages/ppo"
	"github.com/lathe-ml/lathe/stages/rewardmodel"
	"github.com/lathe-ml/lathe/stages/sft"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

// These tests run the fine-tuning kinds end to end on a tiny random model
// with data tokenized by the tokenize kind from the examples' datasets.

type recorder = stagetest.Recorder

func decode(t *testing.T, spec hcldec.Spec, src string, vars map[string]cty.Value) cty.Value {
	t.Helper()
	return stagetest.MustDecode(t, spec, src, vars)
}

func newReq(t *testing.T, args cty.Value, base, ckpt string, rep stage.Reporter) *stage.Request {
	t.Helper()
	return stagetest.NewRequest(t, args, base, ckpt, rep)
}

var art = stagetest.Artifact

// fixture is a tiny random base model with a tokenizer trained on the
// examples' data, and the identity (sft) and preference datasets.
type fixture struct {
	vars map[string]cty.Value
}

var (
	fixtureOnce sync.Once
	theFixture  fixture
	fixtureErr  string
)

func setup(t *testing.T) map[string]cty.Value {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lathe-finetune-")
		if err != nil {
			fixtureErr = err.Error()
			return
		}
		theFixture, fixtureErr = build(t, dir)
	})
	if fixtureErr != "" {
		t.Fatal(fixtureErr)
	}
	return theFixture.vars
}

func build(t *testing.T, dir string) (fixture, string) {
	examples, _ := filepath.Abs("../examples")
	run := func(src string, vars map[string]cty.Value) *stage.Request {
		args := decode(t, tokenize.Kind().Schema, src, vars)
		req := newReq(t, args, examples, "", &recorder{})
		// Outlive the first test's temporary directories.
		staging, err := os.MkdirTemp(dir, "stage-")
		if err != nil {
			t.Fatal(err)
		}
		req.StagingDir = staging
		if _, err := tokenize.Kind().Run(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		return req
	}
	tok := run(`
train {
  vocab_size     = 400
  special_tokens = ["<|endoftext|>"]
}
dataset {
  path   = "self-cognition/data/identity.json"
  format = "alpaca"
}
template   = "default"
cutoff_len = 96
`, nil)
	tokArt := art(stage.TokenizerArtifact, tok.OutputDir("tokenizer"))
	// A tiny random base model carrying the tokenizer.
	model := filepath.Join(dir, "base")
	cfg := llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 400, Hidden: 32,
		Intermediate: 64, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, RopeTheta: 10000, RMSNormEps: 1e-5,
		MaxPositions: 128, BOSTokenID: -1}
	m, err := llama.New(cfg, cpu.New())
	if err != nil {
		return fixture{}, err.Error()
	}
	m.InitRandom(1, 0.05)
	if err := m.Save(model, safetensors.F32); err != nil {
		return fixture{}, err.Error()
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, _ := os.ReadFile(filepath.Join(tok.OutputDir("tokenizer"), f))
		os.WriteFile(filepath.Join(model, f), b, 0o644)
	}
	vars := map[string]cty.Value{"tok": tokArt, "base": art(stage.ModelArtifact, model)}
	sftData := run(`
tokenizer = tok
dataset {
  path    = "self-cognition/data/identity.json"
  format  = "alpaca"
  replace = { "{{name}}" = "Ada", "{{author}}" = "Lovelace Labs" }
}
template   = "default"
cutoff_len = 96
val_size   = 0.1
`, vars)
	prefs := run(`
tokenizer = tok
dataset {
  path    = "dpo/data/preferences.json"
  format  = "alpaca"
  ranking = true
}
template   = "default"
cutoff_len = 96
val_size   = 0.2
`, vars)
	vars["sft_data"] = art(stage.DatasetArtifact, sftData.OutputDir("dataset"))
	vars["sft_val"] = art(stage.DatasetArtifact, sftData.OutputDir("validation"))
	vars["prefs"] = art(stage.DatasetArtifact, prefs.OutputDir("dataset"))
	vars["prefs_val"] = art(stage.DatasetArtifact, prefs.OutputDir("validation"))
	return fixture{vars: vars}, ""
}

func runKind(t *testing.T, k *stage.Kind, src string, vars map[string]cty.Value, ckpt string, rec *recorder) *stage.Request {
	t.Helper()
	args := decode(t, k.Schema, src, vars)
	if _, d := k.Outputs(args); d.HasErrors() {
		t.Fatal(d)
	}
	if rec == nil {
		rec = &recorder{}
	}
	req := newReq(t, args, ".", ckpt, rec)
	if _, err := k.Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	return req
}

func report(t *testing.T, req *stage.Request) trainstage.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(req.OutputDir("report"), "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r trainstage.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSFTMethods(t *testing.T) {
	vars := setup(t)
	for _, tc := range []struct{ method, extra string }{
		{"full", ""},
		{"freeze", "freeze {\n trainable_layers = 1\n extra_modules = [\"norm\"]\n}"},
		{"lora", "lora {\n rank = 4\n target = [\"q_proj\", \"v_proj\"]\n}"},
		{"lora", "lora {\n rank = 4\n dropout = 0.1\n rslora = true\n}\nmerge = true"},
		{"qlora", "lora {\n rank = 4\n}\nmerge = true"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			src := `
model         = base
data          = sft_data
validation    = sft_val
method        = "` + tc.method + `"
learning_rate = 5e-3
max_steps     = 8
batch_size    = 4
` + tc.extra
			rec := &recorder{}
			req := runKind(t, sft.Kind(), src, vars, "", rec)
			r := report(t, req)
			if r.Steps != 8 || r.FinalLoss >= r.FirstLoss || r.Perplexity == nil {
				t.Errorf("steps %d, loss %v -> %v, perplexity %v", r.Steps, r.FirstLoss, r.FinalLoss, r.Perplexity)
			}
			adapter := req.OutputDir("adapter")
			_, statErr := os.Stat(filepath.Join(adapter, lora.ConfigFile))
			if trainstage.IsAdapterMethod(tc.method) != (statErr == nil) {
				t.Fatalf("adapter output present=%v for %s", statErr == nil, tc.method)
			}
			if statErr == nil {
				lc, tensors, err := lora.Load(adapter)
				if err != nil {
					t.Fatal(err)
				}
				if lc.Rank != 4 || len(tensors) == 0 {
					t.Errorf("adapter r=%d with %d tensors", lc.Rank, len(tensors))
				}
			}
			if tc.method == "qlora" && !strings.Contains(strings.Join(rec.Logs, "\n"), "nf4 base") {
				t.Errorf("qlora did not report its nf4 base: %q", rec.Logs)
			}
			// The model output (full, freeze, or merged) loads as a plain
			// model and, when merged, computes what base + adapter computes.
			model := req.OutputDir("model")
			if _, err := os.Stat(filepath.Join(model, "config.json")); err != nil {
				if !trainstage.IsAdapterMethod(tc.method) || strings.Contains(tc.extra, "merge") {
					t.Fatalf("model output missing: %v", err)
				}
				return
			}
			plain, err := llama.Load(model, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			if statErr == nil {
				lc, tensors, _ := lora.Load(adapter)
				var mods []string
				for n := range tensors {
					if m, ok := strings.CutSuffix(n, llama.LoRAASuffix); ok {
						mods = append(mods, m)
					}
				}
				opts := llama.Options{Trainable: func(string) bool { return false },
					LoRA: &llama.LoRAOptions{Modules: mods, Rank: lc.Rank, Scale: float32(lc.Scale())}}
				if tc.method == "qlora" {
					opts.NF4 = func(n string) bool { return strings.Contains(n, "_proj.weight") }
				}
				ad, err := llama.LoadWith(trainstage.ArtifactPath(vars["base"]), cpu.New(), opts)
				if err != nil {
					t.Fatal(err)
				}
				for n, tv := range tensors {
					ad.SetParamValues(n, tv.Data)
				}
				b := &llama.Batch{B: 1, T: 6, Tokens: []int32{5, 9, 33, 2, 71, 8}}
				want, _ := ad.Logits(b)
				want = append([]float32(nil), want...)
				got, _ := plain.Logits(b)
				for i := range got {
					if d := got[i] - want[i]; d > 1e-4 || d < -1e-4 {
						t.Fatalf("merged logit %d: %v, adapted model %v", i, got[i], want[i])
					}
				}
			}
		})
	}
}

func TestRewardModelLearnsPreference(t *testing.T) {
	vars := setup(t)
	req := runKind(t, rewardmodel.Kind(), `
model         = base
data          = prefs
validation    = prefs_val
method        = "full"
learning_rate = 3e-3
max_steps     = 40
batch_size    = 4
eval_steps    = 20
`, vars, "", nil)
	r := report(t, req)
	acc := r.FinalEval["accuracy"]
	t.Logf("reward model: loss %.3f -> %.3f, eval accuracy %.2f", r.FirstLoss, r.FinalLoss, acc)
	if acc < 0.75 || r.FinalLoss >= r.FirstLoss {
		t.Errorf("eval accuracy %.2f (want >= 0.75), loss %v -> %v", acc, r.FirstLoss, r.FinalLoss)
	}
	if _, _, err := lora.LoadValueHead(req.OutputDir("model")); err != nil {
		t.Errorf("value head: %v", err)
	}
}

func TestDPOLosses(t *testing.T) {
	vars := setup(t)
	for _, loss := range []string{"sigmoid", "ipo", "hinge", "orpo", "simpo"} {
		t.Run(loss, func(t *testing.T) {
			steps := "4"
			if loss == "sigmoid" {
				steps = "30"
			}
			req := runKind(t, dpo.Kind(), `
model         = base
data          = prefs
validation    = prefs_val
method        = "lora"
loss          = "`+loss+`"
beta          = 0.5
learning_rate = 1e-2
max_steps     = `+steps+`
batch_size    = 4
`, vars, "", nil)
			r := report(t, req)
			if loss != "sigmoid" {
				return
			}
			last := r.History.Train[len(r.History.Train)-1].Metrics
			t.Logf("dpo: loss %.3f -> %.3f, train accuracies %.2f margin %.3f; eval %v", r.FirstLoss, r.FinalLoss, last["rewards/accuracies"], last["rewards/margins"], r.FinalEval)
			// At step 1 the policy is the reference: loss log 2.
			if d := r.FirstLoss - 0.6931471805599453; d > 1e-6 || d < -1e-6 {
				t.Errorf("first loss %v, want log 2 (policy = reference)", r.FirstLoss)
			}
			if r.FinalLoss >= r.FirstLoss || r.FinalEval["rewards/margins"] <= 0 {
				t.Errorf("loss %v -> %v, eval margin %v", r.FirstLoss, r.FinalLoss, r.FinalEval["rewards/margins"])
			}
		})
	}
}

// TestDPOResume: a DPO run interrupted and resumed from its checkpoint
// ends with the same adapter bytes as an uninterrupted run (the reference
// log-probs are computed from the starting model again).
func TestDPOResume(t *testing.T) {
	vars := setup(t)
	src := `
model         = base
data          = prefs
method        = "lora"
learning_rate = 1e-2
max_steps     = 6
batch_size    = 4
save_steps    = 2
lora {
  rank    = 4
  dropout = 0.1
}
`
	full := runKind(t, dpo.Kind(), src, vars, "", nil)
	args := decode(t, dpo.Kind().Schema, src, vars)
	ckpt := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	req := newReq(t, args, ".", ckpt, &recorder{OnStep: func(s int64) {
		if s == 3 {
			cancel()
		}
	}})
	if _, err := dpo.Kind().Run(ctx, req); err == nil {
		t.Fatal("the interrupted run succeeded")
	}
	resumed := newReq(t, args, ".", ckpt, &recorder{})
	if _, err := dpo.Kind().Run(context.Background(), resumed); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(full.OutputDir("adapter"), lora.WeightsFile))
	b, _ := os.ReadFile(filepath.Join(resumed.OutputDir("adapter"), lora.WeightsFile))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("resumed adapter differs from the uninterrupted one (%d vs %d bytes)", len(a), len(b))
	}
}

func TestFineTuneArgumentErrors(t *testing.T) {
	vars := setup(t)
	for _, tc := range []struct{ src, want string }{
		{"method = \"full\"\nlora {\n rank = 4\n}", "Unused lora block"},
		{"method = \"lora\"\nfreeze {\n trainable_layers = 1\n}", "Unused freeze block"},
		{"method = \"freeze\"\nmerge = true", "Nothing to merge"},
		{"epochs = 1\nmax_steps = 2", "Conflicting arguments"},
	} {
		args := decode(t, sft.Kind().Schema, "model = base\ndata = sft_data\n"+tc.src, vars)
		_, d := sft.Kind().Outputs(args)
		if !d.HasErrors() || !strings.Contains(d.Error(), tc.want) {
			t.Errorf("%q: diagnostics %v, want %q", tc.src, d, tc.want)
		}
	}
	args := decode(t, dpo.Kind().Schema, "model = base\ndata = prefs\nloss = \"hinge\"\nlabel_smoothing = 0.2", vars)
	if _, d := dpo.Kind().Outputs(args); !d.HasErrors() {
		t.Errorf("label smoothing with hinge accepted")
	}
	// Unknown LoRA targets and freeze modules fail at run time with the
	// names involved.
	for _, src := range []string{
		"method = \"lora\"\nlora {\n target = [\"q_prj\"]\n}",
		"method = \"freeze\"\nfreeze {\n trainable_modules = [\"attn\"]\n}",
	} {
		args := decode(t, sft.Kind().Schema, "model = base\ndata = sft_data\nmax_steps = 1\n"+src, vars)
		req := newReq(t, args, ".", "", &recorder{})
		_, err := sft.Kind().Run(context.Background(), req)
		if err == nil || !(strings.Contains(err.Error(), "q_prj") || strings.Contains(err.Error(), "attn")) {
			t.Errorf("%q: error %v", src, err)
		}
	}
}

// TestPPOStage: a LoRA reward model on the preference pairs, then PPO of
// a LoRA policy against it on the identity prompts.
func TestPPOStage(t *testing.T) {
	vars := setup(t)
	rm := runKind(t, rewardmodel.Kind(), `
model         = base
data          = prefs
learning_rate = 5e-3
max_steps     = 10
batch_size    = 4
`, vars, "", nil)
	vars["rm"] = art(stage.AdapterArtifact, rm.OutputDir("adapter"))
	rec := &recorder{}
	req := runKind(t, ppo.Kind(), `
model           = base
reward          = rm
data            = sft_data
max_steps       = 4
batch_size      = 4
mini_batch_size = 2
ppo_epochs      = 2
max_new_tokens  = 8
learning_rate   = 1e-3
`, vars, "", rec)
	for _, f := range []string{"metrics.json", "reward.png", "loss.png"} {
		if _, err := os.Stat(filepath.Join(req.OutputDir("report"), f)); err != nil {
			t.Error(err)
		}
	}
	if _, _, err := lora.Load(req.OutputDir("adapter")); err != nil {
		t.Error(err)
	}
	for _, k := range []string{"reward", "kl", "policy_loss", "value_loss", "entropy", "clip_fraction", "response_length"} {
		if len(rec.Values[k]) != 4 {
			t.Errorf("metric %s: %v", k, rec.Values[k])
		}
	}
}
