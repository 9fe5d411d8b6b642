package llama

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
)

// perturbNormsAndBiases gives every bias (zero after InitRandom) and norm
// weight (one after InitRandom) random values, so that a decode path that
// skipped a bias or a q/k norm would change the output.
func perturbNormsAndBiases(t *testing.T, m *Model, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	for _, p := range m.Params {
		isBias, isNorm := strings.HasSuffix(p.Name, ".bias"), strings.HasSuffix(p.Name, "norm.weight")
		if !isBias && !isNorm {
			continue
		}
		v := make([]float32, p.Len())
		for i := range v {
			v[i] = float32(0.3 * rng.NormFloat64())
			if isNorm {
				v[i] += 1
			}
		}
		if err := m.SetParamValues(p.Name, v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGenerateGreedyConfigs extends the greedy-equals-full-forward check
// to the features the decode path re-implements: q/k/v (and o) biases,
// q/k RMSNorm with non-unit weights, untied heads, NF4 base weights with
// adapters (QLoRA), and adapters switched off.
func TestGenerateGreedyConfigs(t *testing.T) {
	qkvBias := tinyConfig("llama", 32, 2, 4, 4, 48, 53, false)
	qkvBias.Architecture, qkvBias.ModelType, qkvBias.QKVBias = "Qwen2ForCausalLM", "qwen2", true
	qwenUntied := tinyConfig("qwen3", 32, 2, 4, 1, 48, 57, false)
	qlora := tinyConfig("llama", 64, 2, 4, 2, 96, 64, true)
	isLinear := func(name string) bool {
		for _, k := range linearKinds {
			if strings.HasSuffix(name, k.path+".weight") {
				return true
			}
		}
		return false
	}
	off := tinyConfig("llama", 32, 2, 4, 2, 48, 50, false)
	for _, tc := range []struct {
		name        string
		cfg         Config
		opts        Options
		adaptersOff bool
	}{
		{"qkv bias", qkvBias, Options{}, false},
		{"qwen3 untied mqa", qwenUntied, Options{}, false},
		{"qlora", qlora, Options{Trainable: func(string) bool { return false }, NF4: isLinear,
			LoRA: &LoRAOptions{Modules: allModules(qlora), Rank: 4, Scale: 2, Dropout: 0.2, Seed: 5}}, false},
		{"adapters off", off, Options{LoRA: &LoRAOptions{Modules: allModules(off)[:5], Rank: 2, Scale: 4, Seed: 1}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewWith(tc.cfg, cpu.New(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			if err := m.InitRandom(11, 0.3); err != nil {
				t.Fatal(err)
			}
			perturbNormsAndBiases(t, m, 2)
			if tc.opts.LoRA != nil {
				randomizeAdapters(t, m, 4)
			}
			m.SetAdaptersEnabled(!tc.adaptersOff)
			prompts := [][]int32{{4, 8, 15, 16, 23, 42}, {1}, {9, 9, 9}}
			const n = 10
			got, _, err := m.Generate(prompts, GenerateOptions{MaxNewTokens: n}, nil)
			if err != nil {
				t.Fatal(err)
			}
			distinct := map[int32]bool{}
			for r, p := range prompts {
				want := greedyByLogits(t, m, p, n)
				if !slices.Equal(got[r], want) {
					t.Errorf("row %d: cached %v, full forward %v", r, got[r], want)
				}
				for _, tok := range want {
					distinct[tok] = true
				}
			}
			if len(distinct) < 3 {
				t.Errorf("only %d distinct tokens generated: the check is too weak", len(distinct))
			}
			if tc.opts.LoRA == nil {
				return
			}
			// The adapters must matter for the check to mean anything.
			m.SetAdaptersEnabled(tc.adaptersOff)
			other, _, err := m.Generate(prompts, GenerateOptions{MaxNewTokens: n}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if slices.EqualFunc(got, other, slices.Equal) {
				t.Errorf("adapters on and off generate the same tokens: %v", got)
			}
		})
	}
}

// TestGenerateBatchFinish: in one batch, a row that hits a stop token, a
// row its callback stops and a row that runs to MaxNewTokens each finish
// with their own reason, and every row's tokens are those it generates
// alone. The callback sees each row's tokens in order.
func TestGenerateBatchFinish(t *testing.T) {
	cfg := tinyConfig("llama", 32, 2, 4, 2, 64, 40, false)
	m, err := New(cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	m.InitRandom(3, 0.3)
	prompts := [][]int32{{1, 2, 3, 4, 5, 6, 7}, {8, 9}, {10}}
	const n = 9
	free, _, err := m.Generate(prompts, GenerateOptions{MaxNewTokens: n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Row 0 stops at the first token of its free run (after the first)
	// that row 2 never generates; row 1 is stopped by the callback after
	// 3 tokens; row 2 runs to the length limit.
	wantLen0 := 0
	for i := 1; i < n && wantLen0 == 0; i++ {
		if tok := free[0][i]; !slices.Contains(free[2], tok) && slices.Index(free[0], tok) == i {
			wantLen0 = i + 1
		}
	}
	if wantLen0 == 0 {
		t.Fatalf("random model: no usable stop token in %v (row 2: %v)", free[0], free[2])
	}
	stopTok := free[0][wantLen0-1]
	seen := make([][]int32, len(prompts))
	o := GenerateOptions{MaxNewTokens: n, StopTokens: []int32{stopTok}}
	out, finish, err := m.Generate(prompts, o, func(row int, tok int32) bool {
		seen[row] = append(seen[row], tok)
		return !(row == 1 && len(seen[row]) == 3)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		tokens []int32
		finish string
	}{{free[0][:wantLen0], FinishStop}, {free[1][:3], FinishStop}, {free[2], FinishLength}}
	for r, w := range want {
		if !slices.Equal(out[r], w.tokens) || finish[r] != w.finish {
			t.Errorf("row %d: %v %q, want %v %q", r, out[r], finish[r], w.tokens, w.finish)
		}
		if !slices.Equal(seen[r], out[r]) {
			t.Errorf("row %d: callback saw %v, output %v", r, seen[r], out[r])
		}
		alone, _, err := m.Generate(prompts[r:r+1], o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r != 1 && !slices.Equal(alone[0], out[r]) {
			t.Errorf("row %d alone: %v, batched %v", r, alone[0], out[r])
		}
	}
	// A stop token in the prompt does not stop generation; one generated
	// first ends the row after one token.
	inPrompt := int32(-1)
	for _, tok := range prompts[0] {
		if !slices.Contains(free[0], tok) {
			inPrompt = tok
		}
	}
	if inPrompt < 0 {
		t.Fatalf("random model: every prompt token of row 0 is generated: %v", free[0])
	}
	out, finish, _ = m.Generate(prompts[:1], GenerateOptions{MaxNewTokens: n, StopTokens: []int32{inPrompt}}, nil)
	if !slices.Equal(out[0], free[0]) || finish[0] != FinishLength {
		t.Errorf("stop token %d only in the prompt: %v %q, want %v", inPrompt, out[0], finish[0], free[0])
	}
	out, finish, _ = m.Generate(prompts[2:], GenerateOptions{MaxNewTokens: 5, StopTokens: []int32{free[2][0]}}, nil)
	if !slices.Equal(out[0], free[2][:1]) || finish[0] != FinishStop {
		t.Errorf("stop token first: %v %q", out[0], finish[0])
	}
}

// TestGenerateDeterministicAcrossThreads: sampled generation gives the
// same tokens for a seed under any GOMAXPROCS.
func TestGenerateDeterministicAcrossThreads(t *testing.T) {
	cfg := tinyConfig("qwen3", 64, 2, 4, 2, 96, 300, false)
	m, err := New(cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	m.InitRandom(9, 0.2)
	prompts := [][]int32{{5, 17, 200, 3, 99}, {42}, {7, 7, 8, 9, 250, 251, 1, 0}}
	o := GenerateOptions{MaxNewTokens: 24, Temperature: 1, TopK: 50, TopP: 0.95, RepetitionPenalty: 1.2, Seed: 31}
	var first [][]int32
	for _, p := range []int{1, 2, 7} {
		func() {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(p))
			out, _, err := m.Generate(prompts, o, nil)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = out
			} else if !slices.EqualFunc(first, out, slices.Equal) {
				t.Errorf("GOMAXPROCS=%d: %v, GOMAXPROCS=1: %v", p, out, first)
			}
		}()
	}
}

// TestGenerateLimits: prompt plus MaxNewTokens may reach but not exceed
// max_position_embeddings (an error, nothing truncated), nor a sliding
// window; bad arguments are errors; generation leaves the model as it was
// for training.
func TestGenerateLimits(t *testing.T) {
	cfg := tinyConfig("llama", 32, 2, 4, 2, 64, 50, false)
	cfg.MaxPositions = 12
	m, err := New(cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	m.InitRandom(4, 0.3)
	long, short := []int32{1, 2, 3, 4, 5}, []int32{6}
	out, finish, err := m.Generate([][]int32{short, long}, GenerateOptions{MaxNewTokens: 7}, nil)
	if err != nil {
		t.Fatalf("5 + 7 positions with max_position_embeddings 12: %v", err)
	}
	if len(out[1]) != 7 || finish[1] != FinishLength || !slices.Equal(out[1], greedyByLogits(t, m, long, 7)) {
		t.Errorf("at the position limit: %v %q", out[1], finish[1])
	}
	for _, tc := range []struct {
		name    string
		prompts [][]int32
		o       GenerateOptions
		want    string
	}{
		{"past max positions", [][]int32{short, long}, GenerateOptions{MaxNewTokens: 8}, "max_position_embeddings 12"},
		{"prompt alone past max positions", [][]int32{make([]int32, 13)}, GenerateOptions{MaxNewTokens: 1}, "max_position_embeddings"},
		{"no new tokens", [][]int32{short}, GenerateOptions{}, "MaxNewTokens"},
		{"negative new tokens", [][]int32{short}, GenerateOptions{MaxNewTokens: -1}, "MaxNewTokens"},
		{"empty prompt", [][]int32{short, {}}, GenerateOptions{MaxNewTokens: 1}, "prompt 1 is empty"},
		{"token outside the vocabulary", [][]int32{{1, 50}}, GenerateOptions{MaxNewTokens: 1}, "outside vocabulary"},
		{"negative token", [][]int32{{-1}}, GenerateOptions{MaxNewTokens: 1}, "outside vocabulary"},
	} {
		_, _, err := m.Generate(tc.prompts, tc.o, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if out, finish, err := m.Generate(nil, GenerateOptions{MaxNewTokens: 3}, nil); err != nil || out != nil || finish != nil {
		t.Errorf("no prompts: %v %v %v", out, finish, err)
	}

	// Training after generation (recomputation on) gives the same loss and
	// gradients as without it.
	b := randomBatch(2, 8, cfg.VocabSize, 3)
	train := func(gen bool) (float32, []float32) {
		mt := newRandomModel(t, cfg, 8)
		defer mt.Free()
		mt.SetRecompute(true)
		if gen {
			if _, _, err := mt.Generate([][]int32{long, short}, GenerateOptions{MaxNewTokens: 4}, nil); err != nil {
				t.Fatal(err)
			}
			if !mt.recompute {
				t.Error("Generate left recomputation off")
			}
		}
		loss, err := mt.ForwardBackward(b)
		if err != nil {
			t.Fatal(err)
		}
		return loss, download(t, mt.be, mt.GradBuffer())
	}
	l1, g1 := train(false)
	l2, g2 := train(true)
	if l1 != l2 || !slices.Equal(g1, g2) {
		t.Errorf("training after generation: loss %v vs %v, gradients equal: %v", l2, l1, slices.Equal(g1, g2))
	}
}
