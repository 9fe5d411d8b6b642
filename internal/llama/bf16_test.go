package llama

import (
	"slices"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// roundedLinears returns a copy of the model in dir whose linear weights
// are rounded to bfloat16, saved in a new directory, with the F32 values.
func roundedLinears(t *testing.T, m *Model) string {
	t.Helper()
	for l := range m.layers {
		for i := range m.layers[l].lin {
			p := m.layers[l].lin[i].w
			v, err := m.ParamValues(p.Name)
			if err != nil {
				t.Fatal(err)
			}
			for j := range v {
				v[j] = tensor.F32FromBF16(tensor.BF16FromF32(v[j]))
			}
			if err := m.SetParamValues(p.Name, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	if err := m.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBF16MatchesRoundedWeights: with Options.BF16 the model computes, on
// the CPU exactly, what an F32 model computes whose linear weights were
// rounded to bfloat16: the loss and every gradient. One AdamW step updates
// the float32 masters as the F32 model's step does from the same
// gradients, and rounds the working copies from them.
func TestBF16MatchesRoundedWeights(t *testing.T) {
	phi3, err := NewConfig("phi3", Config{VocabSize: 60, Hidden: 32, Intermediate: 48, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, RMSNormEps: 1e-6, MaxPositions: 64})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{tinyConfig("llama", 32, 2, 4, 2, 48, 60, false), tinyConfig("qwen3", 32, 2, 4, 2, 48, 60, true), phi3} {
		t.Run(cfg.ModelType, func(t *testing.T) {
			be := cpu.New()
			orig, err := New(cfg, be)
			if err != nil {
				t.Fatal(err)
			}
			orig.InitRandom(5, 0.05)
			dir := t.TempDir()
			if err := orig.Save(dir, safetensors.F32); err != nil {
				t.Fatal(err)
			}
			half, err := LoadWith(dir, be, Options{BF16: true})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := Load(roundedLinears(t, orig), be)
			if err != nil {
				t.Fatal(err)
			}
			sameStep(t, half, ref, randomBatch(2, 9, cfg.VocabSize, 3))
			// The masters keep the unrounded weights: step them and an F32
			// model of the original weights with the same gradients.
			master, err := Load(dir, be)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range half.Trainable() {
				be.Copy(master.Param(p.Name).Grad, p.Grad)
			}
			c := AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.1}
			if err := half.AdamW(c); err != nil {
				t.Fatal(err)
			}
			if err := master.AdamW(c); err != nil {
				t.Fatal(err)
			}
			q := half.Param("model.layers.1.self_attn.q_proj.weight")
			if q.H.IsNil() || q.W.IsNil() {
				t.Fatal("a trainable linear weight under BF16 lacks its master or working copy")
			}
			if half.Param("model.norm.weight").H.IsNil() == false || half.Param("model.embed_tokens.weight").H.IsNil() == false {
				t.Error("norms and embeddings got bfloat16 copies")
			}
			for _, p := range half.Trainable() {
				got, want := download(t, be, p.W), download(t, be, master.Param(p.Name).W)
				if !slices.Equal(got, want) {
					t.Fatalf("master %s after the step differs from the F32 step", p.Name)
				}
				if p.H.IsNil() {
					continue
				}
				h := make([]uint16, p.Len())
				if err := tensor.DownloadU16(be, h, p.H); err != nil {
					t.Fatal(err)
				}
				for i := range h {
					if h[i] != tensor.BF16FromF32(got[i]) {
						t.Fatalf("%s[%d]: working copy %#x, bf16(master) %#x", p.Name, i, h[i], tensor.BF16FromF32(got[i]))
					}
				}
			}
		})
	}
}

// TestBF16FrozenBase: under LoRA the frozen base is held only in bfloat16
// (half its F32 bytes), reads back widened, and the adapted model matches
// a LoRA model over the rounded F32 base.
func TestBF16FrozenBase(t *testing.T) {
	cfg := tinyConfig("llama", 32, 2, 4, 2, 64, 50, false)
	be := cpu.New()
	orig, _ := New(cfg, be)
	orig.InitRandom(2, 0.05)
	dir := t.TempDir()
	if err := orig.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	lora := func(bf16 bool, d string) *Model {
		m, err := LoadWith(d, be, Options{Trainable: func(string) bool { return false }, BF16: bf16,
			LoRA: &LoRAOptions{Modules: allModules(cfg), Rank: 4, Scale: 2, Seed: 9}})
		if err != nil {
			t.Fatal(err)
		}
		randomizeAdapters(t, m, 4)
		return m
	}
	half, full, ref := lora(true, dir), lora(false, dir), lora(false, roundedLinears(t, orig))
	linear := 0
	for _, p := range half.Params {
		if strings.HasSuffix(p.Name, "_proj.weight") && !half.isAdapter(p) {
			linear += p.Len()
			if !p.W.IsNil() || p.H.IsNil() {
				t.Fatalf("frozen %s: W held %v, H held %v; want bfloat16 only", p.Name, !p.W.IsNil(), !p.H.IsNil())
			}
		}
	}
	if got, want := full.MemoryUse().Params-half.MemoryUse().Params, int64(2*linear); got != want {
		t.Errorf("bfloat16 base saves %d bytes, want %d (2 per linear weight)", got, want)
	}
	name := "model.layers.0.mlp.down_proj.weight"
	gotV, _ := half.ParamValues(name)
	wantV, _ := ref.ParamValues(name)
	if !slices.Equal(gotV, wantV) {
		t.Errorf("%s reads back other than its rounded values", name)
	}
	sameStep(t, half, ref, randomBatch(2, 7, cfg.VocabSize, 5))
}

// sameStep checks that a forward and backward pass on b gives half (a
// BF16 model) exactly the loss and gradients it gives ref (an F32 model
// on the rounded weights).
func sameStep(t *testing.T, half, ref *Model, b *Batch) {
	t.Helper()
	half.ZeroGrad()
	ref.ZeroGrad()
	lh, err := half.ForwardBackward(b)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := ref.ForwardBackward(b)
	if err != nil {
		t.Fatal(err)
	}
	if lh != lr {
		t.Fatalf("loss %v, F32 on the rounded weights %v", lh, lr)
	}
	for _, p := range half.Trainable() {
		if got, want := download(t, half.be, p.Grad), download(t, ref.be, ref.Param(p.Name).Grad); !slices.Equal(got, want) {
			t.Fatalf("gradient of %s differs", p.Name)
		}
	}
}
