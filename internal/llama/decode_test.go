package llama

import (
	"math"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
)

// greedyByLogits is generation the slow way: the whole sequence through
// Logits at every step, argmax of the last position.
func greedyByLogits(t *testing.T, m *Model, prompt []int32, n int) []int32 {
	t.Helper()
	seq := append([]int32(nil), prompt...)
	var out []int32
	V := m.Cfg.VocabSize
	for range n {
		lg, err := m.Logits(&Batch{B: 1, T: len(seq), Tokens: seq})
		if err != nil {
			t.Fatal(err)
		}
		last := lg[(len(seq)-1)*V : len(seq)*V]
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		out = append(out, int32(best))
		seq = append(seq, int32(best))
	}
	return out
}

func TestGenerateGreedyMatchesFullForward(t *testing.T) {
	qwen := tinyConfig("qwen3", 32, 2, 4, 2, 48, 61, true)
	lora := tinyConfig("llama", 32, 2, 4, 1, 64, 50, false)
	window := tinyConfig("mistral", 32, 2, 4, 2, 48, 50, false)
	window.SlidingWindow = 4 // generation runs past it
	family := func(mt string, edit func(*Config)) Config {
		shape := Config{VocabSize: 50, Hidden: 32, Intermediate: 48, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, RMSNormEps: 1e-6, MaxPositions: 64}
		c, err := NewConfig(mt, shape)
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		opts Options
	}{
		{"llama-gqa", tinyConfig("llama", 32, 3, 4, 2, 64, 50, false), Options{}},
		{"qwen3-tied", qwen, Options{}},
		{"mistral-window", window, Options{}},
		{"gemma2", family("gemma2", func(c *Config) { c.SlidingWindow, c.AttnSoftCap, c.FinalSoftCap = 5, 2, 3 }), Options{}},
		{"baichuan-alibi", family("baichuan", func(c *Config) { c.KVHeads, c.HeadDim, c.ALiBi = 4, 8, true }), Options{}},
		{"chatglm", family("chatglm", nil), Options{}},
		{"phi3-partial", family("phi3", func(c *Config) { c.RotaryDim = 4 }), Options{}},
		{"lora", lora, Options{Trainable: func(string) bool { return false },
			LoRA: &LoRAOptions{Modules: allModules(lora), Rank: 4, Scale: 2, Seed: 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewWith(tc.cfg, cpu.New(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			m.InitRandom(7, 0.3) // large weights: varied argmaxes
			if tc.opts.LoRA != nil {
				randomizeAdapters(t, m, 2)
			}
			prompts := [][]int32{{3, 9, 14, 2, 7}, {11}, {5, 6, 7, 8, 9, 10, 11, 12, 13}}
			const n = 12
			got, finish, err := m.Generate(prompts, GenerateOptions{MaxNewTokens: n}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for r, p := range prompts {
				want := greedyByLogits(t, m, p, n)
				if finish[r] != FinishLength || len(got[r]) != n {
					t.Fatalf("row %d: %d tokens, finish %s", r, len(got[r]), finish[r])
				}
				for i := range want {
					if got[r][i] != want[i] {
						t.Fatalf("row %d token %d: cached %v, full forward %v", r, i, got[r], want)
					}
				}
				// Alone, the row generates the same.
				alone, _, err := m.Generate([][]int32{p}, GenerateOptions{MaxNewTokens: n}, nil)
				if err != nil {
					t.Fatal(err)
				}
				for i := range alone[0] {
					if alone[0][i] != got[r][i] {
						t.Fatalf("row %d alone differs: %v vs batched %v", r, alone[0], got[r])
					}
				}
			}
		})
	}
}

func TestGenerateStopsAndErrors(t *testing.T) {
	cfg := tinyConfig("llama", 32, 2, 4, 2, 64, 50, false)
	cfg.MaxPositions = 16
	m, _ := New(cfg, cpu.New())
	m.InitRandom(1, 0.3)
	p := []int32{1, 2, 3}
	free, _, _ := m.Generate([][]int32{p}, GenerateOptions{MaxNewTokens: 5}, nil)
	stopAt := free[0][2]
	out, finish, err := m.Generate([][]int32{p}, GenerateOptions{MaxNewTokens: 5, StopTokens: []int32{stopAt}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := 0
	for free[0][first] != stopAt {
		first++
	}
	if finish[0] != FinishStop || len(out[0]) != first+1 {
		t.Errorf("stop token: %v %s (free run %v)", out[0], finish[0], free[0])
	}
	// onToken returning false stops the row.
	seen := 0
	out, finish, _ = m.Generate([][]int32{p}, GenerateOptions{MaxNewTokens: 5}, func(int, int32) bool { seen++; return seen < 2 })
	if len(out[0]) != 2 || finish[0] != FinishStop {
		t.Errorf("callback stop: %v %s", out[0], finish[0])
	}
	if _, _, err := m.Generate([][]int32{p}, GenerateOptions{MaxNewTokens: 14}, nil); err == nil {
		t.Error("generation past max_position_embeddings accepted")
	}
	if _, _, err := m.Generate([][]int32{{}}, GenerateOptions{MaxNewTokens: 1}, nil); err == nil {
		t.Error("empty prompt accepted")
	}
	// Sampling is deterministic for a seed and differs across seeds.
	o := GenerateOptions{MaxNewTokens: 8, Temperature: 1.5, TopK: 20, TopP: 0.95, Seed: 4}
	a, _, _ := m.Generate([][]int32{p}, o, nil)
	b, _, _ := m.Generate([][]int32{p}, o, nil)
	o.Seed = 5
	c, _, _ := m.Generate([][]int32{p}, o, nil)
	if !equal32(a[0], b[0]) || equal32(a[0], c[0]) {
		t.Errorf("seeded sampling: %v %v %v", a[0], b[0], c[0])
	}
}

func equal32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSampleFiltered(t *testing.T) {
	z := []float64{math.Log(0.5), math.Log(0.3), math.Log(0.15), math.Log(0.05)}
	idx := make([]int, 4)
	// Full distribution: u falls in the cumulative intervals.
	for _, tc := range []struct {
		topK int
		topP float64
		u    float64
		want int
	}{
		{0, 0, 0.49, 0}, {0, 0, 0.51, 1}, {0, 0, 0.81, 2}, {0, 0, 0.96, 3},
		{2, 0, 0.62, 0}, {2, 0, 0.63, 1}, // top-2: 0.5/0.8 = 0.625
		{0, 0.7, 0.62, 0}, {0, 0.7, 0.63, 1}, {0, 0.7, 0.99, 1}, // top-p 0.7 keeps {0,1}
		{0, 0.85, 0.99, 2}, // 0.8 < 0.85: the third token joins
	} {
		if got := sampleFiltered(z, 1, tc.topK, tc.topP, idx, tc.u); got != tc.want {
			t.Errorf("topK %d topP %v u %v: %d, want %d", tc.topK, tc.topP, tc.u, got, tc.want)
		}
	}
	// Temperature 0.5 squares the odds: p ∝ 0.25, 0.09, ...
	s := 0.25 + 0.09 + 0.0225 + 0.0025
	if got := sampleFiltered(z, 0.5, 0, 0, idx, 0.25/s-1e-9); got != 0 {
		t.Errorf("temperature: %d", got)
	}
	if got := sampleFiltered(z, 0.5, 0, 0, idx, 0.25/s+1e-9); got != 1 {
		t.Errorf("temperature: %d", got)
	}
	// Repetition penalty: a penalised leader loses to the runner-up.
	smp := newSampler(GenerateOptions{RepetitionPenalty: 2}, 3)
	if got := smp.pick([]float32{2, 1.5, -1}, []int32{0}); got != 1 {
		t.Errorf("repetition penalty: picked %d", got)
	}
	smp = newSampler(GenerateOptions{RepetitionPenalty: 2}, 3)
	if got := smp.pick([]float32{-1, -1.5, -3}, []int32{0}); got != 1 {
		t.Errorf("repetition penalty on a negative logit: picked %d", got)
	}
}
