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
// BF16Activations) against the float32 PyTorch reference run with --mixed
// bf16, which rounds to bfloat16 where lathe does (linear weights and
// inputs, the q/k/v and gate/up outputs, q/k norms, RoPE) with identity
// gradients. Both compute in float32, so the logits agree bit for bit or
// nearly at almost every position; where the two float32 values on either
// side of a rounding differ in their last bit and straddle a bfloat16
// rounding boundary, one activation rounds the other way, which moves that
// position's logits by up to about 1e-3 and the gradients (sums over
// positions) by less. The test allows such flips at a few positions and
// a gradient error of 1e-3, and checks that the reference without the
// rounding, and lathe rounding only the weights, differ at nearly every
// position: the comparison sees every rounding.
func TestMixedBF16AgainstPyTorch(t *testing.T) {
	needTorch(t)
	for _, variant := range []string{"llama-gqa", "llama-bias", "qwen3-qknorm"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			runRef(t, "gen", "--variant", variant, "--seed", "12", "--out", dir, "--batch", "3", "--seq", "16")
			batch := filepath.Join(dir, "batch.json")
			ref := func(mixed string) *safetensors.Set {
				out := filepath.Join(dir, "ref-"+mixed+".safetensors")
				runRef(t, "run", "--model", dir, "--batch", batch, "--out", out, "--out-dtype", "F64", "--mixed", mixed, "--dtype", "float32")
				f, err := safetensors.OpenSingle(out)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				return f
			}
			mixed, plain := ref("bf16"), ref("none")
			b := readBatch(t, batch)
			// compare returns how many positions' logits differ from f's by
			// more than 1e-5 of the largest logit, and the largest relative
			// error of the loss and every gradient.
			compare := func(m *Model, f *safetensors.Set) (positions int, worst float64, what string) {
				want, err := f.Float32("logits")
				if err != nil {
					t.Fatal(err)
				}
				logits, err := m.Logits(b)
				if err != nil {
					t.Fatal(err)
				}
				V := m.Cfg.VocabSize
				_, scale := relErr(want, make([]float32, len(want)), 0)
				for p := 0; p < len(want)/V; p++ {
					if _, d := relErr(logits[p*V:(p+1)*V], want[p*V:(p+1)*V], 0); d > 1e-5*scale {
						positions++
					}
				}
				m.ZeroGrad()
				loss, err := m.ForwardBackward(b)
				if err != nil {
					t.Fatal(err)
				}
				wl, _ := f.Float32("loss")
				worst, what = math.Abs(float64(loss)-float64(wl[0]))/float64(wl[0]), "loss"
				for _, p := range m.Params {
					g, err := f.Float32("grad." + p.Name)
					if err != nil {
						t.Fatal(err)
					}
					if r := relErrOf(download(t, m.be, p.Grad), g, 1e-6); r > worst {
						worst, what = r, "grad "+p.Name
					}
				}
				return positions, worst, what
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
			positions := b.B * b.T
			flips, worst, what := compare(full, mixed)
			plainPos, plainWorst, _ := compare(full, plain)
			weightsPos, weightsWorst, _ := compare(load(Options{BF16: true}), mixed)
			t.Logf("against --mixed bf16: logits differ at %d of %d positions, worst loss/gradient rel %.2e (%s); "+
				"against the unrounded reference %d positions, %.2e; weights-only rounding %d positions, %.2e",
				flips, positions, worst, what, plainPos, plainWorst, weightsPos, weightsWorst)
			if flips > positions/10 {
				t.Errorf("logits differ from the --mixed bf16 reference at %d of %d positions (want rounding flips at a few)", flips, positions)
			}
			if worst > 1e-3 {
				t.Errorf("%s differs from the --mixed bf16 reference: rel %.3e > 1e-3", what, worst)
			}
			if plainPos < positions*9/10 || weightsPos < positions*9/10 {
				t.Errorf("the comparison does not see the rounding: the unrounded reference differs at %d positions, weights-only rounding at %d, of %d",
					plainPos, weightsPos, positions)
			}
		})
	}
}

// relErrOf is relErr's relative error.
func relErrOf(got, want []float32, floor float64) float64 {
	r, _ := relErr(got, want, floor)
	return r
}
