package llama

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
)

func allModules(c Config) []string { return LinearModules(LinearKinds(), c.Layers) }

// randomizeAdapters gives every LoRA B (zero after PEFT's initialisation)
// random values so that the adapters change the output.
func randomizeAdapters(t *testing.T, m *Model, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	for _, p := range m.Params {
		if len(p.Name) > len(LoRABSuffix) && p.Name[len(p.Name)-len(LoRABSuffix):] == LoRABSuffix {
			v := make([]float32, p.Len())
			for i := range v {
				v[i] = float32(rng.NormFloat64() * 0.05)
			}
			if err := m.SetParamValues(p.Name, v); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func adapterTensors(t *testing.T, m *Model) map[string]lora.Tensor {
	t.Helper()
	out := map[string]lora.Tensor{}
	for _, p := range m.Params {
		if m.isAdapter(p) && p.Name != ValueHeadWeight && p.Name != ValueHeadBias {
			v, err := m.ParamValues(p.Name)
			if err != nil {
				t.Fatal(err)
			}
			out[p.Name] = lora.Tensor{Shape: p.Shape, Data: v}
		}
	}
	return out
}

// TestLoRAStartsAtBase: with PEFT's initialisation (B = 0) the adapted
// model computes exactly the base model.
func TestLoRAStartsAtBase(t *testing.T) {
	cfg := tinyConfig("llama", 32, 2, 4, 2, 64, 50, false)
	be := cpu.New()
	base, err := New(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	base.InitRandom(1, 0.05)
	dir := t.TempDir()
	if err := base.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	ad, err := LoadWith(dir, be, Options{Trainable: func(string) bool { return false },
		LoRA: &LoRAOptions{Modules: allModules(cfg), Rank: 4, Scale: 2, Seed: 9}})
	if err != nil {
		t.Fatal(err)
	}
	b := randomBatch(2, 9, cfg.VocabSize, 4)
	l1, _ := base.Logits(b)
	l2, err := ad.Logits(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range l1 {
		if l1[i] != l2[i] {
			t.Fatalf("logit %d: base %v, adapted %v", i, l1[i], l2[i])
		}
	}
	// per layer: q (A 4×32, B 32×4), k, v (A 4×32, B 16×4), o (A 4×32,
	// B 32×4), gate, up (A 4×32, B 64×4), down (A 4×64, B 32×4)
	want := 2 * (4*32 + 32*4 + 2*(4*32+16*4) + 4*32 + 32*4 + 2*(4*32+64*4) + 4*64 + 32*4)
	if n := ad.NumTrainable(); n != want {
		t.Fatalf("trainable %d, want %d", n, want)
	}
}

// TestAdaptersAgainstPyTorch: an adapter written by lathe in PEFT's layout
// and applied by the reference the PEFT way gives the same logits, and the
// same gradients for every adapter tensor; also the weighted per-token
// loss (DPO's path) and the value head (reward models).
func TestAdaptersAgainstPyTorch(t *testing.T) {
	needTorch(t)
	for _, variant := range []string{"llama-gqa", "qwen3-qknorm"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			runRef(t, "gen", "--variant", variant, "--seed", "5", "--out", dir, "--batch", "2", "--seq", "10")
			be := cpu.New()
			cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			lc := lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all"}, RSLoRA: variant == "qwen3-qknorm"}
			lc.Defaults()
			m, err := LoadWith(dir, be, Options{Trainable: func(string) bool { return false }, ValueHead: true,
				LoRA: &LoRAOptions{Modules: allModules(cfg), Rank: 4, Scale: float32(lc.Scale()), Seed: 2}})
			if err != nil {
				t.Fatal(err)
			}
			randomizeAdapters(t, m, 3)
			adapterDir := filepath.Join(dir, "adapter")
			if err := lora.Save(adapterDir, lc, adapterTensors(t, m), safetensors.F32); err != nil {
				t.Fatal(err)
			}
			vw, _ := m.ParamValues(ValueHeadWeight)
			vb, _ := m.ParamValues(ValueHeadBias)
			if err := lora.SaveValueHead(dir, vw, vb[0]); err != nil {
				t.Fatal(err)
			}
			batchPath := filepath.Join(dir, "batch.json")
			b := readBatch(t, batchPath)
			rng := rand.New(rand.NewPCG(7, 7))
			weights := make([]float32, b.B*b.T)
			for i := range weights {
				weights[i] = float32(rng.NormFloat64())
			}
			wpath := filepath.Join(dir, "weights.json")
			wj, _ := json.Marshal(weights)
			os.WriteFile(wpath, wj, 0o644)

			for _, loss := range []string{"mean", "weighted", "value"} {
				out := filepath.Join(dir, loss+".safetensors")
				runRef(t, "run", "--model", dir, "--batch", batchPath, "--out", out, "--out-dtype", "F64",
					"--adapter", adapterDir, "--loss", loss, "--weights", wpath)
				ref, err := safetensors.OpenSingle(out)
				if err != nil {
					t.Fatal(err)
				}
				m.ZeroGrad()
				switch loss {
				case "mean":
					want, _ := ref.Float32("logits")
					got, err := m.Logits(b)
					if err != nil {
						t.Fatal(err)
					}
					if rel, abs := relErr(got, want, 1e-3); rel > 1e-5 {
						t.Errorf("adapted logits: max abs %.3e rel %.3e", abs, rel)
					}
					if _, err := m.ForwardBackward(b); err != nil {
						t.Fatal(err)
					}
				case "weighted":
					got, err := m.TokenLosses(b)
					if err != nil {
						t.Fatal(err)
					}
					want, _ := ref.Float32("token_losses")
					if rel, abs := relErr(got, want, 1e-3); rel > 1e-5 {
						t.Errorf("token losses: max abs %.3e rel %.3e", abs, rel)
					}
					if err := m.BackwardWeighted(weights); err != nil {
						t.Fatal(err)
					}
				case "value":
					got, err := m.Values(b)
					if err != nil {
						t.Fatal(err)
					}
					want, _ := ref.Float32("values")
					if rel, abs := relErr(got, want, 1e-3); rel > 1e-5 {
						t.Errorf("values: max abs %.3e rel %.3e", abs, rel)
					}
					if err := m.BackwardValues(weights); err != nil {
						t.Fatal(err)
					}
				}
				worst := 0.0
				for _, p := range m.Trainable() {
					if loss != "value" && (p.Name == ValueHeadWeight || p.Name == ValueHeadBias) {
						continue
					}
					want, err := ref.Float32("grad." + p.Name)
					if err != nil {
						t.Fatal(err)
					}
					rel, abs := relErr(download(t, be, p.Grad), want, 1e-6)
					worst = math.Max(worst, rel)
					if rel > 5e-5 {
						t.Errorf("%s: grad %s: max abs %.3e rel %.3e", loss, p.Name, abs, rel)
					}
				}
				t.Logf("%s: worst adapter grad rel %.2e", loss, worst)
				ref.Close()
			}
		})
	}
}

// TestFrozenGradsMatchFull: freezing parameters leaves the trainable
// ones' gradients exactly as in full training, and Backward skips the
// layers below the lowest trainable one.
func TestFrozenGradsMatchFull(t *testing.T) {
	cfg := tinyConfig("qwen3", 32, 3, 4, 2, 48, 40, true)
	be := cpu.New()
	full, _ := New(cfg, be)
	full.InitRandom(3, 0.05)
	dir := t.TempDir()
	full.Save(dir, safetensors.F32)
	trainable := func(name string) bool {
		return name == "model.layers.2.mlp.down_proj.weight" || name == "model.layers.1.self_attn.q_norm.weight" || name == "model.norm.weight"
	}
	fr, err := LoadWith(dir, be, Options{Trainable: trainable})
	if err != nil {
		t.Fatal(err)
	}
	if fr.stopLayer != 1 {
		t.Fatalf("stopLayer %d, want 1", fr.stopLayer)
	}
	b := randomBatch(2, 8, cfg.VocabSize, 1)
	full.ZeroGrad()
	lf, _ := full.ForwardBackward(b)
	fr.ZeroGrad()
	lz, err := fr.ForwardBackward(b)
	if err != nil {
		t.Fatal(err)
	}
	if lf != lz {
		t.Fatalf("loss %v vs %v", lf, lz)
	}
	if len(fr.Trainable()) != 3 {
		t.Fatalf("%d trainable", len(fr.Trainable()))
	}
	for _, p := range fr.Trainable() {
		got, want := download(t, be, p.Grad), download(t, be, full.Param(p.Name).Grad)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s[%d]: %v vs full %v", p.Name, i, got[i], want[i])
			}
		}
	}
}

// TestQLoRAMatchesDequantisedBase: a QLoRA model (NF4 base, dequantised
// tile by tile) computes what a LoRA model over the dequantised F32 base
// computes, holds the base in under 0.3× the F32 bytes, and recompute with
// dropout is bit-identical.
func TestQLoRAMatchesDequantisedBase(t *testing.T) {
	// in = 96 is not a multiple of 64: tiles must still align to blocks.
	cfg := tinyConfig("llama", 96, 2, 4, 2, 160, 64, false)
	be := cpu.New()
	src, _ := New(cfg, be)
	src.InitRandom(5, 0.05)
	dir := t.TempDir()
	src.Save(dir, safetensors.F32)
	isLinear := func(name string) bool {
		for _, k := range linearKinds {
			if len(name) > 7 && filepath.Ext(name) == ".weight" && contains(name, k.path) {
				return true
			}
		}
		return false
	}
	opts := Options{Trainable: func(string) bool { return false }, NF4: isLinear,
		LoRA: &LoRAOptions{Modules: allModules(cfg), Rank: 8, Scale: 2, Dropout: 0.1, Seed: 4}}
	q, err := LoadWith(dir, be, opts)
	if err != nil {
		t.Fatal(err)
	}
	bytes, values := q.NF4Bytes()
	if values == 0 || float64(bytes) > 0.3*4*float64(values) {
		t.Fatalf("nf4 holds %d values in %d bytes (%.3f of f32)", values, bytes, float64(bytes)/(4*float64(values)))
	}
	t.Logf("nf4 base: %d values in %d bytes = %.3f× f32", values, bytes, float64(bytes)/(4*float64(values)))
	randomizeAdapters(t, q, 8)
	// The same model with the dequantised base in F32.
	deq := t.TempDir()
	if err := q.Save(deq, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	o2 := opts
	o2.NF4 = nil
	f, err := LoadWith(deq, be, o2)
	if err != nil {
		t.Fatal(err)
	}
	for name, tv := range adapterTensors(t, q) {
		f.SetParamValues(name, tv.Data)
	}
	b := randomBatch(2, 12, cfg.VocabSize, 2)
	b.DropoutSeed = 77
	grads := func(m *Model) (float32, []float32) {
		m.ZeroGrad()
		l, err := m.ForwardBackward(b)
		if err != nil {
			t.Fatal(err)
		}
		return l, download(t, be, m.GradBuffer())
	}
	lq, gq := grads(q)
	lf, gf := grads(f)
	if d := math.Abs(float64(lq - lf)); d > 1e-5 {
		t.Errorf("loss qlora %v, lora over dequantised base %v", lq, lf)
	}
	if rel, abs := relErr(gq, gf, 1e-6); rel > 1e-4 {
		t.Errorf("grads: max abs %.3e rel %.3e", abs, rel)
	}
	q.SetRecompute(true)
	lr, gr := grads(q)
	if lr != lq {
		t.Errorf("recompute loss %v vs %v", lr, lq)
	}
	for i := range gr {
		if gr[i] != gq[i] {
			t.Fatalf("recompute grad %d: %v vs %v", i, gr[i], gq[i])
		}
	}
	// Dropout is on only with a seed: without, the loss changes.
	b.DropoutSeed = 0
	q.ZeroGrad()
	l0, _ := q.Forward(b)
	if l0 == lq {
		t.Errorf("dropout had no effect")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestMergeAdapters: merging folds the adapters into the base weights.
func TestMergeAdapters(t *testing.T) {
	cfg := tinyConfig("llama", 32, 2, 4, 2, 64, 50, false)
	be := cpu.New()
	m, _ := NewWith(cfg, be, Options{Trainable: func(string) bool { return false },
		LoRA: &LoRAOptions{Modules: LinearModules([]string{"q_proj", "down_proj"}, cfg.Layers), Rank: 2, Scale: 1.5, Seed: 1}})
	m.InitRandom(2, 0.05)
	randomizeAdapters(t, m, 5)
	b := randomBatch(1, 7, cfg.VocabSize, 3)
	before, _ := m.Logits(b)
	before = append([]float32(nil), before...)
	dir := t.TempDir()
	if err := m.SaveMerged(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	plain, err := Load(dir, be)
	if err != nil {
		t.Fatal(err)
	}
	saved, _ := plain.Logits(b)
	if rel, abs := relErr(saved, before, 1e-3); rel > 1e-5 {
		t.Errorf("SaveMerged logits differ: max abs %.3e rel %.3e", abs, rel)
	}
	if err := m.MergeAdapters(); err != nil {
		t.Fatal(err)
	}
	m.SetAdaptersEnabled(false)
	after, _ := m.Logits(b)
	if rel, abs := relErr(after, before, 1e-3); rel > 1e-5 {
		t.Errorf("merged logits differ: max abs %.3e rel %.3e", abs, rel)
	}
}
