package trainstage

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/memest"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

func TestCheckBatchSize(t *testing.T) {
	cases := []struct {
		v    cty.Value
		want string // "" = valid
	}{
		{cty.NumberIntVal(8), ""},
		{cty.StringVal("auto"), ""},
		{cty.NullVal(cty.DynamicPseudoType), ""},
		{cty.UnknownVal(cty.String), ""},
		{cty.NumberIntVal(0), "batch_size must be >= 1"},
		{cty.NumberFloatVal(1.5), "whole number"},
		{cty.StringVal("max"), `batch_size must be a whole number >= 1 or "auto" (the largest batch that fits the memory available), got "max"`},
		{cty.StringVal("8"), `got "8"`},
		{cty.True, `batch_size must be a whole number >= 1 or "auto", not bool`},
		{cty.ListVal([]cty.Value{cty.NumberIntVal(1)}), "not list of number"},
	}
	for _, c := range cases {
		d := checkBatchSize(c.v)
		switch {
		case c.want == "" && d.HasErrors():
			t.Errorf("%#v: %v", c.v, d)
		case c.want != "" && (!d.HasErrors() || !strings.Contains(d.Error(), c.want)):
			t.Errorf("%#v: %v, want %q", c.v, d, c.want)
		}
	}
}

// loopArgs are a pretrain stage's arguments as estimateInput and Resolver
// read them.
func loopArgs(batch cty.Value) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"batch_size": batch, "max_seq_len": cty.NumberIntVal(64), "gradient_accumulation": cty.NumberIntVal(1),
		"activation_recompute": cty.False, "save_steps": cty.NumberIntVal(0), "data": cty.NullVal(cty.DynamicPseudoType),
	})
}

// TestResolver checks batch_size = "auto": the largest power of two that
// fits LATHE_MEMORY_LIMIT, 1 when nothing fits, numbers untouched.
func TestResolver(t *testing.T) {
	cfg := llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 512, Hidden: 64, Intermediate: 192,
		Layers: 4, Heads: 4, KVHeads: 4, HeadDim: 16, RopeTheta: 10000, RMSNormEps: 1e-5, TieEmbeddings: true, BOSTokenID: -1}
	resolve := Resolver(func(cty.Value) (llama.Config, error) { return cfg, nil }, false, false)
	at := func(b int) int64 {
		in, err := estimateInput(GuardInput{Config: cfg, Args: loopArgs(cty.NumberIntVal(int64(b)))})
		if err != nil {
			t.Fatal(err)
		}
		e, err := memest.Training(in)
		if err != nil {
			t.Fatal(err)
		}
		return e.Total
	}
	// Halfway between what 16 and 32 rows need: 16 (24 would fit too,
	// but only powers of two are chosen).
	limit := (at(16) + at(32)) / 2
	t.Setenv(MemoryLimitEnv, fmt.Sprint(limit))
	args, note, err := resolve(loopArgs(cty.StringVal(AutoBatch)), stage.Machine{})
	if err != nil {
		t.Fatal(err)
	}
	if got := args.GetAttr("batch_size"); !got.RawEquals(cty.NumberIntVal(16)) {
		t.Errorf("auto → %#v, want 16 (%s)", got, note)
	}
	// A GPU stage fits the device's free memory (capped by the limit).
	gpu := stage.Machine{DeviceMemory: (at(8) + at(16)) / 2}
	if args, note, _ := resolve(loopArgs(cty.StringVal(AutoBatch)), gpu); !args.GetAttr("batch_size").RawEquals(cty.NumberIntVal(8)) ||
		!strings.Contains(note, "fits free GPU memory") {
		t.Errorf("GPU below the limit: %#v, %q", args.GetAttr("batch_size"), note)
	}
	gpu.DeviceMemory = 1 << 40
	if args, note, _ := resolve(loopArgs(cty.StringVal(AutoBatch)), gpu); !args.GetAttr("batch_size").RawEquals(cty.NumberIntVal(16)) ||
		!strings.Contains(note, "fits LATHE_MEMORY_LIMIT") {
		t.Errorf("GPU above the limit: %#v, %q", args.GetAttr("batch_size"), note)
	}
	if !strings.HasPrefix(note, "batch_size: auto → 16 (fits LATHE_MEMORY_LIMIT: ") {
		t.Errorf("note %q", note)
	}
	if !args.GetAttr("max_seq_len").RawEquals(cty.NumberIntVal(64)) {
		t.Error("other arguments changed")
	}
	// Plenty of memory: the cap.
	t.Setenv(MemoryLimitEnv, "1000GiB")
	if args, note, _ = resolve(loopArgs(cty.StringVal(AutoBatch)), stage.Machine{}); !args.GetAttr("batch_size").RawEquals(cty.NumberIntVal(MaxAutoBatch)) ||
		!strings.HasSuffix(note, fmt.Sprintf("; at most %d)", MaxAutoBatch)) {
		t.Errorf("no memory bound: %#v, %q", args.GetAttr("batch_size"), note)
	}
	// Nothing fits: 1, and the guard explains.
	t.Setenv(MemoryLimitEnv, "1MiB")
	if args, note, err = resolve(loopArgs(cty.StringVal(AutoBatch)), stage.Machine{}); err != nil || !args.GetAttr("batch_size").RawEquals(cty.NumberIntVal(1)) ||
		!strings.Contains(note, "not even 1 fits") {
		t.Errorf("nothing fits: %#v, %q, %v", args.GetAttr("batch_size"), note, err)
	}
	// A number is left alone.
	in := loopArgs(cty.NumberIntVal(3))
	if args, note, err = resolve(in, stage.Machine{}); err != nil || note != "" || !args.RawEquals(in) {
		t.Errorf("a number: %#v, %q, %v", args, note, err)
	}
	if _, _, err = resolve(loopArgs(cty.StringVal("most")), stage.Machine{}); err == nil {
		t.Error(`"most" resolved`)
	}
}

func TestFloorPow2(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 12: 8, 64: 64, 100: 64} {
		if got := floorPow2(n); got != want {
			t.Errorf("floorPow2(%d) = %d, want %d", n, got, want)
		}
	}
}

// tinyConfigJSON is the tiny shape's config.json.
const tinyConfigJSON = `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": 64,
 "intermediate_size": 192, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": true, "max_position_embeddings": 256}`

// ppoArgs are a ppo stage's arguments over a tiny model, a reward model
// of the same shape and a dataset of prompts of 5 and 12 tokens.
func ppoArgs(t *testing.T, method string) cty.Value {
	t.Helper()
	model := t.TempDir()
	if err := os.WriteFile(filepath.Join(model, "config.json"), []byte(tinyConfigJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	ds := t.TempDir()
	w := data.NewShardWriter(0)
	for _, prompt := range []int{5, 12, 3} {
		s := data.Sample{Tokens: make([]uint32, 20), Mask: make([]bool, 20)}
		for i := prompt; i < 20; i++ {
			s.Mask[i] = true
		}
		if err := w.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	info, err := w.WriteFile(filepath.Join(ds, "train-0.bin"))
	if err != nil {
		t.Fatal(err)
	}
	info.File = "train-0.bin"
	m := data.Manifest{ShardVersion: data.ShardVersion, Kind: "sft", SamplesWritten: info.Samples, Tokens: info.Tokens,
		TrainableTokens: info.TrainableTokens, Splits: map[string]*data.Split{"train": {Samples: info.Samples, Shards: []data.ShardInfo{info}}}}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(ds, data.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	art := func(kind, dir string) cty.Value {
		return stage.ArtifactVal(stage.Artifact{Kind: kind, Digest: "sha256:00", Path: dir})
	}
	return cty.ObjectVal(map[string]cty.Value{
		"model": art(stage.ModelArtifact, model), "adapter": cty.NullVal(cty.DynamicPseudoType),
		"reward": art(stage.ModelArtifact, model), "data": art(stage.DatasetArtifact, ds),
		"method": cty.StringVal(method), "lora": cty.NullVal(cty.DynamicPseudoType), "freeze": cty.NullVal(cty.DynamicPseudoType),
		"merge": cty.False, "batch_size": cty.NumberIntVal(8), "mini_batch_size": cty.NumberIntVal(4),
		"max_new_tokens": cty.NumberIntVal(16),
	})
}

// TestPPOGuard checks the ppo kind's estimate and guard: the rollouts'
// length from the data's longest prompt, a refusal with options that fit
// when the limit is too small, and -force.
func TestPPOGuard(t *testing.T) {
	args := ppoArgs(t, Full)
	in, err := ppoInput(args)
	if err != nil {
		t.Fatal(err)
	}
	if in.PromptLen != 12 || in.Policy.SeqLen != 28 || in.Policy.BatchSize != 8 || in.Policy.Method != memest.Full || in.RewardLoRARank != 0 {
		t.Errorf("ppo input %+v", in)
	}
	s, err := EstimatePPO(args)
	if err != nil || !strings.HasPrefix(s, "peak memory ≈ ") {
		t.Errorf("EstimatePPO: %q, %v", s, err)
	}
	est, err := memest.PPO(in)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(MemoryLimitEnv, fmt.Sprint(est.Total-est.Piece(memest.PieceReference)/2))
	_, err = GuardPPO(&stage.Request{Args: args}, nil)
	if err == nil || !strings.Contains(err.Error(), "not enough memory") || !strings.Contains(err.Error(), "reference model") ||
		!strings.Contains(err.Error(), `method = "lora" → `) {
		t.Errorf("guard: %v", err)
	}
	release, err := GuardPPO(&stage.Request{Args: args, Force: true}, nil)
	if err != nil {
		t.Fatalf("forced: %v", err)
	}
	release()
	t.Setenv(MemoryLimitEnv, "100GiB")
	release, err = GuardPPO(&stage.Request{Args: ppoArgs(t, LoRA)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
}

// deviceWithMemory is a CPU backend standing in for a device that reports
// its memory.
type deviceWithMemory struct {
	*cpu.Backend
	free int64
	err  error
}

func (d deviceWithMemory) Name() string { return "cuda:0" }
func (d deviceWithMemory) DeviceMemory() (free, total int64, err error) {
	return d.free, 2 * d.free, d.err
}

// TestMemoryFor: a device that reports its memory is what a stage on it
// is checked against (LATHE_MEMORY_LIMIT still caps it); otherwise the
// host's.
func TestMemoryFor(t *testing.T) {
	t.Setenv(MemoryLimitEnv, "")
	host, hostSource := availableMemory()
	for _, tc := range []struct {
		name   string
		be     tensor.Backend
		limit  string
		want   int64
		source string
	}{
		{"cpu", cpu.New(), "", host, hostSource},
		{"nil", nil, "", host, hostSource},
		{"device", deviceWithMemory{cpu.New(), 80 << 30, nil}, "", 80 << 30, "free memory on cuda:0"},
		{"device capped", deviceWithMemory{cpu.New(), 80 << 30, nil}, "1GiB", 1 << 30, MemoryLimitEnv},
		{"device limit above", deviceWithMemory{cpu.New(), 1 << 30, nil}, "4GiB", 1 << 30, "free memory on cuda:0"},
		{"device error", deviceWithMemory{cpu.New(), 0, errors.New("no context")}, "", host, hostSource},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(MemoryLimitEnv, tc.limit)
			got, source := memoryFor(tc.be)
			if tc.name == "device error" || tc.be == nil || tc.name == "cpu" {
				// The host's figure moves; only its source is stable.
				if source != tc.source {
					t.Errorf("source %q, want %q", source, tc.source)
				}
				return
			}
			if got != tc.want || source != tc.source {
				t.Errorf("memoryFor = %d (%s), want %d (%s)", got, source, tc.want, tc.source)
			}
		})
	}
}
