package train

import (
	"context"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
)

// ruleScorer rewards the share of response tokens below want.
type ruleScorer struct{ want int32 }

func (s ruleScorer) Score(seqs [][]int32) ([]float64, error) {
	out := make([]float64, len(seqs))
	for i, q := range seqs {
		resp := q[4:] // every test prompt has 4 tokens
		n := 0
		for _, t := range resp {
			if t < s.want {
				n++
			}
		}
		out[i] = float64(n) / float64(len(resp))
	}
	return out, nil
}

// TestPPOLearnsARule: a tiny LoRA policy rewarded for the share of its
// response tokens in a known set raises its mean reward, and its greedy
// samples use the set more afterwards.
func TestPPOLearnsARule(t *testing.T) {
	cfg := llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 16, Hidden: 32, Intermediate: 64,
		Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, RopeTheta: 10000, RMSNormEps: 1e-5, BOSTokenID: -1}
	m, err := llama.NewWith(cfg, cpu.New(), llama.Options{Trainable: func(string) bool { return false }, ValueHead: true,
		LoRA: &llama.LoRAOptions{Modules: llama.LinearModules(llama.LinearKinds(), cfg.Layers), Rank: 8, Scale: 2, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	m.InitRandom(3, 0.2)
	var prompts [][]int32
	for i := range 16 {
		prompts = append(prompts, []int32{int32(i % 16), int32((i * 5) % 16), int32((i * 3) % 16), 1})
	}
	const want = 4 // rewarded: tokens 0..3
	greedyShare := func() float64 {
		out, _, err := m.Generate(prompts, llama.GenerateOptions{MaxNewTokens: 6}, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, tot := 0, 0
		for _, r := range out {
			for _, tok := range r {
				tot++
				if tok < want {
					n++
				}
			}
		}
		return float64(n) / float64(tot)
	}
	before := greedyShare()
	p := &PPO{Policy: m, Scorer: ruleScorer{want: want}, Prompts: prompts, Cfg: PPOConfig{
		Steps: 40, BatchSize: 8, MiniBatch: 4, PPOEpochs: 2, MaxNewTokens: 6, LR: 5e-3, MaxGradNorm: 1,
		AdaptiveKL: true, InitKL: 0.05, Seed: 11}}
	p.OnStep = func(s, n int, met map[string]float64) {
		if s%10 != 0 {
			return
		}
		t.Logf("step %d reward %.3f kl %.4f pg %.4f vf %.4f clip %.3f ent %.3f", s, met["reward"], met["kl"], met["policy_loss"], met["value_loss"], met["clip_fraction"], met["entropy"])
	}
	hist, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mean := func(h []PPOStep, key string) float64 {
		var s float64
		for _, x := range h {
			s += x.Metrics[key]
		}
		return s / float64(len(h))
	}
	first, last := mean(hist[:5], "reward"), mean(hist[len(hist)-5:], "reward")
	after := greedyShare()
	t.Logf("mean reward %.3f -> %.3f; greedy share of tokens below %d %.2f -> %.2f; last kl %.3f entropy %.3f",
		first, last, want, before, after, hist[len(hist)-1].Metrics["kl"], hist[len(hist)-1].Metrics["entropy"])
	for _, k := range []string{"reward", "kl", "policy_loss", "value_loss", "entropy", "clip_fraction", "response_length", "kl_coef"} {
		if _, ok := hist[0].Metrics[k]; !ok {
			t.Errorf("metric %s missing", k)
		}
	}
	if last < first+0.2 {
		t.Errorf("mean reward %.3f -> %.3f: did not rise", first, last)
	}
	if after < before+0.2 {
		t.Errorf("greedy share of the rewarded token %.2f -> %.2f", before, after)
	}
}
