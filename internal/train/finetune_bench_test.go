package train

import (
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
)

// BenchmarkFineTuneStep measures one optimizer step (forward, backward,
// AdamW on the trainable parameters) of full training, LoRA (rank 8,
// alpha 16 on q_proj and v_proj, as ../shared/bench/torch_llama_train.py
// --lora-rank 8) and QLoRA (the same adapters over an NF4 base) on the
// stories15M shape (dim 288, 6 layers, 6 heads, hidden 768, vocab 32000,
// tied embeddings, batch 8 × 256 tokens). It reports tokens/s, the peak
// RSS of the process (run one method per process, as `make
// bench-finetune` does, for a per-method figure) and, for QLoRA, the bytes
// of the frozen linear weights relative to F32.
func BenchmarkFineTuneStep(b *testing.B) {
	cfg := llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 32000, Hidden: 288,
		Intermediate: 768, Layers: 6, Heads: 6, KVHeads: 6, HeadDim: 48, RopeTheta: 10000, RMSNormEps: 1e-5,
		TieEmbeddings: true, BOSTokenID: -1}
	const B, T = 8, 256
	loraOpts := &llama.LoRAOptions{Modules: llama.LinearModules([]string{"q_proj", "v_proj"}, cfg.Layers), Rank: 8, Scale: 2, Seed: 1}
	isLinear := func(name string) bool {
		return strings.HasPrefix(name, "model.layers.") && strings.HasSuffix(name, "_proj.weight")
	}
	for _, method := range []string{"full", "lora", "qlora"} {
		b.Run(method, func(b *testing.B) {
			var opts llama.Options
			if method != "full" {
				opts = llama.Options{Trainable: func(string) bool { return false }, LoRA: loraOpts}
			}
			if method == "qlora" {
				opts.NF4 = isLinear
			}
			benchSteps(b, cfg, opts, B, T)
		})
	}
}

// BenchmarkTrainShape is `make bench-train`'s lathe side: the shapes of
// ../shared/bench/torch_llama_train.py (tiny: dim 64, 4 layers, 4 heads,
// hidden 192, vocab 512, batch 8 × 128; stories15M as above; both tied),
// full training or LoRA r8 (alpha 16) on q_proj and v_proj.
func BenchmarkTrainShape(b *testing.B) {
	shapes := []struct {
		name string
		cfg  llama.Config
		B, T int
	}{
		{"tiny", llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 512, Hidden: 64,
			Intermediate: 192, Layers: 4, Heads: 4, KVHeads: 4, HeadDim: 16, RopeTheta: 10000, RMSNormEps: 1e-5,
			TieEmbeddings: true, BOSTokenID: -1}, 8, 128},
		{"stories15M", llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 32000, Hidden: 288,
			Intermediate: 768, Layers: 6, Heads: 6, KVHeads: 6, HeadDim: 48, RopeTheta: 10000, RMSNormEps: 1e-5,
			TieEmbeddings: true, BOSTokenID: -1}, 8, 256},
	}
	for _, sh := range shapes {
		// -bf16: the linear weights held as bfloat16 working copies and
		// the layers' activations in bfloat16 (compute_type = "bf16"),
		// widened for each product on the CPU.
		for _, method := range []string{"full", "lora", "full-bf16", "lora-bf16"} {
			b.Run(sh.name+"-"+method, func(b *testing.B) {
				var opts llama.Options
				if strings.HasPrefix(method, "lora") {
					opts = llama.Options{Trainable: func(string) bool { return false },
						LoRA: &llama.LoRAOptions{Modules: llama.LinearModules([]string{"q_proj", "v_proj"}, sh.cfg.Layers), Rank: 8, Scale: 2, Seed: 1}}
				}
				opts.BF16 = strings.HasSuffix(method, "-bf16")
				opts.BF16Activations = opts.BF16
				benchSteps(b, sh.cfg, opts, sh.B, sh.T)
			})
		}
	}
}

// benchSteps times optimizer steps and reports tokens/s and peak RSS.
func benchSteps(b *testing.B, cfg llama.Config, opts llama.Options, B, T int) {
	// The testing package calls this once with b.N = 1 before the timed
	// run: return that model's memory first, so the peak RSS is one
	// model's, not two depending on when the GC ran.
	debug.FreeOSMemory()
	m, err := llama.NewWith(cfg, cpu.New(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	if err := m.InitRandom(1, 0.02); err != nil {
		b.Fatal(err)
	}
	batch := randomTokens(B, T, cfg.VocabSize)
	opt, err := NewAdamW(m, 0.9, 0.95, 1e-8, 0.1)
	if err != nil {
		b.Fatal(err)
	}
	defer opt.Free()
	step := func() {
		m.ZeroGrad()
		if _, err := m.ForwardBackward(batch); err != nil {
			b.Fatal(err)
		}
		if err := opt.Update(3e-4); err != nil {
			b.Fatal(err)
		}
	}
	step()
	b.ResetTimer()
	for range b.N {
		step()
	}
	b.ReportMetric(float64(B*T)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(m.NumTrainable()), "trainable")
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peakRSS-MiB")
	}
	if nb, nv := m.NF4Bytes(); nv > 0 {
		b.ReportMetric(float64(nb)/(4*float64(nv)), "base-bytes/f32")
	}
}

// randomTokens is a [B,T] batch of pseudo-random ids predicting the next.
func randomTokens(B, T, V int) *llama.Batch {
	b := &llama.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	x := uint32(12345)
	next := func() int32 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		return int32(x % uint32(V))
	}
	for i := range b.Tokens {
		b.Tokens[i] = next()
	}
	for i := range b.Targets {
		if (i+1)%T == 0 {
			b.Targets[i] = -1
		} else {
			b.Targets[i] = b.Tokens[i+1]
		}
	}
	return b
}
