package memest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/align"
	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/internal/train"
)

// loadConfig reads a config.json fixture from testdata.
func loadConfig(t testing.TB, name string) llama.Config {
	t.Helper()
	c, err := llama.LoadConfig(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// options mirrors trainstage.Load: the llama options a method implies.
func options(in Input) llama.Options {
	o := llama.Options{BF16: in.BF16, BF16Activations: in.BF16}
	switch in.Method {
	case Freeze:
		o.Trainable = in.Trainable
	case LoRA, QLoRA:
		var mods []string
		for _, m := range in.LoRAModules {
			switch {
			case m == "all":
				mods = append(mods, llama.LinearModules(llama.LinearKinds(), in.Config.Layers)...)
			case slices.Contains(llama.LinearKinds(), m):
				mods = append(mods, llama.LinearModules([]string{m}, in.Config.Layers)...)
			default:
				mods = append(mods, m)
			}
		}
		slices.Sort(mods)
		o.Trainable = func(string) bool { return false }
		o.LoRA = &llama.LoRAOptions{Modules: slices.Compact(mods), Rank: in.LoRARank, Scale: 2, Seed: 1}
		if in.LoRADropout {
			o.LoRA.Dropout = 0.1
		}
		if in.Method == QLoRA {
			o.NF4 = func(name string) bool {
				return strings.HasPrefix(name, "model.layers.") && strings.HasSuffix(name, "_proj.weight")
			}
		}
	}
	o.ValueHead = in.ValueHead
	return o
}

// tracking is the CPU backend counting the bytes it holds and their peak.
type tracking struct {
	*cpu.Backend
	live, peak int64
}

func (b *tracking) Alloc(dt tensor.DType, n int) (tensor.Buffer, error) {
	buf, err := b.Backend.Alloc(dt, n)
	if err == nil {
		b.live += int64(buf.Bytes())
		b.peak = max(b.peak, b.live)
	}
	return buf, err
}

func (b *tracking) Free(buf tensor.Buffer) {
	b.live -= int64(buf.Bytes())
	b.Backend.Free(buf)
}

// samples returns n rows of T tokens, every target trained.
func samples(n, T, V int) train.SliceSamples {
	out := make(train.SliceSamples, n)
	x := uint32(7)
	for i := range out {
		s := data.Sample{Tokens: make([]uint32, T), Mask: make([]bool, T)}
		for j := range s.Tokens {
			x = x*1664525 + 1013904223
			s.Tokens[j] = (x >> 8) % uint32(V)
			s.Mask[j] = true
		}
		out[i] = s
	}
	return out
}

// trainOneStep runs one optimizer step of train.Trainer on model with
// in's objective and batch shape.
func trainOneStep(t *testing.T, m *llama.Model, in Input) {
	t.Helper()
	tr := &train.Trainer{Model: m, Cfg: train.Config{BatchSize: in.BatchSize, MaxSeqLen: in.SeqLen, MaxSteps: 1, LR: 1e-3, Scheduler: "constant"}}
	switch {
	case in.Pairs && in.ValueHead:
		tr.Objective = &train.Reward{Model: m, Pairs: samples(2*in.BatchSize, in.SeqLen, in.Config.VocabSize), MaxSeqLen: in.SeqLen}
	case in.Pairs:
		tr.Objective = &train.DPO{Model: m, Pairs: samples(2*in.BatchSize, in.SeqLen, in.Config.VocabSize), MaxSeqLen: in.SeqLen,
			Config: align.DPOConfig{Loss: "simpo"}}
	default:
		tr.Train = samples(in.BatchSize, in.SeqLen, in.Config.VocabSize)
	}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestBackendPiecesExact checks the backend pieces against what the
// engine allocates: the model's MemoryUse after a real training step, the
// AdamW moments, and the peak of everything held on the backend during
// the run, to the byte.
func TestBackendPiecesExact(t *testing.T) {
	lastLayer := func(name string) bool {
		return strings.HasPrefix(name, "model.layers.1.") || name == "model.norm.weight"
	}
	head := func(name string) bool { return name == "lm_head.weight" || name == "model.embed_tokens.weight" }
	for _, cfgName := range []string{"llama_gqa_tied", "qwen3_qknorm_bias", "llama_biases_untied"} {
		cfg := loadConfig(t, cfgName)
		type variant struct {
			name string
			in   Input
		}
		var vs []variant
		for _, m := range []struct {
			name string
			in   Input
		}{
			{"full", Input{Method: Full}},
			{"freeze-last", Input{Method: Freeze, Trainable: lastLayer}},
			{"freeze-head", Input{Method: Freeze, Trainable: head}},
			{"lora-qv-down0", Input{Method: LoRA, LoRARank: 4, LoRAModules: []string{"q_proj", "v_proj", "model.layers.0.mlp.down_proj"}}},
			{"qlora-all", Input{Method: QLoRA, LoRARank: 2, LoRAModules: []string{"all"}}},
		} {
			for _, rc := range []bool{false, true} {
				for _, drop := range []bool{false, true} {
					if drop && m.in.LoRARank == 0 {
						continue
					}
					for _, vh := range []bool{false, true} {
						for _, pairs := range []bool{false, true} {
							in := m.in
							in.Config, in.Recompute, in.LoRADropout, in.ValueHead, in.Pairs = cfg, rc, drop, vh, pairs
							in.BatchSize, in.SeqLen, in.Baseline, in.Threads = 2, 24, 1, 1
							name := m.name
							for _, f := range []struct {
								on  bool
								tag string
							}{{rc, "recompute"}, {drop, "dropout"}, {vh, "vhead"}, {pairs, "pairs"}} {
								if f.on {
									name += "+" + f.tag
								}
							}
							vs = append(vs, variant{name, in})
						}
					}
				}
			}
		}
		// bfloat16 weights (compute_type = "bf16"), with the other options off.
		for _, m := range []variant{
			{"full-bf16", Input{Method: Full, BF16: true}},
			{"lora-all-bf16", Input{Method: LoRA, LoRARank: 4, LoRAModules: []string{"all"}, BF16: true}},
			{"freeze-last-bf16", Input{Method: Freeze, Trainable: lastLayer, BF16: true}},
		} {
			m.in.Config, m.in.BatchSize, m.in.SeqLen, m.in.Baseline, m.in.Threads = cfg, 2, 24, 1, 1
			vs = append(vs, m)
		}
		for _, v := range vs {
			t.Run(cfgName+"/"+v.name, func(t *testing.T) {
				in := v.in
				e, err := Training(in)
				if err != nil {
					t.Fatal(err)
				}
				be := &tracking{Backend: cpu.New()}
				m, err := llama.NewWith(cfg, be, options(in))
				if err != nil {
					t.Fatal(err)
				}
				defer m.Free()
				m.SetRecompute(in.Recompute)
				if err := m.InitRandom(1, 0.02); err != nil {
					t.Fatal(err)
				}
				be.peak = be.live // NF4 quantisation's temporary is freed
				trainOneStep(t, m, in)
				u := m.MemoryUse()
				for _, c := range []struct {
					piece string
					got   int64
				}{
					{PieceWeights, u.Params},
					{PieceNF4, u.NF4},
					{PieceGradients, u.Grads},
					{PieceScratch, u.Scratch},
					// MemoryUse counts the cross-entropy workspace with
					// the activations.
					{PieceActivations, u.Activations - e.Piece(PieceLogits)},
					{PieceOptimizer, 8*int64(m.NumTrainable()) + 4},
				} {
					if want := e.Piece(c.piece); c.got != want {
						t.Errorf("%s: engine %d bytes, estimate %d", c.piece, c.got, want)
					}
				}
				if u.Logits != 0 {
					t.Errorf("training materialised %d bytes of logits", u.Logits)
				}
				if be.peak != e.BackendBytes() {
					t.Errorf("peak backend bytes during training %d, estimate %d (%+d)", be.peak, e.BackendBytes(), e.BackendBytes()-be.peak)
				}
			})
		}
	}
}

func TestTrainingErrors(t *testing.T) {
	cfg := loadConfig(t, "llama_gqa_tied")
	odd := cfg
	odd.Hidden, odd.Heads, odd.KVHeads, odd.HeadDim, odd.Intermediate = 36, 2, 2, 18, 40
	bad := cfg
	bad.Heads = 3
	ok := Input{Config: cfg, Method: Full, BatchSize: 1, SeqLen: 8, Baseline: 1}
	for _, c := range []struct {
		name string
		mod  func(*Input)
		want string
	}{
		{"method", func(in *Input) { in.Method = "dora" }, `method "dora" is not one of full, freeze, lora, qlora`},
		{"freeze without predicate", func(in *Input) { in.Method = Freeze }, `method "freeze" needs Trainable`},
		{"freeze of nothing", func(in *Input) { in.Method, in.Trainable = Freeze, func(string) bool { return false } }, "nothing trains"},
		{"batch", func(in *Input) { in.BatchSize = 0 }, "batch size 0: want >= 1"},
		{"seq", func(in *Input) { in.SeqLen = 0 }, "sequence length 0: want >= 1"},
		{"accum", func(in *Input) { in.GradAccum = -2 }, "gradient accumulation -2"},
		{"threads", func(in *Input) { in.Threads = -1 }, "threads -1"},
		{"lora rank", func(in *Input) { in.Method, in.LoRAModules = LoRA, []string{"all"} }, "lora rank 0: want >= 1"},
		{"lora targets", func(in *Input) { in.Method, in.LoRARank = LoRA, 8 }, "lora has no target modules"},
		{"lora kind", func(in *Input) { in.Method, in.LoRARank, in.LoRAModules = LoRA, 8, []string{"qproj"} }, `lora target "qproj" is neither`},
		{"lora layer", func(in *Input) {
			in.Method, in.LoRARank, in.LoRAModules = LoRA, 8, []string{"model.layers.9.self_attn.q_proj"}
		}, `"model.layers.9.self_attn.q_proj" is neither a linear module kind`},
		{"nf4 shape", func(in *Input) {
			in.Config, in.Method, in.LoRARank, in.LoRAModules = odd, QLoRA, 8, []string{"all"}
		}, "cannot be held in NF4"},
		{"config", func(in *Input) { in.Config = bad }, "not a multiple of num_key_value_heads"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := ok
			c.mod(&in)
			_, err := Training(in)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "memest: ") {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := Training(ok); err != nil {
		t.Fatalf("the valid input: %v", err)
	}
}

// TestTrainingOrdering checks relations any correct model satisfies.
func TestTrainingOrdering(t *testing.T) {
	cfg := loadConfig(t, "stories15M")
	base := Input{Config: cfg, Method: Full, BatchSize: 8, SeqLen: 256, LoRARank: 8, LoRAModules: []string{"all"}, Baseline: 10 << 20, Threads: 2}
	est := func(mod func(*Input)) Estimate {
		in := base
		mod(&in)
		e, err := Training(in)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	full := est(func(*Input) {})
	lora := est(func(in *Input) { in.Method = LoRA })
	qlora := est(func(in *Input) { in.Method = QLoRA })
	rc := est(func(in *Input) { in.Recompute = true })
	half := est(func(in *Input) { in.BatchSize = 4 })
	pairs := est(func(in *Input) { in.BatchSize, in.Pairs = 4, true })
	drop := est(func(in *Input) { in.Method, in.LoRADropout = LoRA, true })
	ckpt := est(func(in *Input) { in.Checkpoints = true })
	merged := est(func(in *Input) { in.Method, in.Merge = LoRA, true })
	for _, c := range []struct {
		what string
		ok   bool
	}{
		{"qlora < lora < full", qlora.Total < lora.Total && lora.Total < full.Total},
		{"qlora holds fewer F32 weights", qlora.Piece(PieceWeights) < lora.Piece(PieceWeights) && qlora.Piece(PieceNF4) > 0},
		{"recomputation shrinks activations", rc.Piece(PieceActivations) < full.Piece(PieceActivations)/2},
		{"half the batch, about half the activations", 2*half.Piece(PieceActivations) > full.Piece(PieceActivations)-(1<<20) &&
			2*half.Piece(PieceActivations) < full.Piece(PieceActivations)+(1<<20)},
		{"pairs double the rows", pairs.Piece(PieceActivations) == full.Piece(PieceActivations)},
		{"dropout costs activations and a host mask", drop.Piece(PieceActivations) > lora.Piece(PieceActivations) && drop.Piece(PieceHost) > lora.Piece(PieceHost)},
		{"checkpoints hold two moment copies", ckpt.Piece(PieceCheckpoint) == full.Piece(PieceOptimizer)-4},
		{"a lora merge writes the base weights", merged.Piece(PieceSave) > 4*int64(cfg.VocabSize*cfg.Hidden)},
		{"full training's optimizer covers its save", full.Piece(PieceSave) == 0},
		{"the baseline is the runtime piece", full.Piece(PieceRuntime) == 10<<20},
	} {
		if !c.ok {
			t.Errorf("%s: full\n%s\nlora\n%s\nqlora\n%s\nrecompute\n%s\nhalf\n%s\npairs\n%s\ndropout\n%s\ncheckpoints\n%s\nmerged\n%s",
				c.what, full, lora, qlora, rc, half, pairs, drop, ckpt, merged)
		}
	}
	var sum int64
	for _, p := range full.Pieces {
		sum += p.Bytes
	}
	if sum != full.Total {
		t.Errorf("pieces sum to %d, total %d", sum, full.Total)
	}
}

// TestLoadPiece checks that loading's host copies count when they exceed
// what training adds later: a big vocabulary, QLoRA, a short batch.
func TestLoadPiece(t *testing.T) {
	cfg := loadConfig(t, "stories15M")
	cfg.VocabSize = 256000
	in := Input{Config: cfg, Method: QLoRA, LoRARank: 8, LoRAModules: []string{"q_proj"}, BatchSize: 1, SeqLen: 16, Recompute: true, Baseline: 1, Threads: 1}
	e, err := Training(in)
	if err != nil {
		t.Fatal(err)
	}
	after := e.Piece(PieceOptimizer) + e.Piece(PieceActivations) + e.Piece(PieceLogits) + e.Piece(PieceHost) + e.Piece(PieceKernel)
	if want := 4*int64(cfg.VocabSize*cfg.Hidden) - after; e.Piece(PieceLoad) != want || want <= 0 {
		t.Errorf("load buffers %d, want the embedding's copy less what training adds, %d\n%s", e.Piece(PieceLoad), want, e)
	}
}

func TestString(t *testing.T) {
	e := Estimate{Pieces: []Piece{
		{Name: PieceWeights, Bytes: 58 << 20, Backend: true},
		{Name: PieceNF4, Bytes: 0, Backend: true},
		{Name: PieceGradients, Bytes: 3 << 30, Backend: true},
		{Name: PieceLogits, Bytes: 1536},
		{Name: PieceRuntime, Bytes: 100},
	}}
	for _, p := range e.Pieces {
		e.Total += p.Bytes
	}
	want, err := os.ReadFile(filepath.Join("testdata", "breakdown.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.String(); got != string(want) {
		t.Errorf("String:\n%s\nwant:\n%s", got, want)
	}
	if got := e.BackendBytes(); got != 58<<20+3<<30 {
		t.Errorf("BackendBytes %d", got)
	}
}

func TestFormatBytes(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {5 << 20, "5.0 MiB"},
		{5<<30 + 100<<20, "5.1 GiB"}, {1 << 40, "1024.0 GiB"},
	} {
		if got := FormatBytes(c.n); got != c.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func TestProcessRSS(t *testing.T) {
	// A touched 64 MiB slice must show in the resident size.
	before := ProcessRSS()
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = 1
	}
	after := ProcessRSS()
	if before <= 0 || after-before < 32<<20 {
		t.Errorf("ProcessRSS before %d, after touching 64 MiB %d", before, after)
	}
	if b[len(b)-1] != 1 {
		t.Fatal("unreachable")
	}
}
