package evaluate

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/stagetest"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

// The fixture: a byte-level BPE tokenizer trained by the tokenize kind on
// the self-cognition example, a tiny random Llama carrying it, the same
// model with a random value head (a "reward model"), a LoRA adapter with
// non-zero weights and its own value head, and the tokenized identity
// validation split and preference validation split.

type recorder = stagetest.Recorder

func decodeHCL(t *testing.T, spec hcldec.Spec, src string, vars map[string]cty.Value) cty.Value {
	t.Helper()
	return stagetest.MustDecode(t, spec, src, vars)
}

func newRequest(t *testing.T, args cty.Value, base string) *stage.Request {
	t.Helper()
	return stagetest.NewRequest(t, args, base, "", &recorder{})
}

var art = stagetest.Artifact

type fixture struct {
	tok, model, rm, adapter string
	sftVal, prefsVal        string
	vars                    map[string]cty.Value
}

var (
	fixtureOnce sync.Once
	theFixture  *fixture
	fixtureErr  error
	fixtureDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func setup(t *testing.T) *fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		fixtureDir, fixtureErr = os.MkdirTemp("", "lathe-evaluate-")
		if fixtureErr == nil {
			theFixture, fixtureErr = build(t, fixtureDir)
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return theFixture
}

// tinyConfig is the fixture model's shape.
var tinyConfig = llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 400, Hidden: 32,
	Intermediate: 64, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, RopeTheta: 10000, RMSNormEps: 1e-5,
	MaxPositions: 512, BOSTokenID: -1}

func build(t *testing.T, dir string) (*fixture, error) {
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		return nil, err
	}
	tokenizeRun := func(src string, vars map[string]cty.Value) (*stage.Request, error) {
		args := decodeHCL(t, tokenize.Kind().Schema, src, vars)
		staging, err := os.MkdirTemp(dir, "stage-")
		if err != nil {
			return nil, err
		}
		req := &stage.Request{Args: args, BaseDir: examples, StagingDir: staging, ScratchDir: filepath.Join(staging, "scratch")}
		if err := os.MkdirAll(req.ScratchDir, 0o755); err != nil {
			return nil, err
		}
		_, err = tokenize.Kind().Run(context.Background(), req)
		return req, err
	}
	tok, err := tokenizeRun(`
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
	if err != nil {
		return nil, err
	}
	f := &fixture{tok: tok.OutputDir("tokenizer"), model: filepath.Join(dir, "base"), rm: filepath.Join(dir, "rm"), adapter: filepath.Join(dir, "adapter")}
	m, err := llama.New(tinyConfig, cpu.New())
	if err != nil {
		return nil, err
	}
	defer m.Free()
	if err := m.InitRandom(1, 0.05); err != nil {
		return nil, err
	}
	for _, d := range []string{f.model, f.rm} {
		if err := m.Save(d, safetensors.F32); err != nil {
			return nil, err
		}
		if err := copyTokenizer(f.tok, d); err != nil {
			return nil, err
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	randVec := func(n int, std float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * std
		}
		return v
	}
	if err := lora.SaveValueHead(f.rm, randVec(tinyConfig.Hidden, 0.5), 0.1); err != nil {
		return nil, err
	}
	// A rank-4 adapter on q_proj and v_proj with non-zero B, and a value
	// head of its own.
	tensors := map[string]lora.Tensor{}
	c := tinyConfig
	for l := range c.Layers {
		for _, mod := range []struct {
			name string
			out  int
		}{{"q_proj", c.Heads * c.HeadDim}, {"v_proj", c.KVHeads * c.HeadDim}} {
			p := "model.layers." + strconv.Itoa(l) + ".self_attn." + mod.name
			tensors[p+llama.LoRAASuffix] = lora.Tensor{Shape: []int{4, c.Hidden}, Data: randVec(4*c.Hidden, 0.3)}
			tensors[p+llama.LoRABSuffix] = lora.Tensor{Shape: []int{mod.out, 4}, Data: randVec(mod.out*4, 0.3)}
		}
	}
	if err := lora.Save(f.adapter, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}, tensors, safetensors.F32); err != nil {
		return nil, err
	}
	if err := lora.SaveValueHead(f.adapter, randVec(tinyConfig.Hidden, 0.5), -0.2); err != nil {
		return nil, err
	}
	vars := map[string]cty.Value{
		"tok":     art(stage.TokenizerArtifact, f.tok),
		"base":    art(stage.ModelArtifact, f.model),
		"rm":      art(stage.ModelArtifact, f.rm),
		"adapter": art(stage.AdapterArtifact, f.adapter),
	}
	sft, err := tokenizeRun(`
tokenizer = tok
dataset {
  path    = "self-cognition/data/identity.json"
  format  = "alpaca"
  replace = { "{{name}}" = "Ada", "{{author}}" = "Lovelace Labs" }
}
template   = "default"
cutoff_len = 96
val_size   = 0.2
`, vars)
	if err != nil {
		return nil, err
	}
	prefs, err := tokenizeRun(`
tokenizer = tok
dataset {
  path    = "dpo/data/preferences.json"
  format  = "alpaca"
  ranking = true
}
template   = "default"
cutoff_len = 96
val_size   = 0.5
`, vars)
	if err != nil {
		return nil, err
	}
	f.sftVal, f.prefsVal = sft.OutputDir("validation"), prefs.OutputDir("validation")
	vars["sft_val"] = art(stage.DatasetArtifact, f.sftVal)
	vars["prefs_val"] = art(stage.DatasetArtifact, f.prefsVal)
	vars["prefs_train"] = art(stage.DatasetArtifact, prefs.OutputDir("dataset"))
	f.vars = vars
	return f, nil
}

func copyTokenizer(src, dst string) error {
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// withVars returns the fixture's variables plus extra ones.
func withVars(base map[string]cty.Value, extra map[string]cty.Value) map[string]cty.Value {
	out := map[string]cty.Value{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// runEval decodes src, checks the static diagnostics and runs the kind
// with base as the pipeline directory.
func runEval(t *testing.T, src string, vars map[string]cty.Value, base string) (*stage.Request, map[string]float64) {
	t.Helper()
	k := Kind()
	args := decodeHCL(t, k.Schema, src, vars)
	outs, d := k.Outputs(args)
	if d.HasErrors() {
		t.Fatal(d)
	}
	req := newRequest(t, args, base)
	res, err := k.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	mv := res.Values["metrics"]
	if !mv.Type().Equals(outs["metrics"].Type) {
		t.Fatalf("metrics value of type %s, declared %s", mv.Type().FriendlyName(), outs["metrics"].Type.FriendlyName())
	}
	metrics := map[string]float64{}
	for key, v := range mv.AsValueMap() {
		metrics[key], _ = v.AsBigFloat().Float64()
	}
	return req, metrics
}

func testdata(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func keysOf(m map[string]float64) string {
	return strings.Join(sortedKeys(m), ",")
}

// decodeDiags decodes src against the kind's schema and returns the
// diagnostics instead of failing.
func decodeDiags(t *testing.T, src string, vars map[string]cty.Value) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return hcldec.Decode(f.Body, Kind().Schema, &hcl.EvalContext{Variables: vars})
}
