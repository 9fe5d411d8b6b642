package llama

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
)

func runFamilyRef(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join("testdata", "family_ref.py")}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("family_ref.py %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// fileGrads returns every checkpoint tensor's gradient, laid out as the
// family's checkpoint stores the tensor.
func (m *Model) fileGrads(t *testing.T) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, ft := range m.fileLayout() {
		parts := make([][]float32, len(ft.parts))
		for i, p := range ft.parts {
			parts[i] = download(t, m.be, p.Grad)
		}
		out[ft.name] = m.joinFile(ft, parts)
	}
	return out
}

// TestFamiliesAgainstPyTorch checks each family, read from its own
// checkpoint layout, against family_ref.py's float64 implementation of
// its modelling code: logits, loss and the gradient of every checkpoint
// tensor.
func TestFamiliesAgainstPyTorch(t *testing.T) {
	needTorch(t)
	for _, variant := range []string{"gemma", "gemma2", "phi3", "phi3-longrope", "phi3-partial", "baichuan", "baichuan-13b", "chatglm", "chatglm-mha"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			runFamilyRef(t, "gen", "--variant", variant, "--seed", "3", "--out", dir)
			runFamilyRef(t, "run", "--model", dir, "--batch", filepath.Join(dir, "batch.json"), "--out", filepath.Join(dir, "ref.safetensors"))
			ref, err := safetensors.OpenSingle(filepath.Join(dir, "ref.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			m, err := Load(dir, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			b := readBatch(t, filepath.Join(dir, "batch.json"))
			logits, err := m.Logits(b)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ref.Float32("logits")
			if err != nil {
				t.Fatal(err)
			}
			if rel, abs := relErr(logits, want, 1e-3); rel > 1e-5 {
				t.Errorf("logits differ: max abs %.3e, rel %.3e", abs, rel)
			}
			m.ZeroGrad()
			loss, err := m.ForwardBackward(b)
			if err != nil {
				t.Fatal(err)
			}
			wantLoss, _ := ref.Float32("loss")
			if d := math.Abs(float64(loss-wantLoss[0])) / float64(wantLoss[0]); d > 1e-5 {
				t.Errorf("loss %v, reference %v", loss, wantLoss[0])
			}
			grads := m.fileGrads(t)
			worst := 0.0
			for _, ti := range ref.Tensors() {
				name, ok := strings.CutPrefix(ti.Name, "grad.")
				if !ok {
					continue
				}
				want, _ := ref.Float32(ti.Name)
				got, ok := grads[name]
				if !ok {
					t.Errorf("no gradient for checkpoint tensor %s", name)
					continue
				}
				rel, abs := relErr(got, want, 1e-6)
				worst = math.Max(worst, rel)
				if rel > 2e-5 {
					t.Errorf("grad %s: max abs %.3e, rel %.3e", name, abs, rel)
				}
			}
			if len(grads) != len(ref.Tensors())-2 {
				t.Errorf("%d checkpoint tensors, reference has %d gradients", len(grads), len(ref.Tensors())-2)
			}
			t.Logf("loss %v (ref %v), worst gradient rel %.2e", loss, wantLoss[0], worst)

			// Save writes the family's layout back bit for bit.
			out := t.TempDir()
			if err := m.Save(out, safetensors.F32); err != nil {
				t.Fatal(err)
			}
			orig, _ := os.ReadFile(filepath.Join(dir, "model.safetensors"))
			again, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
			if !sameTensors(t, orig, again) {
				t.Error("saved checkpoint differs from the one loaded")
			}
			if _, err := Load(out, cpu.New()); err != nil {
				t.Errorf("reload: %v", err)
			}
		})
	}
}

// sameTensors compares two safetensors files tensor by tensor (names,
// shapes and bytes; the header's metadata may differ).
func sameTensors(t *testing.T, a, b []byte) bool {
	t.Helper()
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors")
	if os.WriteFile(pa, a, 0o644) != nil || os.WriteFile(pb, b, 0o644) != nil {
		t.Fatal("write")
	}
	fa, err := safetensors.OpenSingle(pa)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := safetensors.OpenSingle(pb)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if len(fa.Tensors()) != len(fb.Tensors()) {
		t.Logf("%d tensors vs %d", len(fa.Tensors()), len(fb.Tensors()))
		return false
	}
	for _, ti := range fa.Tensors() {
		va, _ := fa.Float32(ti.Name)
		vb, err := fb.Float32(ti.Name)
		if err != nil {
			t.Logf("%s: %v", ti.Name, err)
			return false
		}
		var ba, bb bytes.Buffer
		for i := range va {
			ba.WriteString(string(rune(math.Float32bits(va[i]) % 0x10000)))
			bb.WriteString(string(rune(math.Float32bits(vb[i]) % 0x10000)))
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				t.Logf("%s[%d]: %v vs %v", ti.Name, i, va[i], vb[i])
				return false
			}
		}
	}
	return true
}

// TestFamilyAdaptersAgainstPyTorch: LoRA on every module of each family,
// written as the family's PEFT adapter (fused modules adapted as one, with
// one A), applied by family_ref.py the PEFT way: logits and the gradient
// of every adapter tensor match.
func TestFamilyAdaptersAgainstPyTorch(t *testing.T) {
	needTorch(t)
	for _, variant := range []string{"phi3", "baichuan", "chatglm"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			runFamilyRef(t, "gen", "--variant", variant, "--seed", "5", "--out", dir)
			cfg, err := LoadConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			kinds := AdapterKinds(cfg)
			m, err := LoadWith(dir, cpu.New(), Options{
				Trainable: func(string) bool { return false },
				LoRA:      &LoRAOptions{Modules: AdapterModules(cfg, kinds), Rank: 4, Scale: 2, Seed: 9},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			// Non-zero B so the adapters change the output.
			ts, err := m.AdapterTensors()
			if err != nil {
				t.Fatal(err)
			}
			for name, tt := range ts {
				if strings.HasSuffix(name, LoRABSuffix) {
					for i := range tt.Data {
						tt.Data[i] = float32(math.Sin(float64(i)*0.37+float64(len(name)))) * 0.2
					}
				}
			}
			if err := m.SetAdapterTensors(ts); err != nil {
				t.Fatal(err)
			}
			adir := filepath.Join(dir, "adapter")
			if err := lora.Save(adir, lora.Config{Rank: 4, Alpha: 8, Targets: kinds}, ts, safetensors.F32); err != nil {
				t.Fatal(err)
			}
			runFamilyRef(t, "run", "--model", dir, "--batch", filepath.Join(dir, "batch.json"), "--adapter", adir, "--out", filepath.Join(dir, "ref.safetensors"))
			ref, err := safetensors.OpenSingle(filepath.Join(dir, "ref.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			b := readBatch(t, filepath.Join(dir, "batch.json"))
			m.ZeroGrad()
			if _, err := m.ForwardBackward(b); err != nil {
				t.Fatal(err)
			}
			logits, err := m.Logits(b)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ref.Float32("logits")
			if rel, abs := relErr(logits, want, 1e-3); rel > 1e-5 {
				t.Errorf("logits differ: max abs %.3e, rel %.3e", abs, rel)
			}
			n := 0
			for _, ft := range m.adapterLayout() {
				parts := make([][]float32, len(ft.parts))
				for i, p := range ft.parts {
					parts[i] = download(t, m.be, p.Grad)
				}
				got := m.joinFile(ft, parts)
				want, err := ref.Float32("grad.lora." + ft.name)
				if err != nil {
					t.Fatalf("reference has no gradient for %s: %v", ft.name, err)
				}
				if rel, abs := relErr(got, want, 1e-6); rel > 2e-5 {
					t.Errorf("grad %s: max abs %.3e, rel %.3e", ft.name, abs, rel)
				}
				n++
			}
			t.Logf("%d adapter tensors on %v", n, kinds)

			// The adapter file loads back onto the same modules.
			lc, tensors, err := lora.Load(adir)
			if err != nil {
				t.Fatal(err)
			}
			m2, err := LoadAdapted(dir, cpu.New(), Options{Trainable: func(string) bool { return false }}, lc, tensors)
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Free()
			again, err := m2.Logits(b)
			if err != nil {
				t.Fatal(err)
			}
			if rel, _ := relErr(again, logits, 1e-3); rel != 0 {
				t.Errorf("reloaded adapter changes the logits (rel %.2e)", rel)
			}
		})
	}
}
