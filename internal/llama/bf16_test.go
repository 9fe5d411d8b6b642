package llama

import (
	"math"
	"path/filepath"
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

// TestMixedBF16AgainstPyTorch: compute_type "bf16" (Options BF16 and
// BF16Activations) against the PyTorch reference run with --mixed bf16,
// which rounds each linear layer's base weight and the activation entering
// it to bfloat16 with an identity gradient. Logits, loss and every
// gradient agree to float32 accuracy (a value that sits on a rounding
// boundary can round the other way in one of the two, hence a looser
// bound than the F32 comparison). The same model is then compared with the
// reference without the rounding, and with lathe rounding only the
// weights: both must differ by far more, so the comparison sees the
// activations' rounding.
func TestMixedBF16AgainstPyTorch(t *testing.T) {
	needTorch(t)
	for _, variant := range []string{"llama-gqa", "llama-bias", "qwen3-qknorm"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			runRef(t, "gen", "--variant", variant, "--seed", "11", "--out", dir, "--batch", "3", "--seq", "16")
			batch := filepath.Join(dir, "batch.json")
			ref := func(mixed string) *safetensors.Set {
				out := filepath.Join(dir, "ref-"+mixed+".safetensors")
				runRef(t, "run", "--model", dir, "--batch", batch, "--out", out, "--out-dtype", "F64", "--mixed", mixed)
				f, err := safetensors.OpenSingle(out)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				return f
			}
			mixed, plain := ref("bf16"), ref("none")
			b := readBatch(t, batch)
			// worst returns the largest relative error over the logits,
			// the loss and every gradient of m against f.
			worst := func(m *Model, f *safetensors.Set) (float64, string) {
				want, err := f.Float32("logits")
				if err != nil {
					t.Fatal(err)
				}
				logits, err := m.Logits(b)
				if err != nil {
					t.Fatal(err)
				}
				w, what := relErrOf(logits, want, 1e-3), "logits"
				m.ZeroGrad()
				loss, err := m.ForwardBackward(b)
				if err != nil {
					t.Fatal(err)
				}
				wl, _ := f.Float32("loss")
				if r := math.Abs(float64(loss)-float64(wl[0])) / float64(wl[0]); r > w {
					w, what = r, "loss"
				}
				for _, p := range m.Params {
					g, err := f.Float32("grad." + p.Name)
					if err != nil {
						t.Fatal(err)
					}
					if r := relErrOf(download(t, m.be, p.Grad), g, 1e-6); r > w {
						w, what = r, "grad "+p.Name
					}
				}
				return w, what
			}
			be := cpu.New()
			load := func(o Options) *Model {
				m, err := LoadWith(dir, be, o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(m.Free)
				return m
			}
			full := load(Options{BF16: true, BF16Activations: true})
			got, gotWhat := worst(full, mixed)
			vsPlain, _ := worst(full, plain)
			weightsOnly, _ := worst(load(Options{BF16: true}), mixed)
			t.Logf("against --mixed bf16: worst rel %.2e (%s); against the unrounded reference %.2e; weights-only model against --mixed bf16 %.2e",
				got, gotWhat, vsPlain, weightsOnly)
			const tol = 1e-4
			if got > tol {
				t.Errorf("%s differs from the --mixed bf16 reference: rel %.3e > %g", gotWhat, got, tol)
			}
			if vsPlain < 10*tol || weightsOnly < 10*tol {
				t.Errorf("the comparison does not see the rounding: rel %.2e against the unrounded reference, %.2e for weights-only rounding (want > %g)", vsPlain, weightsOnly, 10*tol)
			}
		})
	}
}

// relErrOf is relErr's relative error.
func relErrOf(got, want []float32, floor float64) float64 {
	r, _ := relErr(got, want, floor)
	return r
}
