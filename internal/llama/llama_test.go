package llama

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tensor"
)

const python = "/usr/bin/python3"

var (
	torchOnce sync.Once
	torchErr  error
)

// needTorch skips the test when PyTorch is unavailable, unless
// LATHE_REQUIRE_PEERS=1.
func needTorch(t *testing.T) {
	t.Helper()
	torchOnce.Do(func() {
		out, err := exec.Command(python, "-c", "import torch").CombinedOutput()
		if err != nil {
			torchErr = &exec.Error{Name: python + " -c 'import torch': " + strings.TrimSpace(string(out)), Err: err}
		}
	})
	if torchErr != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("PyTorch reference required (LATHE_REQUIRE_PEERS=1): %v", torchErr)
		}
		t.Skipf("PyTorch reference unavailable: %v", torchErr)
	}
}

func runRef(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join("testdata", "llama_ref.py")}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("llama_ref.py %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type batchJSON struct {
	InputIDs    [][]int32 `json:"input_ids"`
	Targets     [][]int32 `json:"targets"`
	PositionIDs [][]int32 `json:"position_ids"`
	SegmentIDs  [][]int32 `json:"segment_ids"`
}

func readBatch(t *testing.T, path string) *Batch {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var bj batchJSON
	if err := json.Unmarshal(data, &bj); err != nil {
		t.Fatal(err)
	}
	b := &Batch{B: len(bj.InputIDs), T: len(bj.InputIDs[0])}
	flat := func(rows [][]int32) []int32 {
		if rows == nil {
			return nil
		}
		var out []int32
		for _, r := range rows {
			out = append(out, r...)
		}
		return out
	}
	b.Tokens, b.Targets = flat(bj.InputIDs), flat(bj.Targets)
	b.Positions, b.Segments = flat(bj.PositionIDs), flat(bj.SegmentIDs)
	return b
}

func writeBatch(t *testing.T, path string, b *Batch) {
	t.Helper()
	rows := func(v []int32) [][]int32 {
		if v == nil {
			return nil
		}
		out := make([][]int32, b.B)
		for i := range out {
			out[i] = v[i*b.T : (i+1)*b.T]
		}
		return out
	}
	data, err := json.Marshal(batchJSON{rows(b.Tokens), rows(b.Targets), rows(b.Positions), rows(b.Segments)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// relErr returns max|got-want| / max(max|want|, floor).
func relErr(got, want []float32, floor float64) (rel, maxAbs float64) {
	scale := floor
	for i := range want {
		scale = math.Max(scale, math.Abs(float64(want[i])))
		maxAbs = math.Max(maxAbs, math.Abs(float64(got[i])-float64(want[i])))
	}
	if len(got) != len(want) {
		return math.Inf(1), math.Inf(1)
	}
	return maxAbs / scale, maxAbs
}

func download(t *testing.T, be tensor.Backend, b tensor.Buffer) []float32 {
	t.Helper()
	v := make([]float32, b.Len())
	if err := tensor.DownloadF32(be, v, b); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAgainstPyTorch compares logits, loss, every gradient and one AdamW
// step with the float64 PyTorch reference for every variant it generates.
func TestAgainstPyTorch(t *testing.T) {
	needTorch(t)
	const lr, wd = 1e-3, 0.1
	cases := []struct {
		variant, weights string
		noDecay          bool
		packed           bool
	}{
		{"llama-gqa", "F32", false, false},
		{"llama-mha", "F32", true, false},
		{"llama3-rope", "F32", false, false},
		{"llama-bias", "F32", true, false},
		{"mistral", "BF16", false, false},
		{"mistral-window", "F32", false, false},
		{"qwen2-bias", "F16", true, false},
		{"qwen3-qknorm", "F32", false, false},
		{"llama-gqa", "F32", false, true},
		{"qwen3-qknorm", "F32", true, true},
	}
	for _, tc := range cases {
		name := tc.variant + "-" + tc.weights
		if tc.packed {
			name += "-packed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			runRef(t, "gen", "--variant", tc.variant, "--seed", "7", "--out", dir, "--weights-dtype", tc.weights, "--batch", "3", "--seq", "16")
			batchPath := filepath.Join(dir, "batch.json")
			if tc.packed {
				b := readBatch(t, batchPath)
				b.Positions = make([]int32, b.B*b.T)
				b.Segments = make([]int32, b.B*b.T)
				for r := 0; r < b.B; r++ {
					cut := 5 + 3*r // row r holds two sequences split at cut
					for i := 0; i < b.T; i++ {
						p, s := i, int32(1)
						if i >= cut {
							p, s = i-cut, 2
						}
						b.Positions[r*b.T+i], b.Segments[r*b.T+i] = int32(p), s
					}
					b.Targets[r*b.T+cut-1] = -100
				}
				batchPath = filepath.Join(dir, "packed.json")
				writeBatch(t, batchPath, b)
			}
			args := []string{"run", "--model", dir, "--batch", batchPath, "--out", filepath.Join(dir, "ref.safetensors"),
				"--out-dtype", "F64", "--adamw-steps", "1", "--lr", "1e-3", "--weight-decay", "0.1", "--beta2", "0.95"}
			if tc.noDecay {
				args = append(args, "--no-decay-norms-bias")
			}
			runRef(t, args...)
			ref, err := safetensors.OpenSingle(filepath.Join(dir, "ref.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()

			be := cpu.New()
			m, err := Load(dir, be)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			b := readBatch(t, batchPath)

			wantLogits, err := ref.Float32("logits")
			if err != nil {
				t.Fatal(err)
			}
			logits, err := m.Logits(b)
			if err != nil {
				t.Fatal(err)
			}
			rel, abs := relErr(logits, wantLogits, 1e-3)
			t.Logf("logits: max abs %.2e rel %.2e", abs, rel)
			if rel > 1e-5 {
				t.Errorf("logits differ: max abs %.3e, rel %.3e", abs, rel)
			}

			wantLoss, err := ref.Float32("loss")
			if err != nil {
				t.Fatal(err)
			}
			m.ZeroGrad()
			loss, err := m.Forward(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(float64(loss)-float64(wantLoss[0])) / float64(wantLoss[0]); d > 1e-5 {
				t.Errorf("loss %v, reference %v (rel %.2e)", loss, wantLoss[0], d)
			}
			if err := m.Backward(); err != nil {
				t.Fatal(err)
			}
			worst, worstName := 0.0, ""
			for _, p := range m.Params {
				want, err := ref.Float32("grad." + p.Name)
				if err != nil {
					t.Fatal(err)
				}
				rel, abs := relErr(download(t, be, p.Grad), want, 1e-6)
				if rel > worst {
					worst, worstName = rel, p.Name
				}
				if rel > 2e-5 {
					t.Errorf("grad %s: max abs %.3e, rel %.3e", p.Name, abs, rel)
				}
			}
			t.Logf("loss %v ref %v; worst grad rel %.2e (%s)", loss, wantLoss[0], worst, worstName)

			if err := m.AdamW(AdamWConfig{LR: lr, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: wd, NoDecayNormsBias: tc.noDecay}); err != nil {
				t.Fatal(err)
			}
			worstAdam := 0.0
			for _, p := range m.Params {
				want, err := ref.Float32("adamw." + p.Name)
				if err != nil {
					t.Fatal(err)
				}
				_, abs := relErr(download(t, be, p.W), want, 1)
				worstAdam = math.Max(worstAdam, abs)
				// One step moves a parameter by about lr; a gradient whose
				// float32 error flips a tiny element's sign can change that
				// element's step, so the bound is a fraction of lr.
				if abs > 0.05*lr {
					t.Errorf("adamw %s: max abs %.3e", p.Name, abs)
				}
			}
			t.Logf("adamw: max abs param difference %.2e (lr %g)", worstAdam, lr)
		})
	}
}
