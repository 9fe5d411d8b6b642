package llama

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tensor"
)

func TestParseConfigErrors(t *testing.T) {
	base := `"vocab_size": 96, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4`
	for _, tc := range []struct {
		name, json, wantErr string
	}{
		{"ok", `{"model_type": "llama", ` + base + `}`, ""},
		{"arch only", `{"architectures": ["Qwen2ForCausalLM"], ` + base + `}`, ""},
		{"unknown arch", `{"architectures": ["GPT2LMHeadModel"], ` + base + `}`, "architectures"},
		{"arch mismatch", `{"architectures": ["Qwen2ForCausalLM"], "model_type": "llama", ` + base + `}`, "model_type"},
		{"no type", `{` + base + `}`, "model_type"},
		{"missing vocab", `{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}`, "vocab_size"},
		{"bad heads", `{"model_type": "llama", ` + base + `, "num_key_value_heads": 3}`, "num_key_value_heads"},
		{"fractional", `{"model_type": "llama", ` + base + `, "head_dim": 8.5}`, "head_dim"},
		{"odd head dim", `{"model_type": "llama", ` + base + `, "head_dim": 7}`, "head_dim"},
		{"act", `{"model_type": "llama", ` + base + `, "hidden_act": "gelu"}`, "hidden_act"},
		{"rope type", `{"model_type": "llama", ` + base + `, "rope_scaling": {"rope_type": "yarn", "factor": 4}}`, "rope_scaling.rope_type"},
		{"rope field", `{"model_type": "llama", ` + base + `, "rope_scaling": {"type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4}}`, "original_max_position_embeddings"},
		{"qwen window", `{"model_type": "qwen2", ` + base + `, "use_sliding_window": true}`, "use_sliding_window"},
		{"eps", `{"model_type": "llama", ` + base + `, "rms_norm_eps": 0}`, "rms_norm_eps"},
		{"not json", `{`, "config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseConfigFields(t *testing.T) {
	c, err := ParseConfig([]byte(`{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 96,
		"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 16, "rope_theta": 1e6, "tie_word_embeddings": true,
		"bos_token_id": 1, "eos_token_id": [2, 3], "rope_scaling": {"rope_type": "llama3", "factor": 8,
		"low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 64}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.QKNorm || c.QKVBias || c.OBias || !c.TieEmbeddings || c.HeadDim != 16 || c.KVHeads != 2 ||
		c.RopeTheta != 1e6 || c.RopeScaling == nil || c.RopeScaling.OriginalMaxPositions != 64 ||
		c.BOSTokenID != 1 || len(c.EOSTokenIDs) != 2 || c.RMSNormEps != 1e-6 {
		t.Fatalf("parsed %+v", c)
	}
	q2, err := ParseConfig([]byte(`{"model_type": "qwen2", "vocab_size": 9, "hidden_size": 8, "intermediate_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	if !q2.QKVBias || q2.OBias || q2.HeadDim != 4 || q2.KVHeads != 2 {
		t.Fatalf("qwen2 implicit bias: %+v", q2)
	}
}

func tinyConfig(modelType string, hidden, layers, heads, kvHeads, inter, vocab int, tie bool) Config {
	c := Config{ModelType: modelType, Architecture: "LlamaForCausalLM", VocabSize: vocab, Hidden: hidden,
		Intermediate: inter, Layers: layers, Heads: heads, KVHeads: kvHeads, HeadDim: hidden / heads,
		RopeTheta: 10000, RMSNormEps: 1e-5, TieEmbeddings: tie, BOSTokenID: -1}
	if modelType == "qwen3" {
		c.Architecture, c.QKNorm, c.QKVBias, c.OBias = "Qwen3ForCausalLM", true, true, true
	}
	return c
}

func randomBatch(B, T, V int, seed uint32) *Batch {
	b := &Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	x := seed*2654435761 + 1
	for i := range b.Tokens {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b.Tokens[i] = int32(x % uint32(V))
	}
	for i := range b.Targets {
		if (i+1)%T == 0 || i%7 == 3 {
			b.Targets[i] = -100
		} else {
			b.Targets[i] = b.Tokens[i+1]
		}
	}
	return b
}

func newRandomModel(t testing.TB, c Config, seed uint64) *Model {
	t.Helper()
	m, err := New(c, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitRandom(seed, 0.05); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDeterministicAcrossThreads: loss and every gradient are bit-identical
// with GOMAXPROCS 1 and 2.
func TestDeterministicAcrossThreads(t *testing.T) {
	c := tinyConfig("qwen3", 64, 2, 4, 2, 96, 300, false)
	b := randomBatch(3, 80, c.VocabSize, 5) // T spans two attention tiles
	b.Segments = make([]int32, b.B*b.T)
	for i := range b.Segments {
		b.Segments[i] = int32(i % b.T / 50)
	}
	run := func(procs int) (float32, []float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		m := newRandomModel(t, c, 3)
		defer m.Free()
		loss, err := m.Forward(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
		return loss, download(t, m.be, m.GradBuffer())
	}
	l1, g1 := run(1)
	l2, g2 := run(2)
	// ForwardBackward computes the same numbers in one pass, with or
	// without activation recomputation.
	for _, recompute := range []bool{false, true} {
		m := newRandomModel(t, c, 3)
		defer m.Free()
		m.SetRecompute(recompute)
		l3, err := m.ForwardBackward(b)
		if err != nil {
			t.Fatal(err)
		}
		g3 := download(t, m.be, m.GradBuffer())
		if math.Float32bits(l1) != math.Float32bits(l3) {
			t.Fatalf("recompute %v: loss %v from Forward, %v from ForwardBackward", recompute, l1, l3)
		}
		for i := range g1 {
			if math.Float32bits(g1[i]) != math.Float32bits(g3[i]) {
				t.Fatalf("recompute %v: grad element %d: %v from Forward+Backward, %v from ForwardBackward", recompute, i, g1[i], g3[i])
			}
		}
		if recompute {
			// Forward + Backward recompute too.
			m.ZeroGrad()
			if _, err := m.Forward(b); err != nil {
				t.Fatal(err)
			}
			if err := m.Backward(); err != nil {
				t.Fatal(err)
			}
			g4 := download(t, m.be, m.GradBuffer())
			for i := range g1 {
				if math.Float32bits(g1[i]) != math.Float32bits(g4[i]) {
					t.Fatalf("recompute Forward+Backward: grad element %d: %v, want %v", i, g4[i], g1[i])
				}
			}
		}
	}
	if math.Float32bits(l1) != math.Float32bits(l2) {
		t.Fatalf("loss %v with 1 thread, %v with 2", l1, l2)
	}
	for i := range g1 {
		if math.Float32bits(g1[i]) != math.Float32bits(g2[i]) {
			t.Fatalf("grad element %d: %v with 1 thread, %v with 2", i, g1[i], g2[i])
		}
	}
}

// TestGradAccumulation: two Backward calls without ZeroGrad double the
// gradient; ZeroGrad clears it.
func TestGradAccumulation(t *testing.T) {
	c := tinyConfig("llama", 32, 1, 4, 2, 48, 64, true)
	m := newRandomModel(t, c, 1)
	defer m.Free()
	b := randomBatch(2, 9, c.VocabSize, 2)
	step := func() {
		if _, err := m.Forward(b); err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
	}
	step()
	g1 := download(t, m.be, m.GradBuffer())
	step()
	g2 := download(t, m.be, m.GradBuffer())
	for i := range g1 {
		if math.Abs(float64(g2[i]-2*g1[i])) > 1e-6*math.Max(1, math.Abs(float64(g1[i]))) {
			t.Fatalf("element %d: %v after two steps, %v after one", i, g2[i], g1[i])
		}
	}
	if err := m.Backward(); err == nil {
		t.Fatal("Backward without Forward succeeded")
	}
	m.ZeroGrad()
	for _, v := range download(t, m.be, m.GradBuffer()) {
		if v != 0 {
			t.Fatal("ZeroGrad left a non-zero gradient")
		}
	}
}

// TestTrainingReducesLoss: a few AdamW steps on one batch lower its loss.
func TestTrainingReducesLoss(t *testing.T) {
	c := tinyConfig("llama", 32, 2, 4, 2, 64, 50, false)
	m := newRandomModel(t, c, 9)
	defer m.Free()
	b := randomBatch(2, 16, c.VocabSize, 4)
	var first, last float32
	for i := 0; i < 8; i++ {
		m.ZeroGrad()
		loss, err := m.Forward(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
		if err := m.AdamW(AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, NoDecayNormsBias: true}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = loss
		}
		last = loss
	}
	if !(last < first-0.5) {
		t.Fatalf("loss %v -> %v after 8 steps", first, last)
	}
}

func TestSaveLoad(t *testing.T) {
	c := tinyConfig("qwen3", 32, 2, 4, 2, 48, 70, false)
	m := newRandomModel(t, c, 4)
	defer m.Free()
	for _, tc := range []struct {
		name    string
		dt      safetensors.DType
		sharded bool
	}{{"f32", safetensors.F32, false}, {"bf16", safetensors.BF16, false}, {"f32-sharded", safetensors.F32, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := m.Save(dir, tc.dt); err != nil {
				t.Fatal(err)
			}
			if tc.sharded {
				set, err := safetensors.OpenDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				var ts []safetensors.Tensor
				for _, ti := range set.Tensors() {
					raw, err := set.Bytes(ti.Name)
					if err != nil {
						t.Fatal(err)
					}
					ts = append(ts, safetensors.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: raw})
				}
				set.Close()
				if err := os.Remove(filepath.Join(dir, safetensors.SingleFileName)); err != nil {
					t.Fatal(err)
				}
				files, err := safetensors.WriteSharded(dir, ts, nil, 20000)
				if err != nil {
					t.Fatal(err)
				}
				if len(files) < 2 {
					t.Fatalf("expected several shards, got %v", files)
				}
			}
			m2, err := Load(dir, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Free()
			if m2.Cfg.QKNorm != c.QKNorm || m2.Cfg.HeadDim != c.HeadDim || m2.Cfg.VocabSize != c.VocabSize || m2.NumParams() != m.NumParams() {
				t.Fatalf("config round trip: %+v", m2.Cfg)
			}
			want := download(t, m.be, m.ParamBuffer())
			got := download(t, m2.be, m2.ParamBuffer())
			for i := range want {
				w := want[i]
				if tc.dt == safetensors.BF16 {
					w = tensor.F32FromBF16(tensor.BF16FromF32(w))
				}
				if got[i] != w {
					t.Fatalf("element %d: loaded %v, want %v", i, got[i], w)
				}
			}
		})
	}
	// A missing tensor is reported by name.
	dir := t.TempDir()
	if err := m.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	other := c
	other.QKNorm = false
	other.ModelType = "llama"
	m3, err := New(other, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Free()
	if err := m3.LoadWeights(dir); err == nil || !strings.Contains(err.Error(), "unexpected tensor") {
		t.Fatalf("loading qwen3 weights into a llama config: %v", err)
	}
	dir2 := t.TempDir()
	if err := m3.Save(dir2, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	m4, err := New(c, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m4.Free()
	if err := m4.LoadWeights(dir2); err == nil || !strings.Contains(err.Error(), `missing tensor "model.layers.0.self_attn.q_norm.weight"`) {
		t.Fatalf("loading llama weights into a qwen3 config: %v", err)
	}
}

func TestBatchValidation(t *testing.T) {
	c := tinyConfig("llama", 32, 1, 4, 4, 48, 40, true)
	m := newRandomModel(t, c, 1)
	defer m.Free()
	good := randomBatch(2, 5, c.VocabSize, 1)

	// Every target ignored: loss 0 and no gradient.
	masked := *good
	masked.Targets = make([]int32, len(good.Targets))
	for i := range masked.Targets {
		masked.Targets[i] = -100
	}
	if loss, err := m.ForwardBackward(&masked); err != nil || loss != 0 {
		t.Fatalf("fully masked batch: loss %v, err %v", loss, err)
	}
	for _, v := range download(t, m.be, m.GradBuffer()) {
		if v != 0 {
			t.Fatal("fully masked batch produced a gradient")
		}
	}
	for _, tc := range []struct {
		name    string
		edit    func(b *Batch)
		wantErr string
	}{
		{"token range", func(b *Batch) { b.Tokens[3] = 40 }, "outside vocabulary"},
		{"target range", func(b *Batch) { b.Targets[3] = 99 }, "outside vocabulary"},
		{"short targets", func(b *Batch) { b.Targets = b.Targets[:4] }, "targets"},
		{"positions", func(b *Batch) { b.Positions = make([]int32, 3) }, "positions"},
		{"shape", func(b *Batch) { b.T = 0 }, "shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := *good
			b.Tokens = append([]int32(nil), good.Tokens...)
			b.Targets = append([]int32(nil), good.Targets...)
			tc.edit(&b)
			if _, err := m.Forward(&b); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// BenchmarkTrainStep measures forward + backward + AdamW in tokens/s.
func BenchmarkTrainStep(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
		B, T int
	}{
		{"tiny", tinyConfig("llama", 64, 4, 4, 4, 4*64*2/3/16*16, 512, false), 8, 128},
		{"stories15M", tinyConfig("llama", 288, 6, 6, 6, 768, 32000, false), 8, 256},
	} {
		for _, recompute := range []bool{false, true} {
			name := bc.name
			if recompute {
				name += "-recompute"
			}
			b.Run(name, func(b *testing.B) {
				m := newRandomModel(b, bc.cfg, 1)
				defer m.Free()
				m.SetRecompute(recompute)
				batch := randomBatch(bc.B, bc.T, bc.cfg.VocabSize, 1)
				if err := m.Reserve(bc.B * bc.T); err != nil {
					b.Fatal(err)
				}
				opt := AdamWConfig{LR: 1e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
				step := func() {
					m.ZeroGrad()
					if _, err := m.ForwardBackward(batch); err != nil {
						b.Fatal(err)
					}
					if err := m.AdamW(opt); err != nil {
						b.Fatal(err)
					}
				}
				step() // allocates the optimizer state
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					step()
				}
				b.ReportMetric(float64(bc.B*bc.T)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
				b.ReportMetric(float64(m.act.mem.Bytes())/(1<<20), "act-MiB")
			})
		}
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	src := `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96, "hidden_size": 32,
		"intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
		"rope_theta": 500000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": true, "initializer_range": 0.02,
		"eos_token_id": [2, 5], "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
		"high_freq_factor": 4.0, "original_max_position_embeddings": 64}}`
	c, err := ParseConfig([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c.Layers = 3 // an edit must be written
	data, err := c.JSON("bfloat16")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if c2.Layers != 3 || c2.KVHeads != 1 || c2.RopeTheta != 500000 || *c2.RopeScaling != *c.RopeScaling ||
		!c2.TieEmbeddings || len(c2.EOSTokenIDs) != 2 || c2.raw["initializer_range"] != 0.02 || c2.raw["torch_dtype"] != "bfloat16" {
		t.Fatalf("round trip lost fields:\n%s", data)
	}
	// A config built in Go parses back to itself.
	g := tinyConfig("qwen3", 32, 2, 4, 2, 48, 70, true)
	data, err = g.JSON("float32")
	if err != nil {
		t.Fatal(err)
	}
	g2, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	g2.raw = nil
	if g2.ModelType != "qwen3" || g2.Architecture != "Qwen3ForCausalLM" || !g2.QKNorm || !g2.QKVBias || !g2.OBias ||
		g2.HeadDim != g.HeadDim || g2.Intermediate != 48 || !g2.TieEmbeddings {
		t.Fatalf("Go config round trip: %+v\n%s", g2, data)
	}
}

// TestSavedModelRunsInReference: a model initialised and saved by lathe
// (config.json written by Config.JSON) gives the reference the same loss and
// logits, so the files mean to transformers what they mean to lathe.
func TestSavedModelRunsInReference(t *testing.T) {
	needTorch(t)
	c := tinyConfig("qwen3", 32, 2, 4, 2, 48, 70, false)
	c.HeadDim = 12
	m := newRandomModel(t, c, 11)
	defer m.Free()
	dir := t.TempDir()
	if err := m.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	b := randomBatch(2, 10, c.VocabSize, 3)
	writeBatch(t, filepath.Join(dir, "batch.json"), b)
	runRef(t, "run", "--model", dir, "--batch", filepath.Join(dir, "batch.json"), "--out", filepath.Join(dir, "ref.safetensors"))
	ref, err := safetensors.OpenSingle(filepath.Join(dir, "ref.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want, err := ref.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Logits(b)
	if err != nil {
		t.Fatal(err)
	}
	if rel, abs := relErr(got, want, 1e-3); rel > 1e-5 {
		t.Fatalf("logits differ: max abs %.3e rel %.3e", abs, rel)
	}
	wantLoss, err := ref.Float32("loss")
	if err != nil {
		t.Fatal(err)
	}
	loss, err := m.ForwardBackward(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(loss-wantLoss[0])) / float64(wantLoss[0]); d > 1e-5 {
		t.Fatalf("loss %v, reference %v", loss, wantLoss[0])
	}
	for _, p := range m.Params {
		want, err := ref.Float32("grad." + p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if rel, abs := relErr(download(t, m.be, p.Grad), want, 1e-6); rel > 2e-5 {
			t.Errorf("grad %s: max abs %.3e rel %.3e", p.Name, abs, rel)
		}
	}
}
